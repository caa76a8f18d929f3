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
#include "devices/blk_req.h"
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

/* A null disk serves reads, writes, flushes and its ID; each segment may be any size. */
static uint32_t serve(struct sc_nullblk *d, const struct sc_vq_elem *e)
{
	const struct sc_blk_req_limits lim = { .capacity = d->capacity, .features = 1ull << SC_VIRTIO_BLK_F_FLUSH };
	struct sc_blk_parsed p = { .iov = NULL };   /* the data is measured, never moved */
	int ret = sc_blk_req_parse(e, &lim, &p);
	uint32_t written = 1;   /* the status byte */

	if (ret == -ENOBUFS) {
		d->stats.bad_requests++;
		return 0;   /* nowhere to say so: complete with nothing written */
	}
	if (ret < 0) {
		if (p.status == SC_VIRTIO_BLK_S_UNSUPP)
			d->stats.unsupported++;
		else
			d->stats.bad_requests++;
		*p.status_byte = p.status;
		return 1;
	}
	switch (p.type) {
	case SC_VIRTIO_BLK_T_IN:
		/* A null disk leaves the buffer as it is. */
		d->stats.reads++;
		d->stats.bytes_read += p.bytes;
		written += (uint32_t)p.bytes;
		break;
	case SC_VIRTIO_BLK_T_OUT:
		d->stats.writes++;
		d->stats.bytes_written += p.bytes;
		break;
	case SC_VIRTIO_BLK_T_FLUSH:
		d->stats.flushes++;
		break;
	default:   /* GET_ID */
		sc_iov_copy_to(e->iov + e->out_num, e->in_num, 0, d->id, p.bytes);
		d->stats.get_ids++;
		written += (uint32_t)p.bytes;
		break;
	}
	*p.status_byte = SC_VIRTIO_BLK_S_OK;
	return written;
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
