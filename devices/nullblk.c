/* SPDX-License-Identifier: MIT */
/*
 * nullblk: a virtio-blk queue (virtio 1.2 §5.2.6) that checks and completes
 * every request without I/O. The request header is copied out of the chain
 * once and only the copy is used.
 */
#include <errno.h>
#include <string.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "devices/devices.h"

/* Segments one request may have (header, data, status); a longer chain completes with IOERR. */
#define NULLBLK_IOV_MAX 64

static int pq_poll(struct sc_pollq *q, unsigned budget)
{
	return sc_nullblk_poll(q->ctx, budget);
}

static bool pq_notify_enable(struct sc_pollq *q)
{
	return sc_vq_notify_enable(&((struct sc_nullblk *)q->ctx)->vq);
}

static void pq_notify_disable(struct sc_pollq *q)
{
	sc_vq_notify_disable(&((struct sc_nullblk *)q->ctx)->vq);
}

static void pq_fault(struct sc_pollq *q, const char *reason)
{
	sc_vq_set_broken(&((struct sc_nullblk *)q->ctx)->vq, -EFAULT, "%s", reason);
}

static const struct sc_pollq_ops nullblk_pollq_ops = {
	.poll = pq_poll,
	.notify_enable = pq_notify_enable,
	.notify_disable = pq_notify_disable,
	.fault = pq_fault,
};

int sc_nullblk_init(struct sc_nullblk *d, const struct sc_vq_config *cfg,
		    uint64_t capacity, const char *name)
{
	static const char id[] = "sidecore-null";
	_Static_assert(sizeof(id) <= SC_VIRTIO_BLK_ID_BYTES, "id fits the GET_ID reply");

	memset(&d->stats, 0, sizeof(d->stats));
	d->capacity = capacity;
	/* §5.2.6: the id is zero-padded to 20 bytes, with no NUL if it fills them. */
	memset(d->id, 0, sizeof(d->id));
	memcpy(d->id, id, sizeof(id) - 1);
	d->pq = (struct sc_pollq){
		.ops = &nullblk_pollq_ops,
		.ctx = d,
		.kick_fd = cfg->kick_fd,
		.name = name,
	};
	return sc_vq_init(&d->vq, cfg);
}

/* Is [sector, sector + bytes / 512) whole sectors inside the disk? Written so nothing can overflow. */
static bool in_range(const struct sc_nullblk *d, uint64_t sector, uint32_t bytes)
{
	uint64_t n = bytes / SC_VIRTIO_BLK_SECTOR_SIZE;

	return bytes % SC_VIRTIO_BLK_SECTOR_SIZE == 0 && sector <= d->capacity &&
	       n <= d->capacity - sector;
}

/* §5.2.6: the status is the last byte of the device-writable part (in_len ≥ 1). */
static void put_status(const struct sc_vq_elem *e, uint8_t status)
{
	const struct iovec *last = &e->iov[e->out_num + e->in_num - 1];

	if (sc_likely(last->iov_len >= 1))
		((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
	else
		sc_iov_copy_to(e->iov + e->out_num, e->in_num, e->in_len - 1, &status, 1);
}

/* Serve one request; returns the bytes written into the chain (the used length). */
static uint32_t serve(struct sc_nullblk *d, const struct sc_vq_elem *e)
{
	struct sc_virtio_blk_outhdr h;
	uint8_t status = SC_VIRTIO_BLK_S_OK;
	uint32_t written = 1;   /* the status byte */

	/*
	 * Every request has a 16-byte header the device reads and a status byte
	 * it writes. An oversized chain (more segments than NULLBLK_IOV_MAX)
	 * arrives as out_len 0 and at most the status byte: IOERR here too.
	 */
	if (e->out_len < sizeof(h) || e->in_len < 1) {
		d->stats.bad_requests++;
		if (e->in_len < 1)
			return 0;   /* nowhere to say so: complete with nothing written */
		put_status(e, SC_VIRTIO_BLK_S_IOERR);
		return 1;
	}

	/*
	 * Copy, then check, then use: the guest may rewrite its header while we
	 * look, so only the local copy is read from here on. The compiler
	 * barrier keeps an inlined copy (LTO) from being replaced by re-reads of
	 * guest memory.
	 */
	sc_iov_copy_from(e->iov, e->out_num, 0, &h, sizeof(h));
	sc_barrier();

	uint32_t data_in = e->in_len - 1;                    /* writable part less the status */
	uint32_t data_out = e->out_len - (uint32_t)sizeof(h); /* readable part after the header */

	switch (h.type) {
	case SC_VIRTIO_BLK_T_IN:
		if (!in_range(d, h.sector, data_in))
			goto bad;
		/* A null disk leaves the buffer as it is. */
		d->stats.reads++;
		d->stats.bytes_read += data_in;
		written += data_in;
		break;
	case SC_VIRTIO_BLK_T_OUT:
		if (!in_range(d, h.sector, data_out))
			goto bad;
		d->stats.writes++;
		d->stats.bytes_written += data_out;
		break;
	case SC_VIRTIO_BLK_T_FLUSH:
		d->stats.flushes++;
		break;
	case SC_VIRTIO_BLK_T_GET_ID: {
		uint32_t n = data_in < SC_VIRTIO_BLK_ID_BYTES ? data_in : SC_VIRTIO_BLK_ID_BYTES;
		sc_iov_copy_to(e->iov + e->out_num, e->in_num, 0, d->id, n);
		d->stats.get_ids++;
		written += n;
		break;
	}
	default:
		d->stats.unsupported++;
		status = SC_VIRTIO_BLK_S_UNSUPP;
		break;
	}
	put_status(e, status);
	return written;

bad:
	d->stats.bad_requests++;
	put_status(e, SC_VIRTIO_BLK_S_IOERR);
	return 1;
}

int sc_nullblk_poll(struct sc_nullblk *d, unsigned budget)
{
	struct iovec iov[NULLBLK_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = NULLBLK_IOV_MAX };
	unsigned served = 0;
	int ret = 0;

	while (served < budget) {
		/*
		 * Publish what the last avail->idx load found before loading it
		 * again: one request in flight completes without waiting for a
		 * look at an empty ring (the next round looks).
		 */
		if (served && !sc_vq_pop_cached(&d->vq))
			break;
		ret = sc_vq_pop(&d->vq, &e);
		if (ret <= 0)
			break;
		sc_vq_push(&d->vq, e.head, serve(d, &e));
		served++;
	}
	/* One used->idx store (and at most one interrupt) per batch, also before reporting a break. */
	if (served)
		sc_vq_flush(&d->vq);
	return ret < 0 ? ret : (int)served;
}
