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

#include <stdbool.h>
#include <stddef.h>
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

/* ---- virtio-blk on io_uring ---- */

/* Segments of one request's data: QEMU's default seg_max (queue of 128 less header and status). */
#define SC_BLK_SEG_MAX 126

/* The disk behind a virtio-blk device, shared by its queues. */
struct sc_blk_backend {
	int fd;
	uint64_t capacity;       /* 512-byte sectors */
	uint32_t blk_size;       /* logical block size advertised to the guest */
	bool read_only;
	bool direct;             /* O_DIRECT: buffers must then be blk_size aligned */
	bool is_blockdev;
	bool nowait_read, nowait_write;   /* buffered I/O is tried at once (RWF_NOWAIT) until the fs says it cannot */
	bool memory_backed;               /* tmpfs/ramfs: a transfer is a copy, done on the sidecore */
	char serial[VIRTIO_BLK_ID_BYTES];
};

/*
 * Open path (a regular file or a block device) as a disk. Returns 0, or a
 * negative errno with one line in err naming the path and what to do.
 */
int sc_blk_backend_open(struct sc_blk_backend *be, const char *path, bool read_only,
			bool direct, const char *serial, char *err, size_t errlen);
void sc_blk_backend_close(struct sc_blk_backend *be);

/* Feature bits this backend offers (device-specific and ring bits). */
uint64_t sc_blk_features(const struct sc_blk_backend *be);

/* The config space a driver reads, for num_queues queues. */
void sc_blk_config_space(const struct sc_blk_backend *be, uint16_t num_queues,
			 struct virtio_blk_config *cfg);

struct sc_blk_req;

/* One virtqueue of a virtio-blk device, with its own io_uring. */
struct sc_blk_queue {
	struct sc_vq vq;
	struct sc_pollq pq;              /* attach this to a poller */
	struct sc_blk_backend *be;
	void *ring;                      /* struct io_uring (liburing kept out of this header) */
	struct sc_blk_req *reqs;         /* one slot per descriptor head */
	unsigned inflight;               /* submitted to io_uring, not yet completed */
	unsigned unsubmitted;            /* SQEs prepared this round */
	struct sc_blk_stats stats;
	uint64_t io_errors;              /* backend I/O that failed (completed IOERR) */
	uint64_t sync_done;              /* reads/writes completed at once (page cache, RWF_NOWAIT) */
};

/*
 * Set up a queue on the rings cfg describes, over be, with an io_uring of
 * the queue's size. Returns 0, or a negative errno (sc_vq_init's, or
 * io_uring's) with the queue unusable.
 */
int sc_blk_queue_init(struct sc_blk_queue *q, struct sc_blk_backend *be,
		      const struct sc_vq_config *cfg, const char *name);

/*
 * Submit new requests (up to budget) and reap finished ones without
 * blocking; completions are published with one used-ring update. Returns
 * the work done (requests started + completed), or the ring's negative
 * errno once it is broken. Sidecore thread only.
 */
int sc_blk_queue_poll(struct sc_blk_queue *q, unsigned budget);

/*
 * Wait for every in-flight request and complete it to the guest (nothing
 * acknowledged is lost, nothing started is dropped), then free the queue.
 * Call after the queue was detached from its poller.
 */
void sc_blk_queue_fini(struct sc_blk_queue *q);

#endif
