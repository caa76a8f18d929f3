/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benches/bench.h"
#include "common/barrier.h"
#include "common/tsc.h"
#include "cpuset/cpuset.h"

int samples_init(struct samples *s, size_t cap)
{
	s->v = calloc(cap ? cap : 1, sizeof(*s->v));
	s->n = 0;
	s->cap = cap;
	s->sorted = false;
	return s->v ? 0 : -ENOMEM;
}

void samples_free(struct samples *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t samples_pct(struct samples *s, double p)
{
	if (s->n == 0)
		return 0;
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
		s->sorted = true;
	}
	/* Nearest rank: the smallest value with at least p% of samples at or below it. */
	size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
	return s->v[rank ? rank - 1 : 0];
}

double samples_mean(const struct samples *s)
{
	double sum = 0;
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	return s->n ? sum / (double)s->n : 0;
}

json_t *samples_json(struct samples *s)
{
	static const struct { const char *key; double p; } pcts[] = {
		{ "min", 0 }, { "p50", 50 }, { "p90", 90 }, { "p99", 99 }, { "p99_9", 99.9 }, { "max", 100 },
	};
	json_t *cyc = json_object(), *ns = json_object();
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		uint64_t c = samples_pct(s, pcts[i].p);
		json_object_set_new(cyc, pcts[i].key, json_integer((json_int_t)c));
		json_object_set_new(ns, pcts[i].key, json_real(sc_cycles_to_ns(c)));
	}
	json_object_set_new(cyc, "mean", json_real(samples_mean(s)));
	json_object_set_new(ns, "mean", json_real(sc_cycles_to_ns((uint64_t)samples_mean(s))));
	return json_pack("{s:I, s:o, s:o}", "samples", (json_int_t)s->n, "cycles", cyc, "ns", ns);
}

/* Which KVM this is: loaded module names tell PVM from hardware KVM. */
static const char *kvm_flavour(void)
{
	static const char *mods[] = { "kvm_pvm", "kvm_amd", "kvm_intel" };
	char path[64];
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		snprintf(path, sizeof(path), "/sys/module/%s", mods[i]);
		if (access(path, F_OK) == 0)
			return mods[i];
	}
	return "unknown";
}

/* Running under a hypervisor (cpuid's hypervisor bit, as /proc/cpuinfo shows it). */
static bool is_vm_guest(void)
{
	char *line = NULL;
	size_t cap = 0;
	bool guest = false;
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f && getline(&line, &cap, f) > 0)
		if (!strncmp(line, "flags", 5) && strstr(line, " hypervisor")) {
			guest = true;
			break;
		}
	free(line);
	if (f)
		fclose(f);
	return guest;
}

double bench_loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

void bench_note_load(void)
{
	double l = bench_loadavg();
	if (l > 1)
		printf("  note: load average %.2f: other work shares these cpus, and the tails will show it\n", l);
}

json_t *bench_json_header(const char *bench, const struct bench_opts *o, int sidecore, int guest)
{
	char machine[256], date[32];
	struct utsname u;
	time_t now = time(NULL);

	sc_machine_describe(machine, sizeof(machine));
	uname(&u);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0, vm_guest = is_vm_guest();
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:b, s:f, s:{s:b, s:b, s:s}}",
			 "bench", bench, "version", SC_VERSION, "date", date,
			 "machine", machine, "kernel", u.release,
			 "tsc_hz", (json_int_t)sc_tsc_hz(),
			 "sidecore_cpu", sidecore, "guest_cpu", guest, "quick", o->quick,
			 "loadavg_1min", bench_loadavg(), "kvm", "available", kvm, "nested", kvm && vm_guest,
			 "module", kvm ? kvm_flavour() : "none");
}

int bench_json_write(json_t *root, const char *path)
{
	if (json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0) {
		fprintf(stderr, "sidecore-bench: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	printf("results written to %s\n", path);
	return 0;
}

int bench_plot_cdf(const char *png, const char *title, struct samples **sets,
		   const char **names, int nsets)
{
	char dat[] = "/tmp/sidecore-plot-XXXXXX";
	int fd = mkstemp(dat);
	if (fd < 0) {
		perror("sidecore-bench: mkstemp");
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	/* One gnuplot data block per set: ns, cumulative fraction; ~400 points each is plenty. */
	for (int i = 0; i < nsets; i++) {
		struct samples *s = sets[i];
		samples_pct(s, 50);   /* sorts */
		size_t step = s->n > 400 ? s->n / 400 : 1;
		for (size_t j = 0; j < s->n; j += step)
			fprintf(f, "%.1f %.5f\n", sc_cycles_to_ns(s->v[j]), (double)(j + 1) / (double)s->n);
		if (s->n)
			fprintf(f, "%.1f 1.0\n", sc_cycles_to_ns(s->v[s->n - 1]));
		fprintf(f, "\n\n");
	}
	fclose(f);

	FILE *gp = popen("gnuplot 2>&1", "w");
	if (!gp) {
		fprintf(stderr, "sidecore-bench: cannot run gnuplot (apt-get install gnuplot-nox) for %s\n", png);
		unlink(dat);
		return -1;
	}
	fprintf(gp, "set terminal pngcairo size 900,560 font 'sans,11'\n"
		    "set output '%s'\nset title '%s'\n"
		    "set logscale x\nset xlabel 'round-trip latency (ns, log scale)'\n"
		    "set ylabel 'fraction of requests'\nset yrange [0:1]\nset grid\n"
		    "set key bottom right\nplot ", png, title);
	for (int i = 0; i < nsets; i++)
		fprintf(gp, "%s'%s' index %d with lines lw 2 title '%s'", i ? ", " : "", dat, i, names[i]);
	fprintf(gp, "\n");
	int rc = pclose(gp);
	unlink(dat);
	if (rc != 0) {
		fprintf(stderr, "sidecore-bench: gnuplot failed drawing %s (is gnuplot-nox installed?)\n", png);
		return -1;
	}
	printf("plot written to %s\n", png);
	return 0;
}

int bench_parse_common(int argc, char **argv, struct bench_opts *o, const char *usage)
{
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'p' },
		{ "quick", no_argument, NULL, 'q' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	o->sidecore_cpu = o->guest_cpu = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "j:p:qc:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': o->json_path = optarg; break;
		case 'p': o->plot_path = optarg; break;
		case 'q': o->quick = true; break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &o->sidecore_cpu, &o->guest_cpu) != 2 ||
			    o->sidecore_cpu < 0 || o->guest_cpu < 0 || o->sidecore_cpu == o->guest_cpu) {
				fprintf(stderr, "sidecore-bench: --cpus wants two different cpu numbers SIDECORE,GUEST, got '%s'\n", optarg);
				return -1;
			}
			break;
		case 'h': fputs(usage, stdout); exit(0);
		default: fputs(usage, stderr); return -1;
		}
	}
	return optind;
}

const char *bench_take_string(int *argc, char **argv, const char *name)
{
	size_t len = strlen(name);

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i], *val;
		int used;
		if (strncmp(a, "--", 2) || strncmp(a + 2, name, len))
			continue;
		if (a[2 + len] == '=') {
			val = a + 3 + len;
			used = 1;
		} else if (a[2 + len] == 0) {
			val = i + 1 < *argc ? argv[i + 1] : "";
			used = i + 1 < *argc ? 2 : 1;
		} else {
			continue;   /* a longer option that starts with name */
		}
		memmove(&argv[i], &argv[i + used], (size_t)(*argc - i - used + 1) * sizeof(*argv));
		*argc -= used;
		return val;
	}
	return NULL;
}

int bench_take_number(int *argc, char **argv, const char *name, double min, double max, double *v)
{
	const char *val = bench_take_string(argc, argv, name);
	char *end = NULL;

	if (!val)
		return 0;
	double x = strtod(val, &end);
	if (end == val || *end || !(x >= min && x <= max)) {
		fprintf(stderr, "sidecore-bench: --%s wants a number from %g to %g, got '%s'\n", name, min, max,
			*val ? val : "nothing");
		return -1;
	}
	*v = x;
	return 1;
}

int bench_pick_cpus(struct bench_opts *o)
{
	struct sc_topology *t = calloc(1, sizeof(*t));
	int ret = t ? sc_topology_load(t) : -ENOMEM;

	if (ret < 0) {
		fprintf(stderr, "sidecore-bench: cannot read the cpu topology: %s\n", strerror(-ret));
		free(t);
		return -1;
	}
	if (o->sidecore_cpu < 0) {
		ret = sc_cpuset_pick_pair(t, &o->sidecore_cpu, &o->guest_cpu);
		if (ret < 0) {
			fprintf(stderr, "sidecore-bench: need two cpus (a sidecore and a guest cpu), this process may use one: %s\n",
				strerror(-ret));
			free(t);
			return -1;
		}
	}
	const struct sc_cpu_info *a = sc_topology_cpu(t, o->sidecore_cpu), *b = sc_topology_cpu(t, o->guest_cpu);
	if (!a || !b || !a->allowed || !b->allowed) {
		fprintf(stderr, "sidecore-bench: --cpus %d,%d: cpu %d is not one this process may use (see taskset/cgroups)\n",
			o->sidecore_cpu, o->guest_cpu, (!a || !a->allowed) ? o->sidecore_cpu : o->guest_cpu);
		free(t);
		return -1;
	}
	if (a->core == b->core)
		printf("note: cpus %d and %d are SMT siblings; the round trip stays in one core's caches\n",
		       o->sidecore_cpu, o->guest_cpu);
	free(t);
	return 0;
}

void bench_pin(int cpu, const char *who)
{
	int ret = sc_cpu_pin_self(cpu);
	if (ret < 0) {
		fprintf(stderr, "sidecore-bench: cannot pin the %s thread to cpu %d: %s\n", who, cpu, strerror(-ret));
		exit(1);
	}
}

void *bench_echo_thread(void *arg)
{
	struct bench_pingpong *pp = arg;

	bench_pin(pp->cpu, "echo");
	for (uint64_t i = 1; i <= pp->n; i++) {
		/* Acquire pairs with the driver's release of ping; release pairs with its acquire of pong. */
		while (sc_load_acquire(&pp->ping) != i)
			sc_cpu_relax();
		sc_store_release(&pp->pong, i);
	}
	return NULL;
}

double bench_c2c_ns(int a, int b)
{
	enum { WARM = 1000, TRIPS = 20000 };
	struct bench_pingpong *pp = aligned_alloc(SC_CACHE_LINE, sizeof(*pp));
	cpu_set_t saved;
	pthread_t t;
	double ns = -1;

	if (!pp || sched_getaffinity(0, sizeof(saved), &saved) < 0) {
		free(pp);
		return -1;
	}
	memset(pp, 0, sizeof(*pp));
	pp->cpu = b;
	pp->n = WARM + TRIPS;
	if (sc_cpu_pin_self(a) == 0 && pthread_create(&t, NULL, bench_echo_thread, pp) == 0) {
		struct timespec t0 = { 0 }, t1;
		for (uint64_t i = 1; i <= pp->n; i++) {
			if (i == WARM + 1)
				clock_gettime(CLOCK_MONOTONIC, &t0);
			sc_store_release(&pp->ping, i);
			while (sc_load_acquire(&pp->pong) != i)
				sc_cpu_relax();
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		pthread_join(t, NULL);
		ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / TRIPS;
	}
	sched_setaffinity(0, sizeof(saved), &saved);
	free(pp);
	return ns;
}

double bench_c2c_spread(const double *c, int n)
{
	double lo = c[0], hi = c[0];

	for (int i = 1; i < n; i++) {
		lo = c[i] < lo ? c[i] : lo;
		hi = c[i] > hi ? c[i] : hi;
	}
	return lo > 0 ? hi / lo : INFINITY;
}

double bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long ut = 0, st = 0;
	double r = -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f)) {
		const char *p = strrchr(buf, ')');   /* comm may contain spaces */
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
			r = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	}
	fclose(f);
	return r;
}

json_t *bench_sidecored_stats(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_error_t e;
	json_t *doc = NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send(fd, "stats\n", 6, MSG_NOSIGNAL) == 6 && poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 1000) == 1)
		doc = json_loadfd(fd, 0, &e);   /* the server closes after the document */
	if (!doc)
		fprintf(stderr, "sidecore-bench: no stats from sidecored at %s\n", sock);
	if (fd >= 0)
		close(fd);
	return doc;
}
