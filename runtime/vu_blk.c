/* SPDX-License-Identifier: MIT */
#include "runtime/vu_blk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "viommu/viommu.h"

static int blk_get_config(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct sc_vu_blk *d = ctx;
	struct sc_virtio_blk_config cfg;

	sc_blk_config_space(d->be, (uint16_t)d->num_queues, &cfg);
	/* The window was checked against the 256-byte config space; past our struct it reads zero. */
	memset(buf, 0, len);
	if (offset < sizeof(cfg))
		memcpy(buf, (uint8_t *)&cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
	return 0;
}

/*
 * The control thread reads and writes the front end's memory too (a ring's
 * set-up reads it; a stopped queue's last completions are written to it),
 * and that memory can fault under it as under the sidecore: these run
 * guarded (sc_fault_guard_run), so a fault costs only this queue.
 */
struct queue_init_args {
	struct sc_vu_blk *d;
	unsigned idx;
	const struct sc_vq_config *cfg;
	int ret;
};

static void queue_init_guarded(void *arg)
{
	struct queue_init_args *a = arg;
	a->ret = sc_blk_queue_init(&a->d->queues[a->idx], a->d->be, a->cfg, a->d->names[a->idx]);
}

static void queue_fini_guarded(void *q)
{
	sc_blk_queue_fini(q);
}

static int blk_queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	struct sc_vu_blk *d = ctx;
	struct sc_blk_queue *q = &d->queues[idx];
	struct queue_init_args a = { d, idx, cfg, 0 };
	int ret;

	if (idx >= d->num_queues || d->live[idx])
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	ret = sc_vu_queue_init_guarded(&q->vq, queue_init_guarded, &a);
	if (ret < 0)
		goto out;
	ret = a.ret;
	if (ret < 0)
		goto out;
	if (sc_vq_resubmit_pending(&q->vq))
		fprintf(stderr, "sidecore: %s: serving again %u requests a previous back end left in flight\n",
			cfg->name ? cfg->name : d->names[idx], sc_vq_resubmit_pending(&q->vq));
	d->attached[idx] = tc ? sc_viommu_tc_wrap_iotlb(tc, &q->pq, &q->vq) : &q->pq;
	ret = sc_poller_attach(d->pollers[idx % d->npollers], d->attached[idx]);
	if (ret < 0) {
		sc_blk_queue_fini(q);
		goto out;
	}
	/* Release: pairs with the acquire in sc_vu_blk_queue_running (the stats thread reads q's counters after it). */
	__atomic_store_n(&d->live[idx], true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static uint16_t blk_queue_stop(void *ctx, unsigned idx)
{
	struct sc_vu_blk *d = ctx;
	struct sc_blk_queue *q = &d->queues[idx];

	if (!d->live[idx])
		return 0;
	pthread_mutex_lock(&d->lock);
	/* Detach returns only once the sidecore let go; then finish what it started. */
	sc_poller_detach(d->pollers[idx % d->npollers], d->attached[idx]);
	sc_vu_queue_fini_guarded(&q->vq, d->attached[idx], &q->pq, queue_fini_guarded, q);
	__atomic_store_n(&d->live[idx], false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
	return q->vq.last_avail;
}

static bool blk_queue_broken(void *ctx, unsigned idx)
{
	struct sc_vu_blk *d = ctx;
	return idx < d->num_queues && d->live[idx] && sc_vq_broken(&d->queues[idx].vq);
}

void sc_vu_blk_init(struct sc_vu_blk *d, struct sc_blk_backend *be, struct sc_poller **pollers,
		    unsigned npollers, unsigned num_queues)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->be = be;
	d->pollers = pollers;
	d->npollers = npollers;
	d->num_queues = num_queues;
	for (unsigned i = 0; i < num_queues && i < SC_VU_MAX_VRINGS; i++)
		snprintf(d->names[i], sizeof(d->names[i]), "blk-q%u", i);
	d->ops = (struct sc_vu_device_ops){
		.features = sc_blk_features(be),
		.num_queues = num_queues,
		.get_config = blk_get_config,
		.queue_start = blk_queue_start,
		.queue_stop = blk_queue_stop,
		.queue_broken = blk_queue_broken,
	};
}

bool sc_vu_blk_queue_running(const struct sc_vu_blk *d, unsigned idx)
{
	return idx < d->num_queues && __atomic_load_n(&d->live[idx], __ATOMIC_ACQUIRE);
}

struct sc_poller *sc_vu_blk_queue_poller(const struct sc_vu_blk *d, unsigned idx)
{
	/* Relaxed: a report of where the ring is; sc_vu_blk_queue_move may change it at any time. */
	return d->npollers ? __atomic_load_n(&d->pollers[idx % d->npollers], __ATOMIC_RELAXED) : NULL;
}

int sc_vu_blk_queue_move(struct sc_vu_blk *d, unsigned idx, struct sc_poller *to)
{
	struct sc_pollq *pq;
	int ret = 0;

	if (idx >= d->num_queues)
		return -ENOENT;
	if (d->npollers != d->num_queues)
		return -ENOTSUP;
	pthread_mutex_lock(&d->lock);
	pq = d->attached[idx];   /* the queue itself, or its IOTLB wrapper */
	struct sc_poller *from = d->pollers[idx];
	if (from != to && d->live[idx]) {
		/*
		 * Detach returns between two rounds of from; the queue's io_uring,
		 * active and held lists go with it, and to reaps and publishes them
		 * in the order they were popped.
		 */
		sc_poller_detach(from, pq);
		ret = sc_poller_attach(to, pq);
		/* from had the queue a moment ago, so it has room for it again. */
		if (ret < 0 && sc_poller_attach(from, pq) < 0)
			sc_vq_set_broken(&d->queues[idx].vq, -EIO, "lost its sidecore in a failed move");
	}
	if (ret == 0)
		__atomic_store_n(&d->pollers[idx], to, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->lock);
	return ret;
}
