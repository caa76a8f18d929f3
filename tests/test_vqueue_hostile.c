/* SPDX-License-Identifier: MIT */
/*
 * Hostile guest, one test per attack on the split ring (virtio 1.2 §2.7).
 * Each checks the exact error, the broken reason, that the queue stays
 * broken, that the break was reported once (err eventfd, one log line
 * naming the queue, stats.broken), and that another queue in the same
 * guest memory is still served.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "devices/devices.h"
#include "vq_fixture.h"

static struct fx f;

static void setup(void) { fx_setup(&f, FX_FEATURES); }
static void teardown(void) { fx_teardown(&f); }

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 10);

Test(hostile, avail_idx_jumps_past_queue_size)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 16, 0, 0);
	__atomic_store_n(&fx_avail(&f)->idx, FX_QSZ + 1, __ATOMIC_RELEASE);
	fx_expect_broken(&f, -ERANGE, "ahead");
}

Test(hostile, avail_idx_exactly_queue_size_ahead_is_valid)
{
	for (int i = 0; i < FX_QSZ; i++) {
		fx_put_desc(fx_desc(&f), (uint16_t)i, FX_BUF(i), 16, 0, 0);
		fx_post(&f, (uint16_t)i);
	}
	for (int i = 0; i < FX_QSZ; i++)
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0, "valid: nothing reported");
}

Test(hostile, avail_idx_wraps_16_bits)
{
	/* Resume at 65530 (SET_VRING_BASE); idx 4 is 10 ahead mod 2^16: valid, not a jump. */
	f.cfg.last_avail = 65530;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	for (int i = 0; i < 10; i++) {
		uint16_t slot = (uint16_t)(65530 + i);
		fx_put_desc(fx_desc(&f), (uint16_t)i, FX_BUF(i), 16, 0, 0);
		fx_avail(&f)->ring[slot % FX_QSZ] = (uint16_t)i;
	}
	__atomic_store_n(&fx_avail(&f)->idx, 4, __ATOMIC_RELEASE);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
		cr_assert_eq(f.e.head, i);
	}
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0, "valid: nothing reported");
}

Test(hostile, head_index_out_of_range)
{
	fx_post(&f, FX_QSZ);
	fx_expect_broken(&f, -EINVAL, "out of range");
}

Test(hostile, next_index_out_of_range)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 16, SC_VIRTQ_DESC_F_NEXT, 0xffff);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EINVAL, "out of range");
}

Test(hostile, chain_loops)
{
	/* Zero-length descriptors: without the walk bound this would spin forever, not run out of iovecs. */
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 0, SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, FX_BUF(1), 0, SC_VIRTQ_DESC_F_NEXT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -ELOOP, "loops");
}

Test(hostile, chain_self_loop_with_data)
{
	fx_put_desc(fx_desc(&f), 5, FX_BUF(0), 8, SC_VIRTQ_DESC_F_NEXT, 5);
	fx_post(&f, 5);
	f.e.iov_max = 16; /* a 16-entry loop would fill 16 iovecs: the loop bound hits first (16 steps, 17th fails) */
	fx_expect_broken(&f, -ELOOP, "loops");
}

/*
 * Chains with more segments than the device's iovec are valid (the spec
 * sets no such limit): they complete with an error and the queue goes on.
 */
static void put_long_chain(uint16_t n, bool with_status)
{
	for (uint16_t i = 0; i < n; i++) {
		uint16_t flags = (uint16_t)((i + 1 < n ? SC_VIRTQ_DESC_F_NEXT : 0) |
					    (with_status && i + 1 == n ? SC_VIRTQ_DESC_F_WRITE : 0));
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 32, flags, (uint16_t)(i + 1));
	}
}

Test(hostile, chain_longer_than_iovec_is_oversized_not_broken)
{
	f.e.iov_max = 4;
	put_long_chain(6, true);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert(f.e.oversized);
	cr_assert_eq(f.e.head, 0);
	cr_assert_eq(f.e.out_num, 0);
	cr_assert_eq(f.e.in_num, 1);
	cr_assert_eq(f.e.in_len, 1);
	cr_assert_eq(f.e.iov[0].iov_base, (uint8_t *)fx_ptr(&f, FX_BUF(5)) + 31, "the last writable byte");
	cr_assert_eq(f.e.iov[0].iov_len, 1);
	cr_assert(!sc_vq_broken(&f.vq));
	cr_assert_eq(f.vq.stats.oversized, 1);
	/* The next chain fits and is served normally. */
	fx_put_desc(fx_desc(&f), 7, FX_BUF(7), 16, 0, 0);
	fx_post(&f, 7);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert(!f.e.oversized);
	cr_assert_eq(f.e.head, 7);
	cr_assert_eq(f.e.out_num, 1);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0, "nothing reported: the queue is fine");
}

Test(hostile, oversized_chain_without_writable_part)
{
	f.e.iov_max = 4;
	put_long_chain(6, false);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert(f.e.oversized);
	cr_assert_eq(f.e.in_num, 0);
	cr_assert_eq(f.e.in_len, 0);
	cr_assert_eq(f.e.out_num, 0);
}

Test(hostile, oversized_chain_still_checked_after_the_iovec_fills)
{
	/* The buffer past iov_max is outside guest memory: oversized does not excuse it. */
	f.e.iov_max = 4;
	put_long_chain(6, true);
	fx_desc(&f)[5].addr = 0x1000;
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "not in guest memory");
}

Test(hostile, oversized_chain_still_loop_checked)
{
	f.e.iov_max = 2;
	put_long_chain(6, false);
	fx_desc(&f)[5].flags = SC_VIRTQ_DESC_F_NEXT;
	fx_desc(&f)[5].next = 0;
	fx_post(&f, 0);
	fx_expect_broken(&f, -ELOOP, "loops");
}

/* The device's side of contract 2: nullblk completes it with IOERR and serves the next request. */
Test(hostile, oversized_chain_completes_with_ioerr_via_nullblk)
{
	struct sc_nullblk d;
	struct sc_vring_desc *t = fx_ptr(&f, FX_BUF(10));
	const uint16_t n = 70;   /* header, 68 data segments, status: more than nullblk's 64 */
	struct sc_virtio_blk_outhdr h = { .type = SC_VIRTIO_BLK_T_IN, .sector = 0 };

	cr_assert_eq(sc_nullblk_init(&d, &f.cfg, 1 << 20, "null0"), 0, "%s", d.vq.broken_reason);
	memcpy(fx_ptr(&f, FX_BUF(20)), &h, sizeof(h));
	fx_put_desc(t, 0, FX_BUF(20), sizeof(h), SC_VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i < n - 1; i++)
		fx_put_desc(t, i, FX_BUF(21) + (i - 1) * 512ull, 512, SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE,
			    (uint16_t)(i + 1));
	fx_put_desc(t, n - 1, FX_BUF(60), 1, SC_VIRTQ_DESC_F_WRITE, 0);
	*(uint8_t *)fx_ptr(&f, FX_BUF(60)) = 0xff;
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), n * 16u, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_nullblk_poll(&d, 8), 1, "%s", d.vq.broken_reason);
	cr_assert_eq(*(uint8_t *)fx_ptr(&f, FX_BUF(60)), SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(fx_used(&f)->idx, 1);
	cr_assert_eq(fx_used(&f)->ring[0].id, 0);
	cr_assert_eq(fx_used(&f)->ring[0].len, 1, "only the status byte was written");
	cr_assert_eq(d.stats.bad_requests, 1);
	cr_assert(!sc_vq_broken(&d.vq));

	/* The next request (header, 512 bytes, status) is served. */
	fx_put_desc(fx_desc(&f), 1, FX_BUF(20), sizeof(h), SC_VIRTQ_DESC_F_NEXT, 2);
	fx_put_desc(fx_desc(&f), 2, FX_BUF(21), 512, SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE, 3);
	fx_put_desc(fx_desc(&f), 3, FX_BUF(61), 1, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 1);
	cr_assert_eq(sc_nullblk_poll(&d, 8), 1, "%s", d.vq.broken_reason);
	cr_assert_eq(*(uint8_t *)fx_ptr(&f, FX_BUF(61)), SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(fx_used(&f)->idx, 2);
	cr_assert_eq(d.stats.reads, 1);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0);
}

Test(hostile, indirect_inside_indirect)
{
	struct sc_vring_desc *t1 = fx_ptr(&f, FX_BUF(10)), *t2 = fx_ptr(&f, FX_BUF(11));
	fx_put_desc(t2, 0, FX_BUF(0), 16, 0, 0);
	fx_put_desc(t1, 0, FX_BUF(11), 16, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EMLINK, "inside an indirect");
}

Test(hostile, indirect_len_not_multiple_of_16)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 24, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "multiple of 16");
}

Test(hostile, indirect_len_zero)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 0, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "multiple of 16");
}

Test(hostile, indirect_with_next_flag)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, SC_VIRTQ_DESC_F_INDIRECT | SC_VIRTQ_DESC_F_NEXT, 1);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "NEXT");
}

Test(hostile, indirect_without_feature)
{
	cr_assert_eq(sc_vq_init(&f.vq, &(struct sc_vq_config){ .size = FX_QSZ, .desc_addr = FX_DESC,
			.avail_addr = FX_AVAIL, .used_addr = FX_USED, .xlate = sc_mem_xlate(&f.g.mem),
			.call_fd = -1, .err_fd = f.err_fd, .kick_fd = -1, .name = FX_NAME }), 0);
	fx_put_desc(fx_ptr(&f, FX_BUF(10)), 0, FX_BUF(0), 16, 0, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "INDIRECT_DESC");
}

Test(hostile, indirect_table_outside_memory)
{
	fx_put_desc(fx_desc(&f), 0, FX_GPA + FX_SIZE - 16, 32, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "indirect table");
}

Test(hostile, indirect_next_out_of_range)
{
	struct sc_vring_desc *t = fx_ptr(&f, FX_BUF(10));
	fx_put_desc(t, 0, FX_BUF(0), 16, SC_VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries: 0, 1 */
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 32, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EINVAL, "indirect descriptor index 2");
}

Test(hostile, indirect_chain_loops)
{
	struct sc_vring_desc *t = fx_ptr(&f, FX_BUF(10));
	fx_put_desc(t, 0, FX_BUF(0), 0, SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(t, 1, FX_BUF(1), 0, SC_VIRTQ_DESC_F_NEXT, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 32, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -ELOOP, "indirect chain 0 loops");
}

Test(hostile, lengths_overflow_32_bits)
{
	/* A sparse 4 GiB + 4 KiB region far above, so both buffers map and only the sum is wrong. */
	const uint64_t big = 0x100000000ull, big_size = (4ull << 30) + 4096;
	int fd = sc_mem_memfd_create("big", big_size);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&f.g.mem, big, big_size, fd, 0, SC_PERM_RW), 0);
	fx_put_desc(fx_desc(&f), 0, big, 0xffffffffu, SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, big, 2, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EOVERFLOW, "4 GiB");
}

Test(hostile, buffer_outside_memory)
{
	fx_put_desc(fx_desc(&f), 0, 0x1000, 16, 0, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "not in guest memory");
}

Test(hostile, buffer_straddles_end_of_memory)
{
	fx_put_desc(fx_desc(&f), 0, FX_GPA + FX_SIZE - 8, 16, 0, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "not in guest memory");
}

Test(hostile, buffer_address_wraps)
{
	fx_put_desc(fx_desc(&f), 0, UINT64_MAX - 4, 16, 0, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "not in guest memory");
}

Test(hostile, writable_buffer_in_read_only_memory)
{
	/* Device may only read this region: a device-writable buffer there is refused. */
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(ro, MAP_FAILED);
	cr_assert_eq(sc_mem_add_hva(&f.g.mem, 0x10000000, 4096, ro, SC_PERM_READ), 0);
	fx_put_desc(fx_desc(&f), 0, 0x10000000, 16, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EPERM, "not accessible");
	munmap(ro, 4096);
}

Test(hostile, readable_after_writable)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 16, SC_VIRTQ_DESC_F_WRITE | SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, FX_BUF(1), 16, 0, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EPROTO, "readable descriptor after a writable");
}

/*
 * A guest that rewrites a descriptor while the device walks it: the hook
 * below runs after the descriptor was fetched and changes it in guest
 * memory. The popped element must reflect the one copy that was checked.
 */
struct racing_xlate {
	struct sc_mem *mem;
	struct sc_vring_desc *victim;
	int calls;
};

static int racing_map(void *ctx, uint64_t addr, uint64_t len, unsigned perm,
		      struct iovec *iov, unsigned iov_max)
{
	struct racing_xlate *r = ctx;
	if (r->victim && r->calls++ == 0) {
		r->victim->len = 0x7fffffff;   /* the "second fetch" would see these */
		r->victim->flags = SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE;
		r->victim->next = 0xffff;
	}
	return sc_mem_translate_iov(r->mem, addr, len, perm, iov, iov_max);
}

Test(hostile, descriptor_rewritten_during_walk_is_not_fetched_twice)
{
	struct racing_xlate r = { .mem = &f.g.mem };
	f.cfg.xlate = (struct sc_xlate){ .map = racing_map, .ctx = &r };
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	r.victim = &fx_desc(&f)[0];
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 100, 0, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert_eq(f.e.out_len, 100);
	cr_assert_eq(f.e.in_num, 0);
	cr_assert_eq(f.e.iov[0].iov_len, 100);
	cr_assert(!sc_vq_broken(&f.vq));
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0, "valid: nothing reported");
}

/*
 * Lying inflight areas (vhost-user "Inflight I/O tracking"). The area comes
 * from the front end; a restarted back end replays only heads the rings
 * show the driver offered and did not see completed. Each test crashes a
 * back end with head 2 in flight (heads 0 and 1 completed in order), then
 * tells one lie. The queue must refuse to start, say why, report it, and
 * publish nothing.
 */
static struct sc_vq_inflight *crash_with_head_2_in_flight(void)
{
	struct sc_vq_inflight *in = calloc(1, sc_vq_inflight_bytes(FX_QSZ));
	cr_assert_not_null(in);
	f.cfg.inflight = in;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0, "%s", f.vq.broken_reason);
	for (uint16_t i = 0; i < 3; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, i);
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	}
	sc_vq_push(&f.vq, 0, 8);
	sc_vq_push(&f.vq, 1, 8);
	sc_vq_flush(&f.vq);
	sc_vq_fini(&f.vq);   /* the back end dies here */
	cr_assert(in->desc[2].inflight && !in->desc[0].inflight && !in->desc[1].inflight);
	cr_assert_eq(in->used_idx, 2);
	f.cfg.last_avail = 2;   /* QEMU restores the used index after a crash */
	return in;
}

static void expect_inflight_refused(struct sc_vq_inflight *in, const char *what)
{
	uint16_t used = fx_used(&f)->idx;
	int ret = sc_vq_init(&f.vq, &f.cfg);

	cr_assert_eq(ret, -EBADMSG, "init returned %d; reason: %s", ret, f.vq.broken_reason);
	cr_assert(strstr(f.vq.broken_reason, "inflight region: "), "%s", f.vq.broken_reason);
	cr_assert_eq(sc_vq_resubmit_pending(&f.vq), 0, "nothing is replayed");
	fx_expect_broken(&f, -EBADMSG, what);
	cr_assert_eq(fx_used(&f)->idx, used, "nothing published for the lie");
	sc_vq_fini(&f.vq);
	free(in);
}

Test(hostile, inflight_honest_region_replays_head_2)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0, "%s", f.vq.broken_reason);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 2);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0);
	sc_vq_fini(&f.vq);
	free(in);
}

Test(hostile, inflight_honest_region_across_the_16_bit_wrap_out_of_order)
{
	/* Indices near 65535, completions out of order (as io_uring finishes them): still replayed. */
	struct sc_vq_inflight *in = calloc(1, sc_vq_inflight_bytes(FX_QSZ));
	cr_assert_not_null(in);
	fx_avail(&f)->idx = 65534;
	fx_used(&f)->idx = 65534;
	f.cfg.last_avail = 65534;
	f.cfg.inflight = in;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0, "%s", f.vq.broken_reason);
	for (uint16_t i = 0; i < 4; i++) {
		fx_put_desc(fx_desc(&f), (uint16_t)(i + 4), FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, (uint16_t)(i + 4));
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	}
	sc_vq_push(&f.vq, 7, 8);   /* the last popped finishes first, then the first */
	sc_vq_push(&f.vq, 4, 8);
	sc_vq_flush(&f.vq);
	sc_vq_fini(&f.vq);
	fx_put_desc(fx_desc(&f), 9, FX_BUF(9), 8, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 9);            /* offered while the back end was down */
	f.cfg.last_avail = fx_used(&f)->idx;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0, "%s", f.vq.broken_reason);
	uint16_t want[] = { 5, 6, 9 };
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
		cr_assert_eq(f.e.head, want[i]);
	}
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(fx_eventfd_take(f.err_fd), 0);
	sc_vq_fini(&f.vq);
	free(in);
}

Test(hostile, inflight_head_never_offered)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->desc[2].inflight = 0;
	in->desc[7] = (struct sc_vq_inflight_desc){ .inflight = 1, .counter = 3 };
	expect_inflight_refused(in, "head 7 in flight was never offered");
}

Test(hostile, inflight_head_already_completed)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->desc[2].inflight = 0;
	in->desc[1].inflight = 1;   /* used slot 1 holds it */
	expect_inflight_refused(in, "head 1 in flight was completed");
}

Test(hostile, inflight_same_head_replayed_and_offered_again)
{
	/* The driver has head 2 back and offers it again: replaying it too would serve it twice. */
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	fx_post(&f, 2);
	expect_inflight_refused(in, "head 2 in flight is offered again");
}

Test(hostile, inflight_two_heads_share_a_counter)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->desc[1] = (struct sc_vq_inflight_desc){ .inflight = 1, .counter = in->desc[2].counter };
	expect_inflight_refused(in, "share counter");
}

Test(hostile, inflight_counter_zero)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->desc[2].counter = 0;
	expect_inflight_refused(in, "head 2 has flag 1, counter 0");
}

Test(hostile, inflight_head_out_of_range_in_the_uncleared_batch)
{
	/* The region says one completion was not cleared; the used ring holds a head no queue of 16 has. */
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->used_idx = 1;
	fx_used(&f)->ring[1].id = 0xdead;
	expect_inflight_refused(in, "used slot 1 holds head 57005, out of range");
}

Test(hostile, inflight_count_larger_than_the_window)
{
	/* Four in flight, but the driver has only one request offered and not used. */
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	for (uint16_t h = 3; h < 6; h++)
		in->desc[h] = (struct sc_vq_inflight_desc){ .inflight = 1, .counter = h + 1u };
	expect_inflight_refused(in, "4 heads in flight, but the driver has 1 offered");
}

Test(hostile, inflight_used_index_far_ahead_of_the_region)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->used_idx = (uint16_t)(2 - FX_QSZ - 1);
	expect_inflight_refused(in, "more than a queue ahead");
}

Test(hostile, inflight_region_laid_out_for_another_queue_size)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->desc_num = FX_QSZ * 2;
	expect_inflight_refused(in, "laid out for 32 entries, the queue has 16");
}

Test(hostile, inflight_unknown_version)
{
	struct sc_vq_inflight *in = crash_with_head_2_in_flight();
	in->version = 2;
	expect_inflight_refused(in, "version 2");
}

/* Ring set-up: each bad configuration is refused with a reason. */

static void expect_init_fails(struct sc_vq_config *c, int err, const char *what)
{
	int ret = sc_vq_init(&f.vq, c);
	cr_assert_eq(ret, err, "init returned %d, expected %d", ret, err);
	cr_assert(sc_vq_broken(&f.vq));
	cr_assert(strstr(f.vq.broken_reason, what), "reason '%s' lacks '%s'", f.vq.broken_reason, what);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), err, "a queue that failed set-up is broken");
	fx_other_still_works(&f);
	fx_expect_reported(&f);
}

Test(hostile, size_not_power_of_two)
{
	f.cfg.size = 12;
	expect_init_fails(&f.cfg, -EINVAL, "power of two");
}

Test(hostile, size_zero)
{
	f.cfg.size = 0;
	expect_init_fails(&f.cfg, -EINVAL, "power of two");
}

Test(hostile, size_above_32768)
{
	f.cfg.size = 65536;
	expect_init_fails(&f.cfg, -EINVAL, "32768");
}

Test(hostile, size_32768_is_valid)
{
	f.cfg.size = 32768;
	f.cfg.desc_addr = FX_BUF(200);                 /* 512 KiB */
	f.cfg.avail_addr = FX_BUF(400);                /* 64 KiB */
	f.cfg.used_addr = FX_BUF(500);                 /* 256 KiB */
	struct sc_vq vq;
	cr_assert_eq(sc_vq_init(&vq, &f.cfg), 0, "%s", vq.broken_reason);
}

Test(hostile, desc_ring_misaligned)
{
	f.cfg.desc_addr = FX_DESC + 8;
	expect_init_fails(&f.cfg, -EINVAL, "descriptor ring address");
}

Test(hostile, avail_ring_misaligned)
{
	f.cfg.avail_addr = FX_AVAIL + 1;
	expect_init_fails(&f.cfg, -EINVAL, "available ring address");
}

Test(hostile, used_ring_misaligned)
{
	f.cfg.used_addr = FX_USED + 2;
	expect_init_fails(&f.cfg, -EINVAL, "used ring address");
}

Test(hostile, desc_ring_outside_memory)
{
	f.cfg.desc_addr = 0x1000;
	expect_init_fails(&f.cfg, -EFAULT, "descriptor ring");
}

Test(hostile, used_ring_straddles_end_of_memory)
{
	f.cfg.used_addr = FX_GPA + FX_SIZE - 64;
	expect_init_fails(&f.cfg, -EFAULT, "used ring");
}

Test(hostile, avail_ring_wraps_address_space)
{
	f.cfg.avail_addr = UINT64_MAX - 15;
	expect_init_fails(&f.cfg, -EFAULT, "available ring");
}

/* The sidecore and the control thread break a queue at the same moment: still reported once. */
struct breaker {
	int ready, go;   /* spun on, so both calls start within a few cycles */
	struct sc_vq *vq;
};

static void *break_it(void *arg)
{
	struct breaker *b = arg;
	__atomic_store_n(&b->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&b->go, __ATOMIC_ACQUIRE))
		;
	sc_vq_set_broken(b->vq, -EIO, "from the control thread");
	return NULL;
}

Test(hostile, two_threads_breaking_at_once_report_once)
{
	const int rounds = 300;
	struct breaker b = { .vq = &f.vq };

	for (int i = 0; i < rounds; i++) {
		pthread_t t;
		cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
		b.ready = b.go = 0;
		cr_assert_eq(pthread_create(&t, NULL, break_it, &b), 0);
		while (!__atomic_load_n(&b.ready, __ATOMIC_ACQUIRE))
			;
		__atomic_store_n(&b.go, 1, __ATOMIC_RELEASE);
		sc_vq_set_broken(&f.vq, -EPROTO, "from the sidecore");
		pthread_join(t, NULL);
		cr_assert(sc_vq_broken(&f.vq));
		cr_assert(f.vq.broken_err == -EIO || f.vq.broken_err == -EPROTO);
		cr_assert_eq(fx_eventfd_take(f.err_fd), 1, "round %d: err eventfd written once", i);
	}
}

/*
 * Found by tests/fuzz (fuzz_vu): a front end's memory region at an odd
 * guest address makes a ring aligned as a guest address misaligned in
 * host memory, where vqueue reads it atomically. Refused at init.
 */
Test(hostile, ring_misaligned_in_host_memory)
{
	static uint8_t page[3 * 4096] __attribute__((aligned(4096)));
	struct sc_mem m;
	struct sc_vq vq;

	sc_mem_init(&m);
	/* Guest address 0x10001 is host page + 0: guest 0x10010 (aligned) is host page + 15. */
	cr_assert_eq(sc_mem_add_hva(&m, 0x10001, sizeof(page) - 1, page, SC_PERM_RW), 0);
	struct sc_vq_config cfg = { .size = 4, .desc_addr = 0x10010, .avail_addr = 0x11000, .used_addr = 0x12000,
				    .xlate = sc_mem_xlate(&m), .call_fd = -1, .kick_fd = -1, .err_fd = -1 };
	cr_assert_eq(sc_vq_init(&vq, &cfg), -EINVAL);
	cr_assert(sc_vq_broken(&vq));
	cr_assert(strstr(vq.broken_reason, "host address not 16-byte aligned"), "%s", vq.broken_reason);
	sc_mem_fini(&m);
}
