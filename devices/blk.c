/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2 §5.2) on io_uring. Each queue has its own ring;
 * its sidecore submits a round's requests with one io_uring_submit and reaps
 * completions without blocking, then publishes them with one used-ring
 * update.
 *
 * Durability: FLUSH is an fdatasync with IOSQE_IO_DRAIN, so it starts only
 * after every request submitted before it has completed; writes the guest
 * saw complete before it sent the FLUSH are therefore durable when the FLUSH
 * completes.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "devices/devices.h"

#define BLK_IOV_MAX (SC_BLK_SEG_MAX + 2)          /* data segments, header, status */
#define BLK_MAX_DISCARD_SECTORS (1u << 22)        /* 2 GiB per DISCARD / WRITE_ZEROES */

/* A request from pop to completion, in the slot of its head descriptor. */
struct sc_blk_req {
	bool busy;
	uint16_t head;
	uint8_t *status;          /* the guest's status byte */
	uint32_t used_len;        /* bytes written to the guest if it succeeds */
	int64_t expect;           /* io_uring result that means success */
	unsigned niov;
	struct iovec iov[BLK_IOV_MAX];   /* must live until the I/O completes */
};

/* ---- backend ---- */

int sc_blk_backend_open(struct sc_blk_backend *be, const char *path, bool read_only,
			bool direct, const char *serial, char *err, size_t errlen)
{
	struct stat st;
	uint64_t bytes;
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);

	memset(be, 0, sizeof(*be));
	be->fd = open(path, flags);
	if (be->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open%s: %s%s", path, read_only ? " read-only" : "",
			 strerror(e), e == EINVAL && direct ? " (this file system may not support O_DIRECT)" : "");
		return -e;
	}
	if (fstat(be->fd, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(e));
		close(be->fd);
		return -e;
	}
	be->blk_size = 512;
	if (S_ISBLK(st.st_mode)) {
		int ssz = 512;
		if (ioctl(be->fd, BLKGETSIZE64, &bytes) < 0) {
			int e = errno;
			snprintf(err, errlen, "%s: BLKGETSIZE64: %s", path, strerror(e));
			close(be->fd);
			return -e;
		}
		if (ioctl(be->fd, BLKSSZGET, &ssz) == 0 && ssz >= 512)
			be->blk_size = (uint32_t)ssz;
		be->is_blockdev = true;
	} else if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else {
		snprintf(err, errlen, "%s: not a regular file or a block device", path);
		close(be->fd);
		return -EINVAL;
	}
	be->capacity = bytes / VIRTIO_BLK_SECTOR_SIZE;
	be->read_only = read_only;
	be->direct = direct;
	/*
	 * Buffered files may manage nonblocking I/O; the first -EOPNOTSUPP turns
	 * a direction off for good (tmpfs cannot at all; ext4 writes cannot on
	 * this kernel). A zero-length probe is not trustworthy for writes.
	 */
	be->nowait_read = !direct;
	be->nowait_write = !direct && !read_only;
	/*
	 * On tmpfs and ramfs a read or write is a copy to or from the page
	 * cache: it never waits for a device, so the sidecore does it itself.
	 * Through io_uring it would go to an io-wq worker (these file systems
	 * cannot do nonblocking I/O) that has to preempt the sidecore.
	 */
	struct statfs sfs;
	be->memory_backed = !direct && fstatfs(be->fd, &sfs) == 0 &&
			    (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
	strncpy(be->serial, serial ? serial : "sidecore", sizeof(be->serial));   /* not NUL-terminated at 20 */
	return 0;
}

void sc_blk_backend_close(struct sc_blk_backend *be)
{
	if (be->fd >= 0)
		close(be->fd);
	be->fd = -1;
}

uint64_t sc_blk_features(const struct sc_blk_backend *be)
{
	uint64_t f = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) |
		     (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
		     (1ull << VIRTIO_BLK_F_MQ);
	if (be->read_only)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

void sc_blk_config_space(const struct sc_blk_backend *be, uint16_t num_queues,
			 struct virtio_blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = be->capacity;
	cfg->seg_max = SC_BLK_SEG_MAX;
	cfg->blk_size = be->blk_size;
	cfg->num_queues = num_queues;
	cfg->max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	cfg->max_discard_seg = 1;
	cfg->discard_sector_alignment = be->blk_size / VIRTIO_BLK_SECTOR_SIZE;
	cfg->max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	cfg->max_write_zeroes_seg = 1;
}

/* ---- queue ---- */

static struct io_uring *ring_of(struct sc_blk_queue *q) { return q->ring; }

static int pq_poll(struct sc_pollq *pq, unsigned budget)
{
	return sc_blk_queue_poll(pq->ctx, budget);
}

static bool pq_notify_enable(struct sc_pollq *pq)
{
	struct sc_blk_queue *q = pq->ctx;
	/*
	 * With I/O in flight the sidecore must not sleep: it would only wake
	 * on a guest kick, not on the io_uring completion. Say "work pending".
	 */
	if (q->inflight)
		return true;
	return sc_vq_notify_enable(&q->vq);
}

static void pq_notify_disable(struct sc_pollq *pq)
{
	sc_vq_notify_disable(&((struct sc_blk_queue *)pq->ctx)->vq);
}

/* Guest memory faulted under the sidecore (polling.h): the queue is broken, with the poller's reason. */
static void pq_fault(struct sc_pollq *pq, const char *reason)
{
	sc_vq_set_broken(&((struct sc_blk_queue *)pq->ctx)->vq, -EFAULT, "%s", reason);
}

static const struct sc_pollq_ops blk_pollq_ops = { pq_poll, pq_notify_enable, pq_notify_disable, pq_fault };

int sc_blk_queue_init(struct sc_blk_queue *q, struct sc_blk_backend *be,
		      const struct sc_vq_config *cfg, const char *name)
{
	int ret;

	memset(q, 0, sizeof(*q));
	q->be = be;
	q->pq = (struct sc_pollq){ .ops = &blk_pollq_ops, .ctx = q, .kick_fd = cfg->kick_fd, .name = name };
	ret = sc_vq_init(&q->vq, cfg);
	if (ret < 0)
		return ret;
	q->reqs = calloc(cfg->size, sizeof(*q->reqs));
	q->ring = calloc(1, sizeof(struct io_uring));
	if (!q->reqs || !q->ring) {
		ret = -ENOMEM;
		goto err;
	}
	/* At most one request per descriptor head in flight: a queue-sized ring never overflows. */
	ret = io_uring_queue_init(cfg->size, ring_of(q), 0);
	if (ret < 0)
		goto err;
	return 0;
err:
	free(q->reqs);
	free(q->ring);
	q->reqs = NULL;
	q->ring = NULL;
	return ret;
}

/* Complete a request now: write its status and put it on the used ring. */
static void complete(struct sc_blk_queue *q, struct sc_blk_req *r, uint8_t status)
{
	*r->status = status;
	sc_vq_push(&q->vq, r->head, status == VIRTIO_BLK_S_OK ? r->used_len : 1);
	r->busy = false;
}

/*
 * Copy the segments of src that lie in [skip, total - trim) into dst;
 * returns how many, or -1 if more than max.
 */
static int iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t trim,
		     struct iovec *dst, unsigned max)
{
	size_t total = 0, end;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		total += src[i].iov_len;
	end = total - trim;
	for (unsigned i = 0, pos = 0; i < n && pos < end; pos += src[i].iov_len, i++) {
		size_t a = pos, b = pos + src[i].iov_len;
		if (b <= skip)
			continue;
		if (k == max)
			return -1;
		size_t from = a < skip ? skip - a : 0, to = b > end ? end - a : src[i].iov_len;
		dst[k].iov_base = (char *)src[i].iov_base + from;
		dst[k].iov_len = to - from;
		k++;
	}
	return (int)k;
}

/* [sector, sector + bytes/512) is whole sectors inside the disk. */
static bool in_range(const struct sc_blk_backend *be, uint64_t sector, uint64_t bytes)
{
	return bytes % VIRTIO_BLK_SECTOR_SIZE == 0 && sector <= be->capacity &&
	       bytes / VIRTIO_BLK_SECTOR_SIZE <= be->capacity - sector;
}

static struct io_uring_sqe *get_sqe(struct sc_blk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(q));
	if (!sqe) {
		/* Only if the ring is smaller than what is in flight; submit and retry once. */
		io_uring_submit(ring_of(q));
		q->unsubmitted = 0;
		sqe = io_uring_get_sqe(ring_of(q));
	}
	return sqe;
}

/*
 * Buffered backends: try the transfer now, without blocking (RWF_NOWAIT). A
 * page-cache hit then costs one preadv2/pwritev2 on the sidecore instead of
 * an io_uring round trip that, for files whose reads cannot be done
 * nonblocking inside io_uring (tmpfs here), goes through an io-wq worker
 * pinned to the sidecore's own cpu: measured 1 us against 65 us. Returns
 * true if the request is complete. Only where the backend probed support
 * (never O_DIRECT: a nonblocking direct transfer still waits for the device).
 */
static bool try_now(struct sc_blk_queue *q, struct sc_blk_req *r, unsigned n, uint64_t off, bool write)
{
	/* Memory-backed files never wait for a device: no RWF_NOWAIT needed (nor supported). */
	int flags = q->be->memory_backed ? 0 : RWF_NOWAIT;
	ssize_t done = write ? pwritev2(q->be->fd, r->iov, (int)n, (off_t)off, flags)
			     : preadv2(q->be->fd, r->iov, (int)n, (off_t)off, flags);
	if (done < 0 && errno == EOPNOTSUPP && flags)   /* never will: stop trying (queues share the flag) */
		__atomic_store_n(write ? &q->be->nowait_write : &q->be->nowait_read, false, __ATOMIC_RELAXED);
	if (done != r->expect)
		return false;   /* would block, short, or failed: io_uring does it (and reports errors) */
	complete(q, r, VIRTIO_BLK_S_OK);
	q->sync_done++;
	return true;
}

/* Account an SQE prepared for r: it goes out with the round's one submit. */
static void queue_sqe(struct sc_blk_queue *q, struct io_uring_sqe *sqe, const struct sc_blk_req *r)
{
	io_uring_sqe_set_data64(sqe, r->head);
	q->unsubmitted++;
	q->inflight++;
}

/*
 * Move a read's or write's data: at once where the backend allows it (memory
 * backed, or nonblocking I/O not yet refused), else through io_uring.
 * Returns false only if no SQE could be had.
 */
static bool transfer(struct sc_blk_queue *q, struct sc_blk_req *r, unsigned n, uint64_t off, bool write)
{
	struct sc_blk_backend *be = q->be;
	bool now = be->memory_backed ||
		   __atomic_load_n(write ? &be->nowait_write : &be->nowait_read, __ATOMIC_RELAXED);
	struct io_uring_sqe *sqe;

	if (now && try_now(q, r, n, off, write))
		return true;
	if (!(sqe = get_sqe(q)))
		return false;
	if (write)
		io_uring_prep_writev(sqe, be->fd, r->iov, n, off);
	else
		io_uring_prep_readv(sqe, be->fd, r->iov, n, off);
	queue_sqe(q, sqe, r);
	return true;
}

/* Start one request. Returns false if the ring must be marked broken. */
static bool start(struct sc_blk_queue *q, const struct sc_vq_elem *e)
{
	struct sc_blk_backend *be = q->be;
	struct sc_blk_req *r = &q->reqs[e->head];
	const struct iovec *in = e->iov + e->out_num;
	struct virtio_blk_outhdr h;
	struct io_uring_sqe *sqe;
	uint64_t data;
	int n;

	if (sc_unlikely(r->busy)) {
		/* The guest made a head available again before we completed it (§2.7.13). */
		sc_vq_set_broken(&q->vq, -EBUSY, "descriptor %u made available while still in flight", e->head);
		return false;
	}
	r->head = e->head;
	r->busy = true;
	/* Too short, or oversized (vqueue then passes out_len 0 and at most the status byte): IOERR. */
	if (e->in_len < 1 || e->out_len < sizeof(h)) {
		q->stats.bad_requests++;
		if (e->in_len < 1) {   /* nowhere to put a status */
			sc_vq_push(&q->vq, e->head, 0);
			r->busy = false;
			return true;
		}
		r->status = (uint8_t *)in[e->in_num - 1].iov_base + in[e->in_num - 1].iov_len - 1;
		complete(q, r, VIRTIO_BLK_S_IOERR);
		return true;
	}
	r->status = (uint8_t *)in[e->in_num - 1].iov_base + in[e->in_num - 1].iov_len - 1;
	r->used_len = 1;
	r->expect = 0;

	/* Copy, then check, then use; the barrier pins later uses to the copy. */
	sc_iov_copy_from(e->iov, e->out_num, 0, &h, sizeof(h));
	sc_barrier();

	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		data = e->in_len - 1u;
		if (!in_range(be, h.sector, data))
			goto bad;
		n = iov_slice(in, e->in_num, 0, 1, r->iov, BLK_IOV_MAX);
		if (n < 0)
			goto bad;
		r->expect = (int64_t)data;
		r->used_len = (uint32_t)data + 1;
		q->stats.reads++;
		q->stats.bytes_read += data;
		if (!transfer(q, r, (unsigned)n, h.sector * VIRTIO_BLK_SECTOR_SIZE, false))
			goto bad;
		return true;
	case VIRTIO_BLK_T_OUT:
		data = e->out_len - sizeof(h);
		if (be->read_only || !in_range(be, h.sector, data))
			goto bad;
		n = iov_slice(e->iov, e->out_num, sizeof(h), 0, r->iov, BLK_IOV_MAX);
		if (n < 0)
			goto bad;
		r->expect = (int64_t)data;
		q->stats.writes++;
		q->stats.bytes_written += data;
		if (!transfer(q, r, (unsigned)n, h.sector * VIRTIO_BLK_SECTOR_SIZE, true))
			goto bad;
		return true;
	case VIRTIO_BLK_T_FLUSH:
		if (!(sqe = get_sqe(q)))
			goto bad;
		io_uring_prep_fsync(sqe, be->fd, IORING_FSYNC_DATASYNC);
		/* Drain: starts after everything submitted before it has completed. */
		sqe->flags |= IOSQE_IO_DRAIN;
		q->stats.flushes++;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint32_t len = e->in_len - 1u < VIRTIO_BLK_ID_BYTES ? e->in_len - 1u : VIRTIO_BLK_ID_BYTES;
		sc_iov_copy_to(in, e->in_num, 0, be->serial, len);
		r->used_len = len + 1;
		q->stats.get_ids++;
		complete(q, r, VIRTIO_BLK_S_OK);
		return true;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct virtio_blk_discard_write_zeroes seg;
		/* One segment, as the config space says (max_*_seg = 1). */
		if (be->read_only || e->out_len - sizeof(h) != sizeof(seg))
			goto bad;
		sc_iov_copy_from(e->iov, e->out_num, sizeof(h), &seg, sizeof(seg));
		sc_barrier();
		uint64_t bytes = (uint64_t)seg.num_sectors * VIRTIO_BLK_SECTOR_SIZE;
		bool discard = h.type == VIRTIO_BLK_T_DISCARD;
		/* §5.2.6.2: DISCARD has no flags; WRITE_ZEROES may ask to unmap (bit 0). */
		if ((discard ? seg.flags : seg.flags & ~1u) != 0) {
			q->stats.unsupported++;
			complete(q, r, VIRTIO_BLK_S_UNSUPP);
			return true;
		}
		if (seg.num_sectors > BLK_MAX_DISCARD_SECTORS || !in_range(be, seg.sector, bytes) ||
		    !(sqe = get_sqe(q)))
			goto bad;
		int mode = discard ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				   : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		io_uring_prep_fallocate(sqe, be->fd, mode, seg.sector * VIRTIO_BLK_SECTOR_SIZE, bytes);
		break;
	}
	default:
		q->stats.unsupported++;
		complete(q, r, VIRTIO_BLK_S_UNSUPP);
		return true;
	}
	queue_sqe(q, sqe, r);
	return true;
bad:
	q->stats.bad_requests++;
	complete(q, r, VIRTIO_BLK_S_IOERR);
	return true;
}

/* Reap what io_uring has finished, without blocking. Returns how many. */
static unsigned reap(struct sc_blk_queue *q)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(ring_of(q), head, cqe) {
		struct sc_blk_req *r = &q->reqs[(uint16_t)io_uring_cqe_get_data64(cqe)];
		bool ok = cqe->res == r->expect;
		if (!ok)
			q->io_errors++;
		complete(q, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
		n++;
	}
	io_uring_cq_advance(ring_of(q), n);
	q->inflight -= n;
	return n;
}

int sc_blk_queue_poll(struct sc_blk_queue *q, unsigned budget)
{
	struct iovec iov[BLK_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = BLK_IOV_MAX };
	unsigned work = 0, started = 0;
	int ret = 0;

	if (q->inflight)
		work += reap(q);
	while (started < budget) {
		ret = sc_vq_pop(&q->vq, &e);
		if (ret <= 0)
			break;
		if (!start(q, &e)) {
			ret = q->vq.broken_err;
			break;
		}
		started++;
	}
	if (q->unsubmitted) {
		io_uring_submit(ring_of(q));   /* the one system call of the round */
		q->unsubmitted = 0;
	}
	sc_vq_flush(&q->vq);
	work += started;
	return ret < 0 ? ret : (int)work;
}

void sc_blk_queue_fini(struct sc_blk_queue *q)
{
	if (!q->ring)
		return;
	if (q->unsubmitted)
		io_uring_submit(ring_of(q));
	/* Nothing started is dropped: wait for each and complete it to the guest. */
	while (q->inflight) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(ring_of(q), &cqe) < 0)
			break;
		reap(q);
	}
	if (!q->vq.broken)
		sc_vq_flush(&q->vq);
	io_uring_queue_exit(ring_of(q));
	sc_vq_fini(&q->vq);
	free(q->ring);
	free(q->reqs);
	q->ring = NULL;
	q->reqs = NULL;
}
