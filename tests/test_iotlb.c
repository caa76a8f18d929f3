/* SPDX-License-Identifier: MIT */
/*
 * vhost-user IOTLB (QEMU's vhost-user.rst, "IOMMU support") against the
 * real back end: the test front end negotiates SC_VIRTIO_F_ACCESS_PLATFORM,
 * gives a back-end channel (a socketpair), and plays the vIOMMU. IOVAs
 * here equal guest addresses (the identity), so the harness's ring and
 * request helpers work unchanged; what is mapped, and when, is the test.
 * First the attacks (one bad IOTLB message each), then misses and
 * invalidations.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/vu_msg.h"
#include "harness.h"


static struct sc_poller *poller;
static struct t_disk D;
static struct t_fe fe = { .sock = -1, .memfd = -1, .kick = -1, .call = -1 };
static int backend = -1;   /* our end of the back-end channel: MISS messages arrive here */

static void setup(void)
{
	struct sc_poller_config pc = { .cpu = -1, .idle_spin_ns = 100000, .name = "sc-iotlb" };
	cr_assert_eq(sc_poller_create(&pc, &poller), 0);
	t_disk_open(&D, poller, 0, "iotlb-disk");
}

static void teardown(void)
{
	t_fe_close(&fe);
	if (backend >= 0)
		close(backend);
	backend = -1;
	t_disk_close(&D);
	sc_poller_destroy(poller);
}

TestSuite(iotlb, .init = setup, .fini = teardown, .timeout = 30);

/* Connect, negotiate (with ACCESS_PLATFORM unless plain), give the back-end channel, the memory table. */
static void fe_open(bool access_platform)
{
	t_fe_open(&fe, D.sock);
	backend = t_fe_negotiate_iotlb(&fe, access_platform);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
}

/* One IOTLB message with NEED_REPLY; returns the ack (0, or the errno of the refusal). */
static uint64_t iotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm)
{
	return t_iotlb(fe.sock, type, iova, size, uaddr, perm);
}

/* UPDATE [gpa, +size) of guest memory at IOVA gpa (the identity). */
static uint64_t map(uint64_t gpa, uint64_t size, uint8_t perm)
{
	return iotlb(SC_VHOST_IOTLB_UPDATE, gpa, size, (uintptr_t)fe.mem + gpa, perm);
}

/*
 * t_fe_ring with the ring's addresses as IOVAs (ACCESS_PLATFORM: the
 * identity of their guest addresses here), not the front end's pointers.
 */
static void fe_ring(void)
{
	cr_assert_eq(sc_drv_vq_init(&fe.vq, fe.mem, 0, T_QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	sc_drv_vq_interrupts_disable(&fe.vq);
	t_fe_ring_at(&fe, 0, 0);
}

/*
 * Everything mapped, in two entries (the ring's pages, then the requests'),
 * the ring live: a protected disk that works. An invalidation drops whole
 * entries, so a test that invalidates a buffer page maps the second again.
 */
static void fe_start_mapped(void)
{
	fe_open(true);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	fe_ring();
	cr_assert_eq(sc_vu_server_started(D.srv), 1);
}

/* The connection still works and the disk still does verified I/O. */
static void still_serves(void)
{
	cr_assert(t_get_u64(fe.sock, SC_VHOST_USER_GET_FEATURES) & (1ull << SC_VU_F_ACCESS_PLATFORM));
	t_fe_verified_io(&fe, D.img, 40);
}

Test(iotlb, io_through_the_iotlb_reaches_the_disk)
{
	fe_start_mapped();
	t_fe_verified_io(&fe, D.img, 16);
	struct sc_vu_iotlb t;
	cr_assert_not(t_next_miss(backend, 50, &t), "everything was mapped: no miss");
}

/* ---- attacks: one bad message each; refused with its errno, the connection and the disk go on ---- */

Test(iotlb, update_of_size_zero_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(map(T_DATA_GPA, 0, SC_VHOST_ACCESS_RW), EINVAL);
	still_serves();
}

Test(iotlb, update_that_wraps_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, UINT64_MAX - 0xfff, 0x2000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RW),
		     EOVERFLOW);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x1000, 0x2000, UINT64_MAX - 0xfff, SC_VHOST_ACCESS_RW), EOVERFLOW);
	still_serves();
}

Test(iotlb, update_with_unknown_perm_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(map(T_DATA_GPA, 0x1000, 0), EINVAL);
	cr_assert_eq(map(T_DATA_GPA, 0x1000, 4), EINVAL);
	still_serves();
}

Test(iotlb, update_outside_the_memory_table_is_refused)
{
	fe_start_mapped();
	/* Past the end of the one region, and straddling it. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, (uintptr_t)fe.mem + T_MEM, SC_VHOST_ACCESS_RW), EFAULT);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x2000, (uintptr_t)fe.mem + T_MEM - 0x1000,
			   SC_VHOST_ACCESS_RW), EFAULT);
	still_serves();
}

Test(iotlb, unaligned_update_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000800, 0x1000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RW), ERANGE);
	still_serves();
}

Test(iotlb, unknown_type_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(7, 0, 0x1000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RW), EINVAL);
	cr_assert_eq(iotlb(0, 0, 0x1000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RW), EINVAL);
	still_serves();
}

Test(iotlb, miss_and_access_fail_from_the_front_end_are_refused)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_MISS, 0, 0x1000, 0, SC_VHOST_ACCESS_RO), EINVAL);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_ACCESS_FAIL, 0, 0x1000, 0, SC_VHOST_ACCESS_RO), EINVAL);
	still_serves();
}

Test(iotlb, invalidate_of_size_zero_or_wrapping_is_refused)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, 0, 0, 0, 0), EINVAL);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, UINT64_MAX, 2, 0, 0), EOVERFLOW);
	still_serves();
}

Test(iotlb, iotlb_message_without_access_platform_is_refused)
{
	fe_open(false);
	cr_assert_eq(map(0, T_MEM, SC_VHOST_ACCESS_RW), EPROTO);
	t_fe_ring(&fe);
	still_serves();
}

Test(iotlb, flood_of_updates_beyond_the_cap_is_refused)
{
	D.dev.ops.iotlb_max = 16;   /* read per UPDATE */
	fe_start_mapped();          /* two entries */
	for (unsigned i = 0; i < 14; i++)
		cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000 + i * 0x1000ull, 0x1000, (uintptr_t)fe.mem,
				   SC_VHOST_ACCESS_RO), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x20000000, 0x1000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RO), ENOSPC);
	/* Room again after an INVALIDATE. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, 0x10000000, 0x1000, 0, 0), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x20000000, 0x1000, (uintptr_t)fe.mem, SC_VHOST_ACCESS_RO), 0);
	still_serves();
}

Test(iotlb, backend_channel_that_is_not_a_socket_is_refused)
{
	t_fe_open(&fe, D.sock);
	t_fe_negotiate(&fe);
	uint64_t ack;
	t_send(fe.sock, SC_VHOST_USER_SET_BACKEND_REQ_FD, SC_VHOST_USER_NEED_REPLY, NULL, 0, fe.kick);
	t_reply(fe.sock, SC_VHOST_USER_SET_BACKEND_REQ_FD, &ack, 8);
	cr_assert_eq(ack, EBADFD);
	cr_assert(t_wait_eof(fe.sock, 2000), "the connection is dropped");
	t_fe_close(&fe);
	t_alive(&D, NULL);
}

/* ---- misses ---- */

Test(iotlb, unmapped_ring_misses_and_starts_once_the_update_comes)
{
	fe_open(true);
	fe_ring();
	cr_assert_eq(sc_vu_server_started(D.srv), 0, "the ring waits for its translation");
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "a MISS for the ring");
	cr_assert_eq(t.iova, 0, "the descriptor table's page (the ring is at IOVA 0)");
	cr_assert_eq(map(0, T_MEM, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(sc_vu_server_started(D.srv), 1, "started by the UPDATE");
	t_fe_verified_io(&fe, D.img, 8);
}

/* Map the ring's pages only (GPA 0 up to the request headers); requests then miss. */
static void fe_start_ring_only(void)
{
	fe_open(true);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	fe_ring();
	cr_assert_eq(sc_vu_server_started(D.srv), 1);
}

/* Put a 4 KiB read of sector 0 in slot 0 on the ring; the caller waits for it. */
static void submit_read(void)
{
	uint64_t hdr = T_HDR_GPA, data = T_DATA_GPA;
	*(struct sc_virtio_blk_outhdr *)(fe.mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN };
	fe.mem[hdr + 16] = 0xee;
	struct sc_drv_seg s[3] = { { hdr, 16 }, { data, 4096 }, { hdr + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&fe.vq, s, 1, 2), 0);
	sc_drv_vq_publish(&fe.vq);
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
}

static bool completed_within(int ms)
{
	uint16_t head;
	uint32_t len;
	int64_t t0 = t_now_ms();
	do {
		if (sc_drv_vq_get_used(&fe.vq, &head, &len))
			return true;
		usleep(200);
	} while (t_now_ms() - t0 < ms);
	return false;
}

Test(iotlb, miss_answered_late_waits_then_completes_with_one_miss_per_address)
{
	fe_start_ring_only();
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t));
	cr_assert_eq(t.iova, T_HDR_GPA, "the header's page misses first");
	cr_assert_eq(t.perm, SC_VHOST_ACCESS_RO);
	/* The front end takes its time; the request waits, and the MISS is not sent again every round. */
	cr_assert_not(completed_within(300), "nothing completes without a translation");
	cr_assert_not(t_next_miss(backend, 0, &t), "one MISS per address, not one per round");
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000), "the request completes once the UPDATE came");
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	still_serves();
}

/* What the stats say after a miss, its answer, a refusal and an invalidation: each counted once. */
Test(iotlb, stats_count_each_message_miss_and_flush)
{
	struct sc_vu_iotlb_stats st;
	sc_vu_server_iotlb_stats(D.srv, &st);
	cr_assert_eq(st.updates + st.invalidates + st.refused + st.misses + st.flushes + st.acks + st.entries, 0);
	fe_start_ring_only();   /* one UPDATE, acknowledged */
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t));
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	cr_assert_eq(map(T_DATA_GPA, 0, SC_VHOST_ACCESS_RW), EINVAL);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_HDR_GPA, T_MEM - T_HDR_GPA, 0, 0), 0);

	sc_vu_server_iotlb_stats(D.srv, &st);
	cr_assert_eq(st.updates, 2);
	cr_assert_eq(st.refused, 1);
	cr_assert_eq(st.invalidates, 1);
	cr_assert_eq(st.misses, 1, "one MISS per address (%llu)", (unsigned long long)st.misses);
	cr_assert_eq(st.flushes, 1, "the invalidation removed an entry in use: one wait for the sidecores");
	cr_assert_eq(st.acks, 4, "every message asked for an answer (%llu)", (unsigned long long)st.acks);
	cr_assert(st.ack_ns > 0 && st.ack_ns < 4ull * 1000000000ull, "ack_ns %llu", (unsigned long long)st.ack_ns);
	cr_assert_eq(st.entries, 1, "the ring's entry is left");
}

Test(iotlb, miss_never_answered_breaks_the_queue_with_a_reason)
{
	D.dev.ops.iotlb_miss_ms = 300;   /* read when the ring starts */
	fe_start_ring_only();
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t));
	cr_assert_not(completed_within(1000));
	/* The queue is broken (the log line names the IOVA); the device says so, and the connection lives. */
	uint64_t st = t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS);
	cr_assert(st & SC_VIRTIO_CONFIG_S_NEEDS_RESET, "GET_STATUS 0x%llx reports NEEDS_RESET", (unsigned long long)st);
	cr_assert(t_get_u64(fe.sock, SC_VHOST_USER_GET_FEATURES) & (1ull << SC_VU_F_ACCESS_PLATFORM));
}

/*
 * A read request (the device writes) into a buffer the front end mapped
 * read-only: not a miss (the entry is there), a permission fault. That
 * request fails with IOERR, no MISS is sent, nothing is written, and the
 * queue's next request is served.
 */
Test(iotlb, device_write_to_a_read_only_entry_fails_only_that_request)
{
	fe_open(true);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_HDR_GPA, T_DATA_GPA - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_DATA_GPA, T_MEM - T_DATA_GPA, SC_VHOST_ACCESS_RO), 0);
	fe_ring();
	memset(fe.mem + T_DATA_GPA, 0x5a, 4096);
	submit_read();
	cr_assert(completed_within(5000), "the request completes");
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(fe.mem[T_DATA_GPA], 0x5a, "nothing written through a read-only entry");
	struct sc_vu_iotlb t;
	cr_assert_not(t_next_miss(backend, 50, &t), "a permission fault is not a miss");
	uint64_t st = t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS);
	cr_assert_not(st & SC_VIRTIO_CONFIG_S_NEEDS_RESET, "the queue is not broken");
	/* The front end grants write access: the same queue serves on. */
	cr_assert_eq(map(T_DATA_GPA, T_MEM - T_DATA_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

/*
 * An INVALIDATE of a buffer while its request is still in flight (the
 * disk holds every completion 300 ms): the ack may come only after the
 * device is done with it, i.e. after the completion was published. The
 * sidecore's rounds alone end at once; the request does not.
 */
Test(iotlb, invalidate_racing_in_flight_io_is_acked_only_after_the_request_completes)
{
	D.be.delay_ns = 300 * 1000000ull;   /* before the queue starts */
	fe_start_mapped();
	submit_read();
	usleep(50000);   /* popped and held by now */
	int64_t t0 = t_now_ms();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	int64_t waited = t_now_ms() - t0;
	uint16_t head;
	uint32_t len;
	cr_assert(sc_drv_vq_get_used(&fe.vq, &head, &len), "the completion was published before the ack (ack after %lld ms)",
		  (long long)waited);
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	cr_assert_gt(waited, 100, "the ack waited for the request (%lld ms)", (long long)waited);
	D.be.delay_ns = 0;
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

Test(iotlb, invalidated_ring_is_translated_again_and_serves_on)
{
	fe_start_mapped();
	t_fe_verified_io(&fe, D.img, 8);
	/* The whole space goes (as a lazy guest's global flush does): the rings too. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, 0, UINT64_MAX, 0, 0), 0);
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the ring's translation is asked for again");
	cr_assert_eq(t.iova, 0);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	still_serves();
}

/*
 * Optimistic teardown (iommu_teardown = optimistic): the window is read
 * when a connection's IOTLB is made, so a first front end comes and goes.
 */
static void fe_start_optimistic(uint32_t window_ms)
{
	D.dev.ops.iotlb_window_ms = window_ms;
	fe_open(true);
	t_fe_close(&fe);
	close(backend);
	backend = -1;
	fe_start_mapped();
}

/* The ack does not wait for the request in flight (strict: see the test above); the entry dies after the window. */
Test(iotlb, optimistic_invalidate_is_acked_at_once_and_the_entry_goes_after_the_window)
{
	D.be.delay_ns = 300 * 1000000ull;
	fe_start_optimistic(50);
	submit_read();
	usleep(50000);   /* popped and held by now */
	int64_t t0 = t_now_ms();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	int64_t waited = t_now_ms() - t0;
	cr_assert_lt(waited, 100, "acked at once (after %lld ms), not after the request", (long long)waited);
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	D.be.delay_ns = 0;
	usleep(200000);   /* past the window: the entry (all of the requests' pages) is gone */
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the invalidated entry no longer translates");
	cr_assert_eq(t.iova, T_HDR_GPA);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	still_serves();
}

/* Within the window the same UPDATE brings the entry back as it was: no miss. */
Test(iotlb, optimistic_entry_updated_again_within_the_window_lives_on)
{
	fe_start_optimistic(1000);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_HDR_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	usleep(1200000);   /* past the first window: a revived entry does not die with it */
	submit_read();
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	struct sc_vu_iotlb t;
	cr_assert_not(t_next_miss(backend, 50, &t), "revived, not missed");
}

Test(iotlb, batched_invalidations_are_acked_at_batch_end)
{
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_END, 0, 0, 0, 0), 0);
	still_serves();
}

/* A batch written in one go (as sc_vu_fe_iotlb_batch does) is served whole: one ack, at its end. */
Test(iotlb, batch_written_in_one_send_is_served_whole_with_one_ack)
{
	fe_start_mapped();
	struct {
		struct sc_vu_hdr h;
		struct sc_vu_iotlb t;
	} __attribute__((packed)) m[4];
	const uint8_t types[4] = { SC_VHOST_IOTLB_BATCH_BEGIN, SC_VHOST_IOTLB_INVALIDATE, SC_VHOST_IOTLB_UPDATE,
				   SC_VHOST_IOTLB_BATCH_END };
	for (int i = 0; i < 4; i++) {
		m[i].h = (struct sc_vu_hdr){ .request = SC_VHOST_USER_IOTLB_MSG, .size = sizeof(m[i].t),
					     .flags = SC_VHOST_USER_VERSION | (i == 3 ? SC_VHOST_USER_NEED_REPLY : 0) };
		m[i].t = (struct sc_vu_iotlb){ .type = types[i] };
		if (i == 1 || i == 2) {
			m[i].t.iova = T_HDR_GPA;
			m[i].t.size = T_MEM - T_HDR_GPA;
		}
		if (i == 2) {
			m[i].t.uaddr = (uintptr_t)fe.mem + T_HDR_GPA;
			m[i].t.perm = SC_VHOST_ACCESS_RW;
		}
	}
	cr_assert_eq(send(fe.sock, m, sizeof(m), MSG_NOSIGNAL), (ssize_t)sizeof(m));
	uint64_t ack;
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &ack, 8);
	cr_assert_eq(ack, 0);
	struct sc_vu_iotlb t;
	still_serves();
	cr_assert_not(t_next_miss(backend, 50, &t), "the UPDATE of the batch was applied");
}

/*
 * IOTLB messages are read in runs (two system calls for a run): what
 * follows one in the same write, and a bad one inside it, are still served
 * in order, each answered in turn.
 */
Test(iotlb, iotlb_messages_and_other_requests_in_one_write_are_answered_in_order)
{
	fe_start_mapped();
	struct {
		struct sc_vu_hdr h;
		union {
			struct sc_vu_iotlb t;
			uint64_t u64;
		} p;
	} __attribute__((packed)) m[5];
	size_t len = 0;
	uint8_t wire[sizeof(m)];
	for (int i = 0; i < 5; i++) {
		bool features = i == 2;
		m[i].h = (struct sc_vu_hdr){ .request = features ? SC_VHOST_USER_GET_FEATURES : SC_VHOST_USER_IOTLB_MSG,
					     .size = features ? 0 : sizeof(struct sc_vu_iotlb),
					     .flags = SC_VHOST_USER_VERSION | (features ? 0 : SC_VHOST_USER_NEED_REPLY) };
		/* UPDATEs of the data page, the second of size 0 (refused), the last an INVALIDATE of nothing mapped. */
		m[i].p.t = (struct sc_vu_iotlb){ .type = i == 4 ? SC_VHOST_IOTLB_INVALIDATE : SC_VHOST_IOTLB_UPDATE,
						 .iova = i == 4 ? 0x7fff0000000ull : T_DATA_GPA, .size = i == 3 ? 0 : 0x1000,
						 .uaddr = i == 4 ? 0 : (uintptr_t)fe.mem + T_DATA_GPA,
						 .perm = i == 4 ? 0 : SC_VHOST_ACCESS_RW };
		memcpy(wire + len, &m[i], sizeof(m[i].h) + m[i].h.size);
		len += sizeof(m[i].h) + m[i].h.size;
	}
	cr_assert_eq(send(fe.sock, wire, len, MSG_NOSIGNAL), (ssize_t)len);
	uint64_t v;
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &v, 8);
	cr_assert_eq(v, 0, "UPDATE");
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &v, 8);
	cr_assert_eq(v, 0, "UPDATE");
	t_reply(fe.sock, SC_VHOST_USER_GET_FEATURES, &v, 8);
	cr_assert(v & (1ull << SC_VU_F_ACCESS_PLATFORM), "GET_FEATURES, in its turn");
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &v, 8);
	cr_assert_eq(v, EINVAL, "the UPDATE of size 0, refused in its turn");
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &v, 8);
	cr_assert_eq(v, 0, "INVALIDATE");
	struct sc_vu_iotlb_stats st;
	sc_vu_server_iotlb_stats(D.srv, &st);
	cr_assert_eq(st.updates, 2 + 2, "the two of the set-up and two here");
	cr_assert_eq(st.refused, 1);
	/* The UPDATEs of one page replaced the set-up's entry over it: map the requests' pages again. */
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

/*
 * More messages in one write than the control thread serves per wakeup
 * (64), with the IOTLB runs not aligned to that bound: the run read last
 * is served too, not left where poll cannot see it until more comes.
 */
Test(iotlb, a_long_write_of_iotlb_messages_is_served_whole)
{
	fe_start_mapped();
	struct {
		struct sc_vu_hdr h;
		struct sc_vu_iotlb t;
	} __attribute__((packed)) w[64];   /* with GET_FEATURES first, the last run (50-65) ends past the bound */
	uint8_t wire[sizeof(struct sc_vu_hdr) + sizeof(w)];
	*(struct sc_vu_hdr *)wire = (struct sc_vu_hdr){ .request = SC_VHOST_USER_GET_FEATURES, .flags = SC_VHOST_USER_VERSION };
	for (unsigned i = 0; i < 64; i++) {
		w[i].h = (struct sc_vu_hdr){ .request = SC_VHOST_USER_IOTLB_MSG, .size = sizeof(w[i].t),
					     .flags = SC_VHOST_USER_VERSION | (i == 63 ? SC_VHOST_USER_NEED_REPLY : 0) };
		w[i].t = (struct sc_vu_iotlb){ .type = SC_VHOST_IOTLB_UPDATE, .iova = 0x40000000ull + i * 0x1000ull,
					       .size = 0x1000, .uaddr = (uintptr_t)fe.mem + T_DATA_GPA,
					       .perm = SC_VHOST_ACCESS_RW };
	}
	memcpy(wire + sizeof(struct sc_vu_hdr), w, sizeof(w));
	cr_assert_eq(send(fe.sock, wire, sizeof(wire), MSG_NOSIGNAL), (ssize_t)sizeof(wire));
	uint64_t v;
	t_reply(fe.sock, SC_VHOST_USER_GET_FEATURES, &v, 8);
	struct pollfd p = { .fd = fe.sock, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 2000), 1, "the last UPDATE's ack came");
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &v, 8);
	cr_assert_eq(v, 0);
	struct sc_vu_iotlb_stats st;
	sc_vu_server_iotlb_stats(D.srv, &st);
	cr_assert_eq(st.updates, 2 + 64, "the set-up's two and all 64 (%llu)", (unsigned long long)st.updates);
	still_serves();
}

Test(iotlb, a_new_connection_starts_with_an_empty_iotlb)
{
	fe_open(true);
	fe_ring();   /* waits for its ring's translation, which never comes */
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t));
	t_fe_close(&fe);
	close(backend);
	backend = -1;
	fe_start_mapped();
	t_fe_verified_io(&fe, D.img, 8);
	t_fe_close(&fe);
	close(backend);
	backend = -1;
	/* The next front end's entries are its own: nothing of the last one's maps. */
	fe_open(true);
	fe_ring();
	cr_assert(t_next_miss(backend, 2000, &t), "the ring misses again");
	cr_assert_eq(sc_vu_server_started(D.srv), 0);
}

/*
 * ---- isolation (iommu_isolation = yes): sidecored maps only the pages the IOTLB grants ----
 *
 * The front end (this process too) maps the memfd whole at fe.mem; every
 * other mapping of it in /proc/self/maps is the server's.
 */

/* Bytes of the memfd's [off, off + len) that the server has mapped. */
static uint64_t server_mapped(uint64_t off, uint64_t len)
{
	struct stat st;
	cr_assert_eq(fstat(fe.memfd, &st), 0);
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert(f);
	char line[512];
	uint64_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi, foff, ino;
		char perms[8];
		if (sscanf(line, "%llx-%llx %7s %llx %*s %llu", &lo, &hi, perms, &foff, &ino) != 5 || ino != st.st_ino ||
		    lo == (uintptr_t)fe.mem)
			continue;
		uint64_t a = foff > off ? foff : off, b = foff + (hi - lo) < off + len ? foff + (hi - lo) : off + len;
		n += b > a ? b - a : 0;
	}
	fclose(f);
	return n;
}

static void isolate(void)
{
	D.dev.ops.iotlb_isolation = true;   /* read as regions come and per message */
}

static uint64_t mem_reg(uint32_t req, uint64_t gpa, uint64_t size, uint64_t off)
{
	struct { uint64_t pad; struct sc_vu_region r; } reg = { 0, { gpa, size, (uintptr_t)fe.mem + off, off } };
	uint64_t ack;
	t_send(fe.sock, req, SC_VHOST_USER_NEED_REPLY, &reg, sizeof(reg), fe.memfd);
	t_reply(fe.sock, req, &ack, 8);
	return ack;
}

Test(iotlb, isolated_io_goes_through_the_granted_pages)
{
	isolate();
	fe_start_mapped();
	cr_assert_eq(server_mapped(0, T_MEM), T_MEM, "both entries' pages are mapped");
	t_fe_verified_io(&fe, D.img, 16);
}

Test(iotlb, isolated_memory_never_granted_is_not_mapped_and_misses)
{
	isolate();
	fe_start_ring_only();
	cr_assert_eq(server_mapped(0, T_HDR_GPA), T_HDR_GPA, "the ring's pages are mapped");
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), 0, "no page the IOTLB never granted is mapped");
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the ungranted header misses");
	cr_assert_eq(t.iova, T_HDR_GPA);
	cr_assert_not(completed_within(200));
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(server_mapped(0, T_MEM), T_MEM);
	still_serves();
}

Test(iotlb, isolated_invalidate_unmaps_the_pages_before_its_ack)
{
	isolate();
	fe_start_mapped();
	t_fe_verified_io(&fe, D.img, 8);
	/* Drops the requests' entry, whole; the ring's stays. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), 0, "gone by the ack");
	cr_assert_eq(server_mapped(0, T_HDR_GPA), T_HDR_GPA, "the ring's entry is untouched");
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

Test(iotlb, isolated_page_granted_twice_stays_until_its_last_grant_goes)
{
	isolate();
	fe_start_mapped();
	/* A second IOVA for the first data page. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, (uintptr_t)fe.mem + T_DATA_GPA, SC_VHOST_ACCESS_RW),
		     0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(server_mapped(T_DATA_GPA, 0x1000), 0x1000, "still granted at IOVA 0x10000000");
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), 0x1000);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, 0x10000000, 0x1000, 0, 0), 0);
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), 0);
}

Test(iotlb, isolated_batch_unmaps_at_its_end)
{
	isolate();
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), T_MEM - T_HDR_GPA, "kept until the grace period");
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_END, 0, 0, 0, 0), 0);
	cr_assert_eq(server_mapped(T_HDR_GPA, T_MEM - T_HDR_GPA), 0, "gone by BATCH_END's ack");
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

Test(iotlb, isolated_region_removed_drops_its_mappings_and_entries)
{
	isolate();
	fe_start_mapped();
	cr_assert_eq(mem_reg(SC_VHOST_USER_REM_MEM_REG, 0, T_MEM, 0), 0);
	cr_assert_eq(sc_vu_server_started(D.srv), 0);
	cr_assert_eq(server_mapped(0, T_MEM), 0, "the region's grants went with it");
	cr_assert_eq(mem_reg(SC_VHOST_USER_ADD_MEM_REG, 0, T_MEM, 0), 0);
	cr_assert_eq(server_mapped(0, T_MEM), 0, "a region comes with nothing mapped");
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the old entries went too: the ring asks again");
	cr_assert_eq(t.iova, 0);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(sc_vu_server_started(D.srv), 1);
	still_serves();
}

Test(iotlb, isolated_update_straddling_two_regions_is_refused)
{
	isolate();
	fe_start_mapped();
	cr_assert_eq(mem_reg(SC_VHOST_USER_REM_MEM_REG, 0, T_MEM, 0), 0);
	cr_assert_eq(mem_reg(SC_VHOST_USER_ADD_MEM_REG, 0, T_MEM / 2, 0), 0);
	cr_assert_eq(mem_reg(SC_VHOST_USER_ADD_MEM_REG, T_MEM / 2, T_MEM / 2, T_MEM / 2), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x2000, (uintptr_t)fe.mem + T_MEM / 2 - 0x1000,
			   SC_VHOST_ACCESS_RW), EFAULT);
	cr_assert_eq(server_mapped(0, T_MEM), 0, "nothing mapped for it");
	cr_assert_eq(map(0, T_MEM / 2, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_MEM / 2, T_MEM / 2, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

Test(iotlb, isolated_update_not_whole_pages_of_the_fd_is_refused)
{
	isolate();
	fe_start_mapped();
	/*
	 * A region whose guest pages start 0x800 into a page of the fd (legal:
	 * only a grant of it is not), at front-end addresses of its own.
	 */
	struct { uint64_t pad; struct sc_vu_region r; } reg = { 0, { 0x40000000, 0x10000, 0x500000000000, 0x800 } };
	uint64_t ack;
	t_send(fe.sock, SC_VHOST_USER_ADD_MEM_REG, SC_VHOST_USER_NEED_REPLY, &reg, sizeof(reg), fe.memfd);
	t_reply(fe.sock, SC_VHOST_USER_ADD_MEM_REG, &ack, 8);
	cr_assert_eq(ack, 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, 0x500000000000, SC_VHOST_ACCESS_RW), ERANGE,
		     "its guest page 0x40000000 is aligned, its fd offset 0x800 is not");
	/* Counted per mapping: a page mapped for the refused UPDATE would count twice. */
	cr_assert_eq(server_mapped(0, T_MEM), T_MEM, "the old grants only");
	/* The usual region, granted again: the device goes on. */
	still_serves();
}

Test(iotlb, isolated_device_without_access_platform_starts_no_ring)
{
	isolate();
	fe_open(false);
	t_fe_ring(&fe);
	cr_assert_eq(sc_vu_server_started(D.srv), 0, "no IOTLB to grant pages: the ring does not start");
	cr_assert_eq(server_mapped(0, T_MEM), 0, "no region is mapped whole");
}

/* A lazy guest's batch: a window invalidated and mapped again. Its pages stay, and stay granted. */
Test(iotlb, isolated_batch_that_maps_the_same_pages_again_keeps_them)
{
	isolate();
	fe_start_mapped();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(map(T_HDR_GPA, T_DATA_GPA - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_BATCH_END, 0, 0, 0, 0), 0);
	cr_assert_eq(server_mapped(T_HDR_GPA, T_DATA_GPA - T_HDR_GPA), T_DATA_GPA - T_HDR_GPA, "granted again: kept");
	cr_assert_eq(server_mapped(T_DATA_GPA, T_MEM - T_DATA_GPA), 0, "not granted again: gone");
	cr_assert_eq(map(T_DATA_GPA, T_MEM - T_DATA_GPA, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

/*
 * ---- isolation with optimistic teardown: a page stays mapped while an entry grants it, live or dying ----
 * An INVALIDATE is acked at once; the grant ends when the dying entry goes
 * (its window ends), and the page is unmapped after the grace period that
 * follows. ISO_WINDOW_MS is short; every wait for what follows it is bounded.
 */
#define ISO_WINDOW_MS 30

/* The requests' entry [T_HDR_GPA, T_MEM): what the tests invalidate (the ring's entry stays). */
#define REQ_BYTES (T_MEM - T_HDR_GPA)

/* Does server_mapped(off, len) reach want within ms? Polled each millisecond. */
static bool server_mapped_becomes(uint64_t off, uint64_t len, uint64_t want, int ms)
{
	int64_t t0 = t_now_ms();
	do {
		if (server_mapped(off, len) == want)
			return true;
		usleep(1000);
	} while (t_now_ms() - t0 < ms);
	return server_mapped(off, len) == want;
}

/* Touches of ungranted pages so far (each one a failed request). */
static uint64_t isolation_faults(void)
{
	struct sc_poller_stats st;
	sc_poller_get_stats(poller, &st);
	return st.isolation_faults;
}

/* Acks that waited for the sidecores (strict's flushes): optimistic teardown makes none. */
static uint64_t acks_that_waited(void)
{
	struct sc_vu_iotlb_stats st;
	sc_vu_server_iotlb_stats(D.srv, &st);
	return st.flushes;
}

/* A read of sector 0 through the header and data pages, completed OK with no MISS. */
static void read_without_a_miss(void)
{
	submit_read();
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	struct sc_vu_iotlb t;
	cr_assert_not(t_next_miss(backend, 0, &t), "translated by the entry (iova 0x%llx missed)", (unsigned long long)t.iova);
}

/* (1) Acked at once; within the window the pages are still mapped, and the sidecore reads them. */
Test(iotlb, isolated_optimistic_invalidate_is_acked_at_once_and_keeps_the_pages_for_the_window)
{
	isolate();
	fe_start_optimistic(1000);   /* long: the I/O below runs inside it even on a loaded machine */
	int64_t t0 = t_now_ms();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	int64_t waited = t_now_ms() - t0;
	cr_assert_lt(waited, 100, "acked at once (after %lld ms)", (long long)waited);
	cr_assert_eq(acks_that_waited(), 0, "the ack waited for no grace period");
	cr_assert_eq(server_mapped(T_HDR_GPA, REQ_BYTES), REQ_BYTES, "the dying entry's pages stay mapped");
	read_without_a_miss();
	cr_assert_eq(isolation_faults(), 0, "the sidecore touched no unmapped page");
	cr_assert_eq(server_mapped(T_HDR_GPA, REQ_BYTES), REQ_BYTES);
	cr_assert_lt(t_now_ms() - t0, 1000, "all of it inside the window (took %lld ms)", (long long)(t_now_ms() - t0));
}

/* (2) and (5): I/O works before; after the window (and a grace period) the pages are gone and a request misses. */
Test(iotlb, isolated_optimistic_entry_expired_unmaps_its_pages_and_the_next_request_misses)
{
	isolate();
	fe_start_optimistic(ISO_WINDOW_MS);
	t_fe_verified_io(&fe, D.img, 8);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert(server_mapped_becomes(T_HDR_GPA, REQ_BYTES, 0, 2000), "unmapped after the window: %llu bytes mapped",
		  (unsigned long long)server_mapped(T_HDR_GPA, REQ_BYTES));
	cr_assert_eq(server_mapped(0, T_HDR_GPA), T_HDR_GPA, "the ring's entry is untouched");
	submit_read();
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the expired entry no longer translates");
	cr_assert_eq(t.iova, T_HDR_GPA);
	cr_assert_not(completed_within(100));
	cr_assert_eq(isolation_faults(), 0, "a MISS, not a touch of the unmapped page");
	cr_assert_eq(acks_that_waited(), 0, "the unmap held no ack up");
	cr_assert_eq(map(T_HDR_GPA, REQ_BYTES, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(server_mapped(T_HDR_GPA, REQ_BYTES), REQ_BYTES, "granted again");
	still_serves();
}

/* (3) The same UPDATE within the window revives the entry: its pages are never unmapped, then or later. */
Test(iotlb, isolated_optimistic_entry_updated_again_keeps_its_pages_throughout)
{
	isolate();
	fe_start_optimistic(ISO_WINDOW_MS);
	int64_t t0 = t_now_ms();
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	uint64_t dying = server_mapped(T_HDR_GPA, REQ_BYTES);
	if (t_now_ms() - t0 < ISO_WINDOW_MS)   /* a test thread late past the window sees an expiry: proves nothing */
		cr_assert_eq(dying, REQ_BYTES, "unmapped by the INVALIDATE");
	cr_assert_eq(map(T_HDR_GPA, REQ_BYTES, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(acks_that_waited(), 0, "neither ack waited: nothing was unmapped for them");
	/* Ten windows, looked at each millisecond: the pages are there every time. */
	t0 = t_now_ms();
	while (t_now_ms() - t0 < 10 * ISO_WINDOW_MS) {
		uint64_t n = server_mapped(T_HDR_GPA, REQ_BYTES);
		cr_assert_eq(n, REQ_BYTES, "unmapped in between: %llu bytes mapped after %lld ms", (unsigned long long)n,
			     (long long)(t_now_ms() - t0));
		usleep(1000);
	}
	read_without_a_miss();
	cr_assert_eq(isolation_faults(), 0);
	still_serves();
}

/* (4) A page two entries grant stays while either lives; it goes after the window of the last. */
Test(iotlb, isolated_optimistic_page_granted_twice_stays_until_its_last_entry_expires)
{
	isolate();
	fe_start_optimistic(ISO_WINDOW_MS);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, (uintptr_t)fe.mem + T_DATA_GPA, SC_VHOST_ACCESS_RW),
		     0);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert(server_mapped_becomes(T_HDR_GPA, REQ_BYTES, 0x1000, 2000), "the first entry's other pages go: %llu bytes",
		  (unsigned long long)server_mapped(T_HDR_GPA, REQ_BYTES));
	usleep(5 * ISO_WINDOW_MS * 1000);
	cr_assert_eq(server_mapped(T_DATA_GPA, 0x1000), 0x1000, "still granted at IOVA 0x10000000");
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, 0x10000000, 0x1000, 0, 0), 0);
	cr_assert(server_mapped_becomes(T_HDR_GPA, REQ_BYTES, 0, 2000), "gone with its last entry");
	cr_assert_eq(map(T_HDR_GPA, REQ_BYTES, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

/*
 * An UPDATE that replaces a live entry waits for the sidecores (a flush)
 * while an expired entry's pages still wait for a request held at the disk:
 * the flush waits for that request too, and its pages go after it.
 */
Test(iotlb, isolated_optimistic_flush_while_an_expiry_waits_for_a_request_keeps_its_pages_until_it_completes)
{
	isolate();
	D.be.delay_ns = 400 * 1000000ull;   /* before the queue starts */
	fe_start_optimistic(ISO_WINDOW_MS);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, (uintptr_t)fe.mem + T_DATA_GPA + 0x10000,
			   SC_VHOST_ACCESS_RW), 0);
	submit_read();
	usleep(50000);   /* popped and held by now */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	usleep(5 * ISO_WINDOW_MS * 1000);   /* expired: its pages wait for the held request */
	cr_assert_eq(server_mapped(T_HDR_GPA, REQ_BYTES), REQ_BYTES, "kept for the request in flight");
	/* Replaces a live entry: a flush, which must not forget the request the expiry waits for. */
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_UPDATE, 0x10000000, 0x1000, (uintptr_t)fe.mem + T_DATA_GPA + 0x20000,
			   SC_VHOST_ACCESS_RW), 0);
	uint16_t head;
	uint32_t len;
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK, "the held request finished on mapped pages");
	cr_assert_eq(isolation_faults(), 0);
	cr_assert_not(sc_drv_vq_get_used(&fe.vq, &head, &len));
	D.be.delay_ns = 0;
	cr_assert(server_mapped_becomes(T_HDR_GPA, REQ_BYTES, 0x1000, 2000), "then only the new entry's page is left");
	cr_assert_eq(map(T_HDR_GPA, REQ_BYTES, SC_VHOST_ACCESS_RW), 0);
	still_serves();
}

/* A region removed takes its dying entries along at once: they would translate into the region added next. */
Test(iotlb, isolated_optimistic_region_removed_takes_its_dying_entries_along)
{
	isolate();
	fe_start_optimistic(1000);
	cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, T_DATA_GPA, 0x1000, 0, 0), 0);
	cr_assert_eq(mem_reg(SC_VHOST_USER_REM_MEM_REG, 0, T_MEM, 0), 0);
	cr_assert_eq(mem_reg(SC_VHOST_USER_ADD_MEM_REG, 0, T_MEM, 0), 0);
	cr_assert_eq(server_mapped(0, T_MEM), 0, "a region comes with nothing mapped");
	struct sc_vu_iotlb t;
	cr_assert(t_next_miss(backend, 2000, &t), "the ring asks again");
	cr_assert_eq(t.iova, 0);
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(sc_vu_server_started(D.srv), 1);
	submit_read();
	cr_assert(t_next_miss(backend, 2000, &t), "the dying entry went with its region: the header misses");
	cr_assert_eq(t.iova, T_HDR_GPA);
	cr_assert_eq(isolation_faults(), 0, "nothing touched the new region's unmapped pages");
	cr_assert_eq(map(T_HDR_GPA, REQ_BYTES, SC_VHOST_ACCESS_RW), 0);
	cr_assert(completed_within(5000));
	cr_assert_eq(fe.mem[T_HDR_GPA + 16], SC_VIRTIO_BLK_S_OK);
	still_serves();
}

/*
 * ---- isolation: a device that touches a page no grant maps ----
 * A device-model bug, played by a disk whose queue translates through an
 * isolated table with no IOMMU in between (any guest address of the region
 * gets a host pointer, granted or not). Ring, headers and one data page
 * are granted; the rest is only reserved. The disk is a RAM disk, so the
 * copy is blk_mem's memcpy under sc_fault_try, as for any memory-backed
 * disk. The test plays the driver through its own whole mapping of the
 * same memfd.
 */
#define ISO_MEM (1u << 20)
#define ISO_GRANTED 0x11000ull          /* the ring at 0, the headers at 0x10000 */
#define ISO_HDR(i) (0x10000ull + (uint64_t)(i) * 64)
#define ISO_DATA_OK 0x20000ull          /* granted */
#define ISO_DATA_UNGRANTED 0x30000ull   /* only reserved */

static struct iso_disk {
	struct t_guest g;      /* the driver's view: all of the memfd */
	struct sc_mem iso;     /* the device's: the same memfd, isolated */
	struct sc_drv_vq dvq;
	struct sc_vq_config cfg;
	struct sc_blk_backend be;
	struct sc_blk_queue q;
	struct sc_poller *p;   /* NULL: the test thread polls (a control thread's guard) */
} X;

static void iso_disk_open(bool on_a_sidecore)
{
	char err[256];
	memset(&X, 0, sizeof(X));
	cr_assert_eq(t_guest_init(&X.g, 0, ISO_MEM), 0);
	cr_assert_eq(t_ring(&X.g, &X.dvq, 16, 0, &X.cfg), 0);
	cr_assert_lt(X.g.next, ISO_HDR(0), "the ring lies below the headers");
	sc_mem_init(&X.iso);
	cr_assert_eq(sc_mem_add_fd_isolated(&X.iso, 0, ISO_MEM, dup(X.g.mem.regions[0].fd), 0, SC_PERM_RW), 0);
	cr_assert_eq(sc_mem_grant(&X.iso, 0, ISO_GRANTED), 0);
	cr_assert_eq(sc_mem_grant(&X.iso, ISO_DATA_OK, 4096), 0);
	X.cfg.xlate = sc_mem_xlate(&X.iso);
	cr_assert_eq(sc_blk_backend_open_ram(&X.be, 1 << 20, "iso", err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(X.be.map, "a RAM disk is copied by memcpy");
	cr_assert_eq(sc_blk_queue_init(&X.q, &X.be, &X.cfg, "iso.sock vring 0"), 0);
	if (on_a_sidecore)
		cr_assert_eq(t_poller_start(-1, SC_POLLER_NEVER_SLEEP, "sc-isofault", &X.q.pq, &X.p), 0);
}

static void iso_disk_close(void)
{
	if (X.p)
		sc_poller_destroy(X.p);
	sc_blk_queue_fini(&X.q);
	sc_blk_backend_close(&X.be);
	sc_mem_fini(&X.iso);
	t_guest_fini(&X.g);
}

/* One request (header i, data at gpa, status after the header); returns its status. */
static uint8_t iso_request(unsigned i, uint32_t type, uint64_t sector, uint64_t gpa)
{
	uint8_t *base = X.g.base;
	*(struct sc_virtio_blk_outhdr *)(base + ISO_HDR(i)) = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	base[ISO_HDR(i) + 16] = 0xee;
	struct sc_drv_seg s[3] = { { ISO_HDR(i), 16 }, { gpa, 4096 }, { ISO_HDR(i) + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&X.dvq, s, type == SC_VIRTIO_BLK_T_IN ? 1 : 2, type == SC_VIRTIO_BLK_T_IN ? 2 : 1), 0);
	sc_drv_vq_publish(&X.dvq);
	uint16_t head;
	uint32_t len;
	for (int ms = 0; sc_drv_vq_get_used(&X.dvq, &head, &len) != 1; ms++) {
		cr_assert_lt(ms, 3000, "request %u never completed", i);
		if (X.p)
			usleep(1000);
		else
			cr_assert_geq(sc_blk_queue_poll(&X.q, 32), 0, "%s", X.q.vq.broken_reason);
	}
	return __atomic_load_n(&base[ISO_HDR(i) + 16], __ATOMIC_ACQUIRE);
}

static void iso_touch_fails_the_request_alone(void)
{
	uint8_t *base = X.g.base, pattern[4096];
	for (unsigned k = 0; k < sizeof(pattern); k++)
		pattern[k] = (uint8_t)(k * 7 + 1);
	memcpy(base + ISO_DATA_OK, pattern, sizeof(pattern));
	cr_assert_eq(iso_request(0, SC_VIRTIO_BLK_T_OUT, 8, ISO_DATA_OK), SC_VIRTIO_BLK_S_OK);

	/* The device writes into, then reads from, a page the IOMMU never granted. */
	cr_assert_eq(iso_request(1, SC_VIRTIO_BLK_T_IN, 8, ISO_DATA_UNGRANTED), SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(iso_request(2, SC_VIRTIO_BLK_T_OUT, 16, ISO_DATA_UNGRANTED), SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(X.q.io_errors, 2);
	cr_assert_not(sc_vq_broken(&X.q.vq), "the queue goes on: %s", X.q.vq.broken_reason);
	cr_assert_eq(base[ISO_DATA_UNGRANTED], 0, "nothing reached the ungranted page");

	/* The next good request works, and reads back what the first wrote. */
	memset(base + ISO_DATA_OK, 0, 4096);
	cr_assert_eq(iso_request(3, SC_VIRTIO_BLK_T_IN, 8, ISO_DATA_OK), SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(base + ISO_DATA_OK, pattern, sizeof(pattern)), 0);
}

TestSuite(isolation_fault, .timeout = 30);

Test(isolation_fault, a_sidecore_touching_an_ungranted_page_fails_that_request_alone)
{
	iso_disk_open(true);
	iso_touch_fails_the_request_alone();
	struct sc_poller_stats st;
	sc_poller_get_stats(X.p, &st);
	cr_assert_eq(st.isolation_faults, 2, "each contained touch is counted");
	cr_assert_eq(st.faults, 0, "no queue was stopped");
	cr_assert_eq(st.stopped_queues, 0);
	iso_disk_close();
}

/* The same on a thread that is no sidecore (a control thread finishing a queue's requests). */
Test(isolation_fault, a_control_thread_touching_an_ungranted_page_fails_that_request_alone)
{
	iso_disk_open(false);
	iso_touch_fails_the_request_alone();
	iso_disk_close();
}

/* Outside a guarded copy (the request header, read by the device model): that queue stops, with the reason. */
Test(isolation_fault, a_header_on_an_ungranted_page_stops_only_its_queue)
{
	iso_disk_open(true);
	uint8_t *base = X.g.base;
	*(struct sc_virtio_blk_outhdr *)(base + ISO_DATA_UNGRANTED) =
		(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = 8 };
	struct sc_drv_seg s[3] = { { ISO_DATA_UNGRANTED, 16 }, { ISO_DATA_OK, 4096 }, { ISO_HDR(0) + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&X.dvq, s, 1, 2), 0);
	sc_drv_vq_publish(&X.dvq);
	for (int ms = 0; !sc_vq_broken(&X.q.vq); ms++) {
		cr_assert_lt(ms, 3000, "the queue never broke");
		usleep(1000);
	}
	char want[40];
	snprintf(want, sizeof(want), "SIGSEGV at %p", (void *)(X.iso.regions[0].hva + ISO_DATA_UNGRANTED));
	cr_assert(strstr(X.q.vq.broken_reason, want), "reason '%s' lacks '%s'", X.q.vq.broken_reason, want);
	struct sc_poller_stats st;
	for (int ms = 0; sc_poller_get_stats(X.p, &st), st.stopped_queues != 1; ms++) {
		cr_assert_lt(ms, 3000);
		usleep(1000);
	}
	cr_assert_eq(st.faults, 1);
	cr_assert_eq(st.isolation_faults, 1);
	cr_assert_eq(sc_poller_detach(X.p, &X.q.pq), 0, "the sidecore lives and lets go of it");
	iso_disk_close();
}

/*
 * ---- isolation at scale: 65,536 grants ----
 * Each batch goes in one send (BATCH_BEGIN, the messages, BATCH_END with
 * the one reply), as QEMU's are written; what is mapped is read from
 * /proc/self/maps after each batch.
 */
struct iotlb_wire {
	struct sc_vu_hdr h;
	struct sc_vu_iotlb t;
} __attribute__((packed));

static void batch_send(struct iotlb_wire *w, uint32_t n)
{
	for (uint32_t i = 0; i < n + 2; i++)
		w[i].h = (struct sc_vu_hdr){ .request = SC_VHOST_USER_IOTLB_MSG, .size = sizeof(w[i].t),
					     .flags = SC_VHOST_USER_VERSION | (i == n + 1 ? SC_VHOST_USER_NEED_REPLY : 0) };
	w[0].t = (struct sc_vu_iotlb){ .type = SC_VHOST_IOTLB_BATCH_BEGIN };
	w[n + 1].t = (struct sc_vu_iotlb){ .type = SC_VHOST_IOTLB_BATCH_END };
	size_t len = (n + 2) * sizeof(*w);
	cr_assert_eq(send(fe.sock, w, len, MSG_NOSIGNAL), (ssize_t)len);
	uint64_t ack;
	t_reply(fe.sock, SC_VHOST_USER_IOTLB_MSG, &ack, 8);
	cr_assert_eq(ack, 0, "every message of the batch was taken (see the lines above)");
}

#define SCALE_GRANTS 65536u
#define SCALE_IOVA(i) (0x100000000ull + (uint64_t)(i) * 0x1000)
#define SCALE_PAGE(i) ((uint64_t)(i) % (T_MEM / 0x1000) * 0x1000)   /* each page granted 64 times */

/* One INVALIDATE per grant i in [from, to), last first, into w from slot 1 on; returns how many. */
static uint32_t invalidations(struct iotlb_wire *w, uint32_t from, uint32_t to)
{
	uint32_t n = 0;
	for (uint32_t i = to; i-- > from;)
		w[1 + n++].t = (struct sc_vu_iotlb){ .iova = SCALE_IOVA(i), .size = 0x1000,
						     .type = SC_VHOST_IOTLB_INVALIDATE };
	return n;
}

Test(iotlb, isolated_65536_grants_then_revokes_keep_exactly_the_granted_pages)
{
	const uint32_t pages = T_MEM / 0x1000;
	struct iotlb_wire *w = calloc(SCALE_GRANTS + 2, sizeof(*w));
	cr_assert_not_null(w);
	isolate();
	fe_open(true);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	/*
	 * Ascending IOVAs, invalidated last first: the viommu domain's own
	 * table is a sorted array (viommu.c), and this order keeps its memmoves
	 * short, so the test stays quick under ASan too. The grants' worst order
	 * is grants::grants_65536_in_descending_order_then_dropped.
	 */
	for (uint32_t i = 0; i < SCALE_GRANTS; i++) {
		w[1 + i].t = (struct sc_vu_iotlb){ .iova = SCALE_IOVA(i), .size = 0x1000,
						   .uaddr = (uintptr_t)fe.mem + SCALE_PAGE(i), .perm = SC_VHOST_ACCESS_RW,
						   .type = SC_VHOST_IOTLB_UPDATE };
	}
	batch_send(w, SCALE_GRANTS);
	cr_assert_eq(server_mapped(0, T_MEM), T_MEM, "every page is granted");

	/* All but one grant of each page go: every page is still granted. */
	batch_send(w, invalidations(w, pages, SCALE_GRANTS));
	cr_assert_eq(server_mapped(0, T_MEM), T_MEM, "each page still has a grant");

	/* The last grants of the first half go: exactly that half is unmapped. */
	batch_send(w, invalidations(w, 0, pages / 2));
	cr_assert_eq(server_mapped(0, T_MEM / 2), 0, "no grant left on the first half");
	cr_assert_eq(server_mapped(T_MEM / 2, T_MEM / 2), T_MEM / 2, "the second half is still granted");

	/* One at a time, acked each (a strict guest), the rest. */
	for (uint32_t i = pages / 2; i < pages; i++)
		cr_assert_eq(iotlb(SC_VHOST_IOTLB_INVALIDATE, SCALE_IOVA(i), 0x1000, 0, 0), 0);
	cr_assert_eq(server_mapped(0, T_MEM), 0, "nothing is granted: nothing is mapped");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("65,536 grants and their revokes: %.0f ms",
		    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

	/* The device works as before on fresh entries. */
	cr_assert_eq(map(0, T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	cr_assert_eq(map(T_HDR_GPA, T_MEM - T_HDR_GPA, SC_VHOST_ACCESS_RW), 0);
	fe_ring();
	cr_assert_eq(sc_vu_server_started(D.srv), 1);
	still_serves();
	free(w);
}

/*
 * ---- the grants' bookkeeping (runtime/grants.c) against a page-by-page model ----
 * Random UPDATEs (replacing what they overlap, as vu_server does),
 * INVALIDATEs, pending ranges, flushes and regions removed, on 64 guest
 * pages; after each step every query must answer as the model does.
 */
#include "runtime/grants.h"

#define M_PAGES 64u
#define M_IOVAS 96u
#define PG 0x1000ull

struct m_grant {
	uint64_t iova, last, gpa;
};

static struct model {
	struct m_grant g[M_IOVAS];   /* by first IOVA page; last == 0 means none starts there */
	bool used[M_IOVAS];
	unsigned live[M_PAGES];
	bool pending[M_PAGES];
	bool sealed[M_PAGES];        /* pending when a grace period started (sc_grants_seal) */
} M;

static void model_drop(uint32_t k)
{
	for (uint64_t p = M.g[k].gpa / PG; p <= (M.g[k].gpa + M.g[k].last - M.g[k].iova) / PG; p++) {
		M.live[p]--;
		M.pending[p] = true;
	}
	M.used[k] = false;
}

static uint32_t model_drop_iova(uint64_t iova, uint64_t last)
{
	uint32_t n = 0;
	for (uint32_t k = 0; k < M_IOVAS; k++)
		if (M.used[k] && M.g[k].iova <= last && iova <= M.g[k].last) {
			model_drop(k);
			n++;
		}
	return n;
}

static uint8_t seen[M_PAGES];
static uint64_t seen_last_end;
static bool seen_any_order;   /* sc_grants_flush tells the sealed ranges, then the pending ones */

static void mark(void *arg, uint64_t gpa, uint64_t end)
{
	(void)arg;
	cr_assert_lt(gpa, end);
	if (!seen_any_order)
		cr_assert_geq(gpa, seen_last_end, "pieces come in order, apart");
	cr_assert_eq(gpa % PG, 0);
	cr_assert_eq(end % PG, 0);
	cr_assert_leq(end, M_PAGES * PG);
	for (uint64_t p = gpa / PG; p < end / PG; p++)
		seen[p]++;
	seen_last_end = end;
}

static void seen_reset(void)
{
	memset(seen, 0, sizeof(seen));
	seen_last_end = 0;
}

static void model_check(const struct sc_grants *G, int step)
{
	for (int pending = 0; pending < 2; pending++) {
		seen_reset();
		sc_grants_uncovered_each(G, 0, M_PAGES * PG, pending, mark, NULL);
		for (unsigned p = 0; p < M_PAGES; p++)
			cr_assert_eq(seen[p], !M.live[p] && !(pending && (M.pending[p] || M.sealed[p])),
				     "step %d page %u pending %d", step, p, pending);
	}
	uint32_t n = 0;
	for (uint32_t k = 0; k < M_IOVAS; k++)
		if (M.used[k]) {
			n++;
			cr_assert(sc_grants_has(G, M.g[k].iova, M.g[k].last, M.g[k].gpa), "step %d", step);
		}
	cr_assert_eq(G->grants.n, n, "step %d", step);
}

static uint32_t gone_n;

static void gone(void *arg, uint64_t iova, uint64_t last)
{
	(void)arg, (void)last;
	uint32_t k = (uint32_t)(iova / PG);
	cr_assert(M.used[k], "a grant that the model holds goes");
	M.used[k] = false;   /* no revoke: its region's mapping went whole */
	gone_n++;
}

TestSuite(grants, .timeout = 30);

Test(grants, random_steps_answer_as_a_page_by_page_model)
{
	struct sc_grants G;
	sc_grants_init(&G, "model");
	memset(&M, 0, sizeof(M));
	srand(12345);
	for (int step = 0; step < 20000; step++) {
		int op = rand() % 18;
		uint64_t i0 = (uint64_t)(rand() % M_IOVAS), len = 1 + (uint64_t)(rand() % 4);
		uint64_t g0 = (uint64_t)(rand() % M_PAGES);
		if (i0 + len > M_IOVAS)
			len = M_IOVAS - i0;
		if (g0 + len > M_PAGES)
			len = M_PAGES - g0;
		if (g0 < M_PAGES / 2 && g0 + len > M_PAGES / 2)
			len = M_PAGES / 2 - g0;   /* a grant lies in one region (sc_mem_grant) */
		uint64_t iova = i0 * PG, last = (i0 + len) * PG - 1, gpa = g0 * PG;
		if (op < 8) {   /* UPDATE, as isol_note does */
			if (sc_grants_has(&G, iova, last, gpa))
				continue;
			cr_assert_eq(sc_grants_drop_iova(&G, iova, last), model_drop_iova(iova, last), "step %d", step);
			cr_assert_eq(sc_grants_add(&G, iova, last, gpa), 0);
			M.g[i0] = (struct m_grant){ iova, last, gpa };
			M.used[i0] = true;
			for (uint64_t p = g0; p < g0 + len; p++)
				M.live[p]++;
		} else if (op < 12) {   /* INVALIDATE */
			cr_assert_eq(sc_grants_drop_iova(&G, iova, last), model_drop_iova(iova, last), "step %d", step);
		} else if (op < 13) {   /* an UPDATE that failed in a batch */
			sc_grants_pend(&G, gpa, gpa + len * PG);
			for (uint64_t p = g0; p < g0 + len; p++)
				M.pending[p] = true;
		} else if (op < 15) {   /* the grace period is over (strict: it started after every drop) */
			seen_reset();
			seen_any_order = true;
			sc_grants_flush(&G, mark, NULL);
			seen_any_order = false;
			for (unsigned p = 0; p < M_PAGES; p++) {
				cr_assert_eq(seen[p], (M.pending[p] || M.sealed[p]) && !M.live[p], "step %d page %u", step, p);
				M.pending[p] = M.sealed[p] = false;
			}
		} else if (op == 16) {   /* optimistic: a grace period starts, unless one runs */
			bool busy = false, any = false;
			for (unsigned p = 0; p < M_PAGES; p++) {
				busy |= M.sealed[p];
				any |= M.pending[p];
			}
			cr_assert_eq(sc_grants_pending(&G), any, "step %d", step);
			cr_assert_eq(sc_grants_seal(&G), busy ? -EBUSY : 0, "step %d", step);
			for (unsigned p = 0; p < M_PAGES && !busy; p++) {
				M.sealed[p] = M.pending[p];
				M.pending[p] = false;
			}
		} else if (op == 17) {   /* optimistic: the sealed ranges' grace period is over */
			seen_reset();
			sc_grants_flush_sealed(&G, mark, NULL);
			for (unsigned p = 0; p < M_PAGES; p++) {
				cr_assert_eq(seen[p], M.sealed[p] && !M.live[p], "step %d page %u", step, p);
				M.sealed[p] = false;
			}
		} else {   /* one of two regions leaves */
			uint64_t r0 = rand() % 2 ? 0 : M_PAGES / 2, rn = M_PAGES / 2;
			uint32_t want = 0;
			for (uint32_t k = 0; k < M_IOVAS; k++)
				want += M.used[k] && M.g[k].gpa / PG - r0 < rn;
			gone_n = 0;
			sc_grants_drop_region(&G, r0 * PG, rn * PG, gone, NULL);
			cr_assert_eq(gone_n, want, "step %d", step);
			for (uint64_t p = r0; p < r0 + rn; p++) {
				M.live[p] = 0;
				M.pending[p] = M.sealed[p] = false;
			}
		}
		model_check(&G, step);
	}
	cr_assert_leq(G.live.n, M_PAGES, "the cover stays merged");
	sc_grants_fini(&G);
}

static void any_gap(void *arg, uint64_t gpa, uint64_t end)
{
	(void)gpa, (void)end;
	*(bool *)arg = true;
}

struct ranges {
	uint64_t bytes, n;
};

static void count_range(void *arg, uint64_t gpa, uint64_t end)
{
	struct ranges *r = arg;
	r->bytes += end - gpa;
	r->n++;
}

/* 65,536 grants, each below the last (the worst order for a sorted array), two per page, then their drops. */
Test(grants, grants_65536_in_descending_order_then_dropped)
{
	struct sc_grants G;
	const uint32_t n = 65536, pages = n / 2;
	sc_grants_init(&G, "scale");
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = n - 1 - k;
		cr_assert_eq(sc_grants_add(&G, (uint64_t)i * PG, (uint64_t)i * PG + PG - 1, (uint64_t)(i % pages) * PG), 0);
	}
	cr_assert_eq(G.grants.n, n);
	cr_assert_eq(G.live.n, 1, "all pages covered twice: one segment");
	cr_assert_eq(G.live.root->b, 2);
	bool gap = false;
	sc_grants_uncovered_each(&G, 0, (uint64_t)pages * PG, false, any_gap, &gap);
	cr_assert_not(gap);
	/* The second grant of every page goes: nothing to unmap. */
	for (uint32_t i = pages; i < n; i++)
		cr_assert_eq(sc_grants_drop_iova(&G, (uint64_t)i * PG, (uint64_t)i * PG), 1);
	struct ranges r = { 0, 0 };
	sc_grants_flush(&G, count_range, &r);
	cr_assert_eq(r.n, 0, "every page still has a grant");
	/* Every other page's last grant: those pages, and only those. */
	for (uint32_t i = 0; i < pages; i += 2)
		cr_assert_eq(sc_grants_drop_iova(&G, (uint64_t)i * PG, (uint64_t)i * PG), 1);
	sc_grants_flush(&G, count_range, &r);
	cr_assert_eq(r.bytes, (uint64_t)pages / 2 * PG);
	cr_assert_eq(r.n, pages / 2, "each page alone: its neighbours are still granted");
	/* The rest in one INVALIDATE, not yet flushed: the pages dropped touch, and go as one range. */
	cr_assert_eq(sc_grants_drop_iova(&G, 0, (uint64_t)n * PG), pages / 2);
	for (uint32_t i = 0; i < pages; i += 2)
		sc_grants_pend(&G, (uint64_t)i * PG, (uint64_t)i * PG + PG);   /* as an UPDATE refused in a batch would */
	r = (struct ranges){ 0, 0 };
	sc_grants_flush(&G, count_range, &r);
	cr_assert_eq(r.bytes, (uint64_t)pages * PG);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(G.grants.n, 0);
	cr_assert_eq(G.live.n, 0);
	cr_assert_eq(G.pending.n, 0);
	sc_grants_fini(&G);
}
