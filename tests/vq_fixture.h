/* SPDX-License-Identifier: MIT */
/*
 * A hand-driven split ring for vqueue's unit tests: the test writes ring
 * memory directly (as a hostile guest would, so no driver library) and pops
 * with the real vqueue. Memory: the harness's guest memory (harness.h) at
 * FX_GPA; the attacked queue's rings at the start, a second healthy queue
 * ("other") after them, buffers above. Each queue has its own err eventfd
 * and name, and stderr goes to a memfd (fx_log), so every test can check how
 * a break was reported.
 */
#ifndef SC_TESTS_VQ_FIXTURE_H
#define SC_TESTS_VQ_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guestmem/guestmem.h"
#include "harness.h"
#include "vqueue/vqueue.h"

#define FX_GPA       0x100000ull
#define FX_SIZE      (8ull << 20)
#define FX_QSZ       16
#define FX_DESC      (FX_GPA + 0x0000)
#define FX_AVAIL     (FX_GPA + 0x1000)
#define FX_USED      (FX_GPA + 0x2000)
#define FX_O_DESC    (FX_GPA + 0x4000)
#define FX_O_AVAIL   (FX_GPA + 0x5000)
#define FX_O_USED    (FX_GPA + 0x6000)
#define FX_BUF(i)    (FX_GPA + 0x10000 + (uint64_t)(i) * 0x1000)
#define FX_FEATURES  ((1ull << SC_VIRTIO_F_INDIRECT_DESC) | (1ull << SC_VIRTIO_F_VERSION_1))
#define FX_NAME      "fx.sock vring 0"
#define FX_O_NAME    "fx.sock vring 1"

struct fx {
	struct t_guest g;      /* the harness's guest memory: g.mem is the table vqueue translates through */
	uint8_t *base;
	struct sc_vq vq, other;
	struct sc_vq_config cfg, ocfg;
	struct iovec iov[16];
	struct sc_vq_elem e;
	int err_fd, oerr_fd;   /* the queues' err eventfds */
	int log_fd, stderr_fd; /* stderr while the test runs, and the real one */
};

static inline void *fx_ptr(struct fx *f, uint64_t gpa) { return f->base + (gpa - FX_GPA); }
static inline struct sc_vring_desc *fx_desc(struct fx *f) { return fx_ptr(f, f->cfg.desc_addr); }
static inline struct sc_vring_avail *fx_avail(struct fx *f) { return fx_ptr(f, f->cfg.avail_addr); }
static inline struct sc_vring_used *fx_used(struct fx *f) { return fx_ptr(f, f->cfg.used_addr); }

static inline void fx_config(struct fx *f, struct sc_vq_config *c, uint64_t d, uint64_t a,
			     uint64_t u, uint64_t features)
{
	*c = (struct sc_vq_config){ .size = FX_QSZ, .desc_addr = d, .avail_addr = a,
				    .used_addr = u, .features = features,
				    .xlate = sc_mem_xlate(&f->g.mem), .call_fd = -1, .kick_fd = -1,
				    .err_fd = -1 };
}

/* Memory and configs, no sc_vq_init yet (for tests of init itself). */
static inline void fx_mem(struct fx *f, uint64_t features)
{
	memset(f, 0, sizeof(*f));
	cr_assert_eq(t_guest_init(&f->g, FX_GPA, FX_SIZE), 0);
	f->base = f->g.base;
	fx_config(f, &f->cfg, FX_DESC, FX_AVAIL, FX_USED, features);
	fx_config(f, &f->ocfg, FX_O_DESC, FX_O_AVAIL, FX_O_USED, features);
	f->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->oerr_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert(f->err_fd >= 0 && f->oerr_fd >= 0);
	f->cfg.err_fd = f->err_fd;
	f->cfg.name = FX_NAME;
	f->ocfg.err_fd = f->oerr_fd;
	f->ocfg.name = FX_O_NAME;
	f->e = (struct sc_vq_elem){ .iov = f->iov, .iov_max = 16 };
	f->log_fd = memfd_create("fx-stderr", MFD_CLOEXEC);
	f->stderr_fd = dup(STDERR_FILENO);
	cr_assert(f->log_fd >= 0 && f->stderr_fd >= 0);
	cr_assert_eq(dup2(f->log_fd, STDERR_FILENO), STDERR_FILENO);
}

/* What was written to stderr since fx_mem (NUL-terminated, truncated to 4 KiB). */
static inline const char *fx_log(struct fx *f)
{
	static char buf[4096];
	ssize_t n = pread(f->log_fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* Occurrences of needle in the log. */
static inline unsigned fx_log_count(struct fx *f, const char *needle)
{
	unsigned n = 0;
	for (const char *p = fx_log(f); (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* Read and reset an eventfd: what was written since the last read (0 if nothing). */
static inline uint64_t fx_eventfd_take(int fd)
{
	uint64_t v = 0;
	return read(fd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

/* The attacked queue's break was reported once: err eventfd written once, one log line naming it. */
static inline void fx_expect_reported(struct fx *f)
{
	char line[160];
	snprintf(line, sizeof(line), "sidecore: " FX_NAME ": queue broken: %s\n", f->vq.broken_reason);
	cr_assert_eq(fx_eventfd_take(f->err_fd), 1, "err eventfd written once");
	cr_assert_eq(fx_log_count(f, "queue broken"), 1, "one log line; log: '%s'", fx_log(f));
	cr_assert(strstr(fx_log(f), line), "log '%s' lacks '%s'", fx_log(f), line);
	cr_assert_eq(sc_vq_stat(&f->vq, offsetof(struct sc_vq_stats, broken)), 1);
	cr_assert_eq(fx_eventfd_take(f->oerr_fd), 0, "the other queue is not reported");
}

static inline void fx_setup(struct fx *f, uint64_t features)
{
	fx_mem(f, features);
	cr_assert_eq(sc_vq_init(&f->vq, &f->cfg), 0, "init: %s", f->vq.broken_reason);
	cr_assert_eq(sc_vq_init(&f->other, &f->ocfg), 0, "init other: %s", f->other.broken_reason);
}

static inline void fx_teardown(struct fx *f)
{
	dup2(f->stderr_fd, STDERR_FILENO);
	close(f->stderr_fd);
	close(f->log_fd);
	close(f->err_fd);
	close(f->oerr_fd);
	t_guest_fini(&f->g);
}

static inline void fx_put_desc(struct sc_vring_desc *table, uint16_t i, uint64_t addr,
			       uint32_t len, uint16_t flags, uint16_t next)
{
	table[i] = (struct sc_vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
}

/* Make head available in the ring whose avail is a. */
static inline void fx_post_to(struct sc_vring_avail *a, uint16_t head)
{
	a->ring[a->idx % FX_QSZ] = head;
	__atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
}

static inline void fx_post(struct fx *f, uint16_t head) { fx_post_to(fx_avail(f), head); }

/* A valid two-part request on the other queue; it must still be served. */
static inline void fx_other_still_works(struct fx *f)
{
	struct sc_vring_desc *d = fx_ptr(f, FX_O_DESC);
	struct sc_vring_avail *a = fx_ptr(f, FX_O_AVAIL);
	struct sc_vring_used *u = fx_ptr(f, FX_O_USED);
	struct iovec iov[4];
	struct sc_vq_elem e = { .iov = iov, .iov_max = 4 };

	memcpy(fx_ptr(f, FX_BUF(100)), "ping", 4);
	fx_put_desc(d, 3, FX_BUF(100), 16, SC_VIRTQ_DESC_F_NEXT, 4);
	fx_put_desc(d, 4, FX_BUF(101), 64, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post_to(a, 3);
	cr_assert_eq(sc_vq_pop(&f->other, &e), 1, "other queue: %s", f->other.broken_reason);
	cr_assert_eq(e.head, 3);
	cr_assert_eq(e.out_num, 1);
	cr_assert_eq(e.in_num, 1);
	cr_assert_eq(memcmp(iov[0].iov_base, "ping", 4), 0);
	sc_vq_push(&f->other, e.head, 64);
	sc_vq_flush(&f->other);
	cr_assert_eq(u->ring[(uint16_t)(u->idx - 1) % FX_QSZ].id, 3);
}

/* The attacked queue is broken with err, says why (mentioning what), stays broken, and the other queue goes on. */
static inline void fx_expect_broken(struct fx *f, int err, const char *what)
{
	int ret = sc_vq_pop(&f->vq, &f->e);
	cr_assert_eq(ret, err, "pop returned %d (%s), expected %d (%s); reason: %s",
		     ret, strerror(-ret), err, strerror(-err), f->vq.broken_reason);
	cr_assert(sc_vq_broken(&f->vq));
	cr_assert(strstr(f->vq.broken_reason, what), "reason '%s' lacks '%s'",
		  f->vq.broken_reason, what);
	cr_assert_eq(sc_vq_pop(&f->vq, &f->e), err, "a broken queue stays broken");
	fx_other_still_works(f);
	fx_expect_reported(f);
}

#endif
