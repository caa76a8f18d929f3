/* SPDX-License-Identifier: MIT */
/*
 * sidecored: serves the virtio-blk disks its config file names to VMMs over
 * vhost-user, on sidecore threads pinned to the config's cpus.
 *
 * Start-up failures print one line (file and line, path, cpu) and exit 2.
 * SIGTERM or SIGINT stops cleanly, whatever the front ends do: every vring
 * is detached from its sidecore and its in-flight requests finished, then
 * the sockets removed. Each disk's vhost-user control path runs on its own
 * thread, so a stuck front end holds up only its own disk. SIGHUP re-reads
 * the config file (sc_service_reload): devices come and go, and the ones
 * whose section did not change keep serving their front ends.
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
#include "runtime/service.h"

static const char usage[] =
	"usage: sidecored --config FILE\n"
	"       sidecored --check-config FILE [--topology XML|SYNTHETIC]\n"
	"\n"
	"Serves the virtio-blk disks FILE names over vhost-user sockets, polled by\n"
	"sidecore threads pinned to the cpus FILE gives. SIGTERM stops cleanly;\n"
	"SIGHUP re-reads FILE (devices added, removed, restarted if changed).\n"
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

/* Wait for signals and act on them: SIGHUP re-reads the config, SIGTERM and SIGINT stop. */
static int serve(struct sc_service *svc, int sfd)
{
	char status[128];

	/*
	 * systemd's Type=notify: ready once every socket listens and every
	 * control thread runs, so units ordered after sidecored (a VMM) find
	 * the sockets. Without NOTIFY_SOCKET sd_notify does nothing.
	 */
	sc_service_status(svc, status, sizeof(status));
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(si))
			return 2;
		if (si.ssi_signo == SIGHUP) {
			/* ExecReload: systemd waits from RELOADING=1 to the next READY=1. */
			sd_notify(0, "RELOADING=1");
			sc_service_reload(svc);
			sc_service_status(svc, status, sizeof(status));
			sd_notifyf(0, "READY=1\nSTATUS=%s", status);
			continue;
		}
		printf("sidecored: %s: stopping\n", strsignal((int)si.ssi_signo));
		fflush(stdout);
		sd_notify(0, "STOPPING=1");
		return 0;
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' }, { "check-config", required_argument, NULL, 'k' },
		{ "topology", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { 0 },
	};
	const char *path = NULL, *check = NULL, *topology = NULL;
	struct sc_service *svc;
	int c, ret;

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
	/* Block the signals before any thread starts, so every thread inherits the mask and only signalfd sees them. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return fail("cannot wait for signals (signalfd)");
	/* A front end that closes its socket or a pipe must never kill the service (sends use MSG_NOSIGNAL too). */
	signal(SIGPIPE, SIG_IGN);

	if (sc_service_start(path, &svc) < 0)
		return 2;
	ret = serve(svc, sfd);
	sc_service_stop(svc);
	if (ret == 0)
		printf("sidecored: stopped cleanly\n");
	return ret;
}
