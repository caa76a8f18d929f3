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
#include <unistd.h>

#include "cpuset/cpuset.h"
#include "polling/polling.h"
#include "runtime/config.h"
#include "runtime/vu_blk.h"

static const char usage[] =
	"usage: sidecored --config FILE\n"
	"\n"
	"Serves the virtio-blk disks FILE names over vhost-user sockets, polled by\n"
	"sidecore threads pinned to the cpus FILE gives. SIGTERM stops cleanly.\n"
	"See the README's config reference for the file's sections and keys.\n";

struct disk {
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
};

static int fail(const char *msg)
{
	fprintf(stderr, "sidecored: %s\n", msg);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { 0 },
	};
	static struct sc_config cfg;
	static struct sc_topology topo;
	static struct disk disks[SC_CONFIG_MAX_DEVICES];
	struct sc_poller *pollers[SC_CONFIG_MAX_CPUS];
	const char *path = NULL;
	char err[8192];   /* a line may quote a 4 KiB path */
	int c, ret = 2, npollers = 0, ndisks = 0;

	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("sidecored %s\n", SC_VERSION); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (!path) {
		fputs(usage, stderr);
		return 2;
	}
	if (sc_config_load(path, &cfg, err, sizeof(err)) < 0 || sc_config_check_paths(&cfg, err, sizeof(err)) < 0)
		return fail(err);
	if (sc_topology_load(&topo) < 0)
		return fail("cannot read the cpu topology (hwloc)");
	bool allowed[SC_MAX_CPUS] = { 0 };
	int ncpus = 0;
	for (int i = 0; i < topo.ncpus; i++) {
		if (topo.cpus[i].cpu < SC_MAX_CPUS && topo.cpus[i].allowed)
			allowed[topo.cpus[i].cpu] = true;
		if (topo.cpus[i].cpu + 1 > ncpus)
			ncpus = topo.cpus[i].cpu + 1;
	}
	if (sc_config_check_cpus(&cfg, allowed, ncpus, err, sizeof(err)) < 0)
		return fail(err);

	/* Block the stop signals before any thread starts, so every thread inherits the mask. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
	/* A front end that closes its socket or a pipe must never kill the service (sends use MSG_NOSIGNAL too). */
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < cfg.ncpus; i++) {
		char name[16];
		snprintf(name, sizeof(name), "sidecore%d", cfg.cpus[i]);
		struct sc_poller_config pc = { .cpu = cfg.cpus[i], .budget = cfg.budget, .turn_ns = cfg.turn_ns,
					       .idle_spin_ns = cfg.idle_spin_ns, .name = name };
		int r = sc_poller_create(&pc, &pollers[npollers]);
		if (r < 0) {
			snprintf(err, sizeof(err), "%s:%d: cannot start a sidecore on cpu %d: %s", cfg.path, cfg.cpus_line,
				 cfg.cpus[i], strerror(-r));
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
		ndisks = i + 1;
		sc_vu_blk_init(&d->dev, &d->be, pollers, (unsigned)npollers, b->queues);
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
	printf("sidecored: %d sidecore%s on cpu%s", npollers, npollers == 1 ? "" : "s", npollers == 1 ? "" : "s");
	for (int i = 0; i < cfg.ncpus; i++)
		printf(" %d", cfg.cpus[i]);
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
	/* This thread only waits for the stop signal; destroying a server wakes its thread wherever it waits. */
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n == sizeof(si)) {
			printf("sidecored: %s: stopping\n", strsignal((int)si.ssi_signo));
			fflush(stdout);
			ret = 0;
			break;
		}
		if (n < 0 && errno != EINTR)
			break;
	}
out:
	/* Servers first: each stops its vrings (detach, finish in flight) and removes its socket. */
	for (int i = 0; i < ndisks; i++) {
		sc_vu_server_destroy(disks[i].srv);
		sc_blk_backend_close(&disks[i].be);
	}
	for (int i = 0; i < npollers; i++)
		sc_poller_destroy(pollers[i]);
	if (ret == 0)
		printf("sidecored: stopped cleanly\n");
	return ret;
}
