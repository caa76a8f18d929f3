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

#define NULLBLK_IOV_MAX 64   /* a request of up to 62 data segments, like seg_max 62 */

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

static const struct sc_pollq_ops nullblk_pollq_ops = {
	.poll = pq_poll,
	.notify_enable = pq_notify_enable,
	.notify_disable = pq_notify_disable,
};

int sc_nullblk_init(struct sc_nullblk *d, const struct sc_vq_config *cfg,
		    uint64_t capacity, const char *name)
{
	static const char id[] = "sidecore-null";

	memset(d, 0, sizeof(*d));
	d->capacity = capacity;
	memcpy(d->id, id, sizeof(id));
	d->pq = (struct sc_pollq){ .ops = &nullblk_pollq_ops, .ctx = d,
				   .kick_fd = cfg->kick_fd, .name = name };
	return sc_vq_init(&d->vq, cfg);
}

/* Is [sector, sector + bytes/512) a whole number of sectors inside the disk? */
static bool in_range(const struct sc_nullblk *d, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / VIRTIO_BLK_SECTOR_SIZE;
	return bytes % VIRTIO_BLK_SECTOR_SIZE == 0 && sector <= d->capacity &&
	       n <= d->capacity - sector;
}

/* Serve one request; returns the bytes written into the chain (the used length). */
static uint32_t serve(struct sc_nullblk *d, const struct sc_vq_elem *e)
{
	const struct iovec *in = e->iov + e->out_num;
	struct virtio_blk_outhdr h;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint32_t written = 1;

	/* A request is a 16-byte header the device reads and a status byte it writes, at least. */
	if (e->in_len < 1 || e->out_len < sizeof(h)) {
		d->stats.bad_requests++;
		if (e->in_len < 1)
			return 0;
		status = VIRTIO_BLK_S_IOERR;
		goto done;
	}

	/*
	 * Copy, then check, then use: the guest may rewrite its header while we
	 * look. The barrier stops the compiler from re-reading guest memory in
	 * place of the local copy (a memcpy alone would allow it).
	 */
	if (sc_likely(e->iov[0].iov_len >= sizeof(h)))
		memcpy(&h, e->iov[0].iov_base, sizeof(h));
	else
		sc_iov_copy_from(e->iov, e->out_num, 0, &h, sizeof(h));
	sc_barrier();

	uint32_t data_in = e->in_len - 1, data_out = e->out_len - (uint32_t)sizeof(h);
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		if (!in_range(d, h.sector, data_in))
			goto bad;
		d->stats.reads++;
		d->stats.bytes_read += data_in;
		written += data_in;   /* a null disk "reads" whatever the buffer held */
		break;
	case VIRTIO_BLK_T_OUT:
		if (!in_range(d, h.sector, data_out))
			goto bad;
		d->stats.writes++;
		d->stats.bytes_written += data_out;
		break;
	case VIRTIO_BLK_T_FLUSH:
		d->stats.flushes++;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint32_t n = data_in < VIRTIO_BLK_ID_BYTES ? data_in : VIRTIO_BLK_ID_BYTES;
		sc_iov_copy_to(in, e->in_num, 0, d->id, n);
		written += n;
		d->stats.get_ids++;
		break;
	}
	default:
		d->stats.unsupported++;
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	goto done;
bad:
	d->stats.bad_requests++;
	status = VIRTIO_BLK_S_IOERR;
	written = 1;
done:
	/* The status byte is the last byte of the device-writable part. */
	const struct iovec *last = &in[e->in_num - 1];
	if (sc_likely(last->iov_len >= 1))
		((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
	else
		sc_iov_copy_to(in, e->in_num, e->in_len - 1, &status, 1);
	return written;
}

int sc_nullblk_poll(struct sc_nullblk *d, unsigned budget)
{
	struct iovec iov[NULLBLK_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = NULLBLK_IOV_MAX };
	unsigned served = 0;
	int ret = 0;

	while (served < budget) {
		ret = sc_vq_pop(&d->vq, &e);
		if (ret <= 0)
			break;
		sc_vq_push(&d->vq, e.head, serve(d, &e));
		served++;
	}
	if (served)
		sc_vq_flush(&d->vq);
	return ret < 0 ? ret : (int)served;
}
