/* SPDX-License-Identifier: MIT */
/*
 * vu_blk: a virtio-blk device (devices/blk.c on io_uring) behind a
 * vhost-user socket. Vring i is served by sidecore pollers[i % npollers].
 */
#ifndef SC_RUNTIME_VU_BLK_H
#define SC_RUNTIME_VU_BLK_H

#include "devices/devices.h"
#include "polling/polling.h"
#include "runtime/vu_server.h"

struct sc_vu_blk {
	struct sc_blk_backend *be;
	struct sc_poller **pollers;
	unsigned npollers;
	unsigned num_queues;
	struct sc_vu_device_ops ops;        /* pass to sc_vu_server_create with this as ctx */
	bool live[SC_VU_MAX_VRINGS];
	struct sc_pollq *attached[SC_VU_MAX_VRINGS];   /* the queue's pollq, or its IOMMU wrapper */
	struct sc_blk_queue queues[SC_VU_MAX_VRINGS];
	char names[SC_VU_MAX_VRINGS][16];
};

/* Set up d (no I/O yet): num_queues vrings over be, spread over the pollers. */
void sc_vu_blk_init(struct sc_vu_blk *d, struct sc_blk_backend *be, struct sc_poller **pollers,
		    unsigned npollers, unsigned num_queues);

#endif
