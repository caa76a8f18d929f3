/* SPDX-License-Identifier: MIT */
/*
 * vu_queues: the per-vring life cycle every vhost-user device shares.
 * Starting a vring sets its queue up on the front end's rings under a
 * fault guard, attaches it (or its IOTLB wrapper) to its sidecore and
 * marks it live; stopping it detaches it (the sidecore lets go first),
 * finishes it under a fault guard and marks it stopped. A device (vu_blk,
 * vu_net) embeds a struct sc_vu_queues and gives it a struct
 * sc_vu_queue_ops for what differs: how a queue is set up and finished,
 * where its ring and pollq are, which sidecore serves it.
 */
#ifndef SC_RUNTIME_VU_QUEUES_H
#define SC_RUNTIME_VU_QUEUES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "polling/polling.h"
#include "runtime/vu_server.h"

/* What a device class gives the queue layer; dev is the ctx given to sc_vu_queues_init. */
struct sc_vu_queue_ops {
	/*
	 * Set queue idx up on the rings cfg describes. 0 or -errno (the queue
	 * is then unusable and not finished). It reads the front end's memory,
	 * so it runs under a fault guard (sc_fault_guard_run): on a fault the
	 * ring is marked broken and sc_vq_fini'd, so only sc_vq_init, before
	 * the queue allocates anything else, may touch that memory.
	 */
	int (*init)(void *dev, unsigned idx, const struct sc_vq_config *cfg);
	/*
	 * Finish queue idx, which no sidecore touches any more: complete what
	 * it holds and free it. Under a fault guard; if the front end's memory
	 * faults, it runs again with the ring broken (so it writes nothing
	 * more to that memory), and must then release the rest.
	 */
	void (*fini)(void *dev, unsigned idx);
	/* Queue idx's ring, and the pollq the sidecore runs (its poll callback does the device's work). */
	struct sc_vq *(*vq)(void *dev, unsigned idx);
	struct sc_pollq *(*pollq)(void *dev, unsigned idx);
	/* The pollers[] slot that serves vring idx (< npollers); NULL means idx % npollers. */
	unsigned (*poller_slot)(const void *dev, unsigned idx);
	/* After a successful init, before the attach, on the control thread (may print). NULL: nothing. */
	void (*started)(void *dev, unsigned idx, const struct sc_vq_config *cfg);
};

struct sc_vu_queues {
	const struct sc_vu_queue_ops *ops;
	void *dev;
	struct sc_poller **pollers;
	unsigned npollers;
	unsigned num_queues;
	bool live[SC_VU_MAX_VRINGS];
	struct sc_pollq *attached[SC_VU_MAX_VRINGS];   /* the queue's pollq, or its IOTLB wrapper */
	pthread_mutex_t lock;      /* orders start and stop (control thread) with sc_vu_queues_move */
};

/* Set qs up for num_queues vrings (≤ SC_VU_MAX_VRINGS) of dev, served by pollers[0..npollers). None live. */
void sc_vu_queues_init(struct sc_vu_queues *qs, const struct sc_vu_queue_ops *ops, void *dev, unsigned num_queues,
		       struct sc_poller **pollers, unsigned npollers);

/* Free what sc_vu_queues_init set up; no vring may be live. */
void sc_vu_queues_fini(struct sc_vu_queues *qs);

/*
 * The device's sc_vu_device_ops queue_start, queue_stop and queue_broken
 * (control thread). start: 0, -EINVAL for no such or a live vring, -EFAULT
 * if the front end's memory faulted during init, init's or
 * sc_poller_attach's error (the queue then finished). stop: where the ring
 * is (its last_avail); 0 for a vring not live.
 */
int sc_vu_queues_start(struct sc_vu_queues *qs, unsigned idx, const struct sc_vq_config *cfg,
		       struct sc_viommu_tc *tc);
uint16_t sc_vu_queues_stop(struct sc_vu_queues *qs, unsigned idx);
bool sc_vu_queues_broken(const struct sc_vu_queues *qs, unsigned idx);

/*
 * Is vring idx being served now? Any thread. Acquire: once it says true,
 * what the queue's init wrote (its counters) may be read.
 */
bool sc_vu_queues_running(const struct sc_vu_queues *qs, unsigned idx);

/* The sidecore that serves (or would serve) vring idx; NULL without pollers. Any thread. */
struct sc_poller *sc_vu_queues_poller(const struct sc_vu_queues *qs, unsigned idx);

/*
 * Serve vring idx from to from now on (see sc_vu_blk_queue_move). Needs
 * one poller slot per vring (npollers == num_queues, no poller_slot op).
 * Any thread but a sidecore's. 0, -ENOENT for no such vring, -ENOTSUP if
 * vrings share slots, or sc_poller_attach's error (the ring stays where it
 * was).
 */
int sc_vu_queues_move(struct sc_vu_queues *qs, unsigned idx, struct sc_poller *to);

#endif
