/* SPDX-License-Identifier: MIT */
/*
 * Hostile guest, one test per attack on the split ring (virtio 1.2 §2.7).
 * Each checks the exact error, the broken reason, that the queue stays
 * broken, and that another queue in the same guest memory is still served.
 */
#include <sys/mman.h>

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
}

Test(hostile, head_index_out_of_range)
{
	fx_post(&f, FX_QSZ);
	fx_expect_broken(&f, -EINVAL, "out of range");
}

Test(hostile, next_index_out_of_range)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 16, VIRTQ_DESC_F_NEXT, 0xffff);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EINVAL, "out of range");
}

Test(hostile, chain_loops)
{
	/* Zero-length descriptors: without the walk bound this would spin forever, not run out of iovecs. */
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 0, VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, FX_BUF(1), 0, VIRTQ_DESC_F_NEXT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -ELOOP, "loops");
}

Test(hostile, chain_self_loop_with_data)
{
	fx_put_desc(fx_desc(&f), 5, FX_BUF(0), 8, VIRTQ_DESC_F_NEXT, 5);
	fx_post(&f, 5);
	f.e.iov_max = 16; /* a 16-entry loop would fill 16 iovecs: the loop bound hits first (16 steps, 17th fails) */
	fx_expect_broken(&f, -ELOOP, "loops");
}

Test(hostile, chain_longer_than_iovec)
{
	f.e.iov_max = 4;
	for (uint16_t i = 0; i < 5; i++)
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 32, i < 4 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	fx_post(&f, 0);
	fx_expect_broken(&f, -ENOBUFS, "segments");
}

Test(hostile, indirect_inside_indirect)
{
	struct vring_desc *t1 = fx_ptr(&f, FX_BUF(10)), *t2 = fx_ptr(&f, FX_BUF(11));
	fx_put_desc(t2, 0, FX_BUF(0), 16, 0, 0);
	fx_put_desc(t1, 0, FX_BUF(11), 16, VIRTQ_DESC_F_INDIRECT, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EMLINK, "inside an indirect");
}

Test(hostile, indirect_len_not_multiple_of_16)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 24, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "multiple of 16");
}

Test(hostile, indirect_len_zero)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 0, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "multiple of 16");
}

Test(hostile, indirect_with_next_flag)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "NEXT");
}

Test(hostile, indirect_without_feature)
{
	cr_assert_eq(sc_vq_init(&f.vq, &(struct sc_vq_config){ .size = FX_QSZ, .desc_addr = FX_DESC,
			.avail_addr = FX_AVAIL, .used_addr = FX_USED, .xlate = sc_mem_xlate(&f.mem),
			.call_fd = -1, .kick_fd = -1 }), 0);
	fx_put_desc(fx_ptr(&f, FX_BUF(10)), 0, FX_BUF(0), 16, 0, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 16, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EBADMSG, "INDIRECT_DESC");
}

Test(hostile, indirect_table_outside_memory)
{
	fx_put_desc(fx_desc(&f), 0, FX_GPA + FX_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EFAULT, "indirect table");
}

Test(hostile, indirect_next_out_of_range)
{
	struct vring_desc *t = fx_ptr(&f, FX_BUF(10));
	fx_put_desc(t, 0, FX_BUF(0), 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries: 0, 1 */
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 32, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EINVAL, "indirect descriptor index 2");
}

Test(hostile, indirect_chain_loops)
{
	struct vring_desc *t = fx_ptr(&f, FX_BUF(10));
	fx_put_desc(t, 0, FX_BUF(0), 0, VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(t, 1, FX_BUF(1), 0, VIRTQ_DESC_F_NEXT, 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(10), 32, VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -ELOOP, "indirect chain 0 loops");
}

Test(hostile, lengths_overflow_32_bits)
{
	/* A sparse 4 GiB + 4 KiB region far above, so both buffers map and only the sum is wrong. */
	const uint64_t big = 0x100000000ull, big_size = (4ull << 30) + 4096;
	int fd = sc_mem_memfd_create("big", big_size);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&f.mem, big, big_size, fd, 0, SC_PERM_RW), 0);
	fx_put_desc(fx_desc(&f), 0, big, 0xffffffffu, VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, big, 2, VIRTQ_DESC_F_WRITE, 0);
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
	cr_assert_eq(sc_mem_add_hva(&f.mem, 0x10000000, 4096, ro, SC_PERM_READ), 0);
	fx_put_desc(fx_desc(&f), 0, 0x10000000, 16, VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 0);
	fx_expect_broken(&f, -EPERM, "not accessible");
	munmap(ro, 4096);
}

Test(hostile, readable_after_writable)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
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
	struct vring_desc *victim;
	int calls;
};

static int racing_map(void *ctx, uint64_t addr, uint64_t len, unsigned perm,
		      struct iovec *iov, unsigned iov_max)
{
	struct racing_xlate *r = ctx;
	if (r->victim && r->calls++ == 0) {
		r->victim->len = 0x7fffffff;   /* the "second fetch" would see these */
		r->victim->flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE;
		r->victim->next = 0xffff;
	}
	return sc_mem_translate_iov(r->mem, addr, len, perm, iov, iov_max);
}

Test(hostile, descriptor_rewritten_during_walk_is_not_fetched_twice)
{
	struct racing_xlate r = { .mem = &f.mem };
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
}

/* Ring set-up: each bad configuration is refused with a reason. */

static void expect_init_fails(struct sc_vq_config *c, int err, const char *what)
{
	struct sc_vq vq;
	int ret = sc_vq_init(&vq, c);
	cr_assert_eq(ret, err, "init returned %d, expected %d", ret, err);
	cr_assert(sc_vq_broken(&vq));
	cr_assert(strstr(vq.broken_reason, what), "reason '%s' lacks '%s'", vq.broken_reason, what);
	cr_assert_eq(sc_vq_pop(&vq, &f.e), err, "a queue that failed set-up is broken");
	fx_other_still_works(&f);
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
