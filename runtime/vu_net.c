/* SPDX-License-Identifier: MIT */
#include "runtime/vu_net.h"

#include <stdio.h>
#include <string.h>

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

/* The device-specific part of a queue's life; runtime/vu_queues.c does the rest. */
static int net_init(void *dev, unsigned idx, const struct sc_vq_config *cfg)
{
	struct sc_vu_net *d = dev;
	return sc_net_queue_init(&d->queues[idx], &d->dev, idx, cfg, d->names[idx]);
}

static void net_fini(void *dev, unsigned idx)
{
	sc_net_queue_fini(&((struct sc_vu_net *)dev)->queues[idx]);
}

static struct sc_vq *net_vq(void *dev, unsigned idx)
{
	return &((struct sc_vu_net *)dev)->queues[idx].vq;
}

static struct sc_pollq *net_pollq(void *dev, unsigned idx)
{
	return &((struct sc_vu_net *)dev)->queues[idx].pq;
}

static unsigned net_poller_slot(const void *dev, unsigned idx)
{
	const struct sc_vu_net *d = dev;
	/* Pair k on pollers[k % n]; the control queue (idx 2 * pairs) with pair 0. */
	unsigned pair = idx / 2 >= d->dev.max_pairs ? 0 : idx / 2;
	return pair % d->qs.npollers;
}

static const struct sc_vu_queue_ops net_queue_ops = {
	.init = net_init,
	.fini = net_fini,
	.vq = net_vq,
	.pollq = net_pollq,
	.poller_slot = net_poller_slot,
};

static int net_queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	return sc_vu_queues_start(&((struct sc_vu_net *)ctx)->qs, idx, cfg, tc);
}

static uint16_t net_queue_stop(void *ctx, unsigned idx)
{
	return sc_vu_queues_stop(&((struct sc_vu_net *)ctx)->qs, idx);
}

static bool net_queue_broken(void *ctx, unsigned idx)
{
	return sc_vu_queues_broken(&((struct sc_vu_net *)ctx)->qs, idx);
}

void sc_vu_net_init(struct sc_vu_net *d, struct sc_net_port *port, unsigned pairs, const uint8_t *mac, uint16_t mtu,
		    struct sc_poller **pollers, unsigned npollers)
{
	memset(d, 0, sizeof(*d));
	sc_net_dev_init(&d->dev, port, pairs, mac, mtu);
	d->num_queues = 2 * pairs + 1;
	sc_vu_queues_init(&d->qs, &net_queue_ops, d, d->num_queues, pollers, npollers);
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
	sc_vu_queues_fini(&d->qs);
}

bool sc_vu_net_queue_running(const struct sc_vu_net *d, unsigned idx)
{
	return sc_vu_queues_running(&d->qs, idx);
}

struct sc_poller *sc_vu_net_queue_poller(const struct sc_vu_net *d, unsigned idx)
{
	return sc_vu_queues_poller(&d->qs, idx);
}
