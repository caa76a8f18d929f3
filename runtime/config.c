/* SPDX-License-Identifier: MIT */
#include "runtime/config.h"

#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct parse {
	struct sc_config *c;
	FILE *f;
	int line;                /* the line inih is handling (counted by our reader) */
	int section_line;        /* the line of the last [section] header */
	int open_line;           /* the header line of the section being read */
	int error;
	char *err;
	size_t errlen;
	bool in_sidecore, seen_sidecore;
	struct sc_blk_config *blk;   /* the [blk.X] being read, or NULL */
	unsigned seen;               /* keys seen in this section (bit per key) */
	char section[128];
};

static int parse_fail(struct parse *p, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int parse_fail(struct parse *p, int err, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->err, p->errlen, "%s:%d: ", p->c->path, p->line);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < p->errlen)
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	p->error = err;
	return 0;   /* stop inih */
}

static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s = fgets(str, num, p->f);
	if (s) {
		p->line++;
		/* inih calls us per key, not per header: remember where sections start. */
		const char *t = s + strspn(s, " \t");
		if (*t == '[')
			p->section_line = p->line;
	}
	return s;
}

/* A whole decimal number in [lo, hi]. */
static bool parse_uint(const char *v, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
	char *end;
	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *yes[] = { "yes", "true", "1", "on" }, *no[] = { "no", "false", "0", "off" };
	for (int i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i]))
			return *out = true;
		if (!strcmp(v, no[i]))
			return !(*out = false);
	}
	return false;
}

/* "1,3" or "2-5,7" into c->cpus. */
static bool parse_cpus(struct sc_config *c, const char *v)
{
	const char *s = v;
	c->ncpus = 0;
	if (!*s)
		return false;
	while (*s) {
		char *end;
		if (*s < '0' || *s > '9')
			return false;
		long a = strtol(s, &end, 10), b = a;
		s = end;
		if (*s == '-') {
			if (s[1] < '0' || s[1] > '9')
				return false;
			b = strtol(s + 1, &end, 10);
			s = end;
		}
		if (b < a || b > 65535)
			return false;
		for (long x = a; x <= b; x++) {
			if (c->ncpus == SC_CONFIG_MAX_CPUS)
				return false;
			c->cpus[c->ncpus++] = (int)x;
		}
		if (*s == ',') {
			if (!*++s)
				return false;
		} else if (*s) {
			return false;
		}
	}
	return true;
}

enum { K_CPUS = 1, K_IDLE = 2, K_BUDGET = 4, K_SOCKET = 8, K_BACKING = 16, K_QUEUES = 32, K_RO = 64, K_DIRECT = 128 };

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	struct sc_config *c = p->c;
	unsigned long long n;
	unsigned key;

	if (p->error)
		return 0;
	if (strcmp(section, p->section) || p->section_line != p->open_line) {
		/*
		 * A new section: inih calls us per key, so a section starts at its
		 * first key. The header line tells a repeated [blk.a] from the same one.
		 */
		snprintf(p->section, sizeof(p->section), "%s", section);
		p->open_line = p->section_line;
		p->seen = 0;
		p->blk = NULL;
		p->in_sidecore = false;
		if (!strcmp(section, "sidecore")) {
			if (p->seen_sidecore)
				return parse_fail(p, -EINVAL, "[sidecore] appears twice; merge the two sections");
			p->in_sidecore = p->seen_sidecore = true;
		} else if (!strncmp(section, "blk.", 4)) {
			const char *dev = section + 4;
			if (!*dev || strlen(dev) >= sizeof(c->blk[0].name))
				return parse_fail(p, -EINVAL, "[%s] needs a name of 1..63 characters: [blk.NAME]", section);
			for (int i = 0; i < c->nblk; i++)
				if (!strcmp(c->blk[i].name, dev))
					return parse_fail(p, -EINVAL, "[%s] is defined twice (first on line %d)", section,
							  c->blk[i].line);
			if (c->nblk == SC_CONFIG_MAX_DEVICES)
				return parse_fail(p, -EINVAL, "more than %d devices", SC_CONFIG_MAX_DEVICES);
			p->blk = &c->blk[c->nblk++];
			*p->blk = (struct sc_blk_config){ .queues = 1, .line = p->section_line };
			strcpy(p->blk->name, dev);
		} else if (!*section) {
			return parse_fail(p, -EINVAL, "'%s' is outside any section; put it under [sidecore] or [blk.NAME]", name);
		} else {
			return parse_fail(p, -EINVAL, "unknown section [%s]; sections are [sidecore] and [blk.NAME]", section);
		}
	}

	if (p->in_sidecore) {
		if (!strcmp(name, "cpus")) {
			key = K_CPUS;
			if (!parse_cpus(c, value))
				return parse_fail(p, -EINVAL, "cpus = '%s' is not a cpu list like 1,3 or 2-5", value);
			c->cpus_line = p->line;
		} else if (!strcmp(name, "idle_spin_us")) {
			key = K_IDLE;
			if (!parse_uint(value, 0, 10000000, &n))
				return parse_fail(p, -EINVAL, "idle_spin_us = '%s' is not a number of microseconds in 0..10000000", value);
			c->idle_spin_ns = n * 1000;
		} else if (!strcmp(name, "budget")) {
			key = K_BUDGET;
			if (!parse_uint(value, 1, 1024, &n))
				return parse_fail(p, -EINVAL, "budget = '%s' is not a number in 1..1024", value);
			c->budget = (unsigned)n;
		} else {
			return parse_fail(p, -EINVAL, "unknown key '%s' in [sidecore]; known keys: cpus, idle_spin_us, budget", name);
		}
	} else {
		struct sc_blk_config *b = p->blk;
		if (!strcmp(name, "socket")) {
			key = K_SOCKET;
			if (strlen(value) >= sizeof(b->socket))
				return parse_fail(p, -ENAMETOOLONG, "socket path longer than %zu bytes", sizeof(b->socket) - 1);
			strcpy(b->socket, value);
		} else if (!strcmp(name, "backing")) {
			key = K_BACKING;
			if (strlen(value) >= sizeof(b->backing))
				return parse_fail(p, -ENAMETOOLONG, "backing path too long");
			strcpy(b->backing, value);
		} else if (!strcmp(name, "queues")) {
			key = K_QUEUES;
			if (!parse_uint(value, 1, 64, &n))
				return parse_fail(p, -EINVAL, "queues = '%s' is not a number in 1..64", value);
			b->queues = (unsigned)n;
		} else if (!strcmp(name, "read_only") || !strcmp(name, "direct")) {
			key = name[0] == 'r' ? K_RO : K_DIRECT;
			if (!parse_bool(value, key == K_RO ? &b->read_only : &b->direct))
				return parse_fail(p, -EINVAL, "%s = '%s' is not yes or no", name, value);
		} else {
			return parse_fail(p, -EINVAL, "unknown key '%s' in [%s]; known keys: socket, backing, queues, read_only, direct",
					  name, section);
		}
	}
	if (p->seen & key)
		return parse_fail(p, -EINVAL, "'%s' is set twice in [%s]", name, section);
	p->seen |= key;
	return 1;
}

int sc_config_load(const char *path, struct sc_config *c, char *err, size_t errlen)
{
	/* section starts as a name no file can have, so the first key always opens one. */
	struct parse p = { .c = c, .err = err, .errlen = errlen, .section = "\n" };
	int ret;

	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->idle_spin_ns = 200000;
	c->budget = 32;
	p.f = fopen(path, "r");
	if (!p.f) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	ret = ini_parse_stream(reader, &p, handler, &p);
	fclose(p.f);
	if (p.error)
		return p.error;
	if (ret > 0) {
		snprintf(err, errlen, "%s:%d: syntax error; lines are [section], key = value, or ; comments", path, ret);
		return -EINVAL;
	}
	if (!p.seen_sidecore || c->ncpus == 0) {
		snprintf(err, errlen, "%s: no sidecore cpus; add [sidecore] with cpus = LIST", path);
		return -EINVAL;
	}
	for (int i = 0; i < c->nblk; i++) {
		struct sc_blk_config *b = &c->blk[i];
		if (!b->socket[0] || !b->backing[0]) {
			snprintf(err, errlen, "%s:%d: [blk.%s] needs %s", path, b->line, b->name,
				 !b->socket[0] ? "socket = PATH (the vhost-user socket)" : "backing = PATH (a file or block device)");
			return -EINVAL;
		}
	}
	return 0;
}

int sc_config_check_paths(const struct sc_config *c, char *err, size_t errlen)
{
	for (int i = 0; i < c->nblk; i++) {
		const struct sc_blk_config *b = &c->blk[i];
		struct stat st;
		char dir[sizeof(b->socket)];

		if (stat(b->backing, &st) < 0) {
			int e = errno;
			snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s': %s; create it or fix the path", c->path, b->line,
				 b->name, b->backing, strerror(e));
			return -e;
		}
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
			snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s' is not a file or block device", c->path, b->line,
				 b->name, b->backing);
			return -EINVAL;
		}
		if (!b->read_only && access(b->backing, W_OK) < 0) {
			int e = errno;
			snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s' is not writable (%s); set read_only = yes or fix its mode",
				 c->path, b->line, b->name, b->backing, strerror(e));
			return -e;
		}
		strcpy(dir, b->socket);
		const char *d = dirname(dir);
		if (access(d, W_OK | X_OK) < 0) {
			int e = errno;
			snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s': directory '%s' not writable (%s); create it or choose another path",
				 c->path, b->line, b->name, b->socket, d, strerror(e));
			return -e;
		}
		for (int j = 0; j < i; j++)
			if (!strcmp(c->blk[j].socket, b->socket)) {
				snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s' is also [blk.%s]'s (line %d); give each disk its own",
					 c->path, b->line, b->name, b->socket, c->blk[j].name, c->blk[j].line);
				return -EEXIST;
			}
	}
	return 0;
}

int sc_config_check_cpus(const struct sc_config *c, const bool *allowed, int n, char *err, size_t errlen)
{
	for (int i = 0; i < c->ncpus; i++)
		if (c->cpus[i] >= n || !allowed[c->cpus[i]]) {
			snprintf(err, errlen, "%s:%d: cpu %d is not a cpu this process may use; fix 'cpus' in [sidecore]",
				 c->path, c->cpus_line, c->cpus[i]);
			return -EINVAL;
		}
	return 0;
}
