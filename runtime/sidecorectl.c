/* SPDX-License-Identifier: MIT */
/*
 * sidecorectl: asks a running sidecored for its stats over the stats socket
 * (runtime/stats.h) and shows them: a table that refreshes like top, one
 * JSON sample, or the Prometheus text format; or moves a queue to another
 * sidecore.
 *
 * Failures print one line and exit 1: no sidecored at the socket, a device
 * name it does not serve, a reply that is not what sidecored sends.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "runtime/config.h"

static const char usage[] =
	"usage: sidecorectl [--socket PATH | --config FILE] stats [--once | --json | --prometheus]\n"
	"                   [--interval SECONDS] [DEVICE...]\n"
	"       sidecorectl [--socket PATH | --config FILE] move DEVICE:QUEUE CPU\n"
	"\n"
	"Shows what a running sidecored's sidecores and queues do, from its stats\n"
	"socket: per sidecore the busy, idle (spinning) and sleep shares of the last\n"
	"interval and its counters; per device queue its requests, bytes, errors and\n"
	"notifications. Without --once it refreshes every interval like top (^C ends).\n"
	"move serves queue QUEUE of DEVICE from the sidecore on cpu CPU from now on;\n"
	"requests in flight go with it (none lost, none served twice).\n"
	"\n"
	"  -s, --socket PATH     the stats socket (default " SC_CONFIG_STATS_DIR "/" SC_CONFIG_STATS_NAME ")\n"
	"  -c, --config FILE     the socket sidecored's config FILE names (stats_socket)\n"
	"  -1, --once            one table, then exit\n"
	"  -j, --json            one sample as sidecored's JSON, then exit\n"
	"  -p, --prometheus      one sample in the Prometheus text format, then exit\n"
	"  -i, --interval S      seconds between refreshes (default 1)\n"
	"  DEVICE...             only these devices ([blk.NAME])\n"
	"  -h, --help, -V, --version\n";

#define REPLY_TIMEOUT_MS 3000

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("sidecorectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Ask sidecored at path; the parsed reply, or NULL after one line on stderr. */
static json_t *ask(const char *path, const char *cmd)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *doc = NULL;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fail("stats socket path '%s' is too long for a unix socket", path);
		return NULL;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail("socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			fail("no sidecored answers at %s (%s): is it running? Give its socket with --socket or its config "
			     "with --config", path, strerror(e));
		else
			fail("cannot connect to %s: %s", path, strerror(e));
		close(fd);
		return NULL;
	}
	size_t n = strlen(cmd);
	if (send(fd, cmd, n, MSG_NOSIGNAL) != (ssize_t)n || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		fail("%s: cannot send the request: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, REPLY_TIMEOUT_MS) <= 0) {
			fail("%s: no reply within %d ms; sidecored may be stuck", path, REPLY_TIMEOUT_MS);
			goto out;
		}
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap = cap * 2 + 8192);
			if (!nb) {
				fail("out of memory");
				goto out;
			}
			buf = nb;
		}
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0) {
			fail("%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	json_error_t jerr;
	doc = buf ? json_loadb(buf, len, 0, &jerr) : NULL;
	if (!doc)
		fail("%s: the reply is not JSON (%s); is this a sidecored stats socket?", path, buf ? jerr.text : "empty");
	else if (json_object_get(doc, "error")) {
		fail("%s: sidecored says: %s", path, json_string_value(json_object_get(doc, "error")));
		json_decref(doc);
		doc = NULL;
	}
out:
	free(buf);
	close(fd);
	return doc;
}

/* Keep only the named devices; false (after one line) if a name is not served. */
static bool filter(json_t *doc, const char *path, char **names, int n)
{
	json_t *devs = json_object_get(doc, "devices"), *keep = json_array();
	for (int i = 0; i < n; i++) {
		size_t k;
		json_t *d;
		bool found = false;
		json_array_foreach(devs, k, d) {
			if (!strcmp(json_string_value(json_object_get(d, "name")) ?: "", names[i])) {
				json_array_append(keep, d);
				found = true;
			}
		}
		if (!found) {
			char list[1024] = "";
			size_t used = 0;
			json_array_foreach(devs, k, d) {
				if (used < sizeof(list))
					used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
								 json_string_value(json_object_get(d, "name")) ?: "?");
			}
			fail("sidecored at %s serves no device '%s' (it serves: %s)", path, names[i], used ? list : "none");
			json_decref(keep);
			return false;
		}
	}
	if (n)
		json_object_set_new(doc, "devices", keep);
	else
		json_decref(keep);
	return true;
}

static double num(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static long long cnt(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static void print_table(json_t *doc, FILE *out)
{
	size_t i, j;
	json_t *s, *d, *q;

	fprintf(out, "sidecored %s, pid %lld, shares over the last %.1f s\n\n", json_string_value(json_object_get(doc, "version")) ?: "?",
		cnt(doc, "pid"), num(doc, "interval_s"));
	fprintf(out, "%-8s %6s %6s %6s %6s %12s %12s %9s %9s %6s\n", "sidecore", "busy", "idle", "sleep", "cpu", "rounds",
		"work", "sleeps", "wakeups", "queues");
	json_array_foreach(json_object_get(doc, "sidecores"), i, s)
		fprintf(out, "%-8lld %5.1f%% %5.1f%% %5.1f%% %5.1f%% %12lld %12lld %9lld %9lld %6lld\n", cnt(s, "cpu"),
			100 * num(s, "busy"), 100 * num(s, "idle"), 100 * num(s, "sleep"), 100 * num(s, "cpu_use"),
			cnt(s, "rounds"), cnt(s, "work"), cnt(s, "sleeps"), cnt(s, "wakeups"), cnt(s, "queues"));
	fprintf(out, "\n%-12s %5s %8s %12s %10s %10s %7s %10s %10s %10s %5s %s\n", "device", "queue", "sidecore", "requests",
		"read MiB", "write MiB", "errors", "no-kick", "irqs", "irq-supp", "depth", "state");
	json_array_foreach(json_object_get(doc, "devices"), i, d) {
		json_array_foreach(json_object_get(d, "queues"), j, q) {
			json_t *why = json_object_get(q, "broken_reason");
			long long errors = cnt(q, "io_errors") + cnt(q, "bad_requests") + cnt(q, "unsupported") +
					   cnt(q, "oversized");
			fprintf(out, "%-12s %5lld %8lld %12lld %10.1f %10.1f %7lld %10lld %10lld %10lld %5lld %s%s\n",
				json_string_value(json_object_get(d, "name")) ?: "?", cnt(q, "queue"), cnt(q, "sidecore"),
				cnt(q, "requests"), (double)cnt(q, "bytes_read") / 1048576, (double)cnt(q, "bytes_written") / 1048576,
				errors, cnt(q, "kicks_avoided"), cnt(q, "interrupts"), cnt(q, "interrupts_suppressed"),
				cnt(q, "depth"), json_is_string(why) ? "broken: " : json_is_true(json_object_get(q, "running")) ? "running" : "stopped",
				json_is_string(why) ? json_string_value(why) : "");
		}
	}
	/* The IOTLB of the devices whose front end plays a vIOMMU (ACCESS_PLATFORM). */
	bool header = false;
	json_array_foreach(json_object_get(doc, "devices"), i, d) {
		json_t *t = json_object_get(d, "iotlb");
		if (!json_is_object(t) || cnt(t, "updates") + cnt(t, "invalidates") + cnt(t, "refused") == 0)
			continue;
		if (!header)
			fprintf(out, "\n%-12s %10s %10s %8s %8s %8s %10s %12s %8s\n", "IOTLB of", "updates", "invalidates",
				"refused", "misses", "flushes", "acks", "mean ack us", "entries");
		header = true;
		long long acks = cnt(t, "acks");
		fprintf(out, "%-12s %10lld %10lld %8lld %8lld %8lld %10lld %12.1f %8lld\n",
			json_string_value(json_object_get(d, "name")) ?: "?", cnt(t, "updates"), cnt(t, "invalidates"),
			cnt(t, "refused"), cnt(t, "misses"), cnt(t, "flushes"), acks,
			acks ? (double)cnt(t, "ack_ns") / 1000 / (double)acks : 0.0, cnt(t, "entries"));
	}
}

/* Prometheus text format: one family per counter, HELP and TYPE first. */
static void print_prometheus(json_t *doc, FILE *out)
{
	static const struct {
		const char *key, *type, *help;
	} core[] = {
		{ "busy", "gauge", "share of the last interval spent in rounds that served requests" },
		{ "idle", "gauge", "share of the last interval spent spinning without work" },
		{ "sleep", "gauge", "share of the last interval asleep on the kick eventfds" },
		{ "cpu_use", "gauge", "cpu time of the sidecore thread over the last interval, per second" },
		{ "rounds", "counter", "poll rounds" },
		{ "work", "counter", "work its queues reported: requests started, pieces moved, completions" },
		{ "sleeps", "counter", "times the sidecore went to sleep" },
		{ "wakeups", "counter", "times a guest kick woke the sidecore" },
		{ "rearm_races", "counter", "re-arms that found work already waiting" },
		{ "faults", "counter", "queues stopped by a fault on guest memory" },
		{ "isolation_faults", "counter", "touches of guest pages the IOMMU does not grant (iommu_isolation)" },
		{ "queues", "gauge", "queues attached" },
	};
	size_t i, j, k;
	json_t *s, *d, *q;

	for (k = 0; k < sizeof(core) / sizeof(core[0]); k++) {
		/* Prometheus naming: counters end in _total, shares of 0..1 in _ratio. */
		const char *suffix = !strcmp(core[k].type, "counter") ? "_total" : strcmp(core[k].key, "queues") ? "_ratio" : "";
		fprintf(out, "# HELP sidecore_%s%s %s\n# TYPE sidecore_%s%s %s\n", core[k].key, suffix, core[k].help,
			core[k].key, suffix, core[k].type);
		json_array_foreach(json_object_get(doc, "sidecores"), i, s) {
			json_t *v = json_object_get(s, core[k].key);
			fprintf(out, "sidecore_%s%s{cpu=\"%lld\"} ", core[k].key, suffix, cnt(s, "cpu"));
			if (json_is_integer(v))
				fprintf(out, "%lld\n", (long long)json_integer_value(v));
			else
				fprintf(out, "%.6f\n", json_number_value(v));
		}
	}
	/* IOTLB counters per device; ack_ns in seconds, as Prometheus counts time. */
	json_t *iotlb0 = json_object_get(json_array_get(json_object_get(doc, "devices"), 0), "iotlb");
	const char *ikey;
	json_t *iv;
	json_object_foreach(iotlb0, ikey, iv) {
		bool gauge = !strcmp(ikey, "entries"), ns = !strcmp(ikey, "ack_ns");
		fprintf(out, "# TYPE sidecore_iotlb_%s%s %s\n", ns ? "ack_seconds" : ikey, gauge ? "" : "_total",
			gauge ? "gauge" : "counter");
		json_array_foreach(json_object_get(doc, "devices"), i, d) {
			json_t *t = json_object_get(d, "iotlb");
			const char *name = json_string_value(json_object_get(d, "name")) ?: "?";
			if (ns)
				fprintf(out, "sidecore_iotlb_ack_seconds_total{device=\"%s\"} %.9f\n", name, (double)cnt(t, ikey) / 1e9);
			else
				fprintf(out, "sidecore_iotlb_%s%s{device=\"%s\"} %lld\n", ikey, gauge ? "" : "_total", name,
					cnt(t, ikey));
		}
	}
	/* Queue counters: every integer of the first queue but its ids, so a new counter appears by itself. */
	json_t *first = NULL;
	json_array_foreach(json_object_get(doc, "devices"), i, d) {
		if (!first)
			first = json_array_get(json_object_get(d, "queues"), 0);
	}
	const char *key;
	json_t *v;
	json_object_foreach(first, key, v) {
		if (!json_is_integer(v) || !strcmp(key, "queue") || !strcmp(key, "sidecore"))
			continue;
		bool gauge = !strcmp(key, "depth");
		fprintf(out, "# TYPE sidecore_queue_%s%s %s\n", key, gauge ? "" : "_total", gauge ? "gauge" : "counter");
		json_array_foreach(json_object_get(doc, "devices"), i, d) {
			json_array_foreach(json_object_get(d, "queues"), j, q)
				fprintf(out, "sidecore_queue_%s%s{device=\"%s\",queue=\"%lld\",sidecore=\"%lld\"} %lld\n", key,
					gauge ? "" : "_total", json_string_value(json_object_get(d, "name")) ?: "?",
					cnt(q, "queue"), cnt(q, "sidecore"), cnt(q, key));
		}
	}
	fprintf(out, "# TYPE sidecore_queue_broken_info gauge\n");
	json_array_foreach(json_object_get(doc, "devices"), i, d) {
		json_array_foreach(json_object_get(d, "queues"), j, q) {
			json_t *why = json_object_get(q, "broken_reason");
			if (!json_is_string(why))
				continue;
			fprintf(out, "sidecore_queue_broken_info{device=\"%s\",queue=\"%lld\",reason=\"",
				json_string_value(json_object_get(d, "name")) ?: "?", cnt(q, "queue"));
			/* Label values escape backslash, quote and newline. */
			for (const char *c = json_string_value(why); *c; c++)
				fprintf(out, *c == '"' || *c == '\\' ? "\\%c" : *c == '\n' ? "\\n" : "%c", *c);
			fprintf(out, "\"} 1\n");
		}
	}
}

/* move DEVICE:QUEUE CPU */
static int move(const char *path, char **args, int n)
{
	char dev[64], cmd[128];
	unsigned queue;
	int cpu, end = 0, end2 = 0;

	if (n != 2 || sscanf(args[0], "%63[^:]:%u%n", dev, &queue, &end) != 2 || args[0][end] ||
	    sscanf(args[1], "%d%n", &cpu, &end2) != 1 || args[1][end2] || cpu < 0) {
		fail("move takes DEVICE:QUEUE CPU, like: sidecorectl move disk0:1 3");
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "move %s %u %d", dev, queue, cpu);
	json_t *doc = ask(path, cmd);
	if (!doc)
		return 1;
	json_t *m = json_object_get(doc, "moved");
	if (!m) {
		json_decref(doc);
		return fail("%s: the reply to move is not sidecored's", path);
	}
	printf("%s:%u: moved from the sidecore on cpu %lld to cpu %lld\n", dev, queue, cnt(m, "from"), cnt(m, "to"));
	json_decref(doc);
	return 0;
}

struct opts {
	const char *path, *config;
	bool once, json, prom, have_socket;
	double interval;
};

/* One option of either pass; 0, or the exit status for a bad one. */
static int option(struct opts *o, int c)
{
	char *end;

	switch (c) {
	case 's': o->path = optarg; o->have_socket = true; return 0;
	case 'c': o->config = optarg; return 0;
	case '1': o->once = true; return 0;
	case 'j': o->json = true; return 0;
	case 'p': o->prom = true; return 0;
	case 'i':
		o->interval = strtod(optarg, &end);
		if (*end || !(o->interval >= 0.1 && o->interval <= 3600))
			return fail("--interval '%s': give seconds in 0.1..3600", optarg);
		return 0;
	default:
		fputs(usage, stderr);
		return 2;
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' }, { "config", required_argument, NULL, 'c' },
		{ "once", no_argument, NULL, '1' },         { "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },   { "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	static struct sc_config cfg;
	struct opts o = { .path = SC_CONFIG_STATS_DIR "/" SC_CONFIG_STATS_NAME, .interval = 1 };
	int c, r;

	/* Options before the command ('+': stop at it), then the command's own and its device names. */
	while ((c = getopt_long(argc, argv, "+s:c:1jpi:hV", longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			return 0;
		}
		if (c == 'V') {
			printf("sidecorectl %s\n", SC_VERSION);
			return 0;
		}
		if ((r = option(&o, c)))
			return r;
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	const char *command = argv[optind];
	if (strcmp(command, "stats") && strcmp(command, "move")) {
		fail("unknown command '%s'; the commands are stats and move (see sidecorectl --help)", command);
		return 2;
	}
	optind++;
	while ((c = getopt_long(argc, argv, "s:c:1jpi:", longopts, NULL)) != -1)
		if ((r = option(&o, c)))
			return r;
	if ((int)o.json + (int)o.prom + (int)o.once > 1)
		return fail("--once, --json and --prometheus each print one sample; give one of them");
	if (o.config && o.have_socket)
		return fail("give --socket or --config, not both");
	if (o.config) {
		char err[8192];
		if (sc_config_load(o.config, &cfg, err, sizeof(err)) < 0)
			return fail("%s", err);
		if (!cfg.stats_socket[0])
			return fail("%s: stats_socket = none: that sidecored has no stats socket", o.config);
		o.path = cfg.stats_socket;
	}
	char **names = argv + optind;
	int nnames = argc - optind;
	if (!strcmp(command, "move"))
		return move(o.path, names, nnames);

	for (;;) {
		json_t *doc = ask(o.path, "stats");
		if (!doc || !filter(doc, o.path, names, nnames)) {
			json_decref(doc);
			return 1;
		}
		if (o.json) {
			json_dumpf(doc, stdout, JSON_INDENT(2));
			putchar('\n');
		} else if (o.prom) {
			print_prometheus(doc, stdout);
		} else {
			if (!o.once && isatty(STDOUT_FILENO))
				fputs("\033[H\033[2J", stdout);   /* home, clear: like top */
			print_table(doc, stdout);
		}
		json_decref(doc);
		fflush(stdout);
		if (o.json || o.prom || o.once)
			return 0;
		struct timespec ts = { .tv_sec = (time_t)o.interval,
				       .tv_nsec = (long)((o.interval - (double)(time_t)o.interval) * 1e9) };
		nanosleep(&ts, NULL);
		if (!isatty(STDOUT_FILENO))
			putchar('\n');
	}
}
