/* SPDX-License-Identifier: MIT */
/*
 * vu_blk: a virtio-blk device (devices/blk.c on io_uring) behind a
 * vhost-user socket. Vring i is served by sidecore pollers[i % npollers].
 */
#ifndef SC_RUNTIME_VU_BLK_H
#define SC_RUNTIME_VU_BLK_H

#include "devices/devices.h"
#include "polling/polling.h"
#include "runtime/vu_queues.h"
#include "runtime/vu_server.h"

struct sc_vu_blk {
	struct sc_blk_backend *be;
	unsigned num_queues;
	struct sc_vu_device_ops ops;        /* pass to sc_vu_server_create with this as ctx */
	struct sc_vu_queues qs;             /* which vrings are live, and on which sidecore */
	struct sc_blk_queue queues[SC_VU_MAX_VRINGS];
	char names[SC_VU_MAX_VRINGS][16];
};

/* Set up d (no I/O yet): num_queues vrings over be, spread over the pollers. */
void sc_vu_blk_init(struct sc_vu_blk *d, struct sc_blk_backend *be, struct sc_poller **pollers,
		    unsigned npollers, unsigned num_queues);

/*
 * Is vring idx being served now? Any thread (the stats socket). While it
 * is, d->queues[idx]'s counters may be read with relaxed atomic loads
 * (sc_vq_stat for the ring's); they count from the ring's last start.
 */
bool sc_vu_blk_queue_running(const struct sc_vu_blk *d, unsigned idx);

/* The sidecore that serves (or would serve) vring idx. Any thread. */
struct sc_poller *sc_vu_blk_queue_poller(const struct sc_vu_blk *d, unsigned idx);

/*
 * Serve vring idx from sidecore to from now on. A running ring is detached
 * from its sidecore (which lets go between two rounds) and attached to to:
 * the requests it holds stay with the queue and the ring is not re-read,
 * so nothing is lost, served twice or reordered. Needs one poller slot per
 * vring (sc_vu_blk_init with npollers == num_queues); writes that slot.
 * Any thread but a sidecore's; waits for a ring start or stop under way.
 * Returns 0, -ENOENT for no such vring, -ENOTSUP if vrings share poller
 * slots, or sc_poller_attach's error (the ring then stays where it was).
 */
int sc_vu_blk_queue_move(struct sc_vu_blk *d, unsigned idx, struct sc_poller *to);

#endif
