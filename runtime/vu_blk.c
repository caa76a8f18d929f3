/* SPDX-License-Identifier: MIT */
#include "runtime/vu_blk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "viommu/viommu.h"

static int blk_get_config(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct sc_vu_blk *d = ctx;
	struct virtio_blk_config cfg;

	sc_blk_config_space(d->be, (uint16_t)d->num_queues, &cfg);
	/* The window was checked against the 256-byte config space; past our struct it reads zero. */
	memset(buf, 0, len);
	if (offset < sizeof(cfg))
		memcpy(buf, (uint8_t *)&cfg + offset, len < sizeof(cfg) - offset ? len : sizeof(cfg) - offset);
	return 0;
}

static int blk_queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	struct sc_vu_blk *d = ctx;
	struct sc_blk_queue *q = &d->queues[idx];
	int ret;

	if (idx >= d->num_queues || d->live[idx])
		return -EINVAL;
	ret = sc_blk_queue_init(q, d->be, cfg, d->names[idx]);
	if (ret < 0)
		return ret;
	if (sc_vq_resubmit_pending(&q->vq))
		fprintf(stderr, "sidecore: %s: serving again %u requests a previous back end left in flight\n",
			d->names[idx], sc_vq_resubmit_pending(&q->vq));
	d->attached[idx] = tc ? sc_viommu_tc_wrap_iotlb(tc, &q->pq, &q->vq) : &q->pq;
	ret = sc_poller_attach(d->pollers[idx % d->npollers], d->attached[idx]);
	if (ret < 0) {
		sc_blk_queue_fini(q);
		return ret;
	}
	d->live[idx] = true;
	return 0;
}

static uint16_t blk_queue_stop(void *ctx, unsigned idx)
{
	struct sc_vu_blk *d = ctx;
	struct sc_blk_queue *q = &d->queues[idx];

	if (!d->live[idx])
		return 0;
	/* Detach returns only once the sidecore let go; then finish what it started. */
	sc_poller_detach(d->pollers[idx % d->npollers], d->attached[idx]);
	/* Rings whose translation the IOMMU took away: finish the I/O, but write nothing to them. */
	if (d->attached[idx] != &q->pq && ((struct sc_viommu_tc *)d->attached[idx]->ctx)->rings_lost)
		sc_vq_set_broken(&q->vq, -EFAULT, "stopped while its rings' IOTLB translation was invalidated and not restored");
	sc_blk_queue_fini(q);
	d->live[idx] = false;
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
