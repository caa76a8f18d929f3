/* SPDX-License-Identifier: MIT */
/*
 * A hand-driven split ring for vqueue's unit tests: the test writes ring
 * memory directly (as a hostile guest would) and pops with the real vqueue.
 * Memory: one memfd region at FX_GPA; the attacked queue's rings at the
 * start, a second healthy queue ("other") after them, buffers above.
 */
#ifndef SC_TESTS_VQ_FIXTURE_H
#define SC_TESTS_VQ_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "guestmem/guestmem.h"
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
#define FX_FEATURES  ((1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_VERSION_1))

struct fx {
	struct sc_mem mem;
	uint8_t *base;
	struct sc_vq vq, other;
	struct sc_vq_config cfg, ocfg;
	struct iovec iov[16];
	struct sc_vq_elem e;
};

static inline void *fx_ptr(struct fx *f, uint64_t gpa) { return f->base + (gpa - FX_GPA); }
static inline struct vring_desc *fx_desc(struct fx *f) { return fx_ptr(f, f->cfg.desc_addr); }
static inline struct vring_avail *fx_avail(struct fx *f) { return fx_ptr(f, f->cfg.avail_addr); }
static inline struct vring_used *fx_used(struct fx *f) { return fx_ptr(f, f->cfg.used_addr); }

static inline void fx_config(struct fx *f, struct sc_vq_config *c, uint64_t d, uint64_t a,
			     uint64_t u, uint64_t features)
{
	*c = (struct sc_vq_config){ .size = FX_QSZ, .desc_addr = d, .avail_addr = a,
				    .used_addr = u, .features = features,
				    .xlate = sc_mem_xlate(&f->mem), .call_fd = -1, .kick_fd = -1 };
}

/* Memory and configs, no sc_vq_init yet (for tests of init itself). */
static inline void fx_mem(struct fx *f, uint64_t features)
{
	memset(f, 0, sizeof(*f));
	sc_mem_init(&f->mem);
	int fd = sc_mem_memfd_create("fx", FX_SIZE);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&f->mem, FX_GPA, FX_SIZE, fd, 0, SC_PERM_RW), 0);
	f->base = f->mem.regions[0].hva;
	fx_config(f, &f->cfg, FX_DESC, FX_AVAIL, FX_USED, features);
	fx_config(f, &f->ocfg, FX_O_DESC, FX_O_AVAIL, FX_O_USED, features);
	f->e = (struct sc_vq_elem){ .iov = f->iov, .iov_max = 16 };
}

static inline void fx_setup(struct fx *f, uint64_t features)
{
	fx_mem(f, features);
	cr_assert_eq(sc_vq_init(&f->vq, &f->cfg), 0, "init: %s", f->vq.broken_reason);
	cr_assert_eq(sc_vq_init(&f->other, &f->ocfg), 0, "init other: %s", f->other.broken_reason);
}

static inline void fx_teardown(struct fx *f)
{
	sc_mem_fini(&f->mem);
}

static inline void fx_put_desc(struct vring_desc *table, uint16_t i, uint64_t addr,
			       uint32_t len, uint16_t flags, uint16_t next)
{
	table[i] = (struct vring_desc){ .addr = addr, .len = len, .flags = flags, .next = next };
}

/* Make head available in the ring whose avail is a. */
static inline void fx_post_to(struct vring_avail *a, uint16_t head)
{
	a->ring[a->idx % FX_QSZ] = head;
	__atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
}

static inline void fx_post(struct fx *f, uint16_t head) { fx_post_to(fx_avail(f), head); }

/* A valid two-part request on the other queue; it must still be served. */
static inline void fx_other_still_works(struct fx *f)
{
	struct vring_desc *d = fx_ptr(f, FX_O_DESC);
	struct vring_avail *a = fx_ptr(f, FX_O_AVAIL);
	struct vring_used *u = fx_ptr(f, FX_O_USED);
	struct iovec iov[4];
	struct sc_vq_elem e = { .iov = iov, .iov_max = 4 };

	memcpy(fx_ptr(f, FX_BUF(100)), "ping", 4);
	fx_put_desc(d, 3, FX_BUF(100), 16, VIRTQ_DESC_F_NEXT, 4);
	fx_put_desc(d, 4, FX_BUF(101), 64, VIRTQ_DESC_F_WRITE, 0);
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
}

#endif
