/* SPDX-License-Identifier: MIT */
#include "runtime/vu_net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "viommu/viommu.h"

static int net_get_config(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct sc_vu_net *d = ctx;
	struct sc_virtio_net_config cfg;

	sc_net_config_space(&d->dev, &cfg);
	/* The window was checked against the 256-byte config space; past our struct it reads zero. */
	memset(buf, 0, len);
	if (offset < sizeof(cfg))
		memcpy(buf, (uint8_t *)&cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
	return 0;
}

static struct sc_poller *poller_of(const struct sc_vu_net *d, unsigned idx)
{
	/* Pair k on pollers[k % n]; the control queue (idx 2 * pairs) with pair 0. */
	unsigned pair = idx / 2 >= d->dev.max_pairs ? 0 : idx / 2;
	return d->pollers[pair % d->npollers];
}

/* The control thread touches the front end's memory in init and fini: guarded, as vu_blk does. */
struct queue_init_args {
	struct sc_vu_net *d;
	unsigned idx;
	const struct sc_vq_config *cfg;
	int ret;
};

static void queue_init_guarded(void *arg)
{
	struct queue_init_args *a = arg;
	a->ret = sc_net_queue_init(&a->d->queues[a->idx], &a->d->dev, a->idx, a->cfg, a->d->names[a->idx]);
}

static void queue_fini_guarded(void *q)
{
	sc_net_queue_fini(q);
}

static int net_queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	struct sc_vu_net *d = ctx;
	struct sc_net_queue *q = &d->queues[idx];
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
	d->attached[idx] = tc ? sc_viommu_tc_wrap_iotlb(tc, &q->pq, &q->vq) : &q->pq;
	ret = sc_poller_attach(poller_of(d, idx), d->attached[idx]);
	if (ret < 0) {
		sc_net_queue_fini(q);
		goto out;
	}
	__atomic_store_n(&d->live[idx], true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static uint16_t net_queue_stop(void *ctx, unsigned idx)
{
	struct sc_vu_net *d = ctx;
	struct sc_net_queue *q = &d->queues[idx];

	if (idx >= d->num_queues || !d->live[idx])
		return 0;
	pthread_mutex_lock(&d->lock);
	sc_poller_detach(poller_of(d, idx), d->attached[idx]);
	sc_vu_queue_fini_guarded(&q->vq, d->attached[idx], &q->pq, queue_fini_guarded, q);
	__atomic_store_n(&d->live[idx], false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
	return q->vq.last_avail;
}

static bool net_queue_broken(void *ctx, unsigned idx)
{
	struct sc_vu_net *d = ctx;
	return idx < d->num_queues && d->live[idx] && sc_vq_broken(&d->queues[idx].vq);
}

void sc_vu_net_init(struct sc_vu_net *d, struct sc_net_port *port, unsigned pairs, const uint8_t *mac, uint16_t mtu,
		    struct sc_poller **pollers, unsigned npollers)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	sc_net_dev_init(&d->dev, port, pairs, mac, mtu);
	d->pollers = pollers;
	d->npollers = npollers;
	d->num_queues = 2 * pairs + 1;
	for (unsigned i = 0; i < d->num_queues && i < SC_VU_MAX_VRINGS; i++) {
		if (i == 2 * pairs)
			snprintf(d->names[i], sizeof(d->names[i]), "net-ctrl");
		else
			snprintf(d->names[i], sizeof(d->names[i]), "net-%s%u", i % 2 ? "tx" : "rx", i / 2);
	}
	d->ops = (struct sc_vu_device_ops){
		.features = d->dev.features,
		.num_queues = d->num_queues,
		.queue_num = pairs,
		.get_config = net_get_config,
		.queue_start = net_queue_start,
		.queue_stop = net_queue_stop,
		.queue_broken = net_queue_broken,
	};
}

void sc_vu_net_fini(struct sc_vu_net *d)
{
	pthread_mutex_destroy(&d->lock);
}

bool sc_vu_net_queue_running(const struct sc_vu_net *d, unsigned idx)
{
	return idx < d->num_queues && __atomic_load_n(&d->live[idx], __ATOMIC_ACQUIRE);
}

struct sc_poller *sc_vu_net_queue_poller(const struct sc_vu_net *d, unsigned idx)
{
	return d->npollers ? poller_of(d, idx) : NULL;
}
