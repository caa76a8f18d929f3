/* SPDX-License-Identifier: MIT */
#include "runtime/vu_server.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/tsc.h"
#include "guestmem/guestmem.h"
#include "polling/polling.h"
#include "runtime/grants.h"
#include "runtime/vu_msg.h"
#include "viommu/viommu.h"

#define PROTOCOL_FEATURES                                                                        \
	((1ull << SC_VHOST_USER_PROTOCOL_F_MQ) | (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK) |        \
	 (1ull << SC_VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << SC_VHOST_USER_PROTOCOL_F_RESET_DEVICE) | \
	 (1ull << SC_VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |                                        \
	 (1ull << SC_VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | (1ull << SC_VHOST_USER_PROTOCOL_F_STATUS) | \
	 (1ull << SC_VHOST_USER_PROTOCOL_F_BACKEND_REQ) | (1ull << SC_VHOST_USER_PROTOCOL_F_IOTLB))

/* How long an invalidation may wait for the sidecores before it stops the queues still holding on. */
#define IOTLB_QUIESCE_MS 1000


struct vring {
	uint32_t num;
	uint16_t base;
	bool addr_set;
	bool enabled;
	bool started;      /* written on the control thread; read anywhere with atomics */
	bool said_unmapped;   /* "waits for memory" was logged (once per connection) */
	bool said_iotlb;      /* "waits for the IOTLB" was logged (once per connection) */
	struct sc_vu_vring_addr addr;
	int kick_fd, call_fd, err_fd;
	char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];   /* "PATH vring N", for vqueue's log line */
};

/* Where the front end's addresses (ring addresses are its virtual ones) fall in guest memory. */
struct uva_map {
	uint64_t uva, gpa, size;
};

struct sc_vu_server {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd, conn_fd;
	const struct sc_vu_device_ops *ops;
	void *ctx;
	unsigned nvrings;
	int timeout_ms;
	int stop_fd;            /* eventfd: readable once the server is being destroyed */
	int stopping;           /* atomic */
	bool threaded;
	pthread_t thread;
	int64_t conn_since;     /* when the current connection was accepted (ms, monotonic) */

	uint64_t features, protocol_features;
	uint8_t status;
	struct sc_mem mem;
	struct uva_map map[SC_MEM_MAX_REGIONS];
	unsigned nmap;
	struct vring vrings[SC_VU_MAX_VRINGS];

	/* The reply to the message being handled: sent once the rings are re-evaluated. */
	struct {
		bool set;
		uint32_t size;
		int fd;   /* owned; -1 if none */
		uint8_t payload[sizeof(struct sc_vu_config)];
	} out;

	/*
	 * The IOMMU (ACCESS_PLATFORM): one domain (0) of one endpoint (0)
	 * that IOTLB_MSG fills, written by the control thread only; a
	 * translation context per vring. The back-end channel carries our
	 * MISS messages, sent from the sidecores: backend_lock guards the fd.
	 */
	struct sc_viommu *viommu;
	struct sc_viommu_tc tcs[SC_VU_MAX_VRINGS];
	pthread_mutex_t backend_lock;
	int backend_fd;
	bool said_no_backend;
	bool iotlb_batch, iotlb_batch_removed;
	uint64_t iotlb_ticket;    /* the grace period an invalidation waits for */
	bool iotlb_ticking;       /* optimistic: entries are dying, sc_viommu_tick them each millisecond */
	/* Isolation (ops->iotlb_isolation): the live grants, and guest ranges to unmap after the grace period. */
	struct sc_grants grants;
	/*
	 * Isolation with optimistic teardown: the sealed ranges (grants of
	 * expired entries) wait for the grace period iso_ticket and the
	 * requests counted before its epoch flip, until iso_deadline (ms);
	 * no ack waits on them (isol_advance).
	 */
	bool iso_sealed;
	uint64_t iso_ticket;
	int64_t iso_deadline;
	/* Written with relaxed atomics (misses by the sidecores, the rest here), read by anyone. */
	struct sc_vu_iotlb_stats iostats;
	/* IOTLB messages read in one go (sc_vu_msg_recv_iotlb), served one by one: burst[burst_at..burst_n). */
	struct sc_vu_iotlb_wire burst[SC_VU_IOTLB_BURST];
	unsigned burst_at, burst_n;
	/*
	 * When the control thread woke for the message it is handling, or
	 * read it if it came after the last answer (monotonic ns; 0 once
	 * answered): an ack's time in the stats starts here.
	 */
	uint64_t woke_ns;

	/* inflight tracking: a memfd the VMM keeps across our restarts */
	uint8_t *inflight;
	size_t inflight_size;
	uint16_t inflight_nq, inflight_qsize;
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int64_t now_ms(void)
{
	return (int64_t)(now_ns() / 1000000);
}

static void vring_init(struct vring *v)
{
	v->num = 0;
	v->base = 0;
	v->addr_set = v->enabled = v->said_unmapped = v->said_iotlb = false;
	__atomic_store_n(&v->started, false, __ATOMIC_RELAXED);
	v->kick_fd = v->call_fd = v->err_fd = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- the IOTLB (ACCESS_PLATFORM) ---- */

static bool iotlb_on(const struct sc_vu_server *s)
{
	return s->features & (1ull << SC_VU_F_ACCESS_PLATFORM);
}

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* After the IOTLB's entries changed (control thread). */
static void iotlb_note_entries(struct sc_vu_server *s)
{
	int n = sc_viommu_domain_mappings(s->viommu, 0);
	__atomic_store_n(&s->iostats.entries, n > 0 ? (uint64_t)n : 0, __ATOMIC_RELAXED);
}

/*
 * viommu's expired hook (inside sc_viommu_tick): a dying entry's window
 * ended, and with it the grant of its pages (isolation), which become
 * pending; isol_advance unmaps them after a grace period of their own.
 */
static void isol_expired(void *arg, uint32_t domain, uint64_t iova, uint64_t last, uint64_t gpa)
{
	struct sc_vu_server *s = arg;
	(void)domain, (void)gpa;
	sc_grants_drop_iova(&s->grants, iova, last);
}

/* A fresh, empty IOTLB: one domain, one endpoint attached to it. No context may use the old one. */
static int iotlb_create(struct sc_vu_server *s)
{
	struct sc_viommu_config cfg;
	struct sc_viommu *v;
	bool removed;
	int ret;

	sc_viommu_config_default(&cfg, &s->mem);
	cfg.max_mappings = SC_VU_IOTLB_MAX;   /* the cap the ops set is checked per UPDATE */
	cfg.max_endpoints = 1;
	cfg.max_domains = 2;
	if (s->ops->iotlb_window_ms) {
		cfg.teardown = SC_VIOMMU_OPTIMISTIC;
		cfg.window_ns = s->ops->iotlb_window_ms * 1000000ull;
		cfg.expired = isol_expired;
		cfg.expired_arg = s;
	}
	ret = sc_viommu_create(&cfg, &v);
	if (ret < 0)
		return ret;
	if ((ret = sc_viommu_endpoint_add(v, 0)) < 0 || (ret = sc_viommu_attach(v, 0, 0, false, &removed)) < 0) {
		sc_viommu_destroy(v);
		return ret;
	}
	/* Contexts left by rings that never started (their slots die with the old table). */
	for (unsigned i = 0; i < SC_VU_MAX_VRINGS; i++)
		sc_viommu_tc_fini(&s->tcs[i]);
	sc_viommu_destroy(s->viommu);
	s->viommu = v;
	s->iotlb_ticking = s->iso_sealed = false;
	__atomic_store_n(&s->iostats.entries, 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Send a MISS for iova over the back-end channel (sc_viommu_tc_iotlb's fn).
 * Called by a sidecore, or the control thread checking rings. Never
 * blocks: a full channel is tried again next round.
 */
static int iotlb_send_miss(void *ctx, uint64_t iova, unsigned perm)
{
	struct sc_vu_server *s = ctx;
	struct sc_vu_iotlb t = { .iova = iova, .perm = (uint8_t)perm, .type = SC_VHOST_IOTLB_MISS };
	struct sc_vu_hdr h = { .request = SC_VHOST_USER_BACKEND_IOTLB_MSG, .flags = SC_VHOST_USER_VERSION, .size = sizeof(t) };
	struct iovec iov[2] = { { &h, sizeof(h) }, { &t, sizeof(t) } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n = -1;
	int ret;

	pthread_mutex_lock(&s->backend_lock);
	if (s->backend_fd < 0) {
		if (!s->said_no_backend)
			fprintf(stderr, "sidecore: %s: an IOTLB miss at iova 0x%llx, but the front end gave no back-end "
				"channel (SET_BACKEND_REQ_FD) to ask on; its queue will time out\n", s->path,
				(unsigned long long)iova);
		s->said_no_backend = true;
		ret = -ENOTCONN;
	} else {
		n = sendmsg(s->backend_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		ret = n == (ssize_t)(sizeof(h) + sizeof(t)) ? 0 : -EAGAIN;
		if (ret == 0)
			stat_add(&s->iostats.misses, 1);
		if (n >= 0 && ret < 0) {
			/* Part of a message: the channel is out of step for good. */
			fprintf(stderr, "sidecore: %s: the back-end channel took only %zd bytes of a MISS; closing it\n",
				s->path, n);
			close(s->backend_fd);
			s->backend_fd = -1;
		}
	}
	pthread_mutex_unlock(&s->backend_lock);
	return ret;
}

static void backend_close(struct sc_vu_server *s)
{
	pthread_mutex_lock(&s->backend_lock);
	close_fd(&s->backend_fd);
	s->said_no_backend = false;
	pthread_mutex_unlock(&s->backend_lock);
}

/*
 * Wait until done(s) holds, at most until deadline (ms). The control
 * thread only: it serves no other device. A grace period is a poll round
 * or two, and the requests it waits for are a disk's latency: spin a few
 * microseconds, then sleep in short naps. Not sched_yield: this thread
 * runs on the cpus the sidecores leave, where the front end may spin too,
 * and a yield hands such a spinner the cpu for a whole time slice (the
 * acks of a batched IOTLB flush took 1.5 ms that way, 0.3 ms with naps).
 */
static bool iotlb_wait(struct sc_vu_server *s, bool (*done)(struct sc_vu_server *s), int64_t deadline)
{
	uint64_t spin_until = sc_rdtsc() + sc_tsc_hz() / 100000;   /* 10 us */

	for (;;) {
		if (done(s))
			return true;
		if (now_ms() > deadline || __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
			return false;
		if (sc_rdtsc() < spin_until)
			sc_cpu_relax();
		else
			nanosleep(&(struct timespec){ 0, 5000 }, NULL);
	}
}

static bool grace_over(struct sc_vu_server *s)
{
	return sc_viommu_grace_done(s->viommu, s->iotlb_ticket);
}

static bool rings_drained(struct sc_vu_server *s)
{
	for (unsigned i = 0; i < s->nvrings; i++)
		if (s->vrings[i].started && s->tcs[i].slot && !sc_viommu_tc_drained(&s->tcs[i]))
			return false;
	return true;
}

static void vring_stop(struct sc_vu_server *s, unsigned idx);

/* ---- isolation: only granted guest pages are mapped ---- */

static bool isolated(const struct sc_vu_server *s)
{
	return s->ops->iotlb_isolation;
}

/* Optimistic teardown: an INVALIDATE is acked at once; its entries die when their window ends. */
static bool optimistic(const struct sc_vu_server *s)
{
	return s->ops->iotlb_window_ms != 0;
}

/*
 * Unmap guest [gpa, gpa + len) at the end of the next grace period
 * (iotlb_quiesce), unless a grant covers it then.
 */
static void revoke_later(struct sc_vu_server *s, uint64_t gpa, uint64_t len)
{
	sc_grants_pend(&s->grants, gpa, gpa + len);
}

/* Drop the grants that overlap iova [iova, last]; true if there were any. */
static bool grants_drop_iova(struct sc_vu_server *s, uint64_t iova, uint64_t last)
{
	return sc_grants_drop_iova(&s->grants, iova, last) != 0;
}

/* Unmap guest [gpa, end), region by region (pending ranges that touch are merged across regions). */
static void revoke_now(void *arg, uint64_t gpa, uint64_t end)
{
	struct sc_vu_server *s = arg;

	while (gpa < end) {
		const struct sc_mem_region *r = sc_mem_find(&s->mem, gpa);
		uint64_t stop = r && r->size - (gpa - r->gpa) < end - gpa ? r->gpa + r->size : end;
		int ret = r ? sc_mem_revoke(&s->mem, gpa, stop - gpa) : 0;
		/* No region: it went already, and its mapping with it. */
		if (ret < 0)
			fprintf(stderr, "sidecore: %s: unmapping guest 0x%llx (+0x%llx): %s; it stays mapped\n", s->path,
				(unsigned long long)gpa, (unsigned long long)(stop - gpa), strerror(-ret));
		if (!r)
			break;
		gpa = stop;
	}
}

/* Unmap guest [gpa, end) except the pages a live grant still covers. */
static void revoke_uncovered(struct sc_vu_server *s, uint64_t gpa, uint64_t end)
{
	sc_grants_uncovered_each(&s->grants, gpa, end, false, revoke_now, s);
}

static void note_gap(void *arg, uint64_t gpa, uint64_t end)
{
	(void)gpa, (void)end;
	*(bool *)arg = true;
}

/*
 * Is all of guest [gpa, end) mapped already (granted, or dropped and not
 * yet unmapped)? A lazy guest's batch invalidates a window and maps the
 * same pages again: that costs no mmap, and their unmap is skipped too.
 */
static bool mapped_already(struct sc_vu_server *s, uint64_t gpa, uint64_t end)
{
	bool gap = false;
	sc_grants_uncovered_each(&s->grants, gpa, end, true, note_gap, &gap);
	return !gap;
}

/* After a grace period: no sidecore can use what was dropped. Unmap it. */
static void isol_revoke_pending(struct sc_vu_server *s)
{
	sc_grants_flush(&s->grants, revoke_now, s);
}

static void invalidate_gone(void *arg, uint64_t iova, uint64_t last)
{
	struct sc_vu_server *s = arg;
	bool removed;
	/* Now, not after a window: a dying entry would still translate into the guest address. */
	sc_viommu_remove(s->viommu, 0, iova, last, &removed);
}

/*
 * A region leaves (rings are stopped): its mapping goes whole with it, so
 * its grants go without a revoke, and so do their IOTLB entries: they would
 * translate into whatever is mapped at that guest address next, ungranted.
 */
static void grants_drop_region(struct sc_vu_server *s, uint64_t gpa, uint64_t size)
{
	sc_grants_drop_region(&s->grants, gpa, size, invalidate_gone, s);
}

static void grants_clear(struct sc_vu_server *s)
{
	sc_grants_clear(&s->grants);
}

/*
 * A grace period overdue by IOTLB_QUIESCE_MS: stop the queues that still
 * hold requests from before the last epoch flip (all started ones if the
 * rounds are not over either); stopping waits for their I/O, and they
 * start again afresh.
 */
static void iotlb_stop_holders(struct sc_vu_server *s, bool rounds_over)
{
	fprintf(stderr, "sidecore: %s: an IOTLB invalidation waited %d ms for the sidecores; stopping the "
		"queues that still hold requests from before it (they start again)\n", s->path, IOTLB_QUIESCE_MS);
	for (unsigned i = 0; i < s->nvrings; i++)
		if (s->vrings[i].started && s->tcs[i].slot && (!rounds_over || !sc_viommu_tc_drained(&s->tcs[i])))
			vring_stop(s, i);
}

/*
 * After a removal: return only once no sidecore can use the old
 * translation, neither in a poll round nor in a request still in flight
 * (sc_viommu_epochs_flip). A queue that does not let go within
 * IOTLB_QUIESCE_MS is stopped (stopping waits for its I/O) and starts
 * again afresh: the acknowledgement is never early.
 */
static void iotlb_quiesce(struct sc_vu_server *s)
{
	int64_t deadline = now_ms() + IOTLB_QUIESCE_MS;
	bool ok;

	/*
	 * Sealed ranges wait for the requests counted before their flip; the
	 * flip below would count new ones in the same slot: they go first.
	 */
	if (s->iso_sealed && !iotlb_wait(s, rings_drained, deadline))
		iotlb_stop_holders(s, true);
	s->iso_sealed = false;   /* flushed below with the rest */
	stat_add(&s->iostats.flushes, 1);
	sc_viommu_epochs_flip(s->viommu);
	s->iotlb_ticket = sc_viommu_grace_start(s->viommu);
	ok = iotlb_wait(s, grace_over, deadline) && iotlb_wait(s, rings_drained, deadline);
	if (!ok) {
		iotlb_stop_holders(s, grace_over(s));
		/* Detached queues are out of every round: the grace period ends now. */
		iotlb_wait(s, grace_over, now_ms() + IOTLB_QUIESCE_MS);
	}
	s->iotlb_batch_removed = false;
	isol_revoke_pending(s);
}

/*
 * Isolation with optimistic teardown, each tick of the control thread:
 * the ranges whose last grant ended (an entry expired, or an UPDATE
 * replaced a dying one) are unmapped after a grace period that started
 * after they were dropped, and after the requests translated before it
 * are pushed; nothing is acked late for them. One grace period runs at a
 * time: what drops meanwhile waits for the next, so a steady stream of
 * expiries cannot keep a range mapped. Returns true while work remains.
 */
static bool isol_advance(struct sc_vu_server *s)
{
	if (s->iso_sealed) {
		if (!sc_viommu_grace_done(s->viommu, s->iso_ticket) || !rings_drained(s)) {
			if (now_ms() <= s->iso_deadline)
				return true;
			iotlb_stop_holders(s, sc_viommu_grace_done(s->viommu, s->iso_ticket));
			s->iso_deadline = now_ms() + IOTLB_QUIESCE_MS;
			return true;   /* detached queues are out of every round: a tick or two more */
		}
		sc_grants_flush_sealed(&s->grants, revoke_now, s);
		s->iso_sealed = false;
	}
	if (!sc_grants_pending(&s->grants) || sc_grants_seal(&s->grants) < 0)
		return false;
	sc_viommu_epochs_flip(s->viommu);
	s->iso_ticket = sc_viommu_grace_start(s->viommu);
	s->iso_deadline = now_ms() + IOTLB_QUIESCE_MS;
	s->iso_sealed = true;
	return true;
}

int sc_vu_server_create(const char *path, const struct sc_vu_device_ops *ops, void *ctx,
			struct sc_vu_server **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sc_vu_server *s;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: socket path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (ops->num_queues == 0 || ops->num_queues > SC_VU_MAX_VRINGS) {
		snprintf(err, errlen, "%s: %u queues, the server supports 1..%u", path, ops->num_queues, SC_VU_MAX_VRINGS);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	strcpy(s->path, path);
	sc_grants_init(&s->grants, s->path);
	strcpy(sa.sun_path, path);
	s->ops = ops;
	s->ctx = ctx;
	s->nvrings = ops->num_queues;
	s->conn_fd = -1;
	s->out.fd = -1;
	s->timeout_ms = SC_VU_CONTROL_TIMEOUT_MS;
	sc_mem_init(&s->mem);
	s->backend_fd = -1;
	pthread_mutex_init(&s->backend_lock, NULL);
	int vr = iotlb_create(s);
	if (vr < 0) {
		snprintf(err, errlen, "%s: creating its IOTLB: %s", path, strerror(-vr));
		free(s);
		return vr;
	}
	for (unsigned i = 0; i < SC_VU_MAX_VRINGS; i++) {
		vring_init(&s->vrings[i]);
		snprintf(s->vrings[i].name, sizeof(s->vrings[i].name), "%s vring %u", path, i);
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: eventfd: %s", path, strerror(e));
		sc_viommu_destroy(s->viommu);
		free(s);
		return -e;
	}

	/* A socket file left by a previous run is ours to replace; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s: exists and is not a socket; remove it or choose another path", path);
			close(s->stop_fd);
			sc_viommu_destroy(s->viommu);
			free(s);
			return -EEXIST;
		}
		unlink(path);
	}
	/* Non-blocking: a connection that goes away between poll and accept must not block us. */
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->listen_fd, 1) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot listen: %s%s", path, strerror(e),
			 e == EACCES || e == ENOENT ? "; check that the directory exists and is writable" : "");
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		close(s->stop_fd);
		sc_viommu_destroy(s->viommu);
		free(s);
		return -e;
	}
	*out = s;
	return 0;
}

void sc_vu_server_set_timeout(struct sc_vu_server *s, int timeout_ms)
{
	s->timeout_ms = timeout_ms > 0 ? timeout_ms : SC_VU_CONTROL_TIMEOUT_MS;
}

unsigned sc_vu_server_started(const struct sc_vu_server *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nvrings; i++)
		n += __atomic_load_n(&s->vrings[i].started, __ATOMIC_RELAXED);
	return n;
}

_Static_assert(sizeof(struct sc_vu_iotlb_stats) % sizeof(uint64_t) == 0, "sc_vu_iotlb_stats: uint64_t fields only");

void sc_vu_server_iotlb_stats(const struct sc_vu_server *s, struct sc_vu_iotlb_stats *st)
{
	const uint64_t *from = (const uint64_t *)&s->iostats;
	uint64_t *to = (uint64_t *)st;
	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

/* ---- vrings ---- */

/* The guest address of the front end's [uva, uva + len), if it lies inside one region. */
static bool uva_to_gpa(const struct sc_vu_server *s, uint64_t uva, uint64_t len, uint64_t *gpa)
{
	for (unsigned i = 0; i < s->nmap; i++) {
		uint64_t off = uva - s->map[i].uva;
		if (off < s->map[i].size && len <= s->map[i].size - off) {
			*gpa = s->map[i].gpa + off;
			return true;
		}
	}
	return false;
}

/* Stop a started vring: the device detaches it and finishes its requests first. */
static void vring_stop(struct sc_vu_server *s, unsigned idx)
{
	struct vring *v = &s->vrings[idx];
	if (!v->started)
		return;
	v->base = s->ops->queue_stop(s->ctx, idx);
	__atomic_store_n(&v->started, false, __ATOMIC_RELAXED);
	sc_viommu_tc_fini(&s->tcs[idx]);
}

static void vrings_stop(struct sc_vu_server *s)
{
	for (unsigned i = 0; i < s->nvrings; i++)
		vring_stop(s, i);
}

/* Size, addresses, a kick fd and (with protocol features) enabled: the front end meant it to run. */
static bool vring_described(const struct sc_vu_server *s, const struct vring *v)
{
	bool need_enable = s->features & (1ull << SC_VU_F_PROTOCOL_FEATURES);
	return v->num && v->addr_set && v->kick_fd >= 0 && (v->enabled || !need_enable);
}

/*
 * With ACCESS_PLATFORM the ring addresses are IOVAs: each ring must
 * translate through the IOTLB before the queue starts. A ring that misses
 * sends a MISS (through its translation context, as the sidecore will)
 * and waits: the UPDATE that answers it re-evaluates the rings.
 */
static int vring_maybe_start_iotlb(struct sc_vu_server *s, unsigned idx, struct sc_vq_config *cfg, char *err,
				   size_t errlen)
{
	struct vring *v = &s->vrings[idx];
	struct sc_viommu_tc *tc = &s->tcs[idx];
	const struct { uint64_t at, len; unsigned perm; } ring[3] = {
		{ v->addr.desc_user_addr, 16ull * v->num, SC_PERM_READ },
		{ v->addr.avail_user_addr, 6 + 2ull * v->num, SC_PERM_READ },
		{ v->addr.used_user_addr, 6 + 8ull * v->num, SC_PERM_RW },
	};
	int ret;

	if (!tc->slot) {
		ret = sc_viommu_tc_init(s->viommu, tc, 0);
		if (ret < 0) {
			snprintf(err, errlen, "vring %u: no translation context: %s", idx, strerror(-ret));
			return ret;
		}
		sc_viommu_tc_iotlb(tc, iotlb_send_miss, s,
				   (uint64_t)(s->ops->iotlb_miss_ms ? s->ops->iotlb_miss_ms : SC_VU_IOTLB_MISS_MS) * 1000000ull);
	}
	for (unsigned k = 0; k < 3; k++) {
		struct iovec iov;
		/* The control thread is the IOTLB's only writer: nothing can change under this translation. */
		ret = sc_viommu_translate(tc, ring[k].at, ring[k].len, ring[k].perm, &iov, 1);
		if (ret == 1)
			continue;
		/*
		 * A miss is the normal start (QEMU answers at once): said only
		 * once it has waited past the miss timeout, seen at the next
		 * message. Anything else (a permission, a ring over two
		 * mappings that are not contiguous) at once.
		 */
		/* In ns on both sides: now_ms() * 1e6 lags a miss sent within the same ms and wrapped to "stale". */
		bool stale = ret == -EAGAIN && now_ns() - tc->miss_since_ns > tc->miss_timeout_ns;
		if ((ret != -EAGAIN || stale) && !v->said_iotlb)
			fprintf(stderr, "sidecore: %s: ring at iova 0x%llx (+%llu) does not translate through the IOTLB "
				"(%s); it waits for an UPDATE that maps it\n", v->name, (unsigned long long)ring[k].at,
				(unsigned long long)ring[k].len, ret == -EAGAIN ? "the MISS was not answered" : strerror(-ret));
		v->said_iotlb = v->said_iotlb || ret != -EAGAIN || stale;
		return 0;   /* a miss went out: the UPDATE comes back through vrings_update */
	}
	cfg->desc_addr = ring[0].at;
	cfg->avail_addr = ring[1].at;
	cfg->used_addr = ring[2].at;
	cfg->xlate = sc_viommu_tc_xlate(tc);
	cfg->epochs = &tc->slot->epochs;
	ret = sc_viommu_tc_pin_rings(tc, cfg);
	if (ret == 0)
		ret = s->ops->queue_start(s->ctx, idx, cfg, tc);
	if (ret < 0) {
		snprintf(err, errlen, "vring %u: the device could not start it: %s", idx, strerror(-ret));
		return ret;
	}
	__atomic_store_n(&v->started, true, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Start vring idx if it is described and its rings map completely; a ring
 * that does not map (yet: no table, or between QEMU's REM_MEM_REG and
 * ADD_MEM_REG) waits without an error. Fails only if the device cannot.
 */
static int vring_maybe_start(struct sc_vu_server *s, unsigned idx, char *err, size_t errlen)
{
	struct vring *v = &s->vrings[idx];
	struct sc_vq_config cfg;

	if (v->started || !vring_described(s, v))
		return 0;
	cfg = (struct sc_vq_config){
		.size = v->num, .features = s->features, .last_avail = v->base,
		.xlate = sc_mem_xlate(&s->mem), .call_fd = v->call_fd, .kick_fd = v->kick_fd,
		.err_fd = v->err_fd, .name = v->name,
	};
	if (s->inflight && idx < s->inflight_nq && v->num == s->inflight_qsize)
		cfg.inflight = (struct sc_vq_inflight *)(s->inflight + idx * sc_vq_inflight_bytes(v->num));
	if (iotlb_on(s))
		return vring_maybe_start_iotlb(s, idx, &cfg, err, errlen);
	if (isolated(s)) {
		/* No IOTLB to say what is granted, and whole regions are what isolation never maps. */
		if (!v->said_unmapped)
			fprintf(stderr, "sidecore: %s: iommu_isolation = yes, but the front end did not negotiate "
				"VIRTIO_F_ACCESS_PLATFORM; the ring does not start (give the device iommu_platform=on "
				"behind a vIOMMU, or set iommu_isolation = no)\n", v->name);
		v->said_unmapped = true;
		return 0;
	}
	/* Whole rings, event index fields included (virtio 1.2 §2.7). */
	if (!uva_to_gpa(s, v->addr.desc_user_addr, 16ull * v->num, &cfg.desc_addr) ||
	    !uva_to_gpa(s, v->addr.avail_user_addr, 6 + 2ull * v->num, &cfg.avail_addr) ||
	    !uva_to_gpa(s, v->addr.used_user_addr, 6 + 8ull * v->num, &cfg.used_addr)) {
		/* No stall without a word: say it once (QEMU's REM/ADD_MEM_REG passes through here legitimately). */
		if (!v->said_unmapped)
			fprintf(stderr, "sidecore: %s: its rings are not (all) in the memory table; it waits until they are\n",
				v->name);
		v->said_unmapped = true;
		return 0;
	}
	int ret = s->ops->queue_start(s->ctx, idx, &cfg, NULL);
	if (ret < 0) {
		snprintf(err, errlen, "vring %u: the device could not start it: %s", idx, strerror(-ret));
		return ret;
	}
	__atomic_store_n(&v->started, true, __ATOMIC_RELAXED);
	return 0;
}

/* After any change: stop what can no longer run, start what now can. */
static int vrings_update(struct sc_vu_server *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->nvrings; i++) {
		if (s->vrings[i].started && !vring_described(s, &s->vrings[i]))
			vring_stop(s, i);
		int ret = vring_maybe_start(s, i, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void inflight_unmap(struct sc_vu_server *s)
{
	if (s->inflight)
		munmap(s->inflight, s->inflight_size);
	s->inflight = NULL;
}

/*
 * Forget the device state: vrings, memory, features. A reset keeps the
 * negotiated protocol features (QEMU does not negotiate them again); a
 * new connection starts from nothing.
 */
static void reset_device(struct sc_vu_server *s, bool keep_protocol_features)
{
	vrings_stop(s);
	for (unsigned i = 0; i < s->nvrings; i++) {
		struct vring *v = &s->vrings[i];
		close_fd(&v->kick_fd);
		close_fd(&v->call_fd);
		close_fd(&v->err_fd);
		vring_init(v);
	}
	sc_mem_fini(&s->mem);
	s->nmap = 0;
	grants_clear(s);
	s->features = 0;
	/* Every ring is stopped, so no context uses the table: a new one replaces it. */
	if (iotlb_create(s) < 0)
		fprintf(stderr, "sidecore: %s: no memory for a fresh IOTLB; the old one's entries stay\n", s->path);
	s->iotlb_batch = s->iotlb_batch_removed = false;
	if (!keep_protocol_features) {
		s->protocol_features = 0;
		backend_close(s);
	}
	s->status = 0;
	inflight_unmap(s);
}

/* Map an inflight region of nq queues of qsize entries from fd (taken). Rings are stopped. */
static int inflight_map(struct sc_vu_server *s, int fd, uint64_t size, uint64_t offset, uint16_t nq,
			uint16_t qsize, char *err, size_t errlen)
{
	if (size < (uint64_t)nq * sc_vq_inflight_bytes(qsize) || size > (1ull << 30)) {
		close(fd);
		snprintf(err, errlen, "inflight area of %llu bytes does not fit %u queues of %u entries",
			 (unsigned long long)size, nq, qsize);
		return -EINVAL;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	int e = errno;
	close(fd);   /* the mapping keeps the memory; the VMM keeps its own fd */
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "mapping the inflight area: %s", strerror(e));
		return -e;
	}
	inflight_unmap(s);
	s->inflight = p;
	s->inflight_size = size;
	s->inflight_nq = nq;
	s->inflight_qsize = qsize;
	return 0;
}

/* ---- memory (every ring is stopped while these run: SC_VU_RINGS_ALL) ---- */

static int mem_add(struct sc_vu_server *s, const struct sc_vu_region *r, int fd, char *err, size_t errlen)
{
	int ret;

	if (s->nmap == SC_MEM_MAX_REGIONS) {
		close(fd);
		snprintf(err, errlen, "more than %u memory regions", SC_MEM_MAX_REGIONS);
		return -ENOSPC;
	}
	ret = (isolated(s) ? sc_mem_add_fd_isolated : sc_mem_add_fd)(&s->mem, r->guest_phys_addr, r->memory_size, fd,
									r->mmap_offset, SC_PERM_RW);
	if (ret < 0) {
		snprintf(err, errlen, "mapping region [0x%llx, +0x%llx): %s", (unsigned long long)r->guest_phys_addr,
			 (unsigned long long)r->memory_size, strerror(-ret));
		return ret;
	}
	s->map[s->nmap++] = (struct uva_map){ r->userspace_addr, r->guest_phys_addr, r->memory_size };
	return 0;
}

/* ---- one handler per request (the rows of SC_VU_REQUESTS) ---- */

/*
 * A handler acts on a checked message whose fds were checked too. v is the
 * vring the message names (NULL if none). It returns 0 (acked if the front
 * end asked), 1 if it set the reply (reply()), or a negative errno with err
 * set (-ENOTSUP: answered, the connection goes on; anything else drops it).
 * It takes the fds it keeps out of m (fds[i] = -1); the rest are closed.
 */
#define HANDLER(name) \
	static int vu_##name(struct sc_vu_server *s, struct sc_vu_msg *m, struct vring *v, char *err, size_t errlen)

/*
 * Set the reply (size ≤ sizeof(s->out.payload); fd, if ≥ 0, is taken).
 * It goes out after the rings are re-evaluated, so that a front end that
 * has its answer also sees the rings in their new state.
 */
static int reply(struct sc_vu_server *s, const void *payload, uint32_t size, int fd)
{
	memcpy(s->out.payload, payload, size);
	s->out.size = size;
	s->out.fd = fd;
	s->out.set = true;
	return 1;
}

static int reply_u64(struct sc_vu_server *s, uint64_t u)
{
	return reply(s, &u, sizeof(u), -1);
}

static void reply_discard(struct sc_vu_server *s)
{
	close_fd(&s->out.fd);
	s->out.set = false;
}

/* Replies go out with the same limits as messages come in. */
static int reply_send(struct sc_vu_server *s, const struct sc_vu_msg *m, char *err, size_t errlen)
{
	int ret = sc_vu_send_timed(s->conn_fd, m->hdr.request, SC_VHOST_USER_REPLY, s->out.payload, s->out.size,
				   s->out.fd, s->timeout_ms, s->stop_fd);
	reply_discard(s);
	if (ret < 0)
		snprintf(err, errlen, "%s reply: %s", sc_vu_request_name(m->hdr.request),
			 ret == -ETIMEDOUT ? "the front end did not read it in time" : strerror(-ret));
	return ret;
}

static uint64_t features_offered(const struct sc_vu_server *s)
{
	return s->ops->features | (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VU_F_ACCESS_PLATFORM);
}

HANDLER(GET_FEATURES)
{
	return reply_u64(s, features_offered(s));
}

HANDLER(SET_FEATURES)
{
	uint64_t u = m->payload.u64;
	if (u & ~features_offered(s)) {
		snprintf(err, errlen, "SET_FEATURES 0x%llx asks for features never offered", (unsigned long long)u);
		return -EINVAL;
	}
	/* Rings in the other address space are stopped and looked at again (vrings_update). */
	if ((u ^ s->features) & (1ull << SC_VU_F_ACCESS_PLATFORM))
		vrings_stop(s);
	s->features = u;
	return 0;
}

HANDLER(GET_PROTOCOL_FEATURES)
{
	return reply_u64(s, PROTOCOL_FEATURES);
}

HANDLER(SET_PROTOCOL_FEATURES)
{
	s->protocol_features = m->payload.u64 & PROTOCOL_FEATURES;
	return 0;
}

HANDLER(SET_OWNER)
{
	return 0;
}

HANDLER(RESET_DEVICE)
{
	reset_device(s, true);
	return 0;
}

/* Older front ends say RESET_OWNER where they mean a reset of the device. */
HANDLER(RESET_OWNER)
{
	return vu_RESET_DEVICE(s, m, v, err, errlen);
}

HANDLER(GET_QUEUE_NUM)
{
	return reply_u64(s, s->ops->queue_num ? s->ops->queue_num : s->nvrings);
}

HANDLER(GET_MAX_MEM_SLOTS)
{
	return reply_u64(s, SC_MEM_MAX_REGIONS);
}

HANDLER(SET_MEM_TABLE)
{
	for (unsigned i = 0; i < s->nmap; i++)
		grants_drop_region(s, s->map[i].gpa, s->map[i].size);
	sc_mem_fini(&s->mem);
	s->nmap = 0;
	for (unsigned i = 0; i < m->payload.memory.nregions; i++) {
		int ret = mem_add(s, &m->payload.memory.regions[i], m->fds[i], err, errlen);
		m->fds[i] = -1;   /* taken (or closed) by mem_add */
		if (ret < 0)
			return ret;
	}
	return 0;
}

HANDLER(ADD_MEM_REG)
{
	int fd = m->fds[0];
	m->fds[0] = -1;
	return mem_add(s, &m->payload.mem_reg.region, fd, err, errlen);
}

HANDLER(REM_MEM_REG)
{
	const struct sc_vu_region *r = &m->payload.mem_reg.region;
	for (unsigned i = 0; i < s->nmap; i++)
		if (s->map[i].gpa == r->guest_phys_addr && s->map[i].size == r->memory_size) {
			s->map[i] = s->map[--s->nmap];
			grants_drop_region(s, r->guest_phys_addr, r->memory_size);
			return sc_mem_remove(&s->mem, r->guest_phys_addr);
		}
	snprintf(err, errlen, "REM_MEM_REG of a region that is not in the table");
	return -ENOENT;
}

/* The ring's layout may change only while it is stopped. */
static int vring_not_running(const struct vring *v, const struct sc_vu_msg *m, char *err, size_t errlen)
{
	if (!v->started)
		return 0;
	snprintf(err, errlen, "%s on a running vring", sc_vu_request_name(m->hdr.request));
	return -EBUSY;
}

HANDLER(SET_VRING_NUM)
{
	int ret = vring_not_running(v, m, err, errlen);
	if (ret < 0)
		return ret;
	if (s->ops->max_queue_size && m->payload.state.num > s->ops->max_queue_size) {
		snprintf(err, errlen, "vring %u: queue size %u is above this disk's queue_size %u",
			 m->payload.state.index, m->payload.state.num, s->ops->max_queue_size);
		return -EINVAL;
	}
	v->num = m->payload.state.num;
	return 0;
}

HANDLER(SET_VRING_ADDR)
{
	int ret = vring_not_running(v, m, err, errlen);
	if (ret < 0)
		return ret;
	v->addr = m->payload.addr;
	v->addr_set = true;
	return 0;
}

HANDLER(SET_VRING_BASE)
{
	int ret = vring_not_running(v, m, err, errlen);
	if (ret < 0)
		return ret;
	v->base = (uint16_t)m->payload.state.num;
	return 0;
}

HANDLER(GET_VRING_BASE)
{
	/* Stopped already (SC_VU_RINGS_ONE): the answer is where the sidecore really left the ring. */
	struct sc_vu_vring_state st = { m->payload.state.index, v->base };
	close_fd(&v->kick_fd);   /* the ring is stopped until a new kick fd comes */
	return reply(s, &st, sizeof(st), -1);
}

/* SET_VRING_KICK/CALL/ERR: the ring is stopped (SC_VU_RINGS_ONE); swap the fd, the update restarts it. */
static int vring_set_fd(int *slot, struct sc_vu_msg *m)
{
	close_fd(slot);
	if (m->nfds) {
		*slot = m->fds[0];
		m->fds[0] = -1;
	}
	return 0;
}

HANDLER(SET_VRING_KICK)
{
	return vring_set_fd(&v->kick_fd, m);
}

HANDLER(SET_VRING_CALL)
{
	return vring_set_fd(&v->call_fd, m);
}

HANDLER(SET_VRING_ERR)
{
	return vring_set_fd(&v->err_fd, m);
}

HANDLER(SET_VRING_ENABLE)
{
	v->enabled = m->payload.state.num;   /* the update stops or starts it */
	return 0;
}

HANDLER(GET_CONFIG)
{
	struct sc_vu_config c = m->payload.config;
	int ret = s->ops->get_config ? s->ops->get_config(s->ctx, c.region, c.offset, c.size) : -ENOTSUP;
	if (ret < 0) {
		snprintf(err, errlen, "GET_CONFIG: %s", strerror(-ret));
		return ret;
	}
	return reply(s, &c, 12 + c.size, -1);
}

HANDLER(SET_CONFIG)
{
	snprintf(err, errlen, "SET_CONFIG: the config space is read-only");
	return -ENOTSUP;
}

HANDLER(GET_INFLIGHT_FD)
{
	/* We lay it out (vqueue's format); the VMM only keeps it and gives it back. Sealed by sc_mem_memfd_create. */
	struct sc_vu_inflight in = m->payload.inflight;
	uint64_t size = (uint64_t)in.num_queues * sc_vq_inflight_bytes(in.queue_size);
	int fd = sc_mem_memfd_create("sidecore-inflight", size);
	if (fd < 0) {
		snprintf(err, errlen, "GET_INFLIGHT_FD: memfd: %s", strerror(-fd));
		return fd;
	}
	int send_fd = dup(fd);
	int ret = inflight_map(s, fd, size, 0, in.num_queues, in.queue_size, err, errlen);
	if (ret < 0) {
		close(send_fd);
		return ret;
	}
	uint8_t out[24] = { 0 };   /* the 20-byte description padded, as QEMU sends it */
	memcpy(out, &(struct sc_vu_inflight){ size, 0, in.num_queues, in.queue_size }, sizeof(struct sc_vu_inflight));
	return reply(s, out, sizeof(out), send_fd);
}

HANDLER(SET_INFLIGHT_FD)
{
	struct sc_vu_inflight in = m->payload.inflight;
	int fd = m->fds[0];
	m->fds[0] = -1;
	return inflight_map(s, fd, in.mmap_size, in.mmap_offset, in.num_queues, in.queue_size, err, errlen);
}

HANDLER(SET_BACKEND_REQ_FD)
{
	pthread_mutex_lock(&s->backend_lock);
	close_fd(&s->backend_fd);
	s->backend_fd = m->fds[0];
	m->fds[0] = -1;
	s->said_no_backend = false;
	pthread_mutex_unlock(&s->backend_lock);
	return 0;
}

/*
 * Refuse an IOTLB message: one line, an error ack if one was asked for,
 * and the connection goes on (the entry is simply not there: what needs
 * it misses, and times out if nothing better comes).
 */
static int iotlb_refuse(struct sc_vu_server *s, const struct sc_vu_msg *m, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int iotlb_refuse(struct sc_vu_server *s, const struct sc_vu_msg *m, int err, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sidecore: %s: vhost-user IOTLB_MSG (22): %s; refused\n", s->path, why);
	stat_add(&s->iostats.refused, 1);
	if ((m->hdr.flags & SC_VHOST_USER_NEED_REPLY) &&
	    (s->protocol_features & (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK)))
		return reply_u64(s, (uint64_t)-err);
	return 0;
}

/* A removal is acknowledged once no sidecore can use it; in a batch, once at BATCH_END. */
static void iotlb_removed(struct sc_vu_server *s)
{
	if (s->iotlb_batch)
		s->iotlb_batch_removed = true;
	else
		iotlb_quiesce(s);
}

/*
 * Isolation, once an UPDATE of [t->iova, last] to guest gpa is in the
 * IOTLB (its pages were mapped before, sc_mem_grant): note the grant, and
 * drop the ones it replaced (*removed). The same grant again changes
 * nothing (nor does a dying entry revived: its pages never went).
 * Optimistic: a replaced live entry sets *removed in the IOTLB already;
 * the dying ones the guest gave up, and isol_advance unmaps their pages.
 */
static void isol_note(struct sc_vu_server *s, const struct sc_vu_iotlb *t, uint64_t last, uint64_t gpa, bool *removed)
{
	if (sc_grants_has(&s->grants, t->iova, last, gpa))
		return;
	if (grants_drop_iova(s, t->iova, last) && !optimistic(s))
		*removed = true;
	if (sc_grants_add(&s->grants, t->iova, last, gpa) < 0)
		fprintf(stderr, "sidecore: %s: no memory to note the grant of guest 0x%llx (+0x%llx); its pages stay "
			"mapped until its region goes\n", s->path, (unsigned long long)gpa, (unsigned long long)t->size);
}

HANDLER(IOTLB_MSG)
{
	const struct sc_vu_iotlb t = m->payload.iotlb;   /* one copy, checked, then used */
	uint64_t last, ulast, gpa;
	bool removed = false;
	int ret;

	if (!iotlb_on(s))
		return iotlb_refuse(s, m, -EPROTO, "SC_VIRTIO_F_ACCESS_PLATFORM was not negotiated");
	switch (t.type) {
	case SC_VHOST_IOTLB_UPDATE:
	case SC_VHOST_IOTLB_INVALIDATE:
		if (t.size == 0)
			return iotlb_refuse(s, m, -EINVAL, "%s of size 0",
					    t.type == SC_VHOST_IOTLB_UPDATE ? "UPDATE" : "INVALIDATE");
		if (__builtin_add_overflow(t.iova, t.size - 1, &last) ||
		    (t.type == SC_VHOST_IOTLB_UPDATE && __builtin_add_overflow(t.uaddr, t.size - 1, &ulast)))
			return iotlb_refuse(s, m, -EOVERFLOW, "range iova 0x%llx uaddr 0x%llx of 0x%llx bytes wraps",
					    (unsigned long long)t.iova, (unsigned long long)t.uaddr,
					    (unsigned long long)t.size);
		break;
	case SC_VHOST_IOTLB_BATCH_BEGIN:
		s->iotlb_batch = true;
		return 0;
	case SC_VHOST_IOTLB_BATCH_END:
		s->iotlb_batch = false;
		if (s->iotlb_batch_removed)
			iotlb_quiesce(s);
		return 0;
	case SC_VHOST_IOTLB_MISS:
	case SC_VHOST_IOTLB_ACCESS_FAIL:
		return iotlb_refuse(s, m, -EINVAL, "type %u (%s) goes from the back end to the front end", t.type,
				    t.type == SC_VHOST_IOTLB_MISS ? "MISS" : "ACCESS_FAIL");
	default:
		return iotlb_refuse(s, m, -EINVAL, "unknown type %u", t.type);
	}

	if (t.type == SC_VHOST_IOTLB_INVALIDATE) {
		stat_add(&s->iostats.invalidates, 1);
		sc_viommu_invalidate(s->viommu, 0, t.iova, last, &removed);
		iotlb_note_entries(s);
		/* Optimistic: the grants end with the entries, as their windows end (isol_expired). */
		if (isolated(s) && !optimistic(s) && grants_drop_iova(s, t.iova, last))
			removed = true;
		if (removed)
			iotlb_removed(s);
		/* Optimistic: acknowledged now; the entries go within the window (serve_once ticks). */
		s->iotlb_ticking = optimistic(s);
		return 0;
	}
	if (t.perm == 0 || t.perm > SC_VHOST_ACCESS_RW)
		return iotlb_refuse(s, m, -EINVAL, "UPDATE with unknown perm %u (1 read, 2 write, 3 both)", t.perm);
	if (!uva_to_gpa(s, t.uaddr, t.size, &gpa))
		return iotlb_refuse(s, m, -EFAULT, "UPDATE of uaddr [0x%llx, +0x%llx) outside every region of the memory table",
				    (unsigned long long)t.uaddr, (unsigned long long)t.size);
	uint32_t cap = s->ops->iotlb_max ? s->ops->iotlb_max : SC_VU_IOTLB_MAX;
	bool full = sc_viommu_domain_mappings(s->viommu, 0) >= (int)cap;
	/* Isolation: the pages are there before any entry can translate to them. */
	if (isolated(s) && !full && !mapped_already(s, gpa, gpa + t.size) && (ret = sc_mem_grant(&s->mem, gpa, t.size)) < 0)
		return ret == -ERANGE ? iotlb_refuse(s, m, ret, "UPDATE of uaddr 0x%llx +0x%llx (guest 0x%llx) is not whole "
						      "pages of its region's fd, which an isolated device maps",
						      (unsigned long long)t.uaddr, (unsigned long long)t.size,
						      (unsigned long long)gpa)
				      : iotlb_refuse(s, m, ret, "UPDATE: mapping its pages: %s", strerror(-ret));
	ret = full ? -ENOMEM : sc_viommu_update(s->viommu, 0, t.iova, last, gpa, t.perm, &removed);
	if (isolated(s) && !full) {
		if (ret == 0)
			isol_note(s, &t, last, gpa, &removed);
		else if (s->iotlb_batch)   /* some may be a dropped grant's, still in use until BATCH_END */
			revoke_later(s, gpa, t.size);
		else   /* not in the IOTLB, and nothing dropped awaits a grace period: unmap them now */
			revoke_uncovered(s, gpa, gpa + t.size);
	}
	if (ret == 0) {
		stat_add(&s->iostats.updates, 1);
		iotlb_note_entries(s);
	}
	if (removed)
		iotlb_removed(s);   /* it replaced entries: the old ones are gone as for an INVALIDATE */
	if (isolated(s) && optimistic(s) && sc_grants_pending(&s->grants))
		s->iotlb_ticking = true;   /* dying entries it replaced: their pages go after a grace period */
	if (ret == -ENOMEM)
		return iotlb_refuse(s, m, -ENOSPC, "UPDATE beyond the %u entries a device may hold; INVALIDATE first", cap);
	if (ret == -ERANGE)
		return iotlb_refuse(s, m, -ERANGE, "UPDATE of iova 0x%llx +0x%llx (guest 0x%llx) not 4 KiB aligned",
				    (unsigned long long)t.iova, (unsigned long long)t.size, (unsigned long long)gpa);
	if (ret < 0)
		return iotlb_refuse(s, m, ret, "UPDATE: %s", strerror(-ret));
	return 0;
}

HANDLER(SET_STATUS)
{
	s->status = (uint8_t)m->payload.u64;
	return 0;
}

HANDLER(GET_STATUS)
{
	uint64_t st = s->status;
	/* A started queue the guest broke: the driver has to reset the device (contract 3). */
	for (unsigned i = 0; i < s->nvrings && s->ops->queue_broken; i++)
		if (s->vrings[i].started && s->ops->queue_broken(s->ctx, i))
			st |= SC_VIRTIO_CONFIG_S_NEEDS_RESET;
	return reply_u64(s, st);
}

#undef HANDLER

typedef int handler_fn(struct sc_vu_server *s, struct sc_vu_msg *m, struct vring *v, char *err, size_t errlen);
static const struct handler {
	handler_fn *fn;
	enum sc_vu_vring_rule vring;
	enum sc_vu_rings rings;
} handlers[SC_VHOST_USER_REQUEST_MAX] = {
#define ROW(req, sr, sz, fmin, fmax, vr, fk, rings) \
	[SC_VHOST_USER_##req] = { vu_##req, SC_VU_VRING_##vr, SC_VU_RINGS_##rings },
	SC_VU_REQUESTS(ROW)
#undef ROW
};

/* The vring a checked message names (its index was range-checked), or NULL. */
static struct vring *msg_vring(struct sc_vu_server *s, const struct sc_vu_msg *m, const struct handler *h)
{
	switch (h->vring) {
	case SC_VU_VRING_STATE: return &s->vrings[m->payload.state.index];
	case SC_VU_VRING_ADDR: return &s->vrings[m->payload.addr.index];
	case SC_VU_VRING_FILE: return &s->vrings[m->payload.u64 & SC_VHOST_USER_VRING_IDX_MASK];
	case SC_VU_VRING_NONE: break;
	}
	return NULL;
}

/* Run a checked message's row: stop the rings it replaces, its handler, then re-evaluate every ring. */
static int dispatch(struct sc_vu_server *s, struct sc_vu_msg *m, char *err, size_t errlen)
{
	const struct handler *h = &handlers[m->hdr.request];
	struct vring *v = msg_vring(s, m, h);
	int ret;

	if (h->rings == SC_VU_RINGS_ALL)
		vrings_stop(s);   /* no unmap while a sidecore can still touch the mapping */
	else if (h->rings == SC_VU_RINGS_ONE)
		vring_stop(s, (unsigned)(v - s->vrings));
	ret = h->fn(s, m, v, err, errlen);
	if (ret < 0 && ret != -ENOTSUP)
		return ret;
	int up = vrings_update(s, err, errlen);
	return up < 0 ? up : ret;
}

/* ---- the connection ---- */

static void drop_connection(struct sc_vu_server *s)
{
	s->burst_at = s->burst_n = 0;   /* what the old connection sent goes with it */
	/* A front end that goes away may come back: its device is stopped, not lost. */
	reset_device(s, false);
	close_fd(&s->conn_fd);
}

/*
 * The next message, as sc_vu_msg_recv_next (next) or sc_vu_msg_recv_timed.
 * With an IOTLB, the IOTLB messages waiting come in one read (a batch of
 * them costs two system calls, not two each) and are served in order
 * before anything after them is read.
 */
static int recv_message(struct sc_vu_server *s, bool next, struct sc_vu_msg *m, char *err, size_t errlen)
{
	if (s->burst_at == s->burst_n && iotlb_on(s)) {
		int n = sc_vu_msg_recv_iotlb(s->conn_fd, s->burst, SC_VU_IOTLB_BURST);
		if (n == -EAGAIN && next)
			return -EAGAIN;
		s->burst_at = 0;
		s->burst_n = n > 0 ? (unsigned)n : 0;
	}
	if (s->burst_at < s->burst_n) {
		const struct sc_vu_iotlb_wire *w = &s->burst[s->burst_at++];
		memset(m, 0, sizeof(*m));
		m->hdr = w->hdr;
		m->payload.iotlb = w->t;
		int ret = sc_vu_msg_check(m, s->nvrings, err, errlen);
		return ret < 0 ? ret : 1;
	}
	return next ? sc_vu_msg_recv_next(s->conn_fd, s->nvrings, m, s->timeout_ms, s->stop_fd, err, errlen)
		    : sc_vu_msg_recv_timed(s->conn_fd, s->nvrings, m, s->timeout_ms, s->stop_fd, err, errlen);
}

/* Serve one message; next: only if one is there already (else false, nothing done). */
static bool handle_message(struct sc_vu_server *s, bool next)
{
	struct sc_vu_msg m;
	char err[256] = "";
	int ret = recv_message(s, next, &m, err, sizeof(err));

	if (ret == -EAGAIN)
		return false;
	if (ret > 0 && !s->woke_ns)
		s->woke_ns = now_ns();   /* a message that came after the last answer: its own clock */
	if (ret == 0 || ret == -ECANCELED) {
		if (ret == 0)
			drop_connection(s);
		return false;   /* a front end that left, or sc_vu_server_destroy: nothing to say */
	}
	if (ret > 0)
		ret = sc_vu_msg_check_fds(&m, err, sizeof(err));
	if (ret >= 0)
		ret = dispatch(s, &m, err, sizeof(err));
	sc_vu_msg_close_fds(&m);   /* whatever the handler did not take */
	if (ret < 0)
		reply_discard(s);
	/*
	 * REPLY_ACK: the front end asked to hear how it went. A connection that
	 * ends inside a message, or timed out, gets no answer.
	 */
	if (!s->out.set && ret != -EPROTO && ret != -ETIMEDOUT && ret != -ECANCELED &&
	    (m.hdr.flags & SC_VHOST_USER_NEED_REPLY) &&
	    (s->protocol_features & (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK)))
		reply_u64(s, ret < 0 ? (uint64_t)-ret : 0);
	if (s->out.set) {
		char err2[128];
		/* Counted before the send: a front end that has its answer finds it in the stats. */
		if (m.hdr.request == SC_VHOST_USER_IOTLB_MSG) {
			stat_add(&s->iostats.ack_ns, now_ns() - s->woke_ns);
			stat_add(&s->iostats.acks, 1);
		}
		s->woke_ns = 0;
		int r = reply_send(s, &m, err2, sizeof(err2));
		if (r < 0 && ret >= 0) {
			ret = r;
			snprintf(err, sizeof(err), "%s", err2);
		}
	}
	if (ret == -ECANCELED)
		return false;
	if (ret == -ENOTSUP) {
		fprintf(stderr, "sidecore: %s: %s\n", s->path, err);
		return true;   /* an unsupported request is answered; the connection goes on */
	}
	if (ret < 0) {
		fprintf(stderr, "sidecore: %s: %s; dropping the connection\n", s->path, err);
		drop_connection(s);
		return false;
	}
	return true;
}

/*
 * May the current connection give way to a newer one? Only if it has
 * started no ring within the timeout: a VMM with running rings is never
 * displaced, and one that connects and sends nothing (or stalls before
 * starting its rings) cannot keep the device from the next front end.
 */
static bool conn_replaceable(const struct sc_vu_server *s, int64_t *wait_ms)
{
	if (sc_vu_server_started(s))
		return false;
	int64_t left = s->conn_since + s->timeout_ms - now_ms();
	if (left > 0) {
		*wait_ms = left;
		return false;
	}
	return true;
}

static void accept_connection(struct sc_vu_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		/* Gone before we took it (EAGAIN), or out of fds: pause so a full fd table is no busy loop. */
		if (errno != EAGAIN)
			usleep(10000);
		return;
	}
	if (s->conn_fd >= 0) {
		fprintf(stderr, "sidecore: %s: a new front end replaces one that started no ring in %d ms\n", s->path,
			s->timeout_ms);
		drop_connection(s);
	}
	s->conn_fd = fd;
	s->conn_since = now_ms();
}

/*
 * Serve the message that woke us and those that came with it (a front
 * end's IOTLB batch arrives as one write): one wakeup of this thread per
 * batch, not one per message. Bounded, so stopping and a waiting front
 * end are looked at between bursts.
 */
static void handle_messages(struct sc_vu_server *s)
{
	s->woke_ns = now_ns();
	bool more = handle_message(s, false);
	/* IOTLB messages already read (burst) are served past the bound: poll would not see them. */
	for (unsigned i = 1; more && (i < 64 || s->burst_at < s->burst_n) && !__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
	     i++)
		more = handle_message(s, true);
}

/* Wait for a connection, a message or the stop fd, and handle it. */
static void serve_once(struct sc_vu_server *s)
{
	struct pollfd p[3] = { { .fd = s->stop_fd, .events = POLLIN } };
	int64_t wait = -1;   /* until the connection may be replaced: then look again */
	nfds_t n = 1;
	int listen_at = -1, conn_at = -1;

	if (s->conn_fd >= 0) {
		conn_at = (int)n;
		p[n++] = (struct pollfd){ .fd = s->conn_fd, .events = POLLIN };
	}
	if (s->conn_fd < 0 || conn_replaceable(s, &wait)) {
		listen_at = (int)n;
		p[n++] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
	}
	if (s->iotlb_ticking && (wait < 0 || wait > 1))
		wait = 1;   /* dying IOTLB entries go within their window, to the millisecond */
	int ready = poll(p, n, (int)wait);
	if (s->iotlb_ticking) {
		s->iotlb_ticking = sc_viommu_tick(s->viommu, now_ns());
		iotlb_note_entries(s);   /* dying entries went */
		s->iotlb_ticking = isol_advance(s) || s->iotlb_ticking;
	}
	if (ready <= 0 || p[0].revents)
		return;   /* time to look again, or to stop */
	if (conn_at >= 0 && p[conn_at].revents)
		handle_messages(s);
	else if (listen_at >= 0 && p[listen_at].revents)
		accept_connection(s);
}

bool sc_vu_server_handle_one(struct sc_vu_server *s, int fd)
{
	if (s->threaded)
		return false;
	if (s->conn_fd < 0) {
		s->conn_fd = fd;
		s->conn_since = now_ms();
	}
	s->woke_ns = now_ns();
	handle_message(s, false);
	/* IOTLB messages read with it are served too: the caller's poll cannot see them. */
	while (s->conn_fd >= 0 && s->burst_at < s->burst_n)
		handle_message(s, true);
	return s->conn_fd >= 0;
}

static void *server_main(void *arg)
{
	struct sc_vu_server *s = arg;
	/* The naps of iotlb_wait are microseconds: not the default 50 us of timer slack. */
	prctl(PR_SET_TIMERSLACK, 1000ul);
	while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
		serve_once(s);
	return NULL;
}

int sc_vu_server_start(struct sc_vu_server *s)
{
	int ret = pthread_create(&s->thread, NULL, server_main, s);
	if (ret == 0)
		s->threaded = true;
	return -ret;
}

void sc_vu_server_destroy(struct sc_vu_server *s)
{
	if (!s)
		return;
	/* Wake the control thread wherever it waits (poll, a slow message, an unread reply). */
	__atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
	if (eventfd_write(s->stop_fd, 1) < 0) {
		/* the counter is already non-zero: it is readable anyway */
	}
	if (s->threaded)
		pthread_join(s->thread, NULL);
	drop_connection(s);
	close(s->listen_fd);
	close(s->stop_fd);
	sc_viommu_destroy(s->viommu);
	pthread_mutex_destroy(&s->backend_lock);
	unlink(s->path);
	sc_grants_fini(&s->grants);
	free(s);
}
