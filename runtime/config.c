/* SPDX-License-Identifier: MIT */
/*
 * Line numbers: inih's handler gets no line number (Debian builds it without
 * INI_HANDLER_LINENO), so we feed inih through ini_parse_stream() with our
 * own reader, which counts lines. inih handles each line before it asks for
 * the next, so in the handler p->line is the line of that key. inih calls the
 * handler per key only, so the reader also spots [section] headers itself:
 * that gives each section its header line and lets an empty section count.
 */
#include "runtime/config.h"

#include "devices/devices.h"
#include "polling/polling.h"
#include "runtime/rebalance.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CPU_ID_MAX 65535    /* beyond any machine we run on; keeps numbers in an int */
#define SEC_MAX_KEYS 24

enum sec_kind { SEC_NONE, SEC_SIDECORE, SEC_BLK, SEC_NET };

/* Each table and its enum in the same order; errors list the known keys from the table. */
static const char *const sidecore_keys[] = {
	"cpus", "idle_spin_us", "budget", "control_timeout_ms",
	"count",
	"guest_cpus",
	"idle",
	"iowq_cpus",
	"stats_socket",
	"turn_us",
	"rebalance", "rebalance_interval_ms", "rebalance_busy", "rebalance_idle", "rebalance_intervals",
	NULL
};
static const char *const blk_keys[] = {
	"socket", "backing", "queues", "queue_size", "read_only", "direct", "delay_us",
	"sidecore",
	"numa_node",
	"mmap",
	"iopoll",
	"fixed_buffers",
	/* the vIOMMU block (blk_iommu_key) */
	"iommu_teardown", "iommu_window_ms", "iotlb_entries", "iotlb_miss_ms", "iommu_isolation",
	NULL
};
static const char *const net_keys[] = {
	"socket", "port", "queues", "queue_size", "mac", "mtu", "sidecore", "numa_node",
	NULL
};
enum { N_SOCKET, N_PORT, N_QUEUES, N_QSIZE, N_MAC, N_MTU, N_SIDECORE, N_NUMA };
enum {
	K_CPUS, K_IDLE, K_BUDGET, K_CONTROL_TIMEOUT,
	K_COUNT,
	K_GUEST_CPUS,
	K_IDLE_POLICY,
	K_IOWQ_CPUS,
	K_STATS_SOCKET,
	K_TURN,
	K_REBALANCE, K_REBALANCE_INTERVAL, K_REBALANCE_BUSY, K_REBALANCE_IDLE, K_REBALANCE_INTERVALS,
};
enum {
	K_SOCKET, K_BACKING, K_QUEUES, K_QSIZE, K_RO, K_DIRECT, K_DELAY,
	K_SIDECORE,
	K_NUMA,
	K_MMAP,
	K_IOPOLL,
	K_FIXED_BUFFERS,
	K_IOMMU_TEARDOWN, K_IOMMU_WINDOW, K_IOTLB_ENTRIES, K_IOTLB_MISS, K_IOMMU_ISOLATION,
};

struct parse {
	struct sc_config *c;
	FILE *f;
	int line;                    /* the line inih is handling (counted by reader()) */
	bool indented;               /* that line starts with white space */
	int read_errno;              /* fgets failed with this, not EOF */

	enum sec_kind kind;          /* the section being read */
	struct sc_blk_config *blk;   /* its device, for SEC_BLK */
	struct sc_net_config *net;   /* its device, for SEC_NET */
	int section_line;
	bool key_in_section;         /* inih's prev_name: an indented line now continues a value */
	int key_line[SEC_MAX_KEYS];  /* where each key of this section was set, 0 if not */
	int sidecore_line;           /* of [sidecore], 0 until seen */

	int error, error_line;       /* the first error we found, 0 if none */
	char *err;
	size_t errlen;
};

/* Record the first error, on the current line; returns it. */
static int fail(struct parse *p, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parse *p, int error, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(p->err, p->errlen, "%s:%d: ", p->c->path, p->line);

	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	p->error = error;
	p->error_line = p->line;
	return error;
}

static const char *skip_space(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* The section's name as errors show it: "sidecore" or "blk.NAME". */
static const char *section_name(const struct parse *p, char *buf, size_t len)
{
	if (p->kind == SEC_SIDECORE)
		return "sidecore";
	if (p->kind == SEC_NET)
		snprintf(buf, len, "net.%s", p->net->name);
	else
		snprintf(buf, len, "blk.%s", p->blk->name);
	return buf;
}

/* Open [net.NAME]; the name is checked and free. */
static int open_net(struct parse *p, const char *section, const char *dev)
{
	struct sc_config *c = p->c;
	uint32_t h = 2166136261u;   /* FNV-1a of the name: a stable default MAC per device */

	if (c->nnet == SC_CONFIG_MAX_NET)
		return fail(p, -E2BIG, "[%s] is NIC %d, more than the %d one service serves; split them across two configs",
			    section, c->nnet + 1, SC_CONFIG_MAX_NET);
	p->kind = SEC_NET;
	p->net = &c->net[c->nnet++];
	*p->net = (struct sc_net_config){ .queues = 1, .queue_size = 256, .mtu = 1500, .line = p->line, .numa_node = -1,
					  .mac = { 0x52, 0x54, 0x00 } };
	strcpy(p->net->name, dev);
	for (const char *s = dev; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	p->net->mac[3] = (uint8_t)(h >> 16);
	p->net->mac[4] = (uint8_t)(h >> 8);
	p->net->mac[5] = (uint8_t)h;
	return 0;
}

/* Open the section whose header is name (between the brackets, trimmed). */
static int open_section(struct parse *p, const char *name)
{
	struct sc_config *c = p->c;
	const char *dot = strchr(name, '.');
	const char *dev = dot ? dot + 1 : "";
	size_t typelen = dot ? (size_t)(dot - name) : strlen(name);

	p->kind = SEC_NONE;
	p->blk = NULL;
	p->net = NULL;
	p->section_line = p->line;
	p->key_in_section = false;
	memset(p->key_line, 0, sizeof(p->key_line));

	if (!strcmp(name, "sidecore")) {
		if (p->sidecore_line)
			return fail(p, -EEXIST, "[sidecore] appears twice (first on line %d); merge the two", p->sidecore_line);
		p->kind = SEC_SIDECORE;
		p->sidecore_line = p->line;
		c->sidecore_line = p->line;
		return 0;
	}
	bool net = typelen == 3 && !strncmp(name, "net", 3);
	if (!net && (typelen != 3 || strncmp(name, "blk", 3))) {
		if (dot)
			return fail(p, -EINVAL, "unknown section type '%.*s' in [%s]; device types are blk and net: "
				    "[blk.NAME], [net.NAME]", (int)typelen, name, name);
		return fail(p, -EINVAL, "unknown section [%s]; sections are [sidecore], [blk.NAME] and [net.NAME]", name);
	}
	if (!*dev)
		return fail(p, -EINVAL, "section [%s] has no device name; write [blk.NAME]", name);
	if (strlen(dev) >= sizeof(c->blk[0].name) || strspn(dev, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
								 "0123456789_-") != strlen(dev))
		return fail(p, -EINVAL, "device name '%s' in [%s] is not 1..%zu letters, digits, '_' or '-'; rename it", dev,
			    name, sizeof(c->blk[0].name) - 1);
	for (int i = 0; i < c->nblk; i++)
		if (!strcmp(c->blk[i].name, dev))
			return fail(p, -EEXIST, "[%s] is defined twice (first on line %d); rename one or merge them", name,
				    c->blk[i].line);
	/* One name space for all devices: the stats socket names them. */
	for (int i = 0; i < c->nnet; i++)
		if (!strcmp(c->net[i].name, dev))
			return fail(p, -EEXIST, "device name '%s' of [%s] is taken by [net.%s] (line %d); rename one", dev,
				    name, dev, c->net[i].line);
	if (net)
		return open_net(p, name, dev);
	if (c->nblk == SC_CONFIG_MAX_DEVICES)
		return fail(p, -E2BIG, "[%s] is device %d, more than the %d one service serves; split them across two configs",
			    name, c->nblk + 1, SC_CONFIG_MAX_DEVICES);
	p->kind = SEC_BLK;
	p->blk = &c->blk[c->nblk++];
	*p->blk = (struct sc_blk_config){ .queues = 1, .queue_size = 256, .line = p->line, .numa_node = -1,
					  .mmap = true, .fixed_buffers = true, .iommu = SC_IOMMU_CONFIG_DEFAULT };
	strcpy(p->blk->name, dev);
	return 0;
}

/*
 * inih's line source. Counts lines, refuses a line that does not fit inih's
 * buffer (inih would cut it in two), and opens [section]s as inih will see
 * them. Returning NULL ends the parse, as at end of file.
 */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s;

	if (p->error)
		return NULL;
	s = fgets(str, num, p->f);
	if (!s) {
		if (ferror(p->f))
			p->read_errno = errno ? errno : EIO;
		return NULL;
	}
	p->line++;
	size_t len = strlen(s);
	if (len && s[len - 1] != '\n') {
		int ch = getc(p->f);
		if (ch != EOF) {
			/* num counts the newline and the NUL */
			fail(p, -E2BIG, "line is longer than %d characters; shorten it (a symlink gives a long path a short name)",
			     num - 2);
			return NULL;
		}
	}

	/* What inih does with the line: skip a UTF-8 BOM on line 1, then white space. */
	const char *t = s;
	if (p->line == 1 && !strncmp(t, "\xEF\xBB\xBF", 3))
		t += 3;
	p->indented = isspace((unsigned char)*t);
	t = skip_space(t);
	/* An indented line after a key is a value continuation to inih, not a header. */
	if (*t == '[' && !(p->indented && p->key_in_section)) {
		/* inih ends the name at ']', or at an inline comment (';' after white space). */
		const char *e = t + 1;
		bool was_space = false;
		while (*e && *e != ']' && !(was_space && *e == ';')) {
			was_space = isspace((unsigned char)*e);
			e++;
		}
		if (*e == ']') {
			char name[256];   /* longer than any line inih reads */
			const char *b = skip_space(t + 1);
			while (e > b && isspace((unsigned char)e[-1]))
				e--;
			snprintf(name, sizeof(name), "%.*s", (int)(e - b), b);
			open_section(p, name);
		}
		/* else inih reports a syntax error on this line */
	}
	return p->error ? NULL : s;
}

/* The table's keys as "a, b, c", for an error. */
static const char *key_list(const char *const *keys, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; keys[i] && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", keys[i]);
	return buf;
}

static int key_index(const char *const *keys, const char *name)
{
	for (int i = 0; keys[i]; i++)
		if (!strcmp(keys[i], name))
			return i;
	return -1;
}

/* A whole decimal number: 0, -EINVAL if not one, -ERANGE if outside lo..hi. */
static int parse_uint(const char *v, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
	char *end;

	if (!isdigit((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || x < lo || x > hi)
		return -ERANGE;
	*out = x;
	return 0;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "yes", "true", "1" }, *const no[] = { "no", "false", "0" };

	for (int i = 0; i < 3; i++) {
		if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
			*out = !strcasecmp(v, yes[i]);
			return true;
		}
	}
	return false;
}

/* One cpu number at *s, advancing *s. 0, or -EINVAL / -ERANGE. */
static int parse_cpu(const char **s, int *cpu)
{
	char *end;

	if (!isdigit((unsigned char)**s))
		return -EINVAL;
	errno = 0;
	unsigned long x = strtoul(*s, &end, 10);
	*s = end;
	if (errno == ERANGE || x > CPU_ID_MAX)
		return -ERANGE;
	*cpu = (int)x;
	return 0;
}

/*
 * "1,3" or "2-5,7" (white space allowed around numbers) into cpus[0..max),
 * each cpu once, *ncpus of them. 0, or a negative errno with the reason in why.
 */
static int parse_cpus(int *cpus, int *ncpus, int max, const char *v, char *why, size_t whylen)
{
	const char *s = skip_space(v);

	*ncpus = 0;
	if (!*s) {
		snprintf(why, whylen, "the list is empty");
		return -EINVAL;
	}
	for (;;) {
		const char *entry = s;
		int entrylen = (int)strcspn(entry, ",");
		int a, b, r;

		if (*s == ',' || !*s) {
			snprintf(why, whylen, "an entry is empty");
			return -EINVAL;
		}
		r = parse_cpu(&s, &a);
		if (r == -EINVAL) {
			snprintf(why, whylen, "'%.*s' is not a cpu number", entrylen, entry);
			return r;
		}
		if (r == 0) {
			b = a;
			s = skip_space(s);
			if (*s == '-') {
				s = skip_space(s + 1);
				if (!*s || *s == ',') {
					snprintf(why, whylen, "range '%.*s' has no end", entrylen, entry);
					return -EINVAL;
				}
				r = parse_cpu(&s, &b);
				if (r == -EINVAL) {
					snprintf(why, whylen, "'%.*s' is not a cpu number or range", entrylen, entry);
					return r;
				}
			}
		}
		if (r == -ERANGE) {
			snprintf(why, whylen, "'%.*s' is beyond cpu %d", entrylen, entry, CPU_ID_MAX);
			return r;
		}
		s = skip_space(s);
		if (*s && *s != ',') {
			snprintf(why, whylen, "'%.*s' is not a cpu number or range", entrylen, entry);
			return -EINVAL;
		}
		if (b < a) {
			snprintf(why, whylen, "range %d-%d runs backwards", a, b);
			return -EINVAL;
		}
		for (int x = a; x <= b; x++) {
			for (int i = 0; i < *ncpus; i++)
				if (cpus[i] == x) {
					snprintf(why, whylen, "cpu %d is listed twice", x);
					return -EEXIST;
				}
			if (*ncpus == max) {
				snprintf(why, whylen, "it has more than %d cpus", max);
				return -E2BIG;
			}
			cpus[(*ncpus)++] = x;
		}
		if (!*s)
			return 0;
		s = skip_space(s + 1);   /* past the ',' */
	}
}

/* A number key: its value in lo..hi, or an error naming the key and the range. */
static bool number(struct parse *p, const char *name, const char *v, unsigned long long lo, unsigned long long hi,
		   unsigned long long *out)
{
	int r = parse_uint(v, lo, hi, out);

	if (r == -EINVAL)
		fail(p, r, "%s = '%s' is not a whole number; use a number in %llu..%llu", name, v, lo, hi);
	else if (r == -ERANGE)
		fail(p, r, "%s = %s is out of range; use a number in %llu..%llu", name, v, lo, hi);
	return r == 0;
}

static int sidecore_key(struct parse *p, int key, const char *v)
{
	struct sc_config *c = p->c;
	unsigned long long n;
	char why[128];
	int r;

	switch (key) {
	case K_CPUS:
		c->cpus_line = p->line;
		if (!strcmp(v, "auto")) {
			c->cpus_auto = true;
			break;
		}
		r = parse_cpus(c->cpus, &c->ncpus, SC_CONFIG_MAX_CPUS, v, why, sizeof(why));
		if (r < 0)
			return fail(p, r, "cpus = '%s': %s; write a cpu list like 1,3 or 2-5,7, or auto", v, why);
		break;
	case K_COUNT:
		if (number(p, "count", v, 1, SC_CONFIG_MAX_CPUS, &n)) {
			c->count = (int)n;
			c->count_line = p->line;
		}
		break;
	case K_GUEST_CPUS:
		r = parse_cpus(c->guest_cpus, &c->nguest_cpus, SC_CONFIG_MAX_CPUS, v, why, sizeof(why));
		if (r < 0)
			return fail(p, r, "guest_cpus = '%s': %s; write a cpu list like 0,2 or 0-3", v, why);
		c->guest_cpus_line = p->line;
		break;
	case K_IDLE_POLICY: {
		static const char *const names[] = { [SC_IDLE_ADAPTIVE] = "adaptive", [SC_IDLE_SPIN] = "spin",
						     [SC_IDLE_SLEEP] = "sleep" };
		for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(v, names[i]))
				c->idle = (enum sc_idle_policy)i;
		if (strcmp(v, names[c->idle]))
			return fail(p, -EINVAL, "idle = '%s' is not a policy; use spin, adaptive or sleep", v);
		c->idle_line = p->line;
		break;
	}
	case K_IOWQ_CPUS:
		c->iowq_line = p->line;
		if (!strcmp(v, "auto") || !strcmp(v, "none")) {
			c->iowq = !strcmp(v, "auto") ? SC_IOWQ_AUTO : SC_IOWQ_NONE;
			break;
		}
		r = parse_cpus(c->iowq_cpus, &c->niowq_cpus, SC_CONFIG_MAX_CPUS, v, why, sizeof(why));
		if (r < 0)
			return fail(p, r, "iowq_cpus = '%s': %s; write auto, none, or a cpu list like 0,2", v, why);
		c->iowq = SC_IOWQ_LIST;
		break;
	case K_STATS_SOCKET:
		if (!*v)
			return fail(p, -EINVAL, "stats_socket is empty; give a path, or none");
		if (strlen(v) >= sizeof(c->stats_socket))
			return fail(p, -ENAMETOOLONG, "stats_socket path is %zu bytes, longer than the %zu a unix socket path "
				    "(sun_path) holds; use a shorter path", strlen(v), sizeof(c->stats_socket) - 1);
		memcpy(c->stats_socket, v, strlen(v) + 1);
		c->stats_socket_line = p->line;
		break;
	case K_IDLE:
		/* 10 s: longer than any useful spin, and n * 1000 stays far from overflow */
		c->idle_spin_line = p->line;
		if (number(p, "idle_spin_us", v, 0, 10000000, &n))
			c->idle_spin_ns = n * 1000;
		break;
	case K_BUDGET:
		c->budget_line = p->line;
		if (number(p, "budget", v, 1, 1024, &n))
			c->budget = (unsigned)n;
		break;
	case K_TURN:
		c->turn_line = p->line;
		/* 1 s: a turn that long already stalls every neighbour; the budget bounds it anyway. */
		if (number(p, "turn_us", v, 1, 1000000, &n))
			c->turn_ns = n * 1000;
		break;
	case K_CONTROL_TIMEOUT:
		c->control_timeout_line = p->line;
		/* 10 ms: below that a loaded host drops honest front ends; 10 min: above that a stall is no longer bounded. */
		if (number(p, "control_timeout_ms", v, 10, 600000, &n))
			c->control_timeout_ms = (unsigned)n;
		break;
	case K_REBALANCE:
		if (!parse_bool(v, &c->rebalance))
			return fail(p, -EINVAL, "rebalance = '%s' is not a boolean; use yes or no", v);
		break;
	case K_REBALANCE_INTERVAL:
		/* 100 ms: shorter intervals measure noise (a sidecore's sleep, a scheduler tick), not load. */
		if (number(p, "rebalance_interval_ms", v, 100, 60000, &n))
			c->rebalance_interval_ms = (unsigned)n;
		break;
	case K_REBALANCE_BUSY:
		if (number(p, "rebalance_busy", v, 2, 100, &n))
			c->rebalance_busy = (unsigned)n;
		break;
	case K_REBALANCE_IDLE:
		c->rebalance_idle_line = p->line;
		if (number(p, "rebalance_idle", v, 0, 99, &n))
			c->rebalance_idle = (unsigned)n;
		break;
	case K_REBALANCE_INTERVALS:
		if (number(p, "rebalance_intervals", v, 1, SC_REBALANCE_MAX_INTERVALS, &n))
			c->rebalance_intervals = (unsigned)n;
		break;
	}
	return p->error;
}

/* backing = ram:SIZE: SIZE is a whole number of bytes with an optional K, M or G (powers of 1024). */
static int ram_size(struct parse *p, const char *v)
{
	static const char suffixes[] = "KMG";
	char digits[32];
	const char *num = v + 4;
	size_t len = strlen(num);
	unsigned shift = 0;
	unsigned long long n;
	int r;

	if (len && strchr(suffixes, num[len - 1])) {
		shift = 10 * (unsigned)(strchr(suffixes, num[len - 1]) - suffixes + 1);
		len--;
	}
	if (len >= sizeof(digits))
		r = -ERANGE;
	else {
		memcpy(digits, num, len);
		digits[len] = '\0';
		r = parse_uint(digits, 1, SC_BLK_RAM_MAX >> shift, &n);
	}
	if (r == 0 && (n << shift) % 4096)
		r = -EINVAL;
	if (r < 0)
		return fail(p, r, "backing = '%s': %s; write ram:SIZE with SIZE in 4K..1024G, a multiple of 4K, "
			    "with K, M or G (e.g. ram:256M)", v,
			    r == -ERANGE ? "size out of range" : "not a size");
	p->blk->ram_bytes = n << shift;
	return 0;
}

/*
 * The vIOMMU keys of a disk (IOMMU-protected guests: vhost-user's IOTLB).
 * Their ranges: a window above 1 s is no longer "lazy", it is a stale
 * IOTLB; SC_VU_IOTLB_MAX (65536) entries is what one device's table holds;
 * a miss answered in under 10 ms is not a miss a loaded front end can
 * meet, and one unanswered for 10 min is a stall no longer bounded.
 */
static int blk_iommu_key(struct parse *p, int key, const char *v)
{
	struct sc_iommu_config *m = &p->blk->iommu;
	unsigned long long n;

	switch (key) {
	case K_IOMMU_TEARDOWN:
		if (strcmp(v, "strict") && strcmp(v, "optimistic"))
			return fail(p, -EINVAL, "iommu_teardown = '%s' is not a mode; use strict or optimistic", v);
		m->optimistic = !strcmp(v, "optimistic");
		break;
	case K_IOMMU_WINDOW:
		m->window_line = p->line;
		if (number(p, "iommu_window_ms", v, 1, 1000, &n))
			m->window_ms = (unsigned)n;
		break;
	case K_IOTLB_ENTRIES:
		if (number(p, "iotlb_entries", v, 1, 65536, &n))
			m->iotlb_entries = (unsigned)n;
		break;
	case K_IOTLB_MISS:
		if (number(p, "iotlb_miss_ms", v, 10, 600000, &n))
			m->iotlb_miss_ms = (unsigned)n;
		break;
	case K_IOMMU_ISOLATION:
		if (!parse_bool(v, &m->isolation))
			return fail(p, -EINVAL, "iommu_isolation = '%s' is not a boolean; use yes or no", v);
		m->isolation_line = p->line;
		break;
	}
	return p->error;
}

static int blk_key(struct parse *p, int key, const char *name, const char *v)
{
	struct sc_blk_config *b = p->blk;
	unsigned long long n;

	switch (key) {
	case K_SOCKET:
	case K_BACKING: {
		char *dst = key == K_SOCKET ? b->socket : b->backing;
		size_t size = key == K_SOCKET ? sizeof(b->socket) : sizeof(b->backing);
		if (!*v)
			return fail(p, -EINVAL, "%s is empty in [blk.%s]; give a path", name, b->name);
		if (strlen(v) >= size)
			return fail(p, -ENAMETOOLONG, "%s path is %zu bytes, longer than the %zu a %s holds; use a shorter path",
				    name, strlen(v), size - 1, key == K_SOCKET ? "unix socket path (sun_path)" : "path");
		memcpy(dst, v, strlen(v) + 1);
		b->ram_bytes = 0;
		if (key == K_BACKING && !strncmp(v, "ram:", 4))
			return ram_size(p, v);
		break;
	}
	case K_QUEUES:
		if (number(p, "queues", v, 1, 64, &n))
			b->queues = (unsigned)n;
		break;
	case K_QSIZE:
		/* virtio 1.2 §2.7: a split ring's size is a power of two */
		if (!number(p, "queue_size", v, 64, 32768, &n))
			return p->error;
		if (n & (n - 1))
			return fail(p, -EINVAL, "queue_size = %s is not a power of two; use 64, 128, 256, ... 32768", v);
		b->queue_size = (unsigned)n;
		break;
	case K_RO:
	case K_DIRECT:
	case K_MMAP:
	case K_IOPOLL:
	case K_FIXED_BUFFERS:
		if (!parse_bool(v, key == K_RO ? &b->read_only : key == K_DIRECT ? &b->direct
							: key == K_MMAP ? &b->mmap : key == K_IOPOLL ? &b->iopoll : &b->fixed_buffers))
			return fail(p, -EINVAL, "%s = '%s' is not a boolean; use yes or no", name, v);
		if (key == K_IOPOLL)
			b->iopoll_line = p->line;
		break;
	case K_DELAY:
		/* 10 s: far beyond any disk worth imitating */
		if (number(p, "delay_us", v, 0, 10000000, &n))
			b->delay_ns = n * 1000;
		break;
	case K_SIDECORE: {
		char why[128];
		int r;
		b->sidecore_line = p->line;
		if (!strcmp(v, "auto"))
			break;
		r = parse_cpus(b->sidecores, &b->nsidecores, SC_CONFIG_MAX_DEVICE_CPUS, v, why, sizeof(why));
		if (r < 0)
			return fail(p, r, "sidecore = '%s': %s; write auto or sidecore cpus like 1 or 1,3", v, why);
		break;
	}
	case K_NUMA:
		b->numa_line = p->line;
		if (!strcmp(v, "auto"))
			break;
		/* 1023: the kernel's MAX_NUMNODES is at most 1 << 10 */
		if (number(p, "numa_node", v, 0, 1023, &n))
			b->numa_node = (int)n;
		break;
	default:
		return blk_iommu_key(p, key, v);
	}
	return p->error;
}

static int net_key(struct parse *p, int key, const char *name, const char *v)
{
	struct sc_net_config *d = p->net;
	unsigned long long n;
	char why[128];
	int r;

	switch (key) {
	case N_SOCKET:
	case N_PORT: {
		char *dst = key == N_SOCKET ? d->socket : d->port;
		size_t size = key == N_SOCKET ? sizeof(d->socket) : sizeof(d->port);
		if (!*v)
			return fail(p, -EINVAL, "%s is empty in [net.%s]; give %s", name, d->name,
				    key == N_SOCKET ? "a path" : "a DPDK vdev like net_tap0,iface=tap0");
		if (strlen(v) >= size)
			return fail(p, -ENAMETOOLONG, "%s is %zu bytes, longer than the %zu it may be; shorten it", name,
				    strlen(v), size - 1);
		if (key == N_PORT && strncmp(v, "net_", 4))
			return fail(p, -EINVAL, "port = '%s' is not a DPDK net vdev; write net_tap0,iface=NAME, "
				    "net_af_packet0,iface=NAME, net_ring0 or net_null0", v);
		if (key == N_PORT)
			d->port_line = p->line;
		memcpy(dst, v, strlen(v) + 1);
		break;
	}
	case N_QUEUES:
		if (number(p, "queues", v, 1, 16, &n))
			d->queues = (unsigned)n;
		break;
	case N_QSIZE:
		if (!number(p, "queue_size", v, 64, 32768, &n))
			return p->error;
		if (n & (n - 1))
			return fail(p, -EINVAL, "queue_size = %s is not a power of two; use 64, 128, 256, ... 32768", v);
		d->queue_size = (unsigned)n;
		break;
	case N_MAC: {
		unsigned b[6];
		int end = 0;
		if (sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6 || v[end] ||
		    strlen(v) != 17)
			return fail(p, -EINVAL, "mac = '%s' is not a MAC address; write six hex bytes like 52:54:00:12:34:56", v);
		if (b[0] & 1)
			return fail(p, -EINVAL, "mac = '%s' is a multicast address; clear the low bit of the first byte", v);
		for (int i = 0; i < 6; i++)
			d->mac[i] = (uint8_t)b[i];
		break;
	}
	case N_MTU:
		/* 68: IPv4's minimum; 9000: jumbo frames, within what a 64 KiB TSO packet already needs */
		if (number(p, "mtu", v, 68, 9000, &n))
			d->mtu = (unsigned)n;
		break;
	case N_SIDECORE:
		d->sidecore_line = p->line;
		if (!strcmp(v, "auto"))
			break;
		r = parse_cpus(d->sidecores, &d->nsidecores, SC_CONFIG_MAX_DEVICE_CPUS, v, why, sizeof(why));
		if (r < 0)
			return fail(p, r, "sidecore = '%s': %s; write auto or sidecore cpus like 1 or 1,3", v, why);
		break;
	case N_NUMA:
		if (!strcmp(v, "auto"))
			break;
		if (number(p, "numa_node", v, 0, 1023, &n))
			d->numa_node = (int)n;
		break;
	}
	return p->error;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	char sec[80], known[256];
	int key;

	if (p->error)
		return 0;
	if (!value)   /* only if someone turned on inih's ini_allow_no_value */
		value = "";
	if (p->indented && p->key_in_section) {
		fail(p, -EINVAL, "indented line continues the value of '%s'; remove the indentation", name);
		return 0;
	}
	p->key_in_section = true;
	if (!*name) {
		fail(p, -EINVAL, "'= %s' has no key; write key = value", value);
		return 0;
	}
	switch (p->kind) {
	case SEC_NONE:
		fail(p, -EINVAL, "key '%s' comes before any section; put it under [sidecore], [blk.NAME] or [net.NAME]", name);
		return 0;
	case SEC_NET:
		key = key_index(net_keys, name);
		if (key < 0) {
			fail(p, -EINVAL, "unknown key '%s' in [net.%s]; known keys: %s", name, p->net->name,
			     key_list(net_keys, known, sizeof(known)));
			return 0;
		}
		break;
	case SEC_SIDECORE:
		key = key_index(sidecore_keys, name);
		if (key < 0) {
			fail(p, -EINVAL, "unknown key '%s' in [sidecore]; known keys: %s", name,
			     key_list(sidecore_keys, known, sizeof(known)));
			return 0;
		}
		break;
	case SEC_BLK:
		key = key_index(blk_keys, name);
		if (key < 0) {
			fail(p, -EINVAL, "unknown key '%s' in [blk.%s]; known keys: %s", name, p->blk->name,
			     key_list(blk_keys, known, sizeof(known)));
			return 0;
		}
		break;
	default:
		return 0;
	}
	if (p->key_line[key]) {
		fail(p, -EEXIST, "'%s' is set twice in [%s] (first on line %d); keep one", name,
		     section_name(p, sec, sizeof(sec)), p->key_line[key]);
		return 0;
	}
	p->key_line[key] = p->line;
	if (p->kind == SEC_SIDECORE)
		sidecore_key(p, key, value);
	else if (p->kind == SEC_NET)
		net_key(p, key, name, value);
	else
		blk_key(p, key, name, value);
	return !p->error;
}

/* What must be there once the whole file is read: [sidecore] with cpus, each device's socket and backing. */
static int check_required(struct sc_config *c, int sidecore_line, char *err, size_t errlen)
{
	if (!sidecore_line) {
		snprintf(err, errlen, "%s: no [sidecore] section; add one with cpus = LIST (the sidecore cpus)", c->path);
		return -EINVAL;
	}
	/* In file order, so the first error in the file is the one reported. */
	for (int i = 0, cpus_checked = 0; i <= c->nblk; i++) {
		if (!cpus_checked && (i == c->nblk || c->blk[i].line > sidecore_line)) {
			cpus_checked = 1;
			if (!c->ncpus && !c->cpus_auto) {
				snprintf(err, errlen, "%s:%d: [sidecore] has no cpus; add cpus = LIST, like 1,3 or 2-5,7", c->path,
					 sidecore_line);
				return -EINVAL;
			}
			if (c->cpus_auto && !c->count) {
				snprintf(err, errlen, "%s:%d: cpus = auto needs count = N (how many sidecores to choose); add it "
					 "to [sidecore]", c->path, c->cpus_line);
				return -EINVAL;
			}
			if (!c->cpus_auto && c->count) {
				snprintf(err, errlen, "%s:%d: count is only for cpus = auto; remove it or set cpus = auto", c->path,
					 c->count_line);
				return -EINVAL;
			}
			if (c->rebalance_idle >= c->rebalance_busy) {
				snprintf(err, errlen, "%s:%d: rebalance_idle = %u is not below rebalance_busy = %u; a sidecore "
					 "cannot be idle and busy at once: lower rebalance_idle", c->path,
					 c->rebalance_idle_line ? c->rebalance_idle_line : sidecore_line, c->rebalance_idle,
					 c->rebalance_busy);
				return -EINVAL;
			}
		}
		if (i == c->nblk)
			break;
		const struct sc_blk_config *b = &c->blk[i];
		if (b->iommu.window_line && !b->iommu.optimistic) {
			snprintf(err, errlen, "%s:%d: iommu_window_ms is only for iommu_teardown = optimistic in [blk.%s]; "
				 "remove it or set iommu_teardown = optimistic", c->path, b->iommu.window_line, b->name);
			return -EINVAL;
		}
		if (!b->socket[0] || !b->backing[0]) {
			snprintf(err, errlen, "%s:%d: [blk.%s] has no %s", c->path, b->line, b->name,
				 !b->socket[0] ? "socket; add socket = PATH (its vhost-user socket)"
					       : "backing; add backing = PATH (a file or block device)");
			return -EINVAL;
		}
		if (b->iopoll && !b->direct) {
			snprintf(err, errlen, "%s:%d: [blk.%s] iopoll = yes needs direct = yes (only O_DIRECT I/O can be "
				 "polled); add direct = yes or drop iopoll", c->path, b->iopoll_line, b->name);
			return -EINVAL;
		}
	}
	return 0;
}

/* Beside the first device's socket, or in /run/sidecore without devices; "none" turns it off. */
static void default_stats_socket(struct sc_config *c)
{
	if (!strcmp(c->stats_socket, "none")) {
		c->stats_socket[0] = '\0';
		return;
	}
	if (c->stats_socket_line)
		return;
	const char *first = c->nblk ? c->blk[0].socket : c->nnet ? c->net[0].socket : SC_CONFIG_STATS_DIR "/x";
	const char *slash = strrchr(first, '/');
	int dirlen = slash ? (int)(slash - first) : 0;
	int n = snprintf(c->stats_socket, sizeof(c->stats_socket), "%.*s%s" SC_CONFIG_STATS_NAME, dirlen, first,
			 slash ? "/" : "");
	/* A device socket near sun_path's limit leaves no room: fall back to the fixed directory. */
	if (n < 0 || (size_t)n >= sizeof(c->stats_socket))
		snprintf(c->stats_socket, sizeof(c->stats_socket), SC_CONFIG_STATS_DIR "/" SC_CONFIG_STATS_NAME);
}

int sc_config_load(const char *path, struct sc_config *c, char *err, size_t errlen)
{
	struct parse p = { .c = c, .err = err, .errlen = errlen };
	int ret;

	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->idle_spin_ns = 200 * 1000;
	c->budget = 32;
	c->turn_ns = SC_POLLER_DEFAULT_TURN_NS;
	c->control_timeout_ms = 5000;
	c->idle = SC_IDLE_ADAPTIVE;
	c->iowq = SC_IOWQ_AUTO;
	c->rebalance = true;
	c->rebalance_interval_ms = 1000;
	c->rebalance_busy = 90;
	c->rebalance_idle = 50;
	c->rebalance_intervals = 3;
	p.f = fopen(path, "r");
	if (!p.f) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	ret = ini_parse_stream(reader, &p, handler, &p);
	fclose(p.f);
	/* inih goes on after a syntax error and returns its line; ours stop the parse. */
	if (ret > 0 && (!p.error || ret < p.error_line)) {
		snprintf(err, errlen, "%s:%d: syntax error; a line is [section], key = value, or a ; comment", path, ret);
		return -EINVAL;
	}
	if (p.error)
		return p.error;
	if (p.read_errno) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(p.read_errno));
		return -p.read_errno;
	}
	if (ret < 0) {   /* inih's own failure (-2: out of memory), not expected with a reader */
		snprintf(err, errlen, "%s: cannot parse (inih returned %d)", path, ret);
		return -ENOMEM;
	}
	ret = check_required(c, p.sidecore_line, err, errlen);
	for (int i = 0; ret == 0 && i < c->nnet; i++) {
		const struct sc_net_config *d = &c->net[i];
		if (!d->socket[0] || !d->port[0]) {
			snprintf(err, errlen, "%s:%d: [net.%s] has no %s", c->path, d->line, d->name,
				 !d->socket[0] ? "socket; add socket = PATH (its vhost-user socket)"
					       : "port; add port = VDEV (a DPDK port like net_tap0,iface=tap0)");
			ret = -EINVAL;
		}
	}
	if (ret == 0)
		default_stats_socket(c);
	return ret;
}

/* The identity of a file, to tell two spellings of one path apart. */
struct file_id {
	dev_t dev;
	ino_t ino;
};

static struct file_id file_id(const struct stat *st)
{
	/* two nodes for one block device (/dev/sda, /dev/disk/by-id/...) share st_rdev */
	if (S_ISBLK(st->st_mode))
		return (struct file_id){ .dev = st->st_rdev, .ino = 0 };
	return (struct file_id){ .dev = st->st_dev, .ino = st->st_ino };
}

static bool same_file(struct file_id a, struct file_id b)
{
	return a.dev == b.dev && a.ino == b.ino;
}

static int check_backing(const struct sc_config *c, int i, struct file_id *ids, char *err, size_t errlen)
{
	const struct sc_blk_config *b = &c->blk[i];
	struct stat st;

	ids[i] = (struct file_id){ 0 };
	if (b->ram_bytes)
		return 0;   /* a RAM disk is made at start: nothing to find, nobody to share it */
	if (stat(b->backing, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s': %s; create it or fix the path", c->path, b->line, b->name,
			 b->backing, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s' is %s, not a regular file or block device; fix the path",
			 c->path, b->line, b->name, b->backing, S_ISDIR(st.st_mode) ? "a directory" : "a special file");
		return -EINVAL;
	}
	if (access(b->backing, R_OK | (b->read_only ? 0 : W_OK)) < 0) {
		int e = errno;
		bool readable = access(b->backing, R_OK) == 0;
		snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s' is not %s (%s); %s", c->path, b->line, b->name, b->backing,
			 readable ? "writable" : "readable", strerror(e),
			 readable ? "set read_only = yes or make it writable" : "fix its permissions or run as its owner");
		return -e;
	}
	ids[i] = file_id(&st);
	for (int j = 0; j < i; j++) {
		const struct sc_blk_config *o = &c->blk[j];
		if (!o->ram_bytes && same_file(ids[j], ids[i]) && !(o->read_only && b->read_only)) {
			snprintf(err, errlen, "%s:%d: [blk.%s] backing '%s' is also [blk.%s]'s (line %d), and one writes to it; "
				 "give each its own or make both read_only", c->path, b->line, b->name, b->backing, o->name, o->line);
			return -EEXIST;
		}
	}
	return 0;
}

static int check_socket(const struct sc_config *c, int i, struct file_id *dirs, char *err, size_t errlen)
{
	const struct sc_blk_config *b = &c->blk[i];
	char dir[sizeof(b->socket)];
	const char *slash = strrchr(b->socket, '/');
	const char *base = slash ? slash + 1 : b->socket;
	struct stat st;

	/* The directory the socket goes in: what precedes the last '/', "/" or "." */
	if (!slash)
		strcpy(dir, ".");
	else if (slash == b->socket)
		strcpy(dir, "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - b->socket), b->socket);

	if (stat(dir, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s': directory '%s': %s; create it or fix the path", c->path,
			 b->line, b->name, b->socket, dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s': '%s' is not a directory; fix the path", c->path, b->line,
			 b->name, b->socket, dir);
		return -ENOTDIR;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s': directory not writable (%s); make '%s' writable for this "
			 "user or choose another directory", c->path, b->line, b->name, b->socket, strerror(e), dir);
		return -e;
	}
	dirs[i] = file_id(&st);
	/* The server replaces an old socket, never anything else. */
	if (lstat(b->socket, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s' exists and is not a socket; remove it or choose another path",
			 c->path, b->line, b->name, b->socket);
		return -EEXIST;
	}
	for (int j = 0; j < i; j++) {
		const struct sc_blk_config *o = &c->blk[j];
		const char *oslash = strrchr(o->socket, '/');
		if (same_file(dirs[j], dirs[i]) && !strcmp(oslash ? oslash + 1 : o->socket, base)) {
			snprintf(err, errlen, "%s:%d: [blk.%s] socket '%s' is also [blk.%s]'s (line %d); give each device its own",
				 c->path, b->line, b->name, b->socket, o->name, o->line);
			return -EEXIST;
		}
	}
	return 0;
}

/* A NIC's socket: its directory is there and writable, nothing but an old socket at the path, no other device's. */
static int check_net_socket(const struct sc_config *c, int i, char *err, size_t errlen)
{
	const struct sc_net_config *d = &c->net[i];
	char dir[sizeof(d->socket)];
	const char *slash = strrchr(d->socket, '/');
	struct stat st;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (slash == d->socket ? 1 : (int)(slash - d->socket)) : 1,
		 slash ? d->socket : ".");
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "%s:%d: [net.%s] socket '%s': directory '%s' is missing or not writable; create it "
			 "or fix the path", c->path, d->line, d->name, d->socket, dir);
		return -ENOTDIR;
	}
	if (lstat(d->socket, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s:%d: [net.%s] socket '%s' exists and is not a socket; remove it or choose another "
			 "path", c->path, d->line, d->name, d->socket);
		return -EEXIST;
	}
	for (int j = 0; j < c->nblk + i; j++) {
		const char *other = j < c->nblk ? c->blk[j].socket : c->net[j - c->nblk].socket;
		if (!strcmp(other, d->socket)) {
			snprintf(err, errlen, "%s:%d: [net.%s] socket '%s' is also another device's; give each device its own",
				 c->path, d->line, d->name, d->socket);
			return -EEXIST;
		}
	}
	return 0;
}

int sc_config_check_paths(const struct sc_config *c, char *err, size_t errlen)
{
	struct file_id backing[SC_CONFIG_MAX_DEVICES], sockdir[SC_CONFIG_MAX_DEVICES];
	int r;

	for (int i = 0; i < c->nnet; i++) {
		r = check_net_socket(c, i, err, errlen);
		if (r < 0)
			return r;
	}

	for (int i = 0; i < c->nblk && i < SC_CONFIG_MAX_DEVICES; i++) {
		r = check_backing(c, i, backing, err, errlen);
		if (r < 0)
			return r;
		r = check_socket(c, i, sockdir, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}
