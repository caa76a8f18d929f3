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

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/sc_virtio_blk.h"
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
	char id[SC_VIRTIO_BLK_ID_BYTES];
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
/* Default size_max: bytes per data segment (virtio 1.2 §5.2.4). */
#define SC_BLK_SIZE_MAX (1u << 20)
/*
 * The most a queue moves on its sidecore in one poll round, and the largest
 * piece a transfer is cut into: a 128 KiB copy from tmpfs costs 14-40 us
 * here, so a 4 KiB reader on another queue waits about that, not the
 * whole of a 64 MiB request.
 */
#define SC_BLK_PIECE_BYTES (128u << 10)

/* How WRITE_ZEROES is done; a backend starts at ZERO_RANGE and moves down on EOPNOTSUPP. */
enum sc_blk_zero_mode {
	SC_BLK_ZERO_RANGE,       /* fallocate(FALLOC_FL_ZERO_RANGE) */
	SC_BLK_ZERO_PUNCH,       /* fallocate(FALLOC_FL_PUNCH_HOLE): tmpfs; reads back zeroes */
	SC_BLK_ZERO_WRITE,       /* write zeroes, in pieces like any write */
};

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
	/*
	 * The file mapped MAP_SHARED (tmpfs, ramfs, hugetlbfs, ram:SIZE; not
	 * O_DIRECT): reads and writes are a memcpy on the sidecore, with no
	 * system call; NULL otherwise, or after sc_blk_backend_unmap.
	 */
	uint8_t *map;
	size_t map_len;
	bool iopoll;                      /* polled completions (IORING_SETUP_IOPOLL): sc_blk_backend_set_iopoll */
	/*
	 * O_DIRECT disks register the guest memory table with each queue's
	 * io_uring (fixed buffers): that pins all of it, populated and charged
	 * to this process. Set before the first queue starts to keep to
	 * per-request pinning.
	 */
	bool no_fixed_buffers;
	uint8_t zero_mode;                /* enum sc_blk_zero_mode; lowered by any queue, never raised */
	/*
	 * Request limits offered to the driver (SC_VIRTIO_BLK_F_SIZE_MAX, _SEG_MAX);
	 * a request beyond them completes with IOERR (counted in bad_requests).
	 * sc_blk_backend_open sets SC_BLK_SIZE_MAX and SC_BLK_SEG_MAX; set
	 * others before the first queue starts (seg_max at most SC_BLK_SEG_MAX).
	 */
	uint32_t size_max, seg_max;
	/*
	 * Hold every completion until at least this long after its request was
	 * popped (0: off), in completion order, without blocking the sidecore;
	 * like SPDK's delay bdev. For tests and benchmarks (a slow disk on
	 * demand). Set before the first queue starts.
	 */
	uint64_t delay_ns;
	/*
	 * Optional: the cpus each queue's io_uring workers (io-wq, for I/O that
	 * cannot complete at once) may run on, so they do not preempt a
	 * sidecore on its own cpu (IORING_REGISTER_IOWQ_AFF); NULL leaves them
	 * to the kernel. iowq_aff_size is the mask's size in bytes
	 * (CPU_ALLOC_SIZE). Set before the first queue starts; must outlive it.
	 */
	const cpu_set_t *iowq_aff;
	size_t iowq_aff_size;
	char serial[SC_VIRTIO_BLK_ID_BYTES];
};

/*
 * Open path (a regular file or a block device) as a disk. Returns 0, or a
 * negative errno with one line in err naming the path and what to do.
 */
int sc_blk_backend_open(struct sc_blk_backend *be, const char *path, bool read_only,
			bool direct, const char *serial, char *err, size_t errlen);
void sc_blk_backend_close(struct sc_blk_backend *be);

/* The largest ram:SIZE disk. */
#define SC_BLK_RAM_MAX (1ull << 40)

/*
 * Open a RAM disk of bytes (512 to SC_BLK_RAM_MAX, whole sectors): a memfd
 * sealed against shrinking and growing, served like a file on tmpfs (so
 * mapped). Returns 0, or a negative errno with one line in err.
 */
int sc_blk_backend_open_ram(struct sc_blk_backend *be, uint64_t bytes, const char *serial, char *err, size_t errlen);

/*
 * Serve a memory-backed disk through system calls (preadv2/pwritev2 on the
 * sidecore) instead of its mapping: config `mmap = false`, for comparison.
 * Call before the first queue starts; a no-op for other disks.
 */
void sc_blk_backend_unmap(struct sc_blk_backend *be);
/*
 * Ask for polled completions (IORING_SETUP_IOPOLL) on every queue of be:
 * the sidecore polls the device for them instead of taking an interrupt.
 * Only O_DIRECT reads and writes can be polled (FLUSH, DISCARD and
 * WRITE_ZEROES go through a second, plain ring per queue), and only on a
 * block device with poll queues (its queue/io_poll in sysfs), under a file
 * system that polls; that and one read on a polled ring find out. Returns 0 with be->iopoll set;
 * -EINVAL if be is not O_DIRECT, -EOPNOTSUPP if the file cannot be polled,
 * or io_uring's error, with be->iopoll left false (the disk still works,
 * with interrupt completions) and one line in err naming path and what to
 * do. Call before the first queue starts.
 */
int sc_blk_backend_set_iopoll(struct sc_blk_backend *be, const char *path, char *err, size_t errlen);

/* Feature bits this backend offers (device-specific and ring bits). */
uint64_t sc_blk_features(const struct sc_blk_backend *be);

/* The config space a driver reads, for num_queues queues. */
void sc_blk_config_space(const struct sc_blk_backend *be, uint16_t num_queues,
			 struct sc_virtio_blk_config *cfg);

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
	uint16_t *active;                /* heads of requests with I/O still to do, in pop order */
	unsigned nactive;
	uint16_t *held;                  /* done, held for be->delay_ns: a FIFO of heads */
	unsigned held_first, nheld;
	struct sc_blk_stats stats;
	uint64_t io_errors;              /* backend I/O that failed (completed IOERR) */
	uint64_t sync_done;              /* reads/writes completed on the sidecore alone (page cache, RWF_NOWAIT, tmpfs) */
	uint64_t split;                  /* reads/writes moved in more than one piece */
	uint64_t fixed_ios;              /* pieces moved through io_uring into registered guest memory (READ/WRITE_FIXED) */
	uint64_t turn_debt;              /* TSC cycles its turns overran pq.turn_cycles, not yet paid back */
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
 * blocking; completions are published with one used-ring update. A read or
 * write larger than SC_BLK_PIECE_BYTES is moved one piece per round, and
 * the queue moves at most about SC_BLK_PIECE_BYTES on the sidecore per
 * round, so a huge request cannot stall the other queues of the sidecore.
 * A FLUSH starts only once every write, write-zeroes and discard popped
 * before it has completed. Returns the work done (requests started,
 * pieces moved, requests completed), or the ring's negative errno once it
 * is broken. Sidecore thread only.
 */
int sc_blk_queue_poll(struct sc_blk_queue *q, unsigned budget);

/*
 * Finish every started request, split ones included, and complete it to the
 * guest (after its delay, if the backend has one): nothing acknowledged is
 * lost, nothing started is dropped. Then free the queue. Blocks; call
 * after the queue was detached from its poller.
 */
void sc_blk_queue_fini(struct sc_blk_queue *q);

#endif
