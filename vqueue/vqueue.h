/* SPDX-License-Identifier: MIT */
/*
 * vqueue: the device side of a split virtqueue (virtio 1.2 §2.7).
 *
 * The guest is hostile. Every index, descriptor and address read from the
 * ring is copied once into a local, checked, and only then used. Anything
 * that breaks the ring's rules marks the queue broken with a reason; a
 * broken queue stays broken (sc_vq_pop returns the same error) until it is
 * set up again, and nothing else is affected.
 *
 * Threads: after sc_vq_init, a queue is used by exactly one thread at a time
 * (its sidecore). Statistics and sc_vq_broken may be read from any thread.
 *
 * A queue breaks once, on one path (Linux's vq_err): the first break logs
 * one line "sidecore: NAME: queue broken: REASON" to stderr, writes 1 to the
 * config's err_fd (the vring's err eventfd), and counts stats.broken.
 */
#ifndef SC_VQUEUE_H
#define SC_VQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/barrier.h"
#include "common/fetch.h"
#include "guestmem/guestmem.h"
#include "spec/sc_vring.h"

/* Per-queue counters, written only by the queue's sidecore. */
struct sc_vq_stats {
	uint64_t requests;              /* chains popped */
	uint64_t kicks_avoided;         /* new work found while the driver was told not to kick */
	uint64_t notify_enables;        /* times notifications were re-armed (idle) */
	uint64_t interrupts;            /* eventfd writes to call_fd */
	uint64_t interrupts_suppressed; /* batches the driver asked not to be interrupted for */
	uint64_t oversized;             /* valid chains with more segments than iov_max (completed with an error) */
	uint64_t faulted;               /* chains with a data buffer the IOMMU refused (completed with an error) */
	uint64_t broken;                /* 1 once the queue broke (logged and signalled once) */
	uint64_t resubmitted;           /* requests replayed from the inflight region */
};

/* Name/offset table of struct sc_vq_stats: adding a counter is one line. */
struct sc_stat_name {
	const char *name;
	size_t offset;
};
extern const struct sc_stat_name sc_vq_stat_names[];
extern const unsigned sc_vq_stat_count;

/*
 * vhost-user inflight tracking for a split ring (QEMU's vhost-user.rst,
 * "Inflight I/O tracking"). The region lives in a memfd the back end
 * creates and the VMM keeps across back-end restarts; only the back end
 * reads its content, so the layout is ours: a header, then one entry per
 * descriptor head.
 */
struct sc_vq_inflight_desc {
	uint8_t inflight;        /* popped, not yet published as used */
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;        /* pop order, to re-serve in the same order */
};

struct sc_vq_inflight {
	uint64_t features;
	uint16_t version;        /* 0: fresh region */
	uint16_t desc_num;       /* the queue size it was laid out for */
	uint16_t last_batch_head;
	uint16_t used_idx;       /* used->idx when the last batch was cleared */
	struct sc_vq_inflight_desc desc[];
};

/* Bytes of inflight region one queue of size entries needs (64-byte multiple). */
static inline size_t sc_vq_inflight_bytes(uint32_t size)
{
	return (sizeof(struct sc_vq_inflight) + size * sizeof(struct sc_vq_inflight_desc) + 63) & ~(size_t)63;
}

/*
 * Requests in flight per translation epoch (vhost-user IOTLB, viommu/): an
 * invalidation is acknowledged only once every request translated before
 * it was pushed. New pops count in bucket cur (written by the control
 * thread, read by the sidecore); sc_vq_push takes its request out of the
 * bucket it was counted in. Owned by the caller, outlives the queue.
 */
struct sc_vq_epochs {
	uint32_t cur;         /* 0 or 1 */
	uint32_t count[2];    /* popped and not yet pushed, per bucket (atomic) */
};

/* What sc_vq_init needs: the rings as the driver described them. */
struct sc_vq_config {
	uint32_t size;              /* queue size: a power of two, 1..32768 (32 bits, so 65536 cannot wrap to 0) */
	uint64_t desc_addr;         /* guest addresses (GPA, or IOVA behind a vIOMMU) */
	uint64_t avail_addr;
	uint64_t used_addr;
	uint64_t features;          /* negotiated feature bits (1ull << SC_VIRTIO_F_*) */
	uint16_t last_avail;        /* where to resume (vhost-user SET_VRING_BASE); 0 on a fresh ring */
	struct sc_xlate xlate;      /* how guest addresses reach host memory */
	int call_fd;                /* eventfd that interrupts the driver, or -1 */
	int kick_fd;                /* eventfd the driver kicks, or -1 (read by the poller) */
	/*
	 * eventfd written once when the queue breaks (vhost-user's vring err
	 * fd), or -1. Set it explicitly: 0 is a valid fd (stdin).
	 */
	int err_fd;
	/* For the broken-queue log line, e.g. "/tmp/disk0.sock vring 1"; must outlive the queue; NULL allowed. */
	const char *name;
	/*
	 * Optional inflight region for this queue (sc_vq_inflight_bytes(size)
	 * bytes). If it records requests a previous back end popped but never
	 * completed, sc_vq_pop returns those first, in their old order, and
	 * last_avail is taken from the region, not from last_avail above.
	 * The region comes from the front end and is checked like guest input:
	 * see sc_vq_init for what breaks the queue.
	 */
	struct sc_vq_inflight *inflight;
	/* Optional: count requests in flight per epoch (see struct sc_vq_epochs); NULL: off. */
	struct sc_vq_epochs *epochs;
};

struct sc_vq {
	/* hot: read on every pop */
	struct sc_vring_desc *desc;
	struct sc_vring_avail *avail;
	struct sc_vring_used *used;
	uint16_t mask;              /* size - 1 */
	uint16_t last_avail;        /* next avail slot to consume */
	uint16_t avail_seen;        /* avail->idx as last loaded */
	uint16_t used_idx;          /* next used slot to fill (shadow of used->idx) */
	uint16_t used_published;    /* used->idx as last stored */
	uint16_t used_signalled;    /* used->idx when the driver was last considered for an interrupt */
	uint32_t size;
	bool event_idx;
	bool indirect;
	bool notify_on;             /* driver has been asked to kick */
	bool broken;                /* written once by sc_vq_set_broken; read with sc_vq_broken from any thread */
	struct sc_xlate xlate;
	int call_fd;
	int kick_fd;
	int broken_err;             /* -errno sc_vq_pop keeps returning once broken */
	struct sc_vq_stats stats;
	/* inflight tracking (all NULL/0 without a region) */
	struct sc_vq_inflight *inflight;
	uint64_t inflight_counter;
	uint16_t *batch;            /* heads pushed since the last flush */
	uint16_t *resubmit;         /* heads to serve again, in pop order */
	uint32_t nresubmit, resubmit_pos;
	/* epoch accounting (NULL without): the bucket each head in flight was counted in */
	struct sc_vq_epochs *epochs;
	uint8_t *head_epoch;
	/* cold: only when the queue breaks */
	int err_fd;
	bool break_claimed;         /* the first sc_vq_set_broken took it */
	const char *name;
	char broken_reason[112];
};

/*
 * A popped descriptor chain. The caller provides iov[iov_max]; pop fills the
 * device-readable segments first (out_num of them, out_len bytes) and the
 * device-writable ones after (in_num, in_len bytes), as the driver must
 * order them (§2.7.4.2).
 */
struct sc_vq_elem {
	uint16_t head;
	uint16_t out_num;
	uint16_t in_num;
	uint16_t iov_max;
	uint32_t out_len;
	uint32_t in_len;
	struct iovec *iov;
	/*
	 * The chain is valid but needs more than iov_max segments. Then
	 * out_num = 0 and, if the chain has a device-writable descriptor,
	 * in_num = 1 with iov[0] the last byte of the last one (in_len = 1,
	 * where a status byte goes), else in_num = 0. The device completes it
	 * with an error (virtio-blk: SC_VIRTIO_BLK_S_IOERR).
	 */
	bool oversized;
	/*
	 * The chain is valid but the translate hook (a vIOMMU) refused one of
	 * its data buffers: no mapping, or one without the permission the
	 * descriptor needs (the hook reported the fault, e.g. as a
	 * virtio-iommu fault event). The element has the oversized shape
	 * above (only the status byte, if the chain has one that translates
	 * for writing) and the device completes it with an error; the queue
	 * goes on. A ring, or an indirect table, that faults still breaks it.
	 */
	bool faulted;
};

/*
 * Validate cfg and map the three rings through cfg->xlate; each ring must
 * map completely and contiguously or the queue is not set up. Notifications
 * start enabled (the driver may kick). Returns 0, or -EINVAL for a bad size
 * or misaligned ring, -EFAULT for a ring outside guest memory, -ENOMEM,
 * -EAGAIN if the translate hook reported a miss for a ring (not broken);
 * on failure the queue is left broken with the reason in vq->broken_reason
 * (and reported as sc_vq_set_broken says).
 *
 * With cfg->inflight, a region of version 0 is laid out fresh. A region a
 * previous back end left (version 1) is replayed only if it is consistent
 * with the rings; otherwise init returns -EBADMSG, the queue is broken with
 * a reason, and nothing is replayed. A head is replayed only if it is
 * flagged in flight, the driver offered it in a consumed avail slot the
 * ring still holds (below where the avail ring resumes, used->idx plus the
 * heads in flight, and not more than a queue below avail->idx) and did
 * not offer it again after that, and no used entry at or after that slot
 * holds it (it was not completed). Also refused: another
 * version, a desc_num other than the queue size, a counter of 0 or of
 * 2^63 and above, two heads with the same counter, more heads in flight
 * than the driver has offered since used->idx, a used index or used entry
 * the old back end cannot have written. Each replayed chain is walked with
 * the normal checks when sc_vq_pop returns it. A legitimate request that
 * stayed in flight while the driver offered a whole queue's worth after it
 * is no longer visible in the avail ring and breaks the queue too: we
 * cannot tell it from a lie.
 * Call from the control thread, before the queue is attached to a poller.
 */
int sc_vq_init(struct sc_vq *vq, const struct sc_vq_config *cfg);

/*
 * Translate the three rings again at the given guest addresses (the same
 * ones sc_vq_init took, after a vIOMMU invalidated their translation) and
 * keep the indices. Returns 0; -EAGAIN if the hook reported a miss; or
 * -EFAULT with the queue broken. On failure the old pointers stay (they
 * still point into guest memory, so a stray use cannot hurt the host),
 * but the caller must not touch the rings until this succeeds or the
 * queue is broken. Sidecore thread only.
 */
int sc_vq_remap_rings(struct sc_vq *vq, uint64_t desc_addr, uint64_t avail_addr, uint64_t used_addr);

/* Free what sc_vq_init allocated (the inflight bookkeeping). Control thread. */
void sc_vq_fini(struct sc_vq *vq);

/* Requests recovered from the inflight region that sc_vq_pop has not returned yet. */
static inline uint32_t sc_vq_resubmit_pending(const struct sc_vq *vq)
{
	return vq->nresubmit - vq->resubmit_pos;
}

/*
 * Pop the next available chain into elem. Returns 1 if a chain was popped
 * (elem->oversized says whether it fit in elem->iov_max segments,
 * elem->faulted whether the IOMMU refused a data buffer), 0 if the
 * ring is empty, or a negative errno if the ring is broken:
 *   -ERANGE    avail->idx ran more than the queue size ahead
 *   -EINVAL    a descriptor index is outside the table
 *   -ELOOP     a chain is longer than its table (a loop)
 *   -EMLINK    an indirect table inside an indirect table
 *   -EBADMSG   an indirect table of length 0 or not a multiple of 16, with
 *              NEXT set, or used without SC_VIRTIO_F_INDIRECT_DESC
 *   -EOVERFLOW the chain's lengths overflow 32 bits
 *   -EFAULT    an address outside guest memory (or straddling its end);
 *              through a hook, only a ring or indirect table address
 *   -EPERM     a buffer in memory the device may not access that way (no hook)
 *   -EPROTO    a device-readable descriptor after a device-writable one
 * or -EAGAIN (the queue is not broken, nothing is consumed) if the
 * translate hook returned -EAGAIN for an address of the chain: a vIOMMU
 * miss that the hook reported to whoever fills it; pop the same chain
 * again later.
 * Sidecore thread only.
 */
int sc_vq_pop(struct sc_vq *vq, struct sc_vq_elem *elem);

/*
 * Complete the chain at head with len bytes written. Entries become visible
 * to the driver at the next sc_vq_flush. Sidecore thread only.
 */
void sc_vq_push(struct sc_vq *vq, uint16_t head, uint32_t len);

/*
 * Publish pushed entries with one store of used->idx and interrupt the
 * driver (one eventfd write) if it asked to be, per NO_INTERRUPT or
 * used_event. Returns true if an interrupt was sent. Sidecore thread only.
 */
bool sc_vq_flush(struct sc_vq *vq);

/*
 * Ask the driver to kick on new work (clear NO_NOTIFY, or set avail_event),
 * then re-check the ring to close the race with a driver that published
 * just before seeing the request. Returns true if work is already waiting,
 * in which case the caller must poll again rather than sleep.
 */
bool sc_vq_notify_enable(struct sc_vq *vq);

/* Ask the driver not to kick (we are polling). */
void sc_vq_notify_disable(struct sc_vq *vq);

/* True if the driver has published chains we have not popped. */
bool sc_vq_has_work(struct sc_vq *vq);

/*
 * Chains sc_vq_pop can return without loading avail->idx again: the rest
 * of what the last load of the index found (and any to replay from the
 * inflight region). Reads no guest memory. A device that stops its batch
 * when this reaches 0 and flushes publishes each completion one load of
 * avail->idx sooner (at one request in flight: before the ring is looked
 * at again). Sidecore thread only.
 */
static inline uint32_t sc_vq_pop_cached(const struct sc_vq *vq)
{
	return (uint16_t)(vq->avail_seen - vq->last_avail) + sc_vq_resubmit_pending(vq);
}

/*
 * Mark the queue broken with a reason (printf format); pop returns err from
 * then on. The first call logs, signals err_fd and counts stats.broken;
 * later calls do nothing (the first reason stands). For vqueue itself, for
 * devices that find a request malformed beyond recovery, and for the
 * poller when guest memory faults. Any thread; of concurrent callers the
 * first wins and the others return at once.
 */
void sc_vq_set_broken(struct sc_vq *vq, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * True once the queue is broken. Any thread; the acquire pairs with the
 * release in sc_vq_set_broken, so broken_reason and broken_err are
 * complete when this returns true.
 */
static inline bool sc_vq_broken(const struct sc_vq *vq)
{
	return __atomic_load_n(&vq->broken, __ATOMIC_ACQUIRE);
}

/* Read one counter from another thread (tear-free, no ordering). */
static inline uint64_t sc_vq_stat(const struct sc_vq *vq, size_t offset)
{
	return __atomic_load_n((const uint64_t *)((const char *)&vq->stats + offset),
			       __ATOMIC_RELAXED);
}

/* sc_iov_copy_from for any layout of the segments (out of line). */
size_t sc_iov_copy_from_any(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);

/*
 * Copy len bytes at offset off of the chain's readable part into buf.
 * Returns bytes copied. Inline for the common case, bytes within the first
 * segment: a request header of constant size is then a couple of moves on
 * the hot path, not a call and a loop. Each byte is read once, also when
 * inlined: the compiler barrier after the copy keeps the compiler from
 * reading guest memory again in place of buf.
 */
static inline size_t sc_iov_copy_from(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	/* len != 0: an empty segment's base may be NULL, which memcpy may not be given even for 0 bytes. */
	if (__builtin_expect(n && len && off <= iov[0].iov_len && len <= iov[0].iov_len - off, 1)) {
		SC_FETCH(SC_FETCH_REQ, off, len);   /* fuzz builds: keyed by offset, as the general copy does */
		__builtin_memcpy(buf, (const char *)iov[0].iov_base + off, len);
		sc_barrier();
		return len;
	}
	return sc_iov_copy_from_any(iov, n, off, buf, len);
}
/* Copy len bytes from buf into the segments at offset off. Returns bytes copied. */
size_t sc_iov_copy_to(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len);

#endif
