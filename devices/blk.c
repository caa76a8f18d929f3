/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2 §5.2) on io_uring. Each queue has its own ring;
 * its sidecore submits a round's requests with one io_uring_submit and reaps
 * completions without blocking, then publishes them with one used-ring
 * update.
 *
 * Every request with I/O to do stays on the queue's active list, in pop
 * order, until it is done. A transfer larger than SC_BLK_PIECE_BYTES moves
 * one piece per round (the request keeps its progress), and the queue moves
 * at most about that many bytes on the sidecore per round: one huge request
 * costs its neighbours on the sidecore a piece's time, not its own.
 *
 * Durability: a FLUSH (fdatasync) is issued only when no write, write-zeroes
 * or discard popped before it is still on the active list, split ones
 * included; whatever the guest sent before the FLUSH is therefore durable
 * when the FLUSH completes.
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
#include <sys/resource.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "devices/blk_mem.h"
#include "devices/blk_req.h"
#include "devices/devices.h"

#define BLK_IOV_MAX (SC_BLK_SEG_MAX + 2)          /* data segments, header, status */
#define BLK_MAX_DISCARD_SECTORS (1u << 22)        /* 2 GiB per DISCARD / WRITE_ZEROES */

/* What a request on the active list still has to do. */
enum req_op { OP_NONE, OP_READ, OP_WRITE, OP_ZERO_WRITE, OP_FLUSH, OP_DISCARD, OP_ZERO_FALLOC };

/* A request from pop to completion, in the slot of its head descriptor. */
struct sc_blk_req {
	bool busy;                /* popped, not yet pushed to the used ring */
	bool in_ring;             /* an SQE of it is in io_uring */
	bool via_ring;            /* part of it went through io_uring */
	uint8_t op;               /* enum req_op; OP_NONE once done */
	uint8_t result;           /* status kept while the completion is held (delay) */
	uint8_t zero_mode;        /* OP_ZERO_FALLOC: enum sc_blk_zero_mode in use */
	uint16_t head;
	uint8_t *status;          /* the guest's status byte */
	uint32_t used_len;        /* bytes written to the guest if it succeeds */
	uint64_t off;             /* byte offset on the disk */
	uint64_t done, total;     /* transfer progress, bytes */
	uint64_t start_ns;        /* when it was popped (only with a delay) */
	unsigned niov, cur;       /* data segments; the first one not fully moved */
	unsigned cut_idx;         /* the segment a piece ends inside, */
	size_t cut;               /* and the bytes taken off its end meanwhile */
	struct iovec iov[BLK_IOV_MAX];   /* must live until the I/O completes */
};

/* Never written: the source of WRITE_ZEROES by writing. */
static uint8_t zero_buf[64 << 10];

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
	be->capacity = bytes / SC_VIRTIO_BLK_SECTOR_SIZE;
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
	/* A file that is memory is mapped and served by memcpy (blk_mem.c); if mmap fails, by system calls. */
	if (!direct && S_ISREG(st.st_mode) && sc_blk_mem_fs(be->fd))
		sc_blk_mem_map(be, bytes);
	be->zero_mode = SC_BLK_ZERO_RANGE;
	be->size_max = SC_BLK_SIZE_MAX;
	be->seg_max = SC_BLK_SEG_MAX;
	strncpy(be->serial, serial ? serial : "sidecore", sizeof(be->serial));   /* not NUL-terminated at 20 */
	return 0;
}

void sc_blk_backend_close(struct sc_blk_backend *be)
{
	sc_blk_backend_unmap(be);
	if (be->fd >= 0)
		close(be->fd);
	be->fd = -1;
}

/* 0 if the block device under fd (or fd itself) has poll queues; -EOPNOTSUPP if not; -ENODEV if there is none. */
static int blockdev_polls(int fd)
{
	static const char *const where[] = { "queue/io_poll", "../queue/io_poll" };   /* a disk, or a partition's disk */
	struct stat st;
	char file[96], v = '0';

	if (fstat(fd, &st) < 0)
		return -ENODEV;
	dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	for (unsigned i = 0; i < 2; i++) {
		snprintf(file, sizeof(file), "/sys/dev/block/%u:%u/%s", major(dev), minor(dev), where[i]);
		int f = open(file, O_RDONLY | O_CLOEXEC);
		if (f < 0)
			continue;
		ssize_t n = read(f, &v, 1);
		close(f);
		return n == 1 && v == '1' ? 0 : -EOPNOTSUPP;
	}
	return -ENODEV;
}

int sc_blk_backend_set_iopoll(struct sc_blk_backend *be, const char *path, char *err, size_t errlen)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	void *buf = NULL;
	int r;

	be->iopoll = false;
	if (!be->direct) {
		snprintf(err, errlen, "%s: iopoll needs O_DIRECT: set direct = yes for this disk, or drop iopoll", path);
		return -EINVAL;
	}
	/*
	 * The block queue must have poll queues: without them the kernel
	 * fails a polled read of written blocks with EOPNOTSUPP, while a read
	 * of a hole (no bio) succeeds, so a probe read alone can be fooled.
	 */
	r = blockdev_polls(be->fd);
	if (r < 0) {
		snprintf(err, errlen, "%s: polled completions (iopoll) do not work on this file (%s); serving it with "
			 "interrupt completions instead (use a device with poll queues, e.g. nvme.poll_queues=N, or drop iopoll)",
			 path, r == -ENODEV ? "its file system is not on a block device"
					    : "its block device has no poll queues (queue/io_poll is 0)");
		return -EOPNOTSUPP;
	}
	r = io_uring_queue_init(1, &ring, IORING_SETUP_IOPOLL);
	if (r < 0) {
		snprintf(err, errlen, "%s: no polled io_uring here (%s); serving with interrupt completions instead",
			 path, strerror(-r));
		return r;
	}
	/* 4 KiB covers any logical block size O_DIRECT may ask alignment for. */
	r = posix_memalign(&buf, 4096, 4096) ? -ENOMEM : 0;
	if (r == 0 && (sqe = io_uring_get_sqe(&ring))) {
		io_uring_prep_read(sqe, be->fd, buf, be->blk_size <= 4096 ? be->blk_size : 4096, 0);
		r = io_uring_submit_and_wait(&ring, 1);
		if (r >= 0 && (r = io_uring_wait_cqe(&ring, &cqe)) == 0) {
			r = cqe->res < 0 ? cqe->res : 0;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	free(buf);
	io_uring_queue_exit(&ring);
	if (r < 0) {
		snprintf(err, errlen, "%s: polled completions (iopoll) do not work on this file (%s%s); serving it with "
			 "interrupt completions instead (put it on a block device or file system that polls, or drop iopoll)",
			 path, strerror(-r), r == -EOPNOTSUPP ? ": its file system or device cannot be polled" : "");
		return r;
	}
	be->iopoll = true;
	return 0;
}

uint64_t sc_blk_features(const struct sc_blk_backend *be)
{
	uint64_t f = (1ull << SC_VIRTIO_F_VERSION_1) | (1ull << SC_VIRTIO_F_EVENT_IDX) |
		     (1ull << SC_VIRTIO_F_INDIRECT_DESC) | (1ull << SC_VIRTIO_BLK_F_SEG_MAX) |
		     (1ull << SC_VIRTIO_BLK_F_SIZE_MAX) |
		     (1ull << SC_VIRTIO_BLK_F_BLK_SIZE) | (1ull << SC_VIRTIO_BLK_F_FLUSH) |
		     (1ull << SC_VIRTIO_BLK_F_MQ);
	if (be->read_only)
		f |= 1ull << SC_VIRTIO_BLK_F_RO;
	else
		f |= (1ull << SC_VIRTIO_BLK_F_DISCARD) | (1ull << SC_VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

/* seg_max as enforced: a request's segments must fit in its slot. */
static uint32_t seg_limit(const struct sc_blk_backend *be)
{
	return be->seg_max < SC_BLK_SEG_MAX ? be->seg_max : SC_BLK_SEG_MAX;
}

void sc_blk_config_space(const struct sc_blk_backend *be, uint16_t num_queues,
			 struct sc_virtio_blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = be->capacity;
	cfg->size_max = be->size_max;
	cfg->seg_max = seg_limit(be);
	cfg->blk_size = be->blk_size;
	cfg->num_queues = num_queues;
	cfg->max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	cfg->max_discard_seg = 1;
	cfg->discard_sector_alignment = be->blk_size / SC_VIRTIO_BLK_SECTOR_SIZE;
	cfg->max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	cfg->max_write_zeroes_seg = 1;
}

/* ---- queue ---- */

/* A registered buffer: guest memory io_uring has pinned once, for every I/O into it. */
struct blk_fixed_buf {
	uintptr_t base;
	size_t len;
};

/*
 * What sc_blk_queue.ring points at: the queue's io_uring first (so it is
 * the struct io_uring liburing sees), then what it has registered.
 */
struct blk_uring {
	struct io_uring ring;
	struct io_uring aux;             /* with IOPOLL: FLUSH, DISCARD, WRITE_ZEROES (a polled ring takes only reads and writes) */
	bool has_aux;
	unsigned aux_inflight;           /* of sc_blk_queue.inflight, on aux */
	bool fixed_file;                 /* be->fd is registered as file 0 */
	unsigned nbufs;                  /* registered buffers, in table order */
	struct blk_fixed_buf *bufs;
};

/* The user data of SQEs that are no request's (a head is 16 bits). */
#define BLK_NOP_DATA UINT64_MAX

/* io_uring caps one registered buffer at 1 GiB: bigger regions are registered in pieces. */
#define BLK_FIXED_BUF_MAX (1ull << 30)

static struct blk_uring *uring_of(struct sc_blk_queue *q) { return q->ring; }
static struct io_uring *ring_of(struct sc_blk_queue *q) { return &uring_of(q)->ring; }

static int pq_poll(struct sc_pollq *pq, unsigned budget)
{
	return sc_blk_queue_poll(pq->ctx, budget);
}

static bool pq_notify_enable(struct sc_pollq *pq)
{
	struct sc_blk_queue *q = pq->ctx;
	/*
	 * With I/O in flight, a split request half moved or completions held
	 * for a delay, the sidecore must not sleep: it would only wake on a
	 * guest kick, not on the io_uring completion or the clock. Say "work
	 * pending".
	 */
	if (q->nactive || q->nheld)
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

/*
 * Register the guest memory of table m as the ring's fixed buffers, so an
 * O_DIRECT transfer into it is not pinned and unpinned per I/O. The table
 * cannot change under the ring: the runtime stops a queue (fini) before a
 * memory-table change and starts it again (init) after, so no I/O in
 * flight ever names a buffer of a region that is gone. Failure (the pages
 * cannot be pinned, RLIMIT_MEMLOCK) costs only speed: say so once, go on
 * with readv/writev.
 */
static void register_guest_memory(struct blk_uring *u, const struct sc_mem *m, const char *name)
{
	struct iovec *iov;
	unsigned n = 0;
	int r;

	for (unsigned i = 0; i < m->nregions; i++)
		n += (unsigned)((m->regions[i].size + BLK_FIXED_BUF_MAX - 1) / BLK_FIXED_BUF_MAX);
	if (!n)
		return;
	iov = calloc(n, sizeof(*iov));
	u->bufs = calloc(n, sizeof(*u->bufs));
	if (!iov || !u->bufs) {
		r = -ENOMEM;
		goto fail;
	}
	n = 0;
	for (unsigned i = 0; i < m->nregions; i++)
		for (uint64_t off = 0; off < m->regions[i].size; off += BLK_FIXED_BUF_MAX, n++) {
			uint64_t left = m->regions[i].size - off;
			iov[n].iov_base = m->regions[i].hva + off;
			iov[n].iov_len = (size_t)(left < BLK_FIXED_BUF_MAX ? left : BLK_FIXED_BUF_MAX);
			u->bufs[n] = (struct blk_fixed_buf){ (uintptr_t)iov[n].iov_base, iov[n].iov_len };
		}
	r = io_uring_register_buffers(&u->ring, iov, n);
	if (r < 0)
		goto fail;
	u->nbufs = n;
	free(iov);
	return;
fail:;
	struct rlimit lim = { 0, 0 };
	getrlimit(RLIMIT_MEMLOCK, &lim);
	fprintf(stderr, "sidecore: %s: guest memory not registered with io_uring (%s; RLIMIT_MEMLOCK %llu KiB): "
		"its O_DIRECT I/O pins pages per request (readv/writev); raise the limit (ulimit -l, LimitMEMLOCK=) "
		"or grant CAP_IPC_LOCK\n", name, strerror(-r),
		lim.rlim_cur == RLIM_INFINITY ? ~0ull : (unsigned long long)lim.rlim_cur / 1024);
	free(iov);
	free(u->bufs);
	u->bufs = NULL;
}

/* The registered buffer holding [p, p + len) whole, or -1. */
static int fixed_buf_of(const struct blk_uring *u, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	for (unsigned i = 0; i < u->nbufs; i++)
		if (a - u->bufs[i].base < u->bufs[i].len && len <= u->bufs[i].len - (a - u->bufs[i].base))
			return (int)i;
	return -1;
}

/* Point sqe at the backing file: the registered one (no fget/fput per I/O) where it is. */
static void sqe_set_file(const struct blk_uring *u, struct io_uring_sqe *sqe)
{
	if (u->fixed_file) {
		sqe->fd = 0;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
}

/*
 * The io-wq mask this thread has given its own io-wq. IORING_REGISTER_IOWQ_AFF
 * places the workers of the calling thread (every ring it submits to shares
 * them), not of the ring: the thread that submits (the sidecore, not the
 * control thread that set the queue up) must register it.
 */
static __thread const cpu_set_t *iowq_aff_here;

static void ring_set_iowq_aff(struct io_uring *ring, const struct sc_blk_backend *be, const char *name)
{
	if (!be->iowq_aff || iowq_aff_here == be->iowq_aff)
		return;
	iowq_aff_here = be->iowq_aff;
	/* A kernel without it (before 5.14) still serves, with workers where it puts them: say so, go on. */
	int r = io_uring_register_iowq_aff(ring, be->iowq_aff_size, be->iowq_aff);
	if (r < 0)
		fprintf(stderr, "sidecore: %s: io_uring workers left unpinned (IORING_REGISTER_IOWQ_AFF: %s)\n",
			name ? name : "blk queue", strerror(-r));
}

int sc_blk_queue_init(struct sc_blk_queue *q, struct sc_blk_backend *be,
		      const struct sc_vq_config *cfg, const char *name)
{
	struct blk_uring *u;
	const char *who = name ? name : "blk queue";
	int ret;

	memset(q, 0, sizeof(*q));
	q->be = be;
	/* No time bound until a poller gives its own at attach (a caller polling by hand sets it). */
	q->pq = (struct sc_pollq){ .ops = &blk_pollq_ops, .ctx = q, .kick_fd = cfg->kick_fd, .name = name,
				   .turn_cycles = UINT64_MAX };
	ret = sc_vq_init(&q->vq, cfg);
	if (ret < 0)
		return ret;
	q->reqs = calloc(cfg->size, sizeof(*q->reqs));
	q->ring = u = calloc(1, sizeof(struct blk_uring));
	/* A head is on each list at most once (busy until pushed). */
	q->active = calloc(cfg->size, sizeof(*q->active));
	q->held = calloc(cfg->size, sizeof(*q->held));
	if (!q->reqs || !q->ring || !q->active || !q->held) {
		ret = -ENOMEM;
		goto err;
	}
	/* At most one SQE per descriptor head in flight: a queue-sized ring never overflows. */
	ret = io_uring_queue_init(cfg->size, &u->ring, be->iopoll ? IORING_SETUP_IOPOLL : 0);
	if (ret < 0)
		goto err;
	if (be->iopoll) {
		ret = io_uring_queue_init(cfg->size, &u->aux, 0);
		if (ret < 0) {
			io_uring_queue_exit(&u->ring);
			goto err;
		}
		u->has_aux = true;
	}
	/* This thread's workers (the control thread finishes a stopped queue's I/O); the sidecore's at its first poll. */
	ring_set_iowq_aff(&u->ring, be, who);
	/* The aux ring's few operations take the plain fd. */
	int r = io_uring_register_files(&u->ring, &be->fd, 1);
	u->fixed_file = r == 0;
	if (r < 0)
		fprintf(stderr, "sidecore: %s: backing file not registered with io_uring (%s): each I/O looks its fd up\n",
			who, strerror(-r));
	/*
	 * Only O_DIRECT pins a request's pages per I/O; a buffered transfer is
	 * a copy, and registering would pin (populate) all of guest memory for
	 * nothing. Behind a vIOMMU (no table here) buffers stay per request.
	 */
	if (be->direct && !be->no_fixed_buffers && cfg->xlate.mem)
		register_guest_memory(u, cfg->xlate.mem, who);
	return 0;
err:
	free(q->reqs);
	free(q->ring);
	free(q->active);
	free(q->held);
	q->reqs = NULL;
	q->ring = NULL;
	q->active = q->held = NULL;
	return ret;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Give a finished request back: write its status and put it on the used ring. */
static void publish(struct sc_blk_queue *q, struct sc_blk_req *r, uint8_t status)
{
	/*
	 * A broken queue is the guest's to reset, and its memory may be what
	 * broke it (a SIGBUS): nothing more is written there, from any thread.
	 */
	if (sc_unlikely(sc_vq_broken(&q->vq))) {
		r->busy = false;
		return;
	}
	*r->status = status;
	sc_vq_push(&q->vq, r->head, status == SC_VIRTIO_BLK_S_OK ? r->used_len : 1);
	r->busy = false;
}

/*
 * A request is done: publish it, or with a delay hold it (still busy, so its
 * head cannot be reused) on the FIFO that release() drains in order.
 */
static void complete(struct sc_blk_queue *q, struct sc_blk_req *r, uint8_t status)
{
	r->op = OP_NONE;
	if (!q->be->delay_ns) {
		publish(q, r, status);
		return;
	}
	r->result = status;
	q->held[(q->held_first + q->nheld++) & q->vq.mask] = r->head;
}

/*
 * Publish held completions, oldest first, whose delay has passed; with wait
 * (control thread only) sleep until each is due. Returns how many.
 */
static unsigned release(struct sc_blk_queue *q, bool wait)
{
	unsigned n = 0;
	uint64_t now = now_ns();

	while (q->nheld) {
		struct sc_blk_req *r = &q->reqs[q->held[q->held_first & q->vq.mask]];
		uint64_t due = r->start_ns + q->be->delay_ns;
		if (now < due) {
			if (!wait)
				break;
			struct timespec ts = { (time_t)((due - now) / 1000000000u), (long)((due - now) % 1000000000u) };
			nanosleep(&ts, NULL);
			now = now_ns();
			continue;
		}
		publish(q, r, r->result);
		q->held_first++;
		q->nheld--;
		n++;
	}
	return n;
}

/* An SQE on the queue's ring, or with aux on its ring for what a polled ring cannot do. */
static struct io_uring_sqe *get_sqe(struct sc_blk_queue *q, bool aux)
{
	struct io_uring *ring = aux ? &uring_of(q)->aux : ring_of(q);
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		/* Only if the ring is smaller than what is in flight; submit and retry once. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

/* Account an SQE prepared for r: it goes out with the round's one submit. */
static void queue_sqe(struct sc_blk_queue *q, struct io_uring_sqe *sqe, struct sc_blk_req *r, bool aux)
{
	io_uring_sqe_set_data64(sqe, r->head);
	r->in_ring = true;
	q->unsubmitted++;
	q->inflight++;
	uring_of(q)->aux_inflight += aux;
}

/* Submit what the round prepared: the one system call of the round (two with a polled ring and its aux). */
static void submit(struct sc_blk_queue *q)
{
	io_uring_submit(ring_of(q));
	if (uring_of(q)->has_aux)
		io_uring_submit(&uring_of(q)->aux);
	q->unsubmitted = 0;
}

/*
 * Before this thread's first submission of its own: give the thread an
 * io_uring context (a NOP whose completion is skipped; the kernel creates a
 * thread's io-wq at its first submission) and then its io-wq mask. Workers
 * the io-wq made before keep the mask they had, so it must come first.
 */
static void thread_set_iowq_aff(struct sc_blk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(q));
	if (sqe) {
		io_uring_prep_nop(sqe);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;   /* a kernel without it (before 5.17) posts one: reap skips it */
		io_uring_sqe_set_data64(sqe, BLK_NOP_DATA);
		io_uring_submit(ring_of(q));
	}
	ring_set_iowq_aff(ring_of(q), q->be, q->pq.name);
}

/*
 * Point iov[cur..cur+n) at the next at most max bytes of r's data and
 * return n, the piece's length in *len; piece_end() puts back the segment
 * it cut. WRITE_ZEROES by writing takes its data from zero_buf.
 */
static unsigned piece_begin(struct sc_blk_req *r, size_t max, size_t *len)
{
	size_t want = r->total - r->done < max ? (size_t)(r->total - r->done) : max, got = 0;
	unsigned i = r->cur;

	if (r->op == OP_ZERO_WRITE) {
		for (i = 0; got < want; i++) {
			size_t l = want - got < sizeof(zero_buf) ? want - got : sizeof(zero_buf);
			r->iov[i] = (struct iovec){ zero_buf, l };
			got += l;
		}
		r->cur = 0;
		*len = got;
		return i;
	}
	for (; i < r->niov && got < want; i++)
		got += r->iov[i].iov_len;
	if (got > want) {
		r->cut_idx = i - 1;
		r->cut = got - want;
		r->iov[i - 1].iov_len -= r->cut;
		got = want;
	}
	*len = got;
	return i - r->cur;
}

/* The current piece moved moved bytes: put back the cut, step past them. */
static void piece_end(struct sc_blk_req *r, size_t moved)
{
	r->done += moved;
	if (r->op == OP_ZERO_WRITE)
		return;
	if (r->cut) {
		r->iov[r->cut_idx].iov_len += r->cut;
		r->cut = 0;
	}
	while (moved && r->cur < r->niov) {
		struct iovec *v = &r->iov[r->cur];
		if (moved < v->iov_len) {
			v->iov_base = (char *)v->iov_base + moved;
			v->iov_len -= moved;
			break;
		}
		moved -= v->iov_len;
		r->cur++;
	}
}

/*
 * What one poll round may still do. A round walks the active list twice:
 * first everything but the transfers already under way, then those, so a
 * small request behind a huge one on the same queue is not kept waiting by
 * it; the second walk moves at least one piece of a split transfer even
 * when new requests spent the bytes, so neither side starves.
 *
 * A turn is bounded in time as well (sc_pollq.turn_cycles): 32 small reads
 * are few bytes but 32 system calls (about 17 us on tmpfs), and a quiet
 * queue would wait all of that. The clock starts at the turn's first copy
 * on the sidecore (an idle turn reads no TSC) and is read after each copy;
 * once the time is spent, no more requests are popped or copied, except
 * the one piece of a split transfer above.
 *
 * A turn still makes one copy however long it takes, so what a turn
 * overran is kept as the queue's debt and paid back at one turn's time
 * per round by turns that copy nothing (deficit round robin, on time): a
 * queue whose every request costs more than a turn gets about turn_cycles
 * of the sidecore per round on average, not one request's time. While the
 * other queues are idle, rounds are short and the debt is soon paid.
 */
#define BLK_TURN_DEBT_MAX 64      /* turns: a sidecore preempted mid-turn costs its queue at most this many */

struct round {
	size_t bytes;             /* left to move on the sidecore itself */
	uint64_t turn_cycles;     /* the time this turn may copy for */
	uint64_t turn_start;      /* TSC at the first copy; 0 before it */
	uint64_t turn_last;       /* TSC after the last copy */
	bool turn_over;           /* turn_cycles have passed since turn_start */
	bool paying;              /* this turn pays back debt: no copies at all */
	bool under_way;           /* this walk steps the transfers under way (and only those) */
	bool split_moved;         /* a piece of a split transfer moved on the sidecore */
	bool write_before;        /* a write-like request earlier on the active list is not done */
	unsigned work;
};

static bool is_write(const struct sc_blk_req *r)
{
	return r->op == OP_WRITE || r->op == OP_ZERO_WRITE || r->op == OP_DISCARD || r->op == OP_ZERO_FALLOC;
}

/* A transfer moved some more: complete it if it is whole. Returns true while it has more to do. */
static bool transfer_moved(struct sc_blk_queue *q, struct sc_blk_req *r)
{
	if (r->done < r->total)
		return true;
	if (r->total > SC_BLK_PIECE_BYTES)
		q->split++;
	if (!r->via_ring)
		q->sync_done++;
	complete(q, r, SC_VIRTIO_BLK_S_OK);
	return false;
}

/* The turn's clock after a copy on the sidecore of got bytes of r. */
static void round_copied(struct round *rd, const struct sc_blk_req *r, size_t got)
{
	rd->work++;
	rd->turn_last = sc_rdtsc();
	rd->turn_over = rd->turn_last - rd->turn_start >= rd->turn_cycles;
	if (got && r->total > SC_BLK_PIECE_BYTES)
		rd->split_moved = true;
	rd->bytes -= got < rd->bytes ? got : rd->bytes;
}

/*
 * Move the piece piece_begin set up (n segments, len bytes) by memcpy on a
 * mapped disk. A fault (the file shrank under us) fails this request
 * alone. Returns true while r has more to do.
 */
static bool mem_step(struct sc_blk_queue *q, struct sc_blk_req *r, struct round *rd, unsigned n, size_t len)
{
	int ret = sc_blk_mem_rw(q->be, r->off + r->done, r->iov + r->cur, n, len, r->op != OP_READ);

	round_copied(rd, r, ret ? 0 : len);
	piece_end(r, ret ? 0 : len);
	if (!ret)
		return transfer_moved(q, r);
	q->io_errors++;
	complete(q, r, SC_VIRTIO_BLK_S_IOERR);
	return false;
}

/*
 * Move the next piece of a read or write. On the sidecore where the backend
 * allows it and the round has bytes left: memory-backed files (a copy that
 * never waits for a device), or buffered files tried with RWF_NOWAIT until
 * the file system refuses (a page-cache hit costs 1 us there against 65 us
 * through an io-wq worker on the sidecore's own cpu). Otherwise, and for
 * what a nonblocking try left of the piece, through io_uring (never
 * O_DIRECT on the sidecore: a nonblocking direct transfer still waits for
 * the device). Returns true while r has more to do.
 */
static bool transfer_step(struct sc_blk_queue *q, struct sc_blk_req *r, struct round *rd)
{
	struct sc_blk_backend *be = q->be;
	bool write = r->op != OP_READ;
	bool now = be->map || be->memory_backed ||
		   __atomic_load_n(write ? &be->nowait_write : &be->nowait_read, __ATOMIC_RELAXED);
	struct io_uring_sqe *sqe;
	size_t len;
	unsigned n;

	if (r->done == r->total)
		return transfer_moved(q, r);
	if (now && (rd->paying || ((!rd->bytes || rd->turn_over) && !(rd->under_way && !rd->split_moved))))
		return true;   /* this round's share is spent: next round */
	n = piece_begin(r, SC_BLK_PIECE_BYTES, &len);
	if (now) {
		if (!rd->turn_start)
			rd->turn_start = sc_rdtsc();
		/* Memory-backed files never wait for a device: no RWF_NOWAIT needed (nor supported). */
		int flags = be->memory_backed ? 0 : RWF_NOWAIT;
		off_t at = (off_t)(r->off + r->done);
		if (be->map)
			return mem_step(q, r, rd, n, len);
		ssize_t got = write ? pwritev2(be->fd, r->iov + r->cur, (int)n, at, flags)
				    : preadv2(be->fd, r->iov + r->cur, (int)n, at, flags);
		if (got < 0 && errno == EOPNOTSUPP && flags)   /* never will: stop trying (queues share the flag) */
			__atomic_store_n(write ? &be->nowait_write : &be->nowait_read, false, __ATOMIC_RELAXED);
		if (got < 0)
			got = 0;
		round_copied(rd, r, (size_t)got);
		piece_end(r, (size_t)got);
		if ((size_t)got == len)
			return transfer_moved(q, r);
		/* Would block, short, or failed: io_uring does the rest of the piece (and reports errors). */
		n = piece_begin(r, len - (size_t)got, &len);
	}
	if (!(sqe = get_sqe(q, false))) {
		piece_end(r, 0);
		return true;   /* cannot happen with a queue-sized ring; try again next round */
	}
	/*
	 * One segment in registered guest memory (a 4 KiB request's usual
	 * shape): a fixed transfer, no pinning. More segments take one
	 * vectored SQE: one fixed SQE per segment measured slower (4 x 4 KiB
	 * O_DIRECT on ext4, QD32: 0.67-0.91x the IOPS of one readv).
	 */
	int buf = n == 1 ? fixed_buf_of(uring_of(q), r->iov[r->cur].iov_base, len) : -1;
	if (buf >= 0) {
		if (write)
			io_uring_prep_write_fixed(sqe, be->fd, r->iov[r->cur].iov_base, (unsigned)len, r->off + r->done, buf);
		else
			io_uring_prep_read_fixed(sqe, be->fd, r->iov[r->cur].iov_base, (unsigned)len, r->off + r->done, buf);
		q->fixed_ios++;
	} else if (write) {
		io_uring_prep_writev(sqe, be->fd, r->iov + r->cur, n, r->off + r->done);
	} else {
		io_uring_prep_readv(sqe, be->fd, r->iov + r->cur, n, r->off + r->done);
	}
	sqe_set_file(uring_of(q), sqe);
	r->via_ring = true;
	queue_sqe(q, sqe, r, false);
	return true;
}

/* Take r's next step. Returns true while it stays on the active list. */
static bool step(struct sc_blk_queue *q, struct sc_blk_req *r, struct round *rd)
{
	struct sc_blk_backend *be = q->be;
	struct io_uring_sqe *sqe;
	bool aux = uring_of(q)->has_aux;   /* a polled ring does reads and writes only */

	if (r->op == OP_NONE)
		return false;
	if (r->in_ring)
		return true;
	switch (r->op) {
	case OP_FLUSH:
		/* Only once every write before it is done: it must cover what the guest saw complete. */
		if (rd->write_before)
			return true;
		/*
		 * A mapped disk is memory (tmpfs, ramfs, hugetlbfs, memfd): there
		 * is no device to make it durable on (their fsync does nothing),
		 * and our memcpy stores are in the shared page cache once they
		 * return. Ordering after the writes before it is all there is.
		 */
		if (be->map) {
			complete(q, r, SC_VIRTIO_BLK_S_OK);
			return false;
		}
		if (!(sqe = get_sqe(q, aux)))
			return true;
		io_uring_prep_fsync(sqe, be->fd, IORING_FSYNC_DATASYNC);
		break;
	case OP_DISCARD:
	case OP_ZERO_FALLOC: {
		if (!(sqe = get_sqe(q, aux)))
			return true;
		/* A punched hole reads back zeroes too (§5.2.6.2 lets WRITE_ZEROES deallocate). */
		int mode = r->op == OP_DISCARD || r->zero_mode == SC_BLK_ZERO_PUNCH
			   ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
			   : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		io_uring_prep_fallocate(sqe, be->fd, mode, r->off, r->total);
		break;
	}
	default:   /* reads and writes */
		return transfer_step(q, r, rd);
	}
	if (!aux)
		sqe_set_file(uring_of(q), sqe);
	queue_sqe(q, sqe, r, aux);
	return true;
}

static bool is_under_way(const struct sc_blk_req *r)
{
	return (r->op == OP_READ || r->op == OP_WRITE || r->op == OP_ZERO_WRITE) && r->done;
}

/*
 * Step the active requests from index from on, in pop order (the new ones
 * or the under-way ones, as rd says), and drop the finished ones.
 */
static void walk(struct sc_blk_queue *q, unsigned from, struct round *rd)
{
	unsigned k = from;

	if (!from)
		rd->write_before = false;
	for (unsigned i = from; i < q->nactive; i++) {
		struct sc_blk_req *r = &q->reqs[q->active[i]];
		bool mine = r->op == OP_NONE || is_under_way(r) == rd->under_way;
		if (mine && !step(q, r, rd))
			continue;   /* finished: off the list */
		q->active[k++] = q->active[i];
		if (is_write(r))
			rd->write_before = true;
	}
	q->nactive = k;
}

/* WRITE_ZEROES by fallocate met EOPNOTSUPP: the next way down, for it and for the backend. */
static void zero_fallback(struct sc_blk_backend *be, struct sc_blk_req *r)
{
	uint8_t mode = r->zero_mode + 1, cur = __atomic_load_n(&be->zero_mode, __ATOMIC_RELAXED);

	while (cur < mode && !__atomic_compare_exchange_n(&be->zero_mode, &cur, mode, false,
							  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (mode == SC_BLK_ZERO_WRITE)
		r->op = OP_ZERO_WRITE;
	else
		r->zero_mode = mode;
}

/* Parse one request: complete it, or put it on the active list. Returns false if the ring must be marked broken. */
static bool start(struct sc_blk_queue *q, const struct sc_vq_elem *e)
{
	struct sc_blk_backend *be = q->be;
	struct sc_blk_req *r = &q->reqs[e->head];
	const struct sc_blk_req_limits lim = {
		.capacity = be->capacity,
		.features = sc_blk_features(be),
		.seg_max = seg_limit(be),
		.size_max = be->size_max,
		.max_discard_sectors = BLK_MAX_DISCARD_SECTORS,
	};
	struct sc_blk_parsed p = { .iov = r->iov };
	int ret;

	if (sc_unlikely(r->busy)) {
		/* The guest made a head available again before we completed it (§2.7.13). */
		sc_vq_set_broken(&q->vq, -EBUSY, "descriptor %u made available while still in flight", e->head);
		return false;
	}
	r->head = e->head;
	r->busy = true;
	r->used_len = 1;
	r->in_ring = r->via_ring = false;
	r->done = r->total = 0;
	r->cur = 0;
	r->cut = 0;
	ret = sc_blk_req_parse(e, &lim, &p);
	r->status = p.status_byte;
	if (ret == -ENOBUFS) {   /* nowhere to put a status */
		q->stats.bad_requests++;
		sc_vq_push(&q->vq, e->head, 0);
		r->busy = false;
		return true;
	}
	if (ret < 0) {
		if (p.status == SC_VIRTIO_BLK_S_UNSUPP)
			q->stats.unsupported++;
		else
			q->stats.bad_requests++;
		complete(q, r, p.status);
		return true;
	}

	switch (p.type) {
	case SC_VIRTIO_BLK_T_IN:
		r->used_len = (uint32_t)p.bytes + 1;
		q->stats.reads++;
		q->stats.bytes_read += p.bytes;
		r->op = OP_READ;
		break;
	case SC_VIRTIO_BLK_T_OUT:
		q->stats.writes++;
		q->stats.bytes_written += p.bytes;
		r->op = OP_WRITE;
		break;
	case SC_VIRTIO_BLK_T_FLUSH:
		q->stats.flushes++;
		r->op = OP_FLUSH;
		break;
	case SC_VIRTIO_BLK_T_GET_ID:
		sc_iov_copy_to(e->iov + e->out_num, e->in_num, 0, be->serial, p.bytes);
		r->used_len = (uint32_t)p.bytes + 1;
		q->stats.get_ids++;
		complete(q, r, SC_VIRTIO_BLK_S_OK);
		return true;
	default:   /* DISCARD, WRITE_ZEROES */
		r->op = p.type == SC_VIRTIO_BLK_T_DISCARD ? OP_DISCARD : OP_ZERO_FALLOC;
		r->zero_mode = __atomic_load_n(&be->zero_mode, __ATOMIC_RELAXED);
		/* A mapped disk zeroes by copying zeroes on the sidecore, in pieces (fallocate would be a system call). */
		if (r->op == OP_ZERO_FALLOC && (r->zero_mode == SC_BLK_ZERO_WRITE || be->map))
			r->op = OP_ZERO_WRITE;
		break;
	}
	r->niov = p.niov;
	r->off = p.sector * SC_VIRTIO_BLK_SECTOR_SIZE;
	r->total = p.type == SC_VIRTIO_BLK_T_FLUSH ? 0 : p.bytes;
	/* I/O to do: the round's walk takes its first step. */
	q->active[q->nactive++] = r->head;
	return true;
}

/* Reap what ring has finished, without blocking. Returns how many. */
static unsigned reap_ring(struct sc_blk_queue *q, struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0, skipped = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		n++;
		if (sc_unlikely(io_uring_cqe_get_data64(cqe) == BLK_NOP_DATA)) {
			skipped++;
			continue;
		}
		struct sc_blk_req *r = &q->reqs[(uint16_t)io_uring_cqe_get_data64(cqe)];
		int res = cqe->res;
		r->in_ring = false;
		if (r->op == OP_READ || r->op == OP_WRITE || r->op == OP_ZERO_WRITE) {
			/* A short piece is fine (the rest goes next); nothing moved is an error. */
			piece_end(r, res > 0 ? (size_t)res : 0);
			if (res > 0) {
				transfer_moved(q, r);
				continue;
			}
		} else if (r->op == OP_ZERO_FALLOC && res == -EOPNOTSUPP) {
			zero_fallback(q->be, r);   /* the walk issues it again, the next way down */
			continue;
		} else if (res == 0) {
			complete(q, r, SC_VIRTIO_BLK_S_OK);
			continue;
		}
		q->io_errors++;
		complete(q, r, SC_VIRTIO_BLK_S_IOERR);
	}
	io_uring_cq_advance(ring, n);
	q->inflight -= n - skipped;
	return n - skipped;
}

/* Reap what the queue's rings have finished, without blocking. Returns how many. */
static unsigned reap(struct sc_blk_queue *q)
{
	struct blk_uring *u = uring_of(q);
	unsigned n = 0;

	if (u->has_aux && u->aux_inflight) {
		unsigned k = reap_ring(q, &u->aux);
		u->aux_inflight -= k;
		n += k;
	}
	/* A polled ring completes nothing until asked: this is the poll (one system call while I/O is in flight). */
	if (q->inflight > u->aux_inflight) {
		if (q->be->iopoll && !io_uring_cq_ready(&u->ring))
			io_uring_get_events(&u->ring);
		n += reap_ring(q, &u->ring);
	}
	return n;
}

int sc_blk_queue_poll(struct sc_blk_queue *q, unsigned budget)
{
	struct iovec iov[BLK_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = BLK_IOV_MAX };
	struct round rd = { .bytes = SC_BLK_PIECE_BYTES, .turn_cycles = q->pq.turn_cycles };
	unsigned started = 0, first_new;
	uint64_t now = q->be->delay_ns ? now_ns() : 0;
	int ret = 0;

	if (sc_unlikely(q->turn_debt)) {
		rd.paying = rd.turn_over = q->turn_debt >= rd.turn_cycles;
		q->turn_debt = rd.paying ? q->turn_debt - rd.turn_cycles : 0;   /* less than a turn is forgiven */
	}
	/* Once per thread: a queue may move to another sidecore. */
	if (sc_unlikely(q->be->iowq_aff && iowq_aff_here != q->be->iowq_aff))
		thread_set_iowq_aff(q);
	if (q->inflight)
		rd.work += reap(q);
	/* Drops what reap finished before a pop can bring its head back. */
	walk(q, 0, &rd);
	first_new = q->nactive;
	/* Each new request takes its first step as it is popped, so the turn's clock covers them one by one. */
	while (started < budget && !rd.turn_over) {
		ret = sc_vq_pop(&q->vq, &e);
		if (ret <= 0)
			break;
		if (!q->reqs[e.head].busy)
			q->reqs[e.head].start_ns = now;
		if (!start(q, &e)) {
			ret = q->vq.broken_err;
			break;
		}
		started++;
		walk(q, first_new, &rd);
		first_new = q->nactive;
	}
	rd.under_way = true;
	walk(q, 0, &rd);
	if (q->unsubmitted)
		submit(q);
	if (q->nheld)
		rd.work += release(q, false);
	sc_vq_flush(&q->vq);
	if (rd.turn_start && rd.turn_last - rd.turn_start > rd.turn_cycles) {
		uint64_t over = rd.turn_last - rd.turn_start - rd.turn_cycles;
		uint64_t max = rd.turn_cycles > UINT64_MAX / BLK_TURN_DEBT_MAX ? UINT64_MAX : BLK_TURN_DEBT_MAX * rd.turn_cycles;
		q->turn_debt = q->turn_debt + over < max ? q->turn_debt + over : max;
	}
	rd.work += started;
	return ret < 0 ? ret : (int)rd.work;
}

void sc_blk_queue_fini(struct sc_blk_queue *q)
{
	if (!q->ring)
		return;
	/* Nothing started is dropped: finish each (split ones piece by piece) and complete it to the guest. */
	while (q->nactive) {
		struct round rd = { .bytes = SIZE_MAX, .turn_cycles = UINT64_MAX };
		struct io_uring_cqe *cqe;
		walk(q, 0, &rd);
		rd.under_way = true;
		walk(q, 0, &rd);
		if (q->unsubmitted)
			submit(q);
		if (q->inflight && !reap(q)) {
			/* Wait on a ring that has something in flight (a polled one spins until it completes). */
			struct blk_uring *u = uring_of(q);
			if (io_uring_wait_cqe(q->inflight > u->aux_inflight ? &u->ring : &u->aux, &cqe) < 0)
				break;
		}
	}
	release(q, true);
	if (!q->vq.broken)
		sc_vq_flush(&q->vq);
	/* Exiting the ring drops its registered buffers and file. */
	io_uring_queue_exit(ring_of(q));
	if (uring_of(q)->has_aux)
		io_uring_queue_exit(&uring_of(q)->aux);
	free(uring_of(q)->bufs);
	sc_vq_fini(&q->vq);
	free(q->ring);
	free(q->reqs);
	free(q->active);
	free(q->held);
	q->ring = NULL;
	q->reqs = NULL;
	q->active = q->held = NULL;
}
