/* SPDX-License-Identifier: MIT */
/* nullblk on a real vqueue and guestmem, driven by the driver library: every request type and each malformed one. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"

#define QSIZE 16
#define MEM (1u << 20)
#define CAPACITY 2048   /* sectors: 1 MiB */

static struct sc_mem mem;
static uint8_t *base;
static struct sc_drv_vq dvq;
static struct sc_nullblk dev;

/* Guest addresses of the request parts. */
#define HDR   0x10000ull
#define DATA  0x11000ull
#define STAT  0x20000ull

static void setup(void)
{
	sc_mem_init(&mem);
	int fd = sc_mem_memfd_create("nullblk", MEM);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&mem, 0, MEM, fd, 0, SC_PERM_RW), 0);
	base = mem.regions[0].hva;
	cr_assert_eq(sc_drv_vq_init(&dvq, base, 0, QSIZE, 0), 0);
	struct sc_vq_config cfg = {
		.size = QSIZE, .desc_addr = dvq.desc_gpa, .avail_addr = dvq.avail_gpa,
		.used_addr = dvq.used_gpa, .xlate = sc_mem_xlate(&mem), .call_fd = -1, .kick_fd = -1,
	};
	cr_assert_eq(sc_nullblk_init(&dev, &cfg, CAPACITY, "t"), 0);
}

static void teardown(void) { sc_mem_fini(&mem); }

TestSuite(nullblk, .init = setup, .fini = teardown, .timeout = 10);

static void header(uint32_t type, uint64_t sector)
{
	*(struct virtio_blk_outhdr *)(base + HDR) = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	base[STAT] = 0xee;
}

/* Queue segs, serve them, and return the used length; the status is at base[STAT]. */
static uint32_t run(const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	uint16_t head;
	uint32_t len = 0;
	cr_assert_geq(sc_drv_vq_add(&dvq, segs, out, in), 0);
	sc_drv_vq_publish(&dvq);
	cr_assert_eq(sc_nullblk_poll(&dev, 32), 1);
	cr_assert_eq(sc_drv_vq_get_used(&dvq, &head, &len), 1);
	return len;
}

Test(nullblk, read_8_sectors)
{
	header(VIRTIO_BLK_T_IN, 8);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 4096 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 2), 4097);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.reads, 1);
	cr_assert_eq(dev.stats.bytes_read, 4096);
}

Test(nullblk, write)
{
	header(VIRTIO_BLK_T_OUT, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 1024 }, { STAT, 1 } };
	cr_assert_eq(run(s, 2, 1), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.bytes_written, 1024);
}

Test(nullblk, flush)
{
	header(VIRTIO_BLK_T_FLUSH, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.flushes, 1);
}

Test(nullblk, get_id)
{
	header(VIRTIO_BLK_T_GET_ID, 0);
	memset(base + DATA, 'x', 32);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, VIRTIO_BLK_ID_BYTES }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 2), VIRTIO_BLK_ID_BYTES + 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
	cr_assert_str_eq((char *)base + DATA, "sidecore-null");
}

Test(nullblk, unknown_type_is_unsupported)
{
	header(99, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(dev.stats.unsupported, 1);
}

Test(nullblk, read_beyond_capacity)
{
	header(VIRTIO_BLK_T_IN, CAPACITY - 1);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 1024 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 2), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
	cr_assert_eq(dev.stats.reads, 0);
}

Test(nullblk, sector_overflow)
{
	header(VIRTIO_BLK_T_OUT, UINT64_MAX);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 512 }, { STAT, 1 } };
	cr_assert_eq(run(s, 2, 1), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_IOERR);
}

Test(nullblk, data_not_a_multiple_of_512)
{
	header(VIRTIO_BLK_T_IN, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 100 }, { STAT, 1 } };
	run(s, 1, 2);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_IOERR);
}

Test(nullblk, header_shorter_than_16_bytes)
{
	header(VIRTIO_BLK_T_IN, 0);
	struct sc_drv_seg s[] = { { HDR, 8 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 1), 1);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_IOERR);
	cr_assert_eq(dev.stats.bad_requests, 1);
}

Test(nullblk, no_writable_byte_completes_with_len_0)
{
	header(VIRTIO_BLK_T_IN, 0);
	struct sc_drv_seg s[] = { { HDR, 16 } };
	cr_assert_eq(run(s, 1, 0), 0);
	cr_assert_eq(base[STAT], 0xee, "nothing written");
	cr_assert_eq(dev.stats.bad_requests, 1);
	cr_assert(!sc_vq_broken(&dev.vq), "a malformed request fails alone");
}

Test(nullblk, header_split_across_two_descriptors)
{
	header(VIRTIO_BLK_T_IN, 3);
	/* Move the second half of the header 256 bytes away, as its own descriptor. */
	memcpy(base + HDR + 256, base + HDR + 8, 8);
	memset(base + HDR + 8, 0xff, 8);
	struct sc_drv_seg s[] = { { HDR, 8 }, { HDR + 256, 8 }, { DATA, 512 }, { STAT, 1 } };
	cr_assert_eq(run(s, 2, 2), 513);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
}

Test(nullblk, status_in_its_own_segment_after_data)
{
	header(VIRTIO_BLK_T_IN, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { DATA, 512 }, { DATA + 512, 512 }, { STAT, 1 } };
	cr_assert_eq(run(s, 1, 3), 1025);
	cr_assert_eq(base[STAT], VIRTIO_BLK_S_OK);
	cr_assert_eq(dev.stats.bytes_read, 1024);
}

Test(nullblk, budget_is_respected)
{
	header(VIRTIO_BLK_T_FLUSH, 0);
	struct sc_drv_seg s[] = { { HDR, 16 }, { STAT, 1 } };
	for (int i = 0; i < 6; i++)
		cr_assert_geq(sc_drv_vq_add(&dvq, s, 1, 1), 0);
	sc_drv_vq_publish(&dvq);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 4);
	cr_assert_eq(dvq.used->idx, 4, "one batch published");
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 2);
	cr_assert_eq(sc_nullblk_poll(&dev, 4), 0);
}

Test(nullblk, broken_ring_is_reported_by_poll)
{
	dvq.avail->ring[0] = QSIZE;   /* head out of range */
	dvq.avail->idx = 1;
	cr_assert_eq(sc_nullblk_poll(&dev, 4), -EINVAL);
	cr_assert(sc_vq_broken(&dev.vq));
}
