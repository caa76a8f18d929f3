/* SPDX-License-Identifier: MIT */
#include "runtime/vu_queues.h"

#include <errno.h>
#include <string.h>

#include "viommu/viommu.h"

void sc_vu_queues_init(struct sc_vu_queues *qs, const struct sc_vu_queue_ops *ops, void *dev, unsigned num_queues,
		       struct sc_poller **pollers, unsigned npollers)
{
	memset(qs, 0, sizeof(*qs));
	pthread_mutex_init(&qs->lock, NULL);
	qs->ops = ops;
	qs->dev = dev;
	qs->num_queues = num_queues;
	qs->pollers = pollers;
	qs->npollers = npollers;
}

void sc_vu_queues_fini(struct sc_vu_queues *qs)
{
	pthread_mutex_destroy(&qs->lock);
}

static unsigned slot_of(const struct sc_vu_queues *qs, unsigned idx)
{
	return qs->ops->poller_slot ? qs->ops->poller_slot(qs->dev, idx) : idx % qs->npollers;
}

struct sc_poller *sc_vu_queues_poller(const struct sc_vu_queues *qs, unsigned idx)
{
	/* Relaxed: a report of where the ring is; sc_vu_queues_move may change it at any time. */
	return qs->npollers ? __atomic_load_n(&qs->pollers[slot_of(qs, idx)], __ATOMIC_RELAXED) : NULL;
}

/*
 * The control thread reads and writes the front end's memory too (a ring's
 * set-up reads it; a stopped queue's last completions are written to it),
 * and that memory can fault under it as under the sidecore: init and fini
 * run guarded (sc_fault_guard_run), so a fault costs only this queue.
 */
struct guarded_call {
	struct sc_vu_queues *qs;
	unsigned idx;
	const struct sc_vq_config *cfg;
	int ret;
};

static void init_call(void *arg)
{
	struct guarded_call *c = arg;
	c->ret = c->qs->ops->init(c->qs->dev, c->idx, c->cfg);
}

static void fini_call(void *arg)
{
	struct guarded_call *c = arg;
	c->qs->ops->fini(c->qs->dev, c->idx);
}

/* init under the guard: 0, init's error, or -EFAULT (vq marked broken and finished) on a fault. */
static int init_guarded(struct sc_vu_queues *qs, unsigned idx, const struct sc_vq_config *cfg)
{
	struct guarded_call c = { qs, idx, cfg, 0 };
	char why[112];

	if (sc_fault_guard_run(init_call, &c, why, sizeof(why)) == 0)
		return c.ret;
	/* Only sc_vq_init touches guest memory, before the queue allocates anything of its own. */
	struct sc_vq *vq = qs->ops->vq(qs->dev, idx);
	sc_vq_set_broken(vq, -EFAULT, "%s", why);
	sc_vq_fini(vq);
	return -EFAULT;
}

/*
 * fini under the guard, for a queue the poller has let go of. Through the
 * IOTLB wrapper, the IOMMU may have taken its rings away: then the ring is
 * marked broken first, and nothing is written to them. On a fault the ring
 * is marked broken (so nothing more is written to its memory) and fini
 * runs again to release the rest.
 */
static void fini_guarded(struct sc_vu_queues *qs, unsigned idx)
{
	struct guarded_call c = { qs, idx, NULL, 0 };
	struct sc_vq *vq = qs->ops->vq(qs->dev, idx);
	const struct sc_pollq *attached = qs->attached[idx];
	char why[112];

	if (attached != qs->ops->pollq(qs->dev, idx) && ((const struct sc_viommu_tc *)attached->ctx)->rings_lost)
		sc_vq_set_broken(vq, -EFAULT, "stopped while its rings' IOTLB translation was invalidated and not restored");
	if (sc_fault_guard_run(fini_call, &c, why, sizeof(why)) < 0) {
		sc_vq_set_broken(vq, -EFAULT, "%s", why);
		fini_call(&c);
	}
}

int sc_vu_queues_start(struct sc_vu_queues *qs, unsigned idx, const struct sc_vq_config *cfg,
		       struct sc_viommu_tc *tc)
{
	int ret;

	if (idx >= qs->num_queues || qs->live[idx])
		return -EINVAL;
	pthread_mutex_lock(&qs->lock);
	ret = init_guarded(qs, idx, cfg);
	if (ret < 0)
		goto out;
	if (qs->ops->started)
		qs->ops->started(qs->dev, idx, cfg);
	struct sc_pollq *pq = qs->ops->pollq(qs->dev, idx);
	qs->attached[idx] = tc ? sc_viommu_tc_wrap_iotlb(tc, pq, qs->ops->vq(qs->dev, idx)) : pq;
	ret = sc_poller_attach(qs->pollers[slot_of(qs, idx)], qs->attached[idx]);
	if (ret < 0) {
		/* Never attached: no sidecore touched it, and nothing was popped to complete. */
		qs->ops->fini(qs->dev, idx);
		goto out;
	}
	/* Release: pairs with the acquire in sc_vu_queues_running (the stats thread reads the queue's counters after it). */
	__atomic_store_n(&qs->live[idx], true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&qs->lock);
	return ret;
}

uint16_t sc_vu_queues_stop(struct sc_vu_queues *qs, unsigned idx)
{
	if (idx >= qs->num_queues || !qs->live[idx])
		return 0;
	pthread_mutex_lock(&qs->lock);
	/* Detach returns only once the sidecore let go; only then is the queue finished and its memory released. */
	sc_poller_detach(qs->pollers[slot_of(qs, idx)], qs->attached[idx]);
	fini_guarded(qs, idx);
	__atomic_store_n(&qs->live[idx], false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&qs->lock);
	return qs->ops->vq(qs->dev, idx)->last_avail;
}

bool sc_vu_queues_broken(const struct sc_vu_queues *qs, unsigned idx)
{
	return idx < qs->num_queues && qs->live[idx] && sc_vq_broken(qs->ops->vq(qs->dev, idx));
}

bool sc_vu_queues_running(const struct sc_vu_queues *qs, unsigned idx)
{
	return idx < qs->num_queues && __atomic_load_n(&qs->live[idx], __ATOMIC_ACQUIRE);
}

int sc_vu_queues_move(struct sc_vu_queues *qs, unsigned idx, struct sc_poller *to)
{
	int ret = 0;

	if (idx >= qs->num_queues)
		return -ENOENT;
	if (qs->ops->poller_slot || qs->npollers != qs->num_queues)
		return -ENOTSUP;
	pthread_mutex_lock(&qs->lock);
	struct sc_pollq *pq = qs->attached[idx];
	struct sc_poller *from = qs->pollers[idx];
	if (from != to && qs->live[idx]) {
		/*
		 * Detach returns between two rounds of from; the queue's
		 * in-flight state goes with it, and to reaps and publishes it
		 * in the order it was popped.
		 */
		sc_poller_detach(from, pq);
		ret = sc_poller_attach(to, pq);
		/* from had the queue a moment ago, so it has room for it again. */
		if (ret < 0 && sc_poller_attach(from, pq) < 0)
			sc_vq_set_broken(qs->ops->vq(qs->dev, idx), -EIO, "lost its sidecore in a failed move");
	}
	if (ret == 0)
		__atomic_store_n(&qs->pollers[idx], to, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&qs->lock);
	return ret;
}
