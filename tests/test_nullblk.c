/* SPDX-License-Identifier: MIT */
/* nullblk on the real vqueue and guestmem, driven by the driver library: each request type and each malformed one. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "devices/devices.h"
#include "driver/driver.h"
#include "harness.h"

#define QSIZE    32
#define GPA      0x100000ull
#define MEM      (4ull << 20)
#define CAPACITY 2048ull   /* sectors: 1 MiB */

static struct t_guest g;
static struct sc_drv_vq dvq;
static struct sc_nullblk dev;

static void setup(void)
{
	struct sc_vq_config cfg;

	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	cr_assert_eq(t_ring(&g, &dvq, QSIZE, 0, &cfg), 0);
	cr_assert_eq(sc_nullblk_init(&dev, &cfg, CAPACITY, "null0"), 0, "%s", dev.vq.broken_reason);
}

static void teardown(void) { t_guest_fini(&g); }

TestSuite(nullblk, .init = setup, .fini = teardown, .timeout = 10);

/* One request's buffers in guest memory: header, data, status (the status preset to 0xee). */
struct req {
	struct sc_virtio_blk_outhdr *hdr;
	uint8_t *data, *status;
	uint64_t hdr_gpa, data_gpa, status_gpa;
};

static struct req new_req(uint32_t type, uint64_t sector, uint32_t data_bytes)
{
	struct req r;

	r.hdr = t_alloc(&g, sizeof(*r.hdr), 16, &r.hdr_gpa);
	r.data = t_alloc(&g, data_bytes ? data_bytes : 1, 512, &r.data_gpa);
	r.status = t_alloc(&g, 1, 1, &r.status_gpa);
	cr_assert(r.hdr && r.data && r.status, "guest memory full");
	*r.hdr = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	*r.status = 0xee;
	return r;
}

/* Queue one request, serve it, reap it; returns the used length. */
static uint32_t run(const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	uint16_t head;
	uint32_t len = 0;
	int h = sc_drv_vq_add(&dvq, segs, out, in);

	cr_assert_geq(h, 0);
	sc_drv_vq_publish(&dvq);
	cr_assert_eq(sc_nullblk_poll(&dev, 32), 1, "%s", dev.vq.broken_reason);
	cr_assert_eq(sc_drv_vq_get_used(&dvq, &head, &len), 1);
	cr_assert_eq(head, h);
	cr_assert(!sc_vq_broken(&dev.vq), "a bad request fails alone, the queue goes on");
	return len;
}

Test(nullblk, read_8_sectors)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 8, 4096);
	memset(r.data, 0x5a, 4096);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 4096 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 2), 4096 + 1, "data and status");
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(r.data[0], 0x5a, "a null device leaves the data alone");
	cr_assert_eq(dev.stats.reads, 1);
	cr_assert_eq(dev.stats.bytes_read, 4096);
	cr_assert_eq(dev.stats.bad_requests, 0);
}

Test(nullblk, write)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_OUT, 0, 1024);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 1024 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 2, 1), 1, "only the status is written");
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.writes, 1);
	cr_assert_eq(dev.stats.bytes_written, 1024);
}

Test(nullblk, write_to_the_last_sector)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_OUT, CAPACITY - 1, 512);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 512 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 2, 1), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
}

Test(nullblk, flush)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_FLUSH, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.flushes, 1);
}

Test(nullblk, get_id)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_GET_ID, 0, SC_VIRTIO_BLK_ID_BYTES);
	memset(r.data, 'x', SC_VIRTIO_BLK_ID_BYTES);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, SC_VIRTIO_BLK_ID_BYTES }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 2), SC_VIRTIO_BLK_ID_BYTES + 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_str_eq((char *)r.data, "sidecore-null");
	for (int i = 13; i < SC_VIRTIO_BLK_ID_BYTES; i++)
		cr_assert_eq(r.data[i], 0, "zero padding at %d", i);
	cr_assert_eq(dev.stats.get_ids, 1);
}

Test(nullblk, get_id_into_a_short_buffer)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_GET_ID, 0, 8);
	memset(r.data, 'x', 9);
	/* 8 bytes of id and the status, in one writable descriptor. */
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 9 } };
	cr_assert_eq(run(s, 1, 1), 9);
	cr_assert_eq(memcmp(r.data, "sidecore", 8), 0);
	cr_assert_eq(r.data[8], SC_VIRTIO_BLK_S_OK, "status is the last writable byte");
}

Test(nullblk, unknown_type_is_unsupported)
{
	struct req r = new_req(99, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(dev.stats.unsupported, 1);
	cr_assert_eq(dev.stats.bad_requests, 0);
}

Test(nullblk, read_beyond_capacity)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, CAPACITY - 1, 1024);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 1024 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 2), 1, "only the status");
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
	cr_assert_eq(dev.stats.reads, 0);
}

Test(nullblk, sector_plus_length_overflows)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_OUT, UINT64_MAX, 512);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 512 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 2, 1), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
	cr_assert_eq(dev.stats.writes, 0);
}

Test(nullblk, data_not_a_multiple_of_512)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 0, 100);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 100 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 2), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
}

Test(nullblk, header_shorter_than_16_bytes)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 8 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
}

Test(nullblk, no_writable_byte_completes_with_len_0)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 } };
	cr_assert_eq(run(s, 1, 0), 0);
	cr_assert_eq(*r.status, 0xee, "nothing written");
	cr_assert_eq(dev.stats.bad_requests, 1);
}

Test(nullblk, header_split_across_two_descriptors)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 3, 512);
	/* Type and ioprio in one descriptor, the sector in another, 256 bytes away. */
	uint64_t far_gpa;
	uint8_t *far = t_alloc(&g, 8, 256, &far_gpa);
	memcpy(far, (uint8_t *)r.hdr + 8, 8);
	memset((uint8_t *)r.hdr + 8, 0xff, 8);   /* garbage right after the first half */
	struct sc_drv_seg s[] = { { r.hdr_gpa, 8 }, { far_gpa, 8 }, { r.data_gpa, 512 }, { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 2, 2), 513);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK, "sector 3 read, not sector 2^64-1");
	cr_assert_eq(dev.stats.reads, 1);
}

Test(nullblk, data_in_several_segments_and_status_alone)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 0, 1024);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 512 }, { r.data_gpa + 512, 512 },
				  { r.status_gpa, 1 } };
	cr_assert_eq(run(s, 1, 3), 1025);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.bytes_read, 1024);
}

Test(nullblk, status_sharing_a_buffer_with_data)
{
	/* 512 bytes of data and the status in one writable descriptor of 513 bytes. */
	struct req r = new_req(SC_VIRTIO_BLK_T_IN, 0, 513);
	r.data[512] = 0xee;
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.data_gpa, 513 } };
	cr_assert_eq(run(s, 1, 1), 513);
	cr_assert_eq(r.data[512], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.bytes_read, 512);
}

Test(nullblk, budget_is_respected)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_FLUSH, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	for (int i = 0; i < 10; i++)
		cr_assert_geq(sc_drv_vq_add(&dvq, s, 1, 1), 0);
	sc_drv_vq_publish(&dvq);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 4);
	cr_assert_eq(dvq.used->idx, 4, "one batch published");
	cr_assert_eq(dev.stats.flushes, 4);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 4);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 2);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 0);
	cr_assert_eq(sc_nullblk_poll(&dev, 0), 0);

	uint16_t head;
	uint32_t len;
	int reaped = 0;
	while (sc_drv_vq_get_used(&dvq, &head, &len) == 1)
		reaped++;
	cr_assert_eq(reaped, 10);
}

Test(nullblk, each_poll_publishes_every_completion_of_what_it_found)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_FLUSH, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	uint16_t published = 0;

	for (int round = 1; round <= 4; round++) {
		for (int i = 0; i < round; i++)
			cr_assert_geq(sc_drv_vq_add(&dvq, s, 1, 1), 0);
		sc_drv_vq_publish(&dvq);
		cr_assert_eq(sc_nullblk_poll(&dev, 32), round);
		published = (uint16_t)(published + round);
		cr_assert_eq(dvq.used->idx, published, "every request served is published by the poll that served it");
		cr_assert_eq(sc_vq_pop_cached(&dev.vq), 0);
		uint16_t head;
		uint32_t len;
		for (int i = 0; i < round; i++)
			cr_assert_eq(sc_drv_vq_get_used(&dvq, &head, &len), 1);
	}
	cr_assert_eq(dev.stats.flushes, 10);
	cr_assert_eq(sc_nullblk_poll(&dev, 32), 0, "nothing left");
}

Test(nullblk, broken_ring_is_reported_by_poll_after_flushing)
{
	struct req r = new_req(SC_VIRTIO_BLK_T_FLUSH, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	cr_assert_geq(sc_drv_vq_add(&dvq, s, 1, 1), 0);
	sc_drv_vq_publish(&dvq);
	/* Then, as a hostile guest, a head outside the table. */
	dvq.avail->ring[1] = QSIZE;
	__atomic_store_n(&dvq.avail->idx, 2, __ATOMIC_RELEASE);

	cr_assert_eq(sc_nullblk_poll(&dev, 4), -EINVAL);
	cr_assert(sc_vq_broken(&dev.vq));
	cr_assert_eq(dvq.used->idx, 1, "the good request before it was completed");
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), -EINVAL, "and it stays broken");
}

Test(nullblk, pollq_ops_reach_the_device)
{
	cr_assert_eq(dev.pq.ctx, &dev);
	cr_assert_eq(dev.pq.kick_fd, -1);
	cr_assert_str_eq(dev.pq.name, "null0");
	struct req r = new_req(SC_VIRTIO_BLK_T_FLUSH, 0, 0);
	struct sc_drv_seg s[] = { { r.hdr_gpa, 16 }, { r.status_gpa, 1 } };
	dev.pq.ops->notify_disable(&dev.pq);
	cr_assert_eq(dvq.used->flags & SC_VIRTQ_USED_F_NO_NOTIFY, SC_VIRTQ_USED_F_NO_NOTIFY);
	cr_assert(!dev.pq.ops->notify_enable(&dev.pq), "nothing waiting");
	cr_assert_eq(dvq.used->flags & SC_VIRTQ_USED_F_NO_NOTIFY, 0);
	cr_assert_geq(sc_drv_vq_add(&dvq, s, 1, 1), 0);
	sc_drv_vq_publish(&dvq);
	cr_assert(dev.pq.ops->notify_enable(&dev.pq), "work waiting");
	cr_assert_eq(dev.pq.ops->poll(&dev.pq, 8), 1);
	cr_assert_eq(*r.status, SC_VIRTIO_BLK_S_OK);
}

Test(nullblk, init_reports_a_bad_ring)
{
	struct sc_vq_config cfg;
	struct sc_nullblk d2;
	t_vq_config(&g, &dvq, 0, &cfg);
	cfg.used_addr = GPA + MEM;   /* outside guest memory */
	cr_assert_eq(sc_nullblk_init(&d2, &cfg, CAPACITY, "bad"), -EFAULT);
	cr_assert(sc_vq_broken(&d2.vq));
	cr_assert_eq(sc_nullblk_poll(&d2, 4), -EFAULT);
}
