/* SPDX-License-Identifier: MIT */
/*
 * devices: virtio device models on top of vqueue.
 *
 * nullblk: a virtio-blk queue that parses and checks each request and
 * completes it with a status, without doing I/O. For tests and benchmarks:
 * it measures everything but the backend.
 */
#ifndef SC_DEVICES_H
#define SC_DEVICES_H

#include <stdint.h>

#include "devices/virtio_blk.h"
#include "polling/polling.h"
#include "vqueue/vqueue.h"

/* Counters of a block queue, written by its sidecore only. */
struct sc_blk_stats {
	uint64_t reads, writes, flushes, get_ids;
	uint64_t bytes_read, bytes_written;
	uint64_t unsupported;   /* completed with UNSUPP */
	uint64_t bad_requests;  /* malformed or out of range: completed with IOERR */
};

struct sc_nullblk {
	struct sc_vq vq;
	struct sc_pollq pq;       /* attach this to a poller */
	uint64_t capacity;        /* sectors */
	struct sc_blk_stats stats;
	char id[VIRTIO_BLK_ID_BYTES];
};

/*
 * Set up a null block queue on the rings cfg describes, capacity in 512-byte
 * sectors. Returns 0 or sc_vq_init's error (the queue is then broken).
 */
int sc_nullblk_init(struct sc_nullblk *d, const struct sc_vq_config *cfg,
		    uint64_t capacity, const char *name);

/*
 * Serve up to budget requests, then publish completions. Returns the
 * number served or the queue's negative errno once it is broken.
 * Sidecore thread only (or any single thread when not attached).
 */
int sc_nullblk_poll(struct sc_nullblk *d, unsigned budget);

#endif
