/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench net: the same virtio-net driver, DPDK's virtio-user PMD in
 * dpdk-testpmd on the guest cpu, against two vhost-user servers on the
 * sidecore cpu: sidecored with a net_null port, and dpdk-testpmd with
 * DPDK's own vhost PMD (net_vhost) forwarding to and from a net_null port
 * (the baseline). The driver runs rxonly (server to driver), txonly (driver
 * to server) and io (both: it sends back what it receives), at 64 and 1500
 * byte frames. Mpps are the driver's own port counters, read through its
 * interactive "show port stats all" (its Rx-pps/Tx-pps over the window);
 * cpu is each process's cpu time over the same window.
 *
 * Every process is ours (started here, stopped by its pid with a bounded
 * wait); a server or driver that does not come up costs one line and its
 * rows, never a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benches/bench.h"

static const char usage[] =
	"usage: sidecore-bench net [--seconds N] [--rounds R] [--size 64|1500] [--mode rxonly|txonly|io]\n"
	"                          [--driver-args DEVARGS] [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"\n"
	"DPDK's virtio-user PMD (dpdk-testpmd on cpu G) as the driver, against sidecored\n"
	"(a net_null port) and against dpdk-testpmd with DPDK's vhost PMD forwarding to\n"
	"a net_null port, each server on cpu S. The driver runs rxonly (server to\n"
	"driver), txonly (driver to server) and io (both directions) at 64 and 1500 B;\n"
	"each point N seconds (default 2; --quick 1) after a warm-up, on a fresh server,\n"
	"the two servers back to back, R rounds (default 3; --quick 1), best round kept\n"
	"(other work on a shared machine only takes throughput away). Prints Mpps from\n"
	"the driver's port counters, sidecored / DPDK vhost (of the best rounds, and the\n"
	"range of the ratio within each round), and each side's cpu.\n"
	"--size and --mode run only those points (to iterate on one; the table and the\n"
	"target line then cover only what ran). --driver-args appends devargs to the\n"
	"driver's vdev for both servers (in_order=0, mrg_rxbuf=0). Each point also shows\n"
	"the driver's busy cycles per packet and the share of the packets it sent that\n"
	"found the ring full (a server slower than the driver).\n"
	"Needs root and dpdk-testpmd (Debian's dpdk).\n";

enum server_kind { SIDECORED, DPDK_VHOST, NSERVERS };
static const char *const server_names[NSERVERS] = { "sidecored", "DPDK vhost PMD" };
enum mode { RXONLY, TXONLY, IO, NMODES };
static const char *const mode_names[NMODES] = { "rxonly", "txonly", "io" };
static const char *const mode_dirs[NMODES] = { "server to driver", "driver to server", "both (driver echoes)" };
static const unsigned sizes[] = { 64, 1500 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct proc {
	pid_t pid;
	int in;          /* write end of its stdin, or -1 */
	char log[160];
};

struct point {
	bool ok;
	double rx_mpps, tx_mpps;     /* the driver's ports: what it received, what it sent */
	double server_cpu, driver_cpu;
	double drv_cycles;           /* the driver's busy cycles per packet (testpmd --record-core-cycles), or -1 */
	double drv_dropped;          /* share of the packets the driver sent that found the server's ring full, or -1 */
	double c2c_ns, c2c_after_ns; /* a cache line's round trip between the two cpus before and after (bench_c2c_ns) */
};

static struct point points[NSERVERS][NSIZES][NMODES];

/*
 * The ratio within each round, where both servers ran back to back: the
 * best rounds of the two may come from different moments of a machine
 * whose speed drifts, a round's pair from the same one. On these VMs the
 * host moves the two vCPUs between placements whose cache-line round
 * trip differs several-fold (and every rate with it), sometimes between
 * the two halves of a pair: a pair whose round trips differ by more than
 * half is not a pair, and is only counted as such. Nor is one where
 * either process of either half got less than 0.95 of its cpu (other
 * work took the rest).
 */
struct pair_range {
	unsigned n, torn;
	double lo, hi;
};
static struct pair_range paired[NSIZES][NMODES];

/* The figure a mode is judged by: what the driver received, sent, or both. */
static double mpps_of(const struct point *p, enum mode m)
{
	return m == RXONLY ? p->rx_mpps : m == TXONLY ? p->tx_mpps : p->rx_mpps + p->tx_mpps;
}

/* Adds the ratio of a round's pair, or counts it torn (see above). */
static void pair_add(struct pair_range *r, const struct point *a, const struct point *b, enum mode m)
{
	const double c[] = { a->c2c_ns, a->c2c_after_ns, b->c2c_ns, b->c2c_after_ns };

	if (!a->ok || !b->ok)
		return;
	if (bench_c2c_spread(c, 4) > BENCH_C2C_SAME || a->server_cpu < 0.95 || a->driver_cpu < 0.95 || b->server_cpu < 0.95 ||
	    b->driver_cpu < 0.95) {
		r->torn++;
		return;
	}
	double x = mpps_of(a, m) / mpps_of(b, m);
	r->lo = r->n && r->lo < x ? r->lo : x;
	r->hi = r->n && r->hi > x ? r->hi : x;
	r->n++;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Start argv on cpu with stdin from a pipe we hold (or /dev/null), stdout and stderr into p->log. */
static int proc_start(struct proc *p, char *const argv[], int cpu, bool pipe_in)
{
	int fds[2] = { -1, -1 };

	p->in = -1;
	if (pipe_in && pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	p->pid = fork();
	if (p->pid < 0) {
		int e = errno;
		if (pipe_in) {
			close(fds[0]);
			close(fds[1]);
		}
		return -e;
	}
	if (p->pid == 0) {
		/* Killed with us, whatever stops us: no testpmd or sidecored is left polling a cpu. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
		int in = pipe_in ? fds[0] : open("/dev/null", O_RDONLY);
		int out = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pipe_in) {
		close(fds[0]);
		p->in = fds[1];
	}
	return 0;
}

/* Reaps it if it has exited (then pid is 0: never signal a pid that may be someone else's now). */
static bool proc_alive(struct proc *p)
{
	if (p->pid > 0 && waitpid(p->pid, NULL, WNOHANG) == p->pid)
		p->pid = 0;
	return p->pid > 0;
}

/* SIGINT (testpmd prints its totals and quits), then SIGTERM, then SIGKILL: a few seconds at most. */
static void proc_stop(struct proc *p)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGKILL };

	if (p->in >= 0) {
		close(p->in);
		p->in = -1;
	}
	for (int s = 0; proc_alive(p) && s < 3; s++) {
		kill(p->pid, sigs[s]);
		for (int i = 0; i < (s == 2 ? 500 : 150); i++) {
			if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
				p->pid = 0;
				break;
			}
			usleep(10000);
		}
	}
}

/* The whole log (NUL-terminated, malloc'd), or NULL. */
static char *log_read(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	size_t got;
	while (b && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n + 1 == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (b)
		b[n] = 0;
	return b;
}

/* Wait until the log shows needle, up to secs; false if the process died or time ran out. */
static bool log_wait(struct proc *p, const char *needle, double secs)
{
	double end = now_s() + secs;
	while (now_s() < end) {
		char *b = log_read(p->log);
		bool hit = b && strstr(b, needle);
		free(b);
		if (hit)
			return true;
		if (!proc_alive(p))
			return false;
		usleep(50000);
	}
	return false;
}

static bool sock_wait(struct proc *p, const char *sock, double secs)
{
	double end = now_s() + secs;
	struct stat st;
	while (now_s() < end) {
		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return true;
		if (!proc_alive(p))
			return false;
		usleep(50000);
	}
	return false;
}

/* The value after key in s (e.g. "Rx-pps:"), as a double; -1 if absent. */
static double field_after(const char *s, const char *end, const char *key)
{
	const char *k = strstr(s, key);
	if (!k || (end && k > end))
		return -1;
	char *e;
	double v = strtod(k + strlen(key), &e);
	return e == k + strlen(key) ? -1 : v;
}

/*
 * The driver's rates in the last "show port stats all" of log: testpmd
 * prints Rx-pps and Tx-pps since the previous show. Falls back to the
 * packet counters of the last two shows over window seconds.
 */
static int parse_rates(const char *log, double window, double *rx_pps, double *tx_pps)
{
	static const char mark[] = "NIC statistics for port 0";
	const char *last = NULL, *prev = NULL;
	for (const char *s = strstr(log, mark); s; s = strstr(s + 1, mark)) {
		prev = last;
		last = s;
	}
	if (!last || !prev)
		return -ENODATA;
	*rx_pps = field_after(last, NULL, "Rx-pps:");
	*tx_pps = field_after(last, NULL, "Tx-pps:");
	if (*rx_pps >= 0 && *tx_pps >= 0)
		return 0;
	double rx0 = field_after(prev, last, "RX-packets:"), tx0 = field_after(prev, last, "TX-packets:");
	double rx1 = field_after(last, NULL, "RX-packets:"), tx1 = field_after(last, NULL, "TX-packets:");
	if (rx0 < 0 || tx0 < 0 || rx1 < rx0 || tx1 < tx0 || window <= 0)
		return -ENODATA;
	*rx_pps = (rx1 - rx0) / window;
	*tx_pps = (tx1 - tx0) / window;
	return 0;
}

/*
 * What testpmd prints at stop for the whole run: its cycles per packet in
 * bursts that moved packets (which side is slower: a driver that waits on
 * a full or empty ring spends few cycles per packet), and the share of
 * the packets it sent that did not fit the ring (txonly, io: a slow
 * server). -1 where absent.
 */
static void parse_fwd_totals(const char *log, struct point *pt)
{
	const char *acc = strstr(log, "Accumulated forward statistics");
	double tx = acc ? field_after(acc, NULL, "TX-packets:") : -1, drop = acc ? field_after(acc, NULL, "TX-dropped:") : -1;

	pt->drv_cycles = acc ? field_after(acc, NULL, "CPU cycles/packet=") : -1;
	pt->drv_dropped = tx >= 0 && drop >= 0 && tx + drop > 0 ? drop / (tx + drop) : -1;
}

static void cmd(struct proc *p, const char *c)
{
	if (p->in >= 0 && write(p->in, c, strlen(c)) < 0)
		fprintf(stderr, "sidecore-bench net: cannot write to testpmd's stdin (%s)\n", strerror(errno));
}

/*
 * EAL flags both testpmds share: no hugepages, no PCI, a file prefix and
 * lcores of their own on one cpu, and 256 MB, which holds their mbufs
 * (8192 and 16384 of 2176 B) with room to spare. Not more: the driver's
 * memory is what a server maps, and DPDK's vhost maps it with
 * MAP_POPULATE. Its 1 GB used to take that server seconds to populate
 * here (a PVM guest zeroing pages it had given back), so points measured
 * it before it had started.
 */
#define EAL_ARGS(prefix, lcores) "dpdk-testpmd", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", \
	"--file-prefix", prefix, "--lcores", lcores

/* What DPDK's vhost library logs once every ring of a device is set up: it has mapped the driver's memory. */
static const char vhost_ready[] = "virtio is now ready for processing";

/* --driver-args: devargs appended to the driver's vdev (e.g. in_order=0), or "". */
static const char *driver_args = "";

/* One point: the driver in mode at size against server k on sock. */
static int run_driver(const char *dir, enum server_kind k, const char *sock, enum mode m, unsigned size, int cpu, double secs,
		      struct proc *server, struct point *pt)
{
	char vdev[400], prefix[64], lcores[32], fwd[32], txpkts[32];
	struct proc drv = { 0 };

	snprintf(drv.log, sizeof(drv.log), "%s/driver-%d-%s-%u.log", dir, (int)k, mode_names[m], size);
	snprintf(vdev, sizeof(vdev), "net_virtio_user0,path=%s,queues=1%s%s", sock, *driver_args ? "," : "", driver_args);
	snprintf(prefix, sizeof(prefix), "sc-bench-drv-%d", (int)getpid());
	snprintf(lcores, sizeof(lcores), "0@%d,1@%d", cpu, cpu);
	snprintf(fwd, sizeof(fwd), "--forward-mode=%s", mode_names[m]);
	snprintf(txpkts, sizeof(txpkts), "--txpkts=%u", size);
	char *argv[] = { EAL_ARGS(prefix, lcores), "--vdev", vdev, "--", "-i", fwd, "--nb-cores=1", txpkts,
			 "--total-num-mbufs=8192", "--record-core-cycles", NULL };
	if (proc_start(&drv, argv, cpu, true) < 0)
		return -1;
	int ret = -1;
	if (!log_wait(&drv, "testpmd>", 20)) {
		fprintf(stderr, "sidecore-bench net: the driver (testpmd %s) did not start against %s within 20 s; see %s\n",
			mode_names[m], sock, drv.log);
		goto out;
	}
	/*
	 * sidecored maps the driver's memory as it connects and is ready when
	 * the driver's port is; DPDK's vhost may still be populating its
	 * mapping, and a point measured then is a stall, not a rate.
	 */
	if (k == DPDK_VHOST && !log_wait(server, vhost_ready, 20)) {
		fprintf(stderr, "sidecore-bench net: %s did not get ready for the driver (testpmd %s) within 20 s; see %s\n",
			server_names[k], mode_names[m], server->log);
		goto out;
	}
	usleep(500000);   /* link up on both ends before forwarding starts */
	cmd(&drv, "start\n");
	usleep(secs < 2 ? 500000 : 1000000);   /* warm-up: rings full, caches warm */
	cmd(&drv, "show port stats all\n");
	double t0 = now_s(), s0 = bench_proc_cpu_s(server->pid), d0 = bench_proc_cpu_s(drv.pid);
	usleep((useconds_t)(secs * 1e6));
	cmd(&drv, "show port stats all\n");
	double t1 = now_s(), s1 = bench_proc_cpu_s(server->pid), d1 = bench_proc_cpu_s(drv.pid);
	cmd(&drv, "stop\n");
	cmd(&drv, "quit\n");
	/* Its stdout is a file, so block-buffered: the figures are there once it has quit (bounded). */
	close(drv.in);
	drv.in = -1;
	for (int i = 0; i < 1000 && proc_alive(&drv); i++)
		usleep(10000);
	proc_stop(&drv);
	char *b = log_read(drv.log);
	if (!b || parse_rates(b, t1 - t0, &pt->rx_mpps, &pt->tx_mpps) < 0) {
		fprintf(stderr, "sidecore-bench net: no port statistics from the driver (testpmd %s); see %s\n",
			mode_names[m], drv.log);
		free(b);
		goto out;
	}
	parse_fwd_totals(b, pt);
	free(b);
	pt->rx_mpps /= 1e6;
	pt->tx_mpps /= 1e6;
	pt->server_cpu = s0 >= 0 && s1 >= s0 ? (s1 - s0) / (t1 - t0) : -1;
	pt->driver_cpu = d0 >= 0 && d1 >= d0 ? (d1 - d0) / (t1 - t0) : -1;
	if (mpps_of(pt, m) <= 0) {
		fprintf(stderr, "sidecore-bench net: no packets moved (testpmd %s against %s); see %s\n", mode_names[m], sock,
			drv.log);
		goto out;
	}
	pt->ok = true;
	ret = 0;
out:
	proc_stop(&drv);
	return ret;
}

/* Start server k for frames of size bytes, listening on sock. */
static int server_start(enum server_kind k, struct proc *srv, const char *self, const char *dir, const char *sock,
			unsigned size, int cpu)
{
	char port[64];

	snprintf(srv->log, sizeof(srv->log), "%s/server-%d-%u.log", dir, (int)k, size);
	snprintf(port, sizeof(port), "net_null0,size=%u", size);
	unlink(sock);
	if (k == SIDECORED) {
		char conf[200];
		snprintf(conf, sizeof(conf), "%s/sidecored-%u.conf", dir, size);
		FILE *f = fopen(conf, "w");
		if (!f)
			return -errno;
		fprintf(f, "[sidecore]\ncpus = %d\nidle = spin\n[net.bench]\nsocket = %s\nport = %s\n", cpu, sock, port);
		fclose(f);
		char *argv[] = { (char *)self, "--config", conf, NULL };
		if (proc_start(srv, argv, cpu, false) < 0)
			return -1;
	} else {
		char vdev[200], prefix[64], lcores[32];
		snprintf(vdev, sizeof(vdev), "net_vhost0,iface=%s,queues=1", sock);
		snprintf(prefix, sizeof(prefix), "sc-bench-vhost-%d", (int)getpid());
		snprintf(lcores, sizeof(lcores), "0@%d,1@%d", cpu, cpu);
		/* io between the vhost port and the null port, both ways; interactive on a pipe we hold, so it runs until stopped. */
		char *argv[] = { EAL_ARGS(prefix, lcores), "--vdev", vdev, "--vdev", port, "--", "-i", "--auto-start", "--forward-mode=io",
				 "--nb-cores=1", "--total-num-mbufs=16384", NULL };
		if (proc_start(srv, argv, cpu, true) < 0)
			return -1;
	}
	if (!sock_wait(srv, sock, 20)) {
		fprintf(stderr, "sidecore-bench net: %s (frames of %u B) did not create %s within 20 s; skipping its rows; see %s\n",
			server_names[k], size, sock, srv->log);
		proc_stop(srv);
		return -1;
	}
	return 0;
}

/*
 * EAL creates a runtime directory per file prefix even with --no-shconf
 * and leaves it behind (empty): /run/dpdk/PREFIX for root.
 */
static void eal_dirs_remove(void)
{
	static const char *const prefixes[] = { "sc-bench-drv", "sc-bench-vhost" };
	char d[96];

	for (unsigned i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		snprintf(d, sizeof(d), "/run/dpdk/%s-%d", prefixes[i], (int)getpid());
		rmdir(d);
	}
}

/* --mode NAME: the index of the one mode to run, NMODES for all, or -1 with one line for a name we do not know. */
static int take_mode(int *argc, char **argv)
{
	const char *val = bench_take_string(argc, argv, "mode");
	int m = 0;

	if (!val)
		return NMODES;
	while (m < NMODES && strcmp(val, mode_names[m]))
		m++;
	if (m == NMODES) {
		fprintf(stderr, "sidecore-bench net: --mode wants rxonly, txonly or io, got '%s'\n", val);
		return -1;
	}
	return m;
}

/* Is the point of sizes[s] and mode m one this run was asked for? */
static bool wanted(unsigned s, int m, double only_size, int only_mode)
{
	return (!only_size || sizes[s] == (unsigned)only_size) && (only_mode == NMODES || m == only_mode);
}

static double ratio(double x, double y)
{
	return x > 0 && y > 0 ? x / y : 0;
}

static void plot(const char *png)
{
	char dat[] = "/tmp/sidecore-net-XXXXXX";
	int fd = mkstemp(dat);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		perror("sidecore-bench net: mkstemp");
		return;
	}
	/* Columns: label, Mpps of each server, their ratio, and the ratio's range within rounds (the ratio where none). */
	unsigned x = 0;
	for (unsigned s = 0; s < NSIZES; s++)
		for (int m = 0; m < NMODES; m++, x++) {
			double a = mpps_of(&points[SIDECORED][s][m], m), b = mpps_of(&points[DPDK_VHOST][s][m], m);
			const struct pair_range *pr = &paired[s][m];
			fprintf(f, "%u \"%s %u B\" %.3f %.3f %.3f %.3f %.3f\n", x, mode_names[m], sizes[s], a, b, ratio(a, b),
				pr->n ? pr->lo : ratio(a, b), pr->n ? pr->hi : ratio(a, b));
		}
	fclose(f);
	FILE *gp = popen("gnuplot 2>&1", "w");
	if (!gp) {
		fprintf(stderr, "sidecore-bench: cannot run gnuplot (apt-get install gnuplot-nox) for %s\n", png);
		unlink(dat);
		return;
	}
	fprintf(gp, "set terminal pngcairo size 900,760 font 'sans,10'\nset output '%s'\nset multiplot layout 2,1\n"
		    "set title 'virtio-net, DPDK virtio-user driver: Mpps (io: rx + tx), one server cpu, best round of each'\n"
		    "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
		    "set ylabel 'Mpps'\nset yrange [0:*]\nset grid ytics\nset key top right\n"
		    "plot '%s' using 3:xtic(2) title 'sidecored', '' using 4 title 'DPDK vhost PMD'\n"
		    "set title 'sidecored / DPDK vhost PMD: best rounds (points), range within rounds (bars); bars of the issue dashed'\n"
		    "unset style\nset style fill solid 0.8 border -1\nset ylabel 'ratio'\nset yrange [0:*]\nset xrange [-0.5:%u.5]\n"
		    "set xtics ('' 0)\nset key off\n"
		    "plot '%s' using 1:5:6:7:xtic(2) with yerrorbars pt 7 ps 1.2 lw 2, 1.0 dt 2 lc rgb 'black', "
		    "1.1 dt 2 lc rgb 'gray'\nunset multiplot\n",
		png, dat, x - 1, dat);
	int rc = pclose(gp);
	unlink(dat);
	if (rc != 0)
		fprintf(stderr, "sidecore-bench: gnuplot failed drawing %s (is gnuplot-nox installed?)\n", png);
	else
		printf("plot written to %s\n", png);
}

static void write_json(const struct bench_opts *o, double secs, unsigned rounds)
{
	json_t *root = bench_json_header("net", o, o->sidecore_cpu, o->guest_cpu), *arr = json_array();
	json_t *ratios = json_array();
	for (int k = 0; k < NSERVERS; k++)
		for (unsigned s = 0; s < NSIZES; s++)
			for (int m = 0; m < NMODES; m++) {
				const struct point *p = &points[k][s][m];
				if (p->ok)
					json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
						"server", server_names[k], "mode", mode_names[m], "direction", mode_dirs[m],
						"frame_bytes", sizes[s], "mpps", mpps_of(p, m), "driver_rx_mpps", p->rx_mpps,
						"driver_tx_mpps", p->tx_mpps, "server_cpu", p->server_cpu, "driver_cpu", p->driver_cpu,
						"c2c_ns", p->c2c_ns, "c2c_after_ns", p->c2c_after_ns));
			}
	for (unsigned s = 0; s < NSIZES; s++)
		for (int m = 0; m < NMODES; m++)
			if (points[SIDECORED][s][m].ok || points[DPDK_VHOST][s][m].ok)
				json_array_append_new(ratios, json_pack("{s:s, s:i, s:f, s:i, s:f, s:f, s:i}", "mode", mode_names[m],
				"frame_bytes", sizes[s], "sidecored_over_dpdk_vhost", ratio(mpps_of(&points[SIDECORED][s][m], m),
				mpps_of(&points[DPDK_VHOST][s][m], m)), "paired_rounds", paired[s][m].n,
				"paired_min", paired[s][m].lo, "paired_max", paired[s][m].hi, "torn_pairs", paired[s][m].torn));
	json_object_set_new(root, "runs", arr);
	json_object_set_new(root, "ratios", ratios);
	json_object_set_new(root, "setup", json_pack("{s:f, s:i, s:s, s:s}", "seconds_per_point", secs, "rounds", rounds, "driver",
		"dpdk-testpmd net_virtio_user0 (queues=1)", "port", "net_null0 on the server's side"));
	bench_json_write(root, o->json_path);
	json_decref(root);
}

int bench_net(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	char dir[] = "/tmp/sidecore-bench-net-XXXXXX", sock[160], self[4096];
	double secs = 0, nrounds = 0, only_size = 0;
	unsigned rounds;
	int only_mode;
	bool failed = false, skipped = false;   /* skipped: a round of some point, logged and left out */
	const char *da = bench_take_string(&argc, argv, "driver-args");

	if (da)
		driver_args = da;
	if (bench_take_number(&argc, argv, "seconds", 0.5, 60, &secs) < 0 ||
	    bench_take_number(&argc, argv, "rounds", 1, 20, &nrounds) < 0 ||
	    bench_take_number(&argc, argv, "size", 64, 1500, &only_size) < 0 || (only_mode = take_mode(&argc, argv)) < 0 ||
	    bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	if (only_size && only_size != 64 && only_size != 1500) {
		fprintf(stderr, "sidecore-bench net: --size wants 64 or 1500, got %g\n", only_size);
		return 2;
	}
	if (!secs)
		secs = o.quick ? 1 : 2;
	rounds = nrounds ? (unsigned)nrounds : o.quick ? 1 : 3;
	if (system("command -v dpdk-testpmd >/dev/null 2>&1") != 0) {
		fprintf(stderr, "sidecore-bench net: dpdk-testpmd is not installed (apt-get install dpdk-dev); skipped\n");
		return 77;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "sidecore-bench net: DPDK's EAL needs root here (no hugepages); skipped\n");
		return 77;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 32);
	if (n < 0 || !mkdtemp(dir))
		return 1;
	self[n] = 0;
	/* sidecored is built next to us: build/benches/.. -> build/runtime/sidecored */
	snprintf(strrchr(self, '/'), 32, "/../runtime/sidecored");
	snprintf(sock, sizeof(sock), "%s/vhost.sock", dir);
	printf("net: driver (testpmd virtio-user) on cpu %d, servers on cpu %d, %.1f s per point, best of %u rounds\n",
	       o.guest_cpu, o.sidecore_cpu, secs, rounds);
	bench_note_load();

	/*
	 * Every point on a fresh server, the two servers back to back, and
	 * rounds of that: the load from other work on these shared machines
	 * comes and goes, and can only take throughput away, so each point
	 * keeps its best round and both servers see the same moments.
	 */
	for (unsigned round = 0; round < rounds; round++)
		for (unsigned s = 0; s < NSIZES; s++)
			for (int m = 0; m < NMODES; m++) {
				struct point now[NSERVERS] = { 0 };   /* this round's point of each server (ok false if skipped) */
				for (int k = 0; k < NSERVERS && wanted(s, m, only_size, only_mode); k++) {
					struct point *best = &points[k][s][m], p = { .c2c_ns = bench_c2c_ns(o.guest_cpu, o.sidecore_cpu) };
					struct proc srv = { .in = -1 };
					printf("  [%u/%u] %-15s %-7s %4u B ...", round + 1, rounds, server_names[k], mode_names[m], sizes[s]);
					fflush(stdout);
					if (server_start(k, &srv, self, dir, sock, sizes[s], o.sidecore_cpu) < 0) {
						printf(" skipped\n");
						skipped = true;
						continue;
					}
					int r = run_driver(dir, k, sock, m, sizes[s], o.guest_cpu, secs, &srv, &p);
					proc_stop(&srv);   /* before the second round trip: sidecored polls that cpu */
					p.c2c_after_ns = bench_c2c_ns(o.guest_cpu, o.sidecore_cpu);
					if (r < 0) {
						printf(" skipped\n");
						skipped = true;
						continue;
					}
					printf(" rx %.2f Mpps, tx %.2f Mpps; cpu server %.2f driver %.2f; driver %.0f cycles/pkt",
					       p.rx_mpps, p.tx_mpps, p.server_cpu, p.driver_cpu, p.drv_cycles);
					if (p.drv_dropped >= 0)
						printf(", %.0f%% of its tx found the ring full", 100 * p.drv_dropped);
					printf("; c2c %.0f/%.0f ns\n", p.c2c_ns, p.c2c_after_ns);
					now[k] = p;
					if (!best->ok || mpps_of(&p, m) > mpps_of(best, m))
						*best = p;
				}
				pair_add(&paired[s][m], &now[SIDECORED], &now[DPDK_VHOST], m);
			}
	for (int k = 0; k < NSERVERS; k++)
		for (unsigned s = 0; s < NSIZES; s++)
			for (int m = 0; m < NMODES; m++)
				failed |= wanted(s, m, only_size, only_mode) && !points[k][s][m].ok;

	printf("\n%-8s %6s %-22s %10s %10s %8s %12s %8s %8s\n", "mode", "frame", "direction", "sidecored", "DPDK vhost",
	       "ratio", "per round", "sc cpu", "vh cpu");
	for (unsigned s = 0; s < NSIZES; s++)
		for (int m = 0; m < NMODES; m++) {
			const struct point *a = &points[SIDECORED][s][m], *v = &points[DPDK_VHOST][s][m];
			if (!wanted(s, m, only_size, only_mode))
				continue;
			const struct pair_range *pr = &paired[s][m];
			char range[32] = "-";
			if (pr->n)
				snprintf(range, sizeof(range), "%.2f-%.2f%s", pr->lo, pr->hi, pr->torn ? "*" : "");
			printf("%-8s %4u B %-22s %10.2f %10.2f %7.2fx %12s %8.2f %8.2f\n", mode_names[m], sizes[s], mode_dirs[m],
			       mpps_of(a, m), mpps_of(v, m), ratio(mpps_of(a, m), mpps_of(v, m)), range, a->server_cpu,
			       v->server_cpu);
		}
	printf("(Mpps from the driver's port counters, best round of each; io: received + sent; per round: the ratio\n"
	       " within each round, both servers back to back; * where some rounds are left out: their two halves saw\n"
	       " cache-line round trips (c2c) more than 1.5x apart, or a process under 0.95 cpu; cpu: each server's)\n");
	bool met = true;
	for (unsigned s = 0; s < NSIZES; s++)
		for (int m = RXONLY; m <= TXONLY; m++)
			if (wanted(s, m, only_size, only_mode))
				met &= ratio(mpps_of(&points[SIDECORED][s][m], m), mpps_of(&points[DPDK_VHOST][s][m], m)) >=
				       (sizes[s] == 64 ? 1.0 : 1.1);
	printf("target: sidecored >= 1.0x DPDK's vhost PMD at 64 B and >= 1.1x at 1500 B, both directions: %s\n",
	       met ? "met" : "MISSED");
	if (o.plot_path)
		plot(o.plot_path);
	if (o.json_path)
		write_json(&o, secs, rounds);
	eal_dirs_remove();
	if (failed || skipped) {
		/* The lines above that name a log point into it (a skipped round's log stays for whoever reads them). */
		printf("logs of the runs kept in %s\n", dir);
		return failed ? 1 : 0;
	}
	char rm[200];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
	if (system(rm) != 0)
		fprintf(stderr, "sidecore-bench net: could not remove %s\n", dir);
	return 0;
}
