/* SPDX-License-Identifier: MIT */
/*
 * sidecored: serves the virtio-blk disks its config file names to VMMs over
 * vhost-user, on sidecore threads pinned to the config's cpus.
 *
 * Start-up failures print one line (file and line, path, cpu) and exit 2.
 * SIGTERM or SIGINT stops cleanly, whatever the front ends do: every vring
 * is detached from its sidecore and its in-flight requests finished, then
 * the sockets removed. Each disk's vhost-user control path runs on its own
 * thread, so a stuck front end holds up only its own disk.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "cpuset/cpuset.h"
#include "polling/polling.h"
#include "runtime/config.h"
#include "runtime/plan.h"
#include "runtime/stats.h"
#include "runtime/vu_blk.h"

static const char usage[] =
	"usage: sidecored --config FILE\n"
	"       sidecored --check-config FILE [--topology XML|SYNTHETIC]\n"
	"\n"
	"Serves the virtio-blk disks FILE names over vhost-user sockets, polled by\n"
	"sidecore threads pinned to the cpus FILE gives. SIGTERM stops cleanly.\n"
	"Findings about the plan (SMT siblings, NUMA nodes, isolation) are printed\n"
	"as warnings; an error stops it. See the README's config reference.\n"
	"\n"
	"  -c, --config FILE        serve what FILE says\n"
	"  -k, --check-config FILE  print the resolved plan (a row per cpu) and every\n"
	"                           finding; exit 2 on an error, 0 otherwise\n"
	"  -t, --topology T         with --check-config: check against another machine,\n"
	"                           an hwloc XML file (lstopo --of xml) or a synthetic\n"
	"                           description (\"pack:2 core:4 pu:2\"); its paths\n"
	"                           and isolation are not checked\n"
	"  -h, --help, -V, --version\n";

struct disk {
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
	struct sc_poller *qpollers[SC_CONFIG_MAX_DEVICE_CPUS];   /* queue q's sidecore, from the plan */
};

static int fail(const char *msg)
{
	fprintf(stderr, "sidecored: %s\n", msg);
	return 2;
}

/* --check-config: the plan for FILE on this machine (or on topology), then exit. */
static int check_config(const char *path, const char *topology)
{
	static struct sc_config cfg;
	static struct sc_topology topo;
	static struct sc_plan plan;
	char err[8192];
	int r;

	if (sc_config_load(path, &cfg, err, sizeof(err)) < 0)
		return fail(err);
	if (!topology && sc_config_check_paths(&cfg, err, sizeof(err)) < 0)
		return fail(err);
	r = sc_topology_load_from(&topo, topology);
	if (r < 0) {
		fprintf(stderr, "sidecored: cannot load the topology %s%s%s: %s; give an hwloc XML file or a synthetic "
			"description like \"pack:2 core:4 pu:2\"\n", topology ? "'" : "(hwloc)", topology ? topology : "",
			topology ? "'" : "", strerror(-r));
		return 2;
	}
	/* The table even after an error: it shows what the plan made of the rest. */
	sc_plan_build(&plan, &cfg, &topo, !topology, stdout);
	sc_plan_print(&plan, &cfg, &topo, stdout);
	printf("%s: %d error%s, %d warning%s\n", cfg.path, plan.errors, plan.errors == 1 ? "" : "s", plan.warnings,
	       plan.warnings == 1 ? "" : "s");
	return plan.errors ? 2 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "check-config", required_argument, NULL, 'k' },
		{ "topology", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { 0 },
	};
	static struct sc_config cfg;
	static struct sc_topology topo;
	static struct sc_plan plan;
	static struct disk disks[SC_CONFIG_MAX_DEVICES];
	static struct sc_stats_device stats_devs[SC_CONFIG_MAX_DEVICES];
	struct sc_stats_server *stats = NULL;
	struct sc_poller *pollers[SC_CONFIG_MAX_CPUS];
	const char *path = NULL, *check = NULL, *topology = NULL;
	char err[8192];   /* a line may quote a 4 KiB path */
	int c, ret = 2, npollers = 0, ndisks = 0;
	cpu_set_t *iowq = NULL;
	size_t iowq_size = 0;

	while ((c = getopt_long(argc, argv, "c:k:t:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'k': check = optarg; break;
		case 't': topology = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("sidecored %s\n", SC_VERSION); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sidecored: unexpected argument '%s'; see sidecored --help\n", argv[optind]);
		return 2;
	}
	if (check && !path)
		return check_config(check, topology);
	if (!path || check || topology) {
		fputs(usage, stderr);
		return 2;
	}
	if (sc_config_load(path, &cfg, err, sizeof(err)) < 0 || sc_config_check_paths(&cfg, err, sizeof(err)) < 0)
		return fail(err);
	if (sc_topology_load(&topo) < 0)
		return fail("cannot read the cpu topology (hwloc)");
	/* Warnings go to stderr and the service runs; an error stops it here. */
	if (sc_plan_build(&plan, &cfg, &topo, true, stderr) < 0) {
		fprintf(stderr, "sidecored: %s: %d error%s in the plan; see above (sidecored --check-config %s)\n",
			cfg.path, plan.errors, plan.errors == 1 ? "" : "s", cfg.path);
		return 2;
	}
	if (plan.iowq_set) {
		iowq = CPU_ALLOC(SC_MAX_CPUS);
		if (!iowq)
			return fail("out of memory");
		iowq_size = CPU_ALLOC_SIZE(SC_MAX_CPUS);
		CPU_ZERO_S(iowq_size, iowq);
		for (int i = 0; i < SC_MAX_CPUS; i++)
			if (plan.iowq[i])
				CPU_SET_S((size_t)i, iowq_size, iowq);
	}

	/* Block the stop signals before any thread starts, so every thread inherits the mask. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
	/* A front end that closes its socket or a pipe must never kill the service (sends use MSG_NOSIGNAL too). */
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < plan.nsidecores; i++) {
		char name[16];
		snprintf(name, sizeof(name), "sidecore%d", plan.sidecores[i]);
		struct sc_poller_config pc = { .cpu = plan.sidecores[i], .budget = cfg.budget, .turn_ns = cfg.turn_ns,
					       .idle_spin_ns = plan.idle_spin_ns, .name = name };
		int r = sc_poller_create(&pc, &pollers[npollers]);
		if (r < 0) {
			snprintf(err, sizeof(err), "%s:%d: cannot start a sidecore on cpu %d: %s", cfg.path, cfg.cpus_line,
				 plan.sidecores[i], strerror(-r));
			fail(err);
			goto out;
		}
		npollers++;
	}
	for (int i = 0; i < cfg.nblk; i++) {
		const struct sc_blk_config *b = &cfg.blk[i];
		struct disk *d = &disks[i];
		if (sc_blk_backend_open(&d->be, b->backing, b->read_only, b->direct, b->name, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecored: %s:%d: [blk.%s] %s\n", cfg.path, b->line, b->name, err);
			goto out;
		}
		d->be.delay_ns = b->delay_ns;
		d->be.iowq_aff = iowq;
		d->be.iowq_aff_size = iowq_size;
		ndisks = i + 1;
		/* One poller per queue, as the plan placed it: vring q is served by qpollers[q % queues]. */
		for (unsigned q = 0; q < b->queues; q++)
			d->qpollers[q] = pollers[plan.queue_sidecore[i][q]];
		sc_vu_blk_init(&d->dev, &d->be, d->qpollers, b->queues, b->queues);
		d->dev.ops.max_queue_size = b->queue_size;   /* the front end chooses; this is the ceiling */
		if (sc_vu_server_create(b->socket, &d->dev.ops, &d->dev, &d->srv, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecored: %s:%d: [blk.%s] %s\n", cfg.path, b->line, b->name, err);
			goto out;
		}
		sc_vu_server_set_timeout(d->srv, (int)cfg.control_timeout_ms);
		printf("sidecored: [blk.%s] %s (%llu MiB%s) on %s, %u queue%s\n", b->name, b->backing,
		       (unsigned long long)(d->be.capacity >> 11), b->read_only ? ", read-only" : "", b->socket,
		       b->queues, b->queues == 1 ? "" : "s");
	}
	if (cfg.stats_socket[0]) {
		for (int i = 0; i < ndisks; i++)
			stats_devs[i] = (struct sc_stats_device){ .name = cfg.blk[i].name, .socket = cfg.blk[i].socket,
								  .dev = &disks[i].dev, .srv = disks[i].srv };
		struct sc_stats_source src = { .pollers = pollers, .npollers = npollers, .devices = stats_devs,
					       .ndevices = ndisks };
		if (sc_stats_server_create(cfg.stats_socket, &src, &stats, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecored: %s:%d: %s\n", cfg.path,
				cfg.stats_socket_line ? cfg.stats_socket_line : cfg.cpus_line, err);
			goto out;
		}
		printf("sidecored: stats on %s (sidecorectl --socket %s stats)\n", cfg.stats_socket, cfg.stats_socket);
	}
	printf("sidecored: %d sidecore%s on cpu%s", npollers, npollers == 1 ? "" : "s", npollers == 1 ? "" : "s");
	for (int i = 0; i < plan.nsidecores; i++)
		printf(" %d", plan.sidecores[i]);
	printf("; ready\n");
	fflush(stdout);

	/* Each disk's control path runs on its own thread: a stuck front end costs only its own disk. */
	for (int i = 0; i < ndisks; i++) {
		int r = sc_vu_server_start(disks[i].srv);
		if (r < 0) {
			fprintf(stderr, "sidecored: %s:%d: [blk.%s] cannot start its control thread: %s\n", cfg.path,
				cfg.blk[i].line, cfg.blk[i].name, strerror(-r));
			goto out;
		}
	}
	/*
	 * systemd's Type=notify: ready once every socket listens and every
	 * control thread runs, so units ordered after sidecored (a VMM) find
	 * the sockets. Without NOTIFY_SOCKET sd_notify does nothing.
	 */
	sd_notifyf(0, "READY=1\nSTATUS=serving %d disk%s on %d sidecore%s", ndisks, ndisks == 1 ? "" : "s", npollers,
		   npollers == 1 ? "" : "s");
	/* This thread only waits for the stop signal; destroying a server wakes its thread wherever it waits. */
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n == sizeof(si)) {
			printf("sidecored: %s: stopping\n", strsignal((int)si.ssi_signo));
			fflush(stdout);
			sd_notify(0, "STOPPING=1");
			ret = 0;
			break;
		}
		if (n < 0 && errno != EINTR)
			break;
	}
out:
	/* The stats thread reads the devices and pollers: it goes first. */
	sc_stats_server_destroy(stats);
	/* Servers next: each stops its vrings (detach, finish in flight) and removes its socket. */
	for (int i = 0; i < ndisks; i++) {
		sc_vu_server_destroy(disks[i].srv);
		sc_blk_backend_close(&disks[i].be);
	}
	for (int i = 0; i < npollers; i++)
		sc_poller_destroy(pollers[i]);
	CPU_FREE(iowq);
	if (ret == 0)
		printf("sidecored: stopped cleanly\n");
	return ret;
}
