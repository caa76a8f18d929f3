/* SPDX-License-Identifier: MIT */
#include "runtime/vu_blk.h"

#include <stdio.h>
#include <string.h>

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

/* The device-specific part of a queue's life; runtime/vu_queues.c does the rest. */
static int blk_init(void *dev, unsigned idx, const struct sc_vq_config *cfg)
{
	struct sc_vu_blk *d = dev;
	return sc_blk_queue_init(&d->queues[idx], d->be, cfg, d->names[idx]);
}

static void blk_fini(void *dev, unsigned idx)
{
	sc_blk_queue_fini(&((struct sc_vu_blk *)dev)->queues[idx]);
}

static struct sc_vq *blk_vq(void *dev, unsigned idx)
{
	return &((struct sc_vu_blk *)dev)->queues[idx].vq;
}

static struct sc_pollq *blk_pollq(void *dev, unsigned idx)
{
	return &((struct sc_vu_blk *)dev)->queues[idx].pq;
}

static void blk_started(void *dev, unsigned idx, const struct sc_vq_config *cfg)
{
	struct sc_vu_blk *d = dev;
	uint32_t pending = sc_vq_resubmit_pending(&d->queues[idx].vq);

	if (pending)
		fprintf(stderr, "sidecore: %s: serving again %u requests a previous back end left in flight\n",
			cfg->name ? cfg->name : d->names[idx], pending);
}

static const struct sc_vu_queue_ops blk_queue_ops = {
	.init = blk_init,
	.fini = blk_fini,
	.vq = blk_vq,
	.pollq = blk_pollq,
	.started = blk_started,
};

static int blk_queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	return sc_vu_queues_start(&((struct sc_vu_blk *)ctx)->qs, idx, cfg, tc);
}

static uint16_t blk_queue_stop(void *ctx, unsigned idx)
{
	return sc_vu_queues_stop(&((struct sc_vu_blk *)ctx)->qs, idx);
}

static bool blk_queue_broken(void *ctx, unsigned idx)
{
	return sc_vu_queues_broken(&((struct sc_vu_blk *)ctx)->qs, idx);
}

void sc_vu_blk_init(struct sc_vu_blk *d, struct sc_blk_backend *be, struct sc_poller **pollers,
		    unsigned npollers, unsigned num_queues)
{
	memset(d, 0, sizeof(*d));
	d->be = be;
	d->num_queues = num_queues;
	sc_vu_queues_init(&d->qs, &blk_queue_ops, d, num_queues, pollers, npollers);
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
	return sc_vu_queues_running(&d->qs, idx);
}

struct sc_poller *sc_vu_blk_queue_poller(const struct sc_vu_blk *d, unsigned idx)
{
	return sc_vu_queues_poller(&d->qs, idx);
}

int sc_vu_blk_queue_move(struct sc_vu_blk *d, unsigned idx, struct sc_poller *to)
{
	return sc_vu_queues_move(&d->qs, idx, to);
}
