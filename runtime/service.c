/* SPDX-License-Identifier: MIT */
#include "runtime/service.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/tsc.h"
#include "cpuset/cpuset.h"
#include "polling/polling.h"
#include "runtime/config.h"
#include "runtime/plan.h"
#include "runtime/rebalance.h"
#include "runtime/stats.h"
#include "runtime/vu_blk.h"
#include "runtime/vu_net.h"

#define MAX_QUEUES (SC_CONFIG_MAX_DEVICES * SC_CONFIG_MAX_DEVICE_CPUS)

struct disk {
	struct sc_blk_config cfg;   /* its section as loaded: a reload compares it, the stats socket names it */
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
	struct sc_poller *qpollers[SC_CONFIG_MAX_DEVICE_CPUS];   /* queue q's sidecore; moves write it */
	/* The rebalancer's, under the service lock. */
	uint64_t last_requests[SC_CONFIG_MAX_DEVICE_CPUS];
	unsigned since_move[SC_CONFIG_MAX_DEVICE_CPUS];
};

/* A NIC: virtio-net on a DPDK port. Started with the service; a reload keeps it as it runs. */
struct nic {
	struct sc_net_config cfg;
	struct sc_net_port port;
	struct sc_vu_net dev;
	struct sc_vu_server *srv;
	struct sc_poller *ppollers[SC_NET_MAX_PAIRS];   /* pair k's sidecore */
};

struct sc_service {
	struct sc_config cfg, next;   /* running, and the file being re-read */
	struct sc_topology topo;
	struct sc_plan plan, next_plan;
	struct sc_poller *pollers[SC_CONFIG_MAX_CPUS];
	int npollers;
	cpu_set_t *iowq;
	size_t iowq_size;
	/* The device list and cfg: the main thread's reload against the rebalancer thread. */
	pthread_mutex_t lock;
	struct disk *disks[SC_CONFIG_MAX_DEVICES];
	int ndisks;
	struct nic *nics[SC_CONFIG_MAX_NET];
	int nnics;
	struct sc_stats_server *stats;
	struct sc_stats_device stats_devs[SC_CONFIG_MAX_DEVICES + SC_CONFIG_MAX_NET];
	/* The rebalancer: its thread, and what it measured last (under lock). */
	pthread_t rebalancer;
	bool rebalancing;
	int stopfd;
	uint64_t last_tsc;
	struct sc_poller_stats last[SC_CONFIG_MAX_CPUS];
	struct sc_rebalance_core cores[SC_CONFIG_MAX_CPUS];
	struct sc_rebalance_queue rq[MAX_QUEUES];
	struct { struct disk *d; unsigned q; } rq_of[MAX_QUEUES];
};

/* The poller on cpu, or NULL. */
static struct sc_poller *poller_on(const struct sc_service *svc, int cpu)
{
	for (int i = 0; i < svc->npollers; i++)
		if (sc_poller_cpu(svc->pollers[i]) == cpu)
			return svc->pollers[i];
	return NULL;
}

static int poller_index(const struct sc_service *svc, const struct sc_poller *p)
{
	for (int i = 0; i < svc->npollers; i++)
		if (svc->pollers[i] == p)
			return i;
	return -1;
}

/* Serve section b with its queues where plan put them (plan's device index i); prints why if it cannot. */
static int disk_start(struct sc_service *svc, const struct sc_blk_config *b, const struct sc_plan *plan, int i,
		      struct disk **out)
{
	const char *path = svc->cfg.path;
	struct disk *d = calloc(1, sizeof(*d));
	char err[8192];
	int r;

	if (!d) {
		fprintf(stderr, "sidecored: %s:%d: [blk.%s] out of memory\n", path, b->line, b->name);
		return -ENOMEM;
	}
	d->cfg = *b;
	r = b->ram_bytes ? sc_blk_backend_open_ram(&d->be, b->ram_bytes, b->name, err, sizeof(err))
			 : sc_blk_backend_open(&d->be, b->backing, b->read_only, b->direct, b->name, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "sidecored: %s:%d: [blk.%s] %s\n", path, b->line, b->name, err);
		free(d);
		return r;
	}
	if (!b->mmap)
		sc_blk_backend_unmap(&d->be);
	/* A disk that cannot be polled still serves, with interrupt completions: one line says so. */
	if (b->iopoll && sc_blk_backend_set_iopoll(&d->be, b->backing, err, sizeof(err)) < 0)
		fprintf(stderr, "sidecored: %s:%d: [blk.%s] %s\n", path, b->iopoll_line, b->name, err);
	d->be.no_fixed_buffers = !b->fixed_buffers;
	d->be.delay_ns = b->delay_ns;
	d->be.iowq_aff = svc->iowq;
	d->be.iowq_aff_size = svc->iowq_size;
	/* One poller slot per queue, as the plan placed it, so a move can change one queue's. */
	for (unsigned q = 0; q < b->queues; q++) {
		d->qpollers[q] = poller_on(svc, plan->sidecores[plan->queue_sidecore[i][q]]);
		d->since_move[q] = UINT32_MAX;
	}
	sc_vu_blk_init(&d->dev, &d->be, d->qpollers, b->queues, b->queues);
	d->dev.ops.max_queue_size = b->queue_size;   /* the front end chooses; this is the ceiling */
	d->dev.ops.iotlb_max = b->iommu.iotlb_entries;
	d->dev.ops.iotlb_miss_ms = b->iommu.iotlb_miss_ms;
	d->dev.ops.iotlb_window_ms = b->iommu.optimistic ? b->iommu.window_ms : 0;
	d->dev.ops.iotlb_isolation = b->iommu.isolation;
	r = sc_vu_server_create(b->socket, &d->dev.ops, &d->dev, &d->srv, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "sidecored: %s:%d: [blk.%s] %s\n", path, b->line, b->name, err);
		goto fail;
	}
	sc_vu_server_set_timeout(d->srv, (int)svc->cfg.control_timeout_ms);
	/* Its control path on its own thread: a stuck front end costs only this disk. */
	r = sc_vu_server_start(d->srv);
	if (r < 0) {
		fprintf(stderr, "sidecored: %s:%d: [blk.%s] cannot start its control thread: %s\n", path, b->line, b->name,
			strerror(-r));
		sc_vu_server_destroy(d->srv);
		goto fail;
	}
	printf("sidecored: [blk.%s] %s (%llu MiB%s) on %s, %u queue%s\n", b->name, b->backing,
	       (unsigned long long)(d->be.capacity >> 11), b->read_only ? ", read-only" : "", b->socket, b->queues,
	       b->queues == 1 ? "" : "s");
	*out = d;
	return 0;
fail:
	sc_blk_backend_close(&d->be);
	free(d);
	return r;
}

/* Stop serving d: its rings stop (in-flight requests finish), its front end is dropped, its socket removed. */
static void disk_stop(struct disk *d)
{
	sc_vu_server_destroy(d->srv);
	sc_blk_backend_close(&d->be);
	free(d);
}

/*
 * Serve [net.NAME] n: open its port (EAL starts with the first), put pair k
 * on its sidecore list's cpu k (or spread over all sidecores), listen.
 * Prints why if it cannot.
 */
static int nic_start(struct sc_service *svc, const struct sc_net_config *n, int idx, struct nic **out)
{
	const char *path = svc->cfg.path;
	struct nic *d = calloc(1, sizeof(*d));
	char err[1024];
	int r;

	if (!d) {
		fprintf(stderr, "sidecored: %s:%d: [net.%s] out of memory\n", path, n->line, n->name);
		return -ENOMEM;
	}
	d->cfg = *n;
	for (unsigned k = 0; k < n->queues; k++) {
		int cpu = n->nsidecores ? n->sidecores[k % (unsigned)n->nsidecores] : -1;
		d->ppollers[k] = cpu >= 0 ? poller_on(svc, cpu) : svc->pollers[(k + (unsigned)idx) % (unsigned)svc->npollers];
		if (!d->ppollers[k]) {
			fprintf(stderr, "sidecored: %s:%d: [net.%s] sidecore = %d is not one of [sidecore] cpus; use one of them\n",
				path, n->sidecore_line, n->name, cpu);
			free(d);
			return -EINVAL;
		}
	}
	r = sc_net_port_open(&d->port, n->port, n->queues, n->numa_node, (uint16_t)n->mtu, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "sidecored: %s:%d: [net.%s] %s\n", path, n->port_line ? n->port_line : n->line, n->name,
			err);
		free(d);
		return r;
	}
	sc_vu_net_init(&d->dev, &d->port, n->queues, n->mac, (uint16_t)n->mtu, d->ppollers, n->queues);
	d->dev.ops.max_queue_size = n->queue_size;
	r = sc_vu_server_create(n->socket, &d->dev.ops, &d->dev, &d->srv, err, sizeof(err));
	if (r == 0) {
		sc_vu_server_set_timeout(d->srv, (int)svc->cfg.control_timeout_ms);
		r = sc_vu_server_start(d->srv);
		if (r < 0) {
			snprintf(err, sizeof(err), "cannot start its control thread: %s", strerror(-r));
			sc_vu_server_destroy(d->srv);
		}
	}
	if (r < 0) {
		fprintf(stderr, "sidecored: %s:%d: [net.%s] %s\n", path, n->line, n->name, err);
		sc_vu_net_fini(&d->dev);
		sc_net_port_close(&d->port);
		free(d);
		return r;
	}
	printf("sidecored: [net.%s] port %s on %s, %u queue pair%s, mtu %u, mac %02x:%02x:%02x:%02x:%02x:%02x\n", n->name,
	       n->port, n->socket, n->queues, n->queues == 1 ? "" : "s", n->mtu, n->mac[0], n->mac[1], n->mac[2],
	       n->mac[3], n->mac[4], n->mac[5]);
	*out = d;
	return 0;
}

static void nic_stop(struct nic *d)
{
	sc_vu_server_destroy(d->srv);
	sc_vu_net_fini(&d->dev);
	sc_net_port_close(&d->port);
	free(d);
}

/* Tell the stats socket about the devices in disks[0..n) and the NICs. */
static void stats_set(struct sc_service *svc, struct disk *const *disks, int n)
{
	if (!svc->stats)
		return;
	for (int i = 0; i < n; i++)
		svc->stats_devs[i] = (struct sc_stats_device){ .name = disks[i]->cfg.name, .socket = disks[i]->cfg.socket,
							       .dev = &disks[i]->dev, .srv = disks[i]->srv };
	for (int i = 0; i < svc->nnics; i++)
		svc->stats_devs[n + i] = (struct sc_stats_device){ .name = svc->nics[i]->cfg.name,
								   .socket = svc->nics[i]->cfg.socket,
								   .net = &svc->nics[i]->dev, .srv = svc->nics[i]->srv };
	n += svc->nnics;
	/* The copy is a few KiB; without it the stats socket goes on naming the old list, which stays valid here. */
	if (sc_stats_server_set_devices(svc->stats, svc->stats_devs, n) < 0)
		fprintf(stderr, "sidecored: stats socket %s: out of memory; it reports the old device list\n",
			svc->cfg.stats_socket);
}

/* ---- the rebalancer ---- */

static double share(uint64_t part, uint64_t whole)
{
	double x = whole ? (double)part / (double)whole : 0;
	return x > 1 ? 1 : x;
}

/* One interval: measure every sidecore and queue, and move one queue if the policy says so. Under svc->lock. */
static void rebalance_step(struct sc_service *svc)
{
	const struct sc_config *c = &svc->cfg;
	uint64_t tsc = sc_rdtsc();
	int nq = 0;

	for (int i = 0; i < svc->npollers; i++) {
		struct sc_poller_stats st;
		sc_poller_get_stats(svc->pollers[i], &st);
		/* As the stats socket's busy share: rounds that served a request, over the wall clock. */
		sc_rebalance_core_push(&svc->cores[i], share(st.busy_cycles - svc->last[i].busy_cycles, tsc - svc->last_tsc));
		svc->last[i] = st;
	}
	svc->last_tsc = tsc;
	for (int i = 0; i < svc->ndisks; i++) {
		struct disk *d = svc->disks[i];
		for (unsigned q = 0; q < d->cfg.queues; q++) {
			bool running = sc_vu_blk_queue_running(&d->dev, q);
			uint64_t now = running ? sc_vq_stat(&d->dev.queues[q].vq, offsetof(struct sc_vq_stats, requests)) : 0;
			/* Counters start again with the ring: a smaller count is a new ring's. */
			uint64_t load = now >= d->last_requests[q] ? now - d->last_requests[q] : now;
			d->last_requests[q] = now;
			if (d->since_move[q] != UINT32_MAX)
				d->since_move[q]++;
			if (!running)
				continue;
			svc->rq[nq] = (struct sc_rebalance_queue){
				.core = poller_index(svc, sc_vu_blk_queue_poller(&d->dev, q)), .load = load,
				.movable = d->cfg.nsidecores == 0, .since_move = d->since_move[q] };
			svc->rq_of[nq].d = d;
			svc->rq_of[nq].q = q;
			nq++;
		}
	}
	if (!c->rebalance)
		return;
	struct sc_rebalance_params p = { .busy = c->rebalance_busy / 100.0, .idle = c->rebalance_idle / 100.0,
					 .intervals = c->rebalance_intervals, .cooldown = SC_REBALANCE_COOLDOWN };
	struct sc_rebalance_move m;
	if (!sc_rebalance_decide(&p, svc->cores, svc->npollers, svc->rq, nq, &m))
		return;
	struct disk *d = svc->rq_of[m.queue].d;
	unsigned q = svc->rq_of[m.queue].q;
	int from = sc_poller_cpu(svc->pollers[m.from]), to = sc_poller_cpu(svc->pollers[m.to]);
	int r = sc_vu_blk_queue_move(&d->dev, q, svc->pollers[m.to]);
	if (r < 0) {
		fprintf(stderr, "sidecored: rebalance: [blk.%s] queue %u stays on cpu %d (moving it to cpu %d failed: %s)\n",
			d->cfg.name, q, from, to, strerror(-r));
		return;
	}
	printf("sidecored: rebalance: moved [blk.%s] queue %u from cpu %d to cpu %d: cpu %d was %.0f%% busy and cpu %d "
	       "%.0f%% over the last %u intervals of %u ms, and the queue had %.0f%% of cpu %d\n",
	       d->cfg.name, q, from, to, from, m.from_busy * 100, to, m.to_busy * 100, c->rebalance_intervals,
	       c->rebalance_interval_ms, m.share * 100, from);
	fflush(stdout);
	d->since_move[q] = 0;
	/* Decide about these two again only on what is measured after the move. */
	svc->cores[m.from].nbusy = svc->cores[m.to].nbusy = 0;
}

static void *rebalance_thread(void *arg)
{
	struct sc_service *svc = arg;

	for (;;) {
		pthread_mutex_lock(&svc->lock);
		int ms = (int)svc->cfg.rebalance_interval_ms;
		pthread_mutex_unlock(&svc->lock);
		struct pollfd p = { .fd = svc->stopfd, .events = POLLIN };
		if (poll(&p, 1, ms) != 0)
			break;   /* stopped (or poll failed: then no rebalancing rather than a spin) */
		pthread_mutex_lock(&svc->lock);
		rebalance_step(svc);
		pthread_mutex_unlock(&svc->lock);
	}
	return NULL;
}

/* ---- start, stop ---- */

/*
 * The threads started from here on (each disk's control thread, the stats
 * and rebalancer threads, and those a reload starts) inherit this thread's
 * cpus: keep them off the sidecores. A sidecore spins and never yields, so
 * a control thread woken on its cpu waits for the scheduler to preempt it:
 * 350-530 us per acknowledged vhost-user message was measured that way
 * (sidecore-bench vhost-blk --iommu, whose IOTLB messages are all round
 * trips), against a few us on a cpu that is free. With isolcpus the kernel
 * does this already; a machine whose cpus are all sidecores keeps its mask.
 */
static void keep_off_sidecores(const struct sc_plan *plan)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return;
	for (int i = 0; i < plan->nsidecores; i++)
		if (plan->sidecores[i] >= 0 && plan->sidecores[i] < CPU_SETSIZE)
			CPU_CLR(plan->sidecores[i], &set);
	if (CPU_COUNT(&set) > 0 && sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "sidecored: cannot keep the control threads off the sidecores: %s; they share their cpus\n",
			strerror(errno));
}

int sc_service_start(const char *path, struct sc_service **out)
{
	struct sc_service *svc = calloc(1, sizeof(*svc));
	struct sc_config *cfg;
	struct sc_plan *plan;
	char err[8192];   /* a line may quote a 4 KiB path */
	int r;

	if (!svc) {
		fprintf(stderr, "sidecored: out of memory\n");
		return -ENOMEM;
	}
	cfg = &svc->cfg;
	plan = &svc->plan;
	pthread_mutex_init(&svc->lock, NULL);
	svc->stopfd = -1;
	r = sc_config_load(path, cfg, err, sizeof(err));
	if (r == 0)
		r = sc_config_check_paths(cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "sidecored: %s\n", err);
		goto fail;
	}
	r = sc_topology_load(&svc->topo);
	if (r < 0) {
		fprintf(stderr, "sidecored: cannot read the cpu topology (hwloc): %s\n", strerror(-r));
		goto fail;
	}
	/* Warnings go to stderr and the service runs; an error stops it here. */
	r = sc_plan_build(plan, cfg, &svc->topo, true, stderr);
	if (r < 0) {
		fprintf(stderr, "sidecored: %s: %d error%s in the plan; see above (sidecored --check-config %s)\n", cfg->path,
			plan->errors, plan->errors == 1 ? "" : "s", cfg->path);
		goto fail;
	}
	if (plan->iowq_set) {
		svc->iowq = CPU_ALLOC(SC_MAX_CPUS);
		if (!svc->iowq) {
			r = -ENOMEM;
			fprintf(stderr, "sidecored: out of memory\n");
			goto fail;
		}
		svc->iowq_size = CPU_ALLOC_SIZE(SC_MAX_CPUS);
		CPU_ZERO_S(svc->iowq_size, svc->iowq);
		for (int i = 0; i < SC_MAX_CPUS; i++)
			if (plan->iowq[i])
				CPU_SET_S((size_t)i, svc->iowq_size, svc->iowq);
	}
	for (int i = 0; i < plan->nsidecores; i++) {
		char name[16];
		snprintf(name, sizeof(name), "sidecore%d", plan->sidecores[i]);
		struct sc_poller_config pc = { .cpu = plan->sidecores[i], .budget = cfg->budget, .turn_ns = cfg->turn_ns,
					       .idle_spin_ns = plan->idle_spin_ns, .name = name };
		r = sc_poller_create(&pc, &svc->pollers[svc->npollers]);
		if (r < 0) {
			fprintf(stderr, "sidecored: %s:%d: cannot start a sidecore on cpu %d: %s\n", cfg->path, cfg->cpus_line,
				plan->sidecores[i], strerror(-r));
			goto fail;
		}
		svc->npollers++;
	}
	keep_off_sidecores(plan);
	for (int i = 0; i < cfg->nblk; i++) {
		r = disk_start(svc, &cfg->blk[i], plan, i, &svc->disks[i]);
		if (r < 0)
			goto fail;
		svc->ndisks++;
	}
	for (int i = 0; i < cfg->nnet; i++) {
		r = nic_start(svc, &cfg->net[i], i, &svc->nics[i]);
		if (r < 0)
			goto fail;
		svc->nnics++;
	}
	if (cfg->stats_socket[0]) {
		struct sc_stats_source src = { .pollers = svc->pollers, .npollers = svc->npollers };
		r = sc_stats_server_create(cfg->stats_socket, &src, &svc->stats, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "sidecored: %s:%d: %s\n", cfg->path,
				cfg->stats_socket_line ? cfg->stats_socket_line : cfg->cpus_line, err);
			goto fail;
		}
		stats_set(svc, svc->disks, svc->ndisks);
		printf("sidecored: stats on %s (sidecorectl --socket %s stats)\n", cfg->stats_socket, cfg->stats_socket);
	}
	/* With one sidecore there is nowhere to move a queue to. */
	if (svc->npollers > 1) {
		svc->stopfd = eventfd(0, EFD_CLOEXEC);
		svc->last_tsc = sc_rdtsc();
		for (int i = 0; i < svc->npollers; i++)
			sc_poller_get_stats(svc->pollers[i], &svc->last[i]);
		r = svc->stopfd < 0 ? -errno : -pthread_create(&svc->rebalancer, NULL, rebalance_thread, svc);
		if (r < 0) {
			fprintf(stderr, "sidecored: cannot start the rebalancer thread: %s\n", strerror(-r));
			goto fail;
		}
		svc->rebalancing = true;
		if (cfg->rebalance)
			printf("sidecored: rebalance: every %u ms, a queue of a sidecore = auto device may move from a sidecore "
			       "at least %u%% busy to one at most %u%% busy, after %u intervals in a row\n",
			       cfg->rebalance_interval_ms, cfg->rebalance_busy, cfg->rebalance_idle, cfg->rebalance_intervals);
	}
	printf("sidecored: %d sidecore%s on cpu%s", svc->npollers, svc->npollers == 1 ? "" : "s",
	       svc->npollers == 1 ? "" : "s");
	for (int i = 0; i < plan->nsidecores; i++)
		printf(" %d", plan->sidecores[i]);
	printf("; ready\n");
	fflush(stdout);
	*out = svc;
	return 0;
fail:
	sc_service_stop(svc);
	return r;
}

void sc_service_stop(struct sc_service *svc)
{
	if (svc->rebalancing) {
		uint64_t one = 1;
		if (write(svc->stopfd, &one, sizeof(one)) != sizeof(one))
			perror("sidecored: rebalancer: stop");
		pthread_join(svc->rebalancer, NULL);
	}
	if (svc->stopfd >= 0)
		close(svc->stopfd);
	/* The stats thread reads the devices and pollers: it goes first. */
	sc_stats_server_destroy(svc->stats);
	/* Devices next: each stops its vrings (detach, finish in flight) and removes its socket. */
	for (int i = 0; i < svc->ndisks; i++)
		disk_stop(svc->disks[i]);
	for (int i = 0; i < svc->nnics; i++)
		nic_stop(svc->nics[i]);
	for (int i = 0; i < svc->npollers; i++)
		sc_poller_destroy(svc->pollers[i]);
	CPU_FREE(svc->iowq);
	pthread_mutex_destroy(&svc->lock);
	free(svc);
}

void sc_service_status(const struct sc_service *svc, char *buf, int len)
{
	char nics[32] = "";

	/* NICs only where there are some: a disks-only service reads as it always did. */
	if (svc->nnics)
		snprintf(nics, sizeof(nics), " and %d NIC%s", svc->nnics, svc->nnics == 1 ? "" : "s");
	snprintf(buf, (size_t)len, "serving %d disk%s%s on %d sidecore%s", svc->ndisks, svc->ndisks == 1 ? "" : "s",
		 nics, svc->npollers, svc->npollers == 1 ? "" : "s");
}

/* ---- reload ---- */

static bool same_cpus(const int *a, int na, const int *b, int nb)
{
	return na == nb && !memcmp(a, b, (size_t)na * sizeof(*a));
}

/*
 * A [sidecore] key the running service cannot change (its sidecores and
 * their settings are fixed when they start): the name of the first that
 * changed and its line in the new file, or NULL. A stats socket both
 * files leave to the default keeps the running one (it follows the first
 * device's socket, which a reload may remove).
 */
static const char *fixed_key_changed(const struct sc_config *o, struct sc_config *n, int *line)
{
#define CHANGED(cond, key, l)                                   \
	do {                                                    \
		if (cond) {                                     \
			*line = (l) ? (l) : n->sidecore_line;   \
			return key;                             \
		}                                               \
	} while (0)
	CHANGED(o->cpus_auto != n->cpus_auto || !same_cpus(o->cpus, o->ncpus, n->cpus, n->ncpus), "cpus", n->cpus_line);
	CHANGED(o->count != n->count, "count", n->count_line);
	CHANGED(!same_cpus(o->guest_cpus, o->nguest_cpus, n->guest_cpus, n->nguest_cpus), "guest_cpus",
		n->guest_cpus_line);
	CHANGED(o->idle != n->idle, "idle", n->idle_line);
	CHANGED(o->idle_spin_ns != n->idle_spin_ns, "idle_spin_us", n->idle_spin_line);
	CHANGED(o->budget != n->budget, "budget", n->budget_line);
	CHANGED(o->turn_ns != n->turn_ns, "turn_us", n->turn_line);
	CHANGED(o->iowq != n->iowq || !same_cpus(o->iowq_cpus, o->niowq_cpus, n->iowq_cpus, n->niowq_cpus), "iowq_cpus",
		n->iowq_line);
	CHANGED(o->control_timeout_ms != n->control_timeout_ms, "control_timeout_ms", n->control_timeout_line);
	if (!o->stats_socket_line && !n->stats_socket_line)
		memcpy(n->stats_socket, o->stats_socket, sizeof(n->stats_socket));
	CHANGED(strcmp(o->stats_socket, n->stats_socket), "stats_socket", n->stats_socket_line);
	return NULL;
#undef CHANGED
}

/* Is section b what d serves? Line numbers may move; everything else must be equal. */
static bool same_device(const struct sc_blk_config *a, const struct sc_blk_config *b)
{
	return !strcmp(a->socket, b->socket) && !strcmp(a->backing, b->backing) && a->queues == b->queues &&
	       a->queue_size == b->queue_size && a->read_only == b->read_only && a->direct == b->direct &&
	       a->delay_ns == b->delay_ns && same_cpus(a->sidecores, a->nsidecores, b->sidecores, b->nsidecores) &&
	       a->numa_node == b->numa_node && a->iopoll == b->iopoll && a->mmap == b->mmap &&
	       a->fixed_buffers == b->fixed_buffers && a->iommu.optimistic == b->iommu.optimistic &&
	       a->iommu.window_ms == b->iommu.window_ms && a->iommu.iotlb_entries == b->iommu.iotlb_entries &&
	       a->iommu.iotlb_miss_ms == b->iommu.iotlb_miss_ms;
}

int sc_service_reload(struct sc_service *svc)
{
	struct sc_config *o = &svc->cfg, *n = &svc->next;
	struct sc_plan *plan = &svc->next_plan;
	struct disk *kept[SC_CONFIG_MAX_DEVICES], *next[SC_CONFIG_MAX_DEVICES] = { 0 };
	bool restart[SC_CONFIG_MAX_DEVICES] = { 0 };
	char err[8192];
	int r, line = 0, nkept = 0, added = 0, removed = 0, restarted = 0, failed = 0;

	printf("sidecored: SIGHUP: re-reading %s\n", o->path);
	fflush(stdout);
	r = sc_config_load(o->path, n, err, sizeof(err));
	if (r == 0)
		r = sc_config_check_paths(n, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "sidecored: reload: %s; keeping the running config\n", err);
		return r;
	}
	const char *key = fixed_key_changed(o, n, &line);
	if (key) {
		fprintf(stderr, "sidecored: reload: %s:%d: [sidecore] %s changed, and sidecored sets it only when it starts; "
			"restart sidecored to apply it, or put it back; keeping the running config\n", n->path, line, key);
		return -EBUSY;
	}
	if (sc_plan_build(plan, n, &svc->topo, true, stderr) < 0) {
		fprintf(stderr, "sidecored: reload: %s: %d error%s in the plan; see above (sidecored --check-config %s); "
			"keeping the running config\n", n->path, plan->errors, plan->errors == 1 ? "" : "s", n->path);
		return -EINVAL;
	}
	/* cpus = auto may choose other cpus for another device list: those sidecores are not running. */
	for (int i = 0; i < plan->nsidecores; i++)
		if (!poller_on(svc, plan->sidecores[i])) {
			fprintf(stderr, "sidecored: reload: %s:%d: [sidecore] cpus = auto now chooses cpu %d, which is not a "
				"running sidecore; restart sidecored to apply it; keeping the running config\n", n->path,
				n->cpus_line, plan->sidecores[i]);
			return -EBUSY;
		}

	/* NICs run as they started: a changed [net.*] list needs a restart. */
	bool nics_same = n->nnet == svc->nnics;
	for (int i = 0; nics_same && i < n->nnet; i++) {
		struct sc_net_config a = svc->nics[i]->cfg, b = n->net[i];
		a.line = b.line = a.port_line = b.port_line = a.sidecore_line = b.sidecore_line = 0;
		nics_same = !memcmp(&a, &b, sizeof(a));
	}
	if (!nics_same) {
		fprintf(stderr, "sidecored: reload: %s: the [net.*] sections changed, and sidecored starts NICs only when it "
			"starts; restart sidecored to apply them, or put them back; keeping the running config\n", n->path);
		return -EBUSY;
	}

	pthread_mutex_lock(&svc->lock);
	/* Which running devices stay as they are: next[j] for the new file's device j. */
	for (int i = 0; i < svc->ndisks; i++) {
		struct disk *d = svc->disks[i];
		for (int j = 0; j < n->nblk; j++)
			if (!strcmp(d->cfg.name, n->blk[j].name) && same_device(&d->cfg, &n->blk[j])) {
				next[j] = d;
				kept[nkept++] = d;
				d->cfg.line = n->blk[j].line;   /* for later errors */
			}
	}
	/* The stats socket forgets the others before they go. */
	stats_set(svc, kept, nkept);
	for (int i = 0; i < svc->ndisks; i++) {
		struct disk *d = svc->disks[i];
		bool stays = false, changed = false;
		for (int j = 0; j < n->nblk; j++) {
			stays |= next[j] == d;
			changed |= !strcmp(d->cfg.name, n->blk[j].name);
			restart[j] |= !next[j] && !strcmp(d->cfg.name, n->blk[j].name);
		}
		if (stays)
			continue;
		if (changed) {
			printf("sidecored: reload: [blk.%s] changed: restarting it (its front end is dropped and may "
			       "reconnect)\n", d->cfg.name);
			restarted++;
		} else {
			printf("sidecored: reload: [blk.%s] removed: its front end is dropped and %s removed\n", d->cfg.name,
			       d->cfg.socket);
			removed++;
		}
		disk_stop(d);
	}
	/* The new file's devices, in its order; its [sidecore] keys are the running ones but for rebalance*. */
	svc->ndisks = 0;
	for (int j = 0; j < n->nblk; j++) {
		if (!next[j]) {
			if (disk_start(svc, &n->blk[j], plan, j, &next[j]) < 0) {
				failed++;
				continue;
			}
			added += !restart[j];
		}
		svc->disks[svc->ndisks++] = next[j];
	}
	svc->cfg = *n;
	stats_set(svc, svc->disks, svc->ndisks);
	pthread_mutex_unlock(&svc->lock);
	printf("sidecored: reload: done: %d disk%s served (%d kept as they ran, %d added, %d removed, %d restarted%s)\n",
	       svc->ndisks, svc->ndisks == 1 ? "" : "s", nkept, added, removed, restarted,
	       failed ? ", some not started: see above" : "");
	fflush(stdout);
	return 0;
}
