/* SPDX-License-Identifier: MIT */
/*
 * The double-fetch detector (common/fetch.h, tests/fuzz/fetch.c) fires on
 * a deliberate double read, and stays quiet on what is allowed: aliased
 * buffers, and a looping chain the queue refuses.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>

#include "common/fetch.h"
#include "tests/fuzz/fuzz.h"
#include "vqueue/vqueue.h"

#define QSZ 4
#define DESC 0x0000
#define AVAIL 0x1000
#define USED 0x2000
#define BUF 0x3000

static uint8_t image[FZ_IMAGE] __attribute__((aligned(4096)));
static uint8_t ro[FZ_RO] __attribute__((aligned(4096)));
static struct sc_mem mem;
static struct sc_vq vq;
static struct iovec iov[8];
static struct sc_vq_elem e = { .iov = iov, .iov_max = 8 };

static struct sc_vring_desc *desc(void) { return (struct sc_vring_desc *)(image + DESC); }

/* A queue of QSZ entries with one chain offered at head 0 (the test fills its descriptors). */
static void ring_setup(void)
{
	memset(image, 0, sizeof(image));
	fz_mem(&mem, image, ro);
	struct sc_vq_config cfg = {
		.size = QSZ, .desc_addr = FZ_GPA + DESC, .avail_addr = FZ_GPA + AVAIL, .used_addr = FZ_GPA + USED,
		.features = 1ull << SC_VIRTIO_F_VERSION_1, .xlate = sc_mem_xlate(&mem),
		.call_fd = -1, .kick_fd = -1, .err_fd = -1, .name = "test_fetch",
	};
	cr_assert_eq(sc_vq_init(&vq, &cfg), 0);
	struct sc_vring_avail *a = (struct sc_vring_avail *)(image + AVAIL);
	a->ring[0] = 0;
	a->idx = 1;
}

/* Head 0: a 32-byte readable buffer (two descriptors if split) and a 1-byte writable status. */
static void chain(bool split, bool aliased)
{
	struct sc_vring_desc *d = desc();
	if (!split) {
		d[0] = (struct sc_vring_desc){ FZ_GPA + BUF, 32, SC_VIRTQ_DESC_F_NEXT, 1 };
		d[1] = (struct sc_vring_desc){ FZ_GPA + BUF + 64, 1, SC_VIRTQ_DESC_F_WRITE, 0 };
		return;
	}
	d[0] = (struct sc_vring_desc){ FZ_GPA + BUF, 16, SC_VIRTQ_DESC_F_NEXT, 1 };
	d[1] = (struct sc_vring_desc){ FZ_GPA + BUF + (aliased ? 0 : 16), 16, SC_VIRTQ_DESC_F_NEXT, 2 };
	d[2] = (struct sc_vring_desc){ FZ_GPA + BUF + 64, 1, SC_VIRTQ_DESC_F_WRITE, 0 };
}

Test(fetch, header_read_twice_fails_the_run, .signal = SIGABRT)
{
	uint8_t h[16], again[16];
	ring_setup();
	chain(false, false);
	cr_assert_eq(sc_vq_pop(&vq, &e), 1);
	sc_iov_copy_from(e.iov, e.out_num, 0, h, sizeof(h));
	sc_iov_copy_from(e.iov, e.out_num, 8, again, 4);   /* a field of the header, again */
	sc_vq_push(&vq, e.head, 1);                        /* the request ends: abort here */
}

Test(fetch, a_double_read_is_caught_at_the_next_pop_too, .signal = SIGABRT)
{
	uint8_t h[16];
	ring_setup();
	chain(false, false);
	cr_assert_eq(sc_vq_pop(&vq, &e), 1);
	sc_iov_copy_from(e.iov, e.out_num, 0, h, sizeof(h));
	sc_iov_copy_from(e.iov, e.out_num, 0, h, sizeof(h));
	(void)sc_vq_pop(&vq, &e);
}

Test(fetch, the_same_descriptor_twice_fails_the_run, .signal = SIGABRT)
{
	ring_setup();
	SC_FETCH_BEGIN();
	SC_FETCH(SC_FETCH_DESC, &desc()[2], sizeof(struct sc_vring_desc));
	SC_FETCH(SC_FETCH_DESC, &desc()[2].len, sizeof(uint32_t));
	SC_FETCH_CHECK();
}

Test(fetch, header_and_payload_read_once_each_pass)
{
	uint8_t h[16], seg[16];
	ring_setup();
	chain(true, false);
	cr_assert_eq(sc_vq_pop(&vq, &e), 1);
	sc_iov_copy_from(e.iov, e.out_num, 0, h, sizeof(h));
	sc_iov_copy_from(e.iov, e.out_num, 16, seg, sizeof(seg));
	sc_vq_push(&vq, e.head, 1);
	cr_assert_eq(sc_vq_pop(&vq, &e), 0);
	SC_FETCH_CHECK();
}

/* Two descriptors of a chain on the same guest bytes: each request field is still read once. */
Test(fetch, aliased_buffers_are_not_a_double_fetch)
{
	uint8_t h[16], seg[16];
	ring_setup();
	chain(true, true);
	cr_assert_eq(sc_vq_pop(&vq, &e), 1);
	cr_assert_eq(e.out_num, 2);
	cr_assert_eq(e.iov[0].iov_base, e.iov[1].iov_base);
	sc_iov_copy_from(e.iov, e.out_num, 0, h, sizeof(h));
	sc_iov_copy_from(e.iov, e.out_num, 16, seg, sizeof(seg));
	sc_vq_push(&vq, e.head, 1);
	SC_FETCH_CHECK();
}

/* A loop re-reads descriptors until the bound stops it; the queue breaks and nothing of it is used. */
Test(fetch, a_looping_chain_is_refused_not_reported)
{
	ring_setup();
	unsigned long before = sc_fetch_forgiven();
	desc()[0] = (struct sc_vring_desc){ FZ_GPA + BUF, 16, SC_VIRTQ_DESC_F_NEXT, 1 };
	desc()[1] = (struct sc_vring_desc){ FZ_GPA + BUF, 16, SC_VIRTQ_DESC_F_NEXT, 0 };
	cr_assert_eq(sc_vq_pop(&vq, &e), -ELOOP);
	cr_assert_eq(sc_fetch_forgiven(), before + 1, "the re-reads were seen, and forgiven");
	cr_assert_eq(sc_vq_pop(&vq, &e), -ELOOP);
	SC_FETCH_CHECK();
}
