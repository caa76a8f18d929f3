/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on real io_uring over a real file, driven through a real split
 * ring by the driver library; the test plays the sidecore by calling poll.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/tsc.h"
#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "harness.h"

#define QSIZE 256                        /* room for a 64-segment chain */
#define MEM (160u << 20)                 /* sparse: only what a test touches is memory */
#define DISK_BYTES (128u << 20)
#define HDR(i)  (0x10000ull + (uint64_t)(i) * 64)
#define STAT(i) (HDR(i) + 16)
#define DATA(i) (0x100000ull + (uint64_t)(i) * 0x2000)
#define BIG (64u << 20)                  /* a 64 MiB request: BIG_W is written, BIG_R read into */
#define BIG_W (16ull << 20)
#define BIG_R (BIG_W + BIG)

static struct t_guest g;
static struct sc_vq_config vcfg;   /* the device side of dvq */
static uint8_t *base;
static struct sc_drv_vq dvq;
static struct sc_blk_backend be;
static struct sc_blk_queue q;
static char dir[] = "/tmp/sidecore-blk-XXXXXX", path[64];
static unsigned polls;   /* poll calls made by run() */

static void open_disk(bool ro)
{
	char err[256];
	cr_assert_eq(sc_blk_backend_open(&be, path, ro, false, "disk-serial", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sc_blk_queue_init(&q, &be, &vcfg, "t"), 0);
}

/* Start over on file (opened with O_DIRECT if asked) with a fresh ring; skips if it cannot be opened. */
static void reopen(const char *file, bool direct)
{
	char err[256];
	sc_blk_queue_fini(&q);
	sc_blk_backend_close(&be);
	t_ring_init(&g, &dvq, 0, QSIZE, 0);
	if (sc_blk_backend_open(&be, file, false, direct, NULL, err, sizeof(err)) < 0)
		cr_skip_test("cannot open %s%s here: %s", file, direct ? " with O_DIRECT" : "", err);
	cr_assert_eq(sc_blk_queue_init(&q, &be, &vcfg, "t"), 0);
}

/* O_DIRECT: where reads and writes really are in flight. */
static void reopen_direct(void)
{
	reopen(path, true);
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	cr_assert_eq(t_guest_init(&g, 0, MEM), 0);
	cr_assert_eq(t_ring(&g, &dvq, QSIZE, 0, &vcfg), 0);   /* at GPA 0, below HDR(0) */
	base = g.base;
	open_disk(false);
}

static void teardown(void)
{
	sc_blk_queue_fini(&q);
	sc_blk_backend_close(&be);
	t_guest_fini(&g);
	unlink(path);
	rmdir(dir);
}

TestSuite(blk, .init = setup, .fini = teardown, .timeout = 20);

/* Queue request i: header (type, sector), then data segments, then status. */
static int post(unsigned i, uint32_t type, uint64_t sector, uint32_t len, bool data_in)
{
	struct sc_virtio_blk_outhdr *h = (void *)(base + HDR(i));
	*h = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	base[STAT(i)] = 0xee;
	struct sc_drv_seg s[3] = { { HDR(i), 16 } };
	unsigned out = 1, in = 0;
	if (len && data_in)
		s[out + in++] = (struct sc_drv_seg){ DATA(i), len };
	else if (len)
		s[out++] = (struct sc_drv_seg){ DATA(i), len };
	s[out + in++] = (struct sc_drv_seg){ STAT(i), 1 };
	return sc_drv_vq_add(&dvq, s, out, in);
}

/* Serve until n completions arrived (bounded); returns the heads in completion order. */
static void run(unsigned n, uint16_t *order)
{
	uint16_t head;
	uint32_t len;
	unsigned got = 0;
	struct timespec t0, t;
	sc_drv_vq_publish(&dvq);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n) {
		cr_assert_geq(sc_blk_queue_poll(&q, 32), 0, "%s", q.vq.broken_reason);
		polls++;
		while (got < n && sc_drv_vq_get_used(&dvq, &head, &len) == 1)
			if (order)
				order[got++] = head;
			else
				got++;
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 5, "requests did not complete");
	}
}

static void read_file(uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

Test(blk, write_then_read_back)
{
	for (int k = 0; k < 4096; k++)
		base[DATA(0) + k] = (uint8_t)(k * 7 + 3);
	post(0, SC_VIRTIO_BLK_T_OUT, 8, 4096, false);
	run(1, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	uint8_t disk[4096];
	read_file(8 * 512, disk, 4096);
	cr_assert_eq(memcmp(disk, base + DATA(0), 4096), 0, "the file holds what the guest wrote");

	memset(base + DATA(1), 0, 4096);
	post(1, SC_VIRTIO_BLK_T_IN, 8, 4096, true);
	run(1, NULL);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(base + DATA(1), base + DATA(0), 4096), 0, "read back what was written");
	cr_assert_eq(q.stats.bytes_written, 4096);
	cr_assert_eq(q.stats.bytes_read, 4096);
	/* Where the file system can do nonblocking buffered I/O, cached pages complete at once. */
	cr_assert_eq(q.sync_done, (uint64_t)be.nowait_read + be.nowait_write,
		     "nowait read %d write %d, %llu done at once", be.nowait_read, be.nowait_write,
		     (unsigned long long)q.sync_done);
}

Test(blk, many_requests_in_flight_complete)
{
	for (unsigned i = 0; i < 16; i++)
		cr_assert_geq(post(i, SC_VIRTIO_BLK_T_IN, i * 8, 4096, true), 0);
	run(16, NULL);
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.inflight, 0);
}

Test(blk, flush_completes_after_the_writes_before_it)
{
	/* Three writes and a flush in one batch: the flush must finish last (IOSQE_IO_DRAIN). */
	int heads[4];
	for (unsigned i = 0; i < 3; i++)
		heads[i] = post(i, SC_VIRTIO_BLK_T_OUT, i * 64, 8192, false);
	heads[3] = post(3, SC_VIRTIO_BLK_T_FLUSH, 0, 0, false);
	uint16_t order[4];
	run(4, order);
	cr_assert_eq(order[3], heads[3], "the flush completed before a write it follows");
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.stats.flushes, 1);
}

Test(blk, flush_waits_for_slow_direct_writes)
{
	/*
	 * O_DIRECT writes of 1 MiB really are in flight when the flush is
	 * submitted; without the drain, the fdatasync can overtake them.
	 */
	reopen_direct();

	for (int round = 0; round < 20; round++) {
		int heads[4];
		for (unsigned i = 0; i < 3; i++) {
			*(struct sc_virtio_blk_outhdr *)(base + HDR(i)) =
				(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_OUT, .sector = i * 2048 };
			struct sc_drv_seg s[3] = { { HDR(i), 16 }, { 0x200000, 1 << 20 }, { STAT(i), 1 } };
			heads[i] = sc_drv_vq_add(&dvq, s, 2, 1);
		}
		heads[3] = post(3, SC_VIRTIO_BLK_T_FLUSH, 0, 0, false);
		uint16_t order[4];
		run(4, order);
		cr_assert_eq(order[3], heads[3], "round %d: the flush completed before a write it follows", round);
		for (unsigned i = 0; i < 4; i++)
			cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK, "round %d request %u", round, i);
	}
}

Test(blk, read_only_disk_refuses_writes)
{
	sc_blk_queue_fini(&q);
	sc_blk_backend_close(&be);
	sc_drv_vq_init(&dvq, base, 0, QSIZE, 0);
	open_disk(true);
	cr_assert(sc_blk_features(&be) & (1ull << SC_VIRTIO_BLK_F_RO));
	memset(base + DATA(0), 0xab, 512);
	post(0, SC_VIRTIO_BLK_T_OUT, 0, 512, false);
	post(1, SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
	post(2, SC_VIRTIO_BLK_T_IN, 0, 512, true);
	run(3, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(2)], SC_VIRTIO_BLK_S_OK, "reads still work");
	uint8_t disk[512];
	read_file(0, disk, 512);
	cr_assert_eq(disk[0], 0, "nothing was written");
}

Test(blk, write_zeroes_and_discard_zero_the_range)
{
	uint8_t ones[8192];
	memset(ones, 0xff, sizeof(ones));
	int fd = open(path, O_WRONLY);
	cr_assert_eq(pwrite(fd, ones, sizeof(ones), 0), (ssize_t)sizeof(ones));
	close(fd);
	struct sc_virtio_blk_discard_write_zeroes *seg = (void *)(base + DATA(0));
	*seg = (struct sc_virtio_blk_discard_write_zeroes){ .sector = 0, .num_sectors = 8 };
	post(0, SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
	seg = (void *)(base + DATA(1));
	*seg = (struct sc_virtio_blk_discard_write_zeroes){ .sector = 8, .num_sectors = 8 };
	post(1, SC_VIRTIO_BLK_T_DISCARD, 0, 16, false);
	run(2, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	uint8_t disk[8192], zero[8192] = { 0 };
	read_file(0, disk, sizeof(disk));
	cr_assert_eq(memcmp(disk, zero, sizeof(disk)), 0);
}

Test(blk, discard_with_flags_is_unsupported)
{
	struct sc_virtio_blk_discard_write_zeroes *seg = (void *)(base + DATA(0));
	*seg = (struct sc_virtio_blk_discard_write_zeroes){ .sector = 0, .num_sectors = 8, .flags = 1 };
	post(0, SC_VIRTIO_BLK_T_DISCARD, 0, 16, false);
	run(1, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_UNSUPP);
}

Test(blk, get_id_returns_the_serial)
{
	post(0, SC_VIRTIO_BLK_T_GET_ID, 0, SC_VIRTIO_BLK_ID_BYTES, true);
	run(1, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert_str_eq((char *)base + DATA(0), "disk-serial");
}

Test(blk, out_of_range_and_malformed_requests_fail_alone)
{
	post(0, SC_VIRTIO_BLK_T_IN, DISK_BYTES / 512 - 1, 1024, true);   /* past the end */
	post(1, SC_VIRTIO_BLK_T_OUT, UINT64_MAX, 512, false);            /* sector overflow */
	post(2, SC_VIRTIO_BLK_T_IN, 0, 100, true);                       /* not whole sectors */
	post(3, 77, 0, 0, false);                                     /* unknown type */
	post(4, SC_VIRTIO_BLK_T_IN, 0, 512, true);                       /* a good one after them */
	run(5, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(2)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(3)], SC_VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(base[STAT(4)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.stats.bad_requests, 3);
	cr_assert(!sc_vq_broken(&q.vq));
}

Test(blk, head_reused_while_in_flight_breaks_the_ring)
{
	/*
	 * A hostile guest makes the same head available twice in one batch:
	 * the second pop finds it in flight (completions are only reaped at
	 * the start of a round, so this does not depend on timing).
	 */
	reopen_direct();   /* buffered reads of cached pages complete at once, never in flight */
	int head = post(0, SC_VIRTIO_BLK_T_IN, 0, 4096, true);
	dvq.avail->ring[dvq.avail_idx & (QSIZE - 1)] = (uint16_t)head;
	dvq.avail_idx++;
	sc_drv_vq_publish(&dvq);
	cr_assert_eq(sc_blk_queue_poll(&q, 32), -EBUSY);
	cr_assert(sc_vq_broken(&q.vq));
	cr_assert(strstr(q.vq.broken_reason, "still in flight"), "%s", q.vq.broken_reason);
	cr_assert_eq(q.inflight, 1, "the first one is still served (fini completes it)");
}

Test(blk, fini_completes_what_is_in_flight)
{
	reopen_direct();
	for (unsigned i = 0; i < 8; i++)
		post(i, SC_VIRTIO_BLK_T_OUT, i * 8, 4096, false);
	sc_drv_vq_publish(&dvq);
	cr_assert_geq(sc_blk_queue_poll(&q, 32), 0);
	sc_blk_queue_fini(&q);      /* as on detach: nothing started is dropped */
	cr_assert_eq(dvq.used->idx, 8, "every started request was completed to the guest");
	for (unsigned i = 0; i < 8; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK);
}

Test(blk, backend_errors_say_what_and_where)
{
	struct sc_blk_backend b2;
	char err[256];
	cr_assert_eq(sc_blk_backend_open(&b2, "/nonexistent/disk.img", false, false, NULL, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent/disk.img") && strstr(err, "No such file"), "%s", err);
	cr_assert_eq(sc_blk_backend_open(&b2, dir, true, false, NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a regular file or a block device"), "%s", err);
}

Test(blk, config_space_describes_the_disk)
{
	struct sc_virtio_blk_config cfg;
	sc_blk_config_space(&be, 4, &cfg);
	cr_assert_eq(cfg.capacity, DISK_BYTES / 512);
	cr_assert_eq(cfg.num_queues, 4);
	cr_assert_eq(cfg.seg_max, SC_BLK_SEG_MAX);
	cr_assert_eq(cfg.blk_size, 512);
	uint64_t f = sc_blk_features(&be);
	cr_assert(f & (1ull << SC_VIRTIO_BLK_F_FLUSH) && f & (1ull << SC_VIRTIO_BLK_F_MQ) && !(f & (1ull << SC_VIRTIO_BLK_F_RO)));
}

Test(blk, memory_backed_disks_are_served_on_the_sidecore)
{
	/* The same disk on tmpfs: every read and write is a copy, done without io_uring. */
	char shm[] = "/dev/shm/sidecore-blk-XXXXXX";
	int fd = mkstemp(shm);
	if (fd < 0)
		cr_skip_test("no /dev/shm here");
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	reopen(shm, false);
	unlink(shm);
	cr_assert(be.memory_backed, "/dev/shm is tmpfs");
	memset(base + DATA(0), 0x77, 4096);
	post(0, SC_VIRTIO_BLK_T_OUT, 0, 4096, false);
	post(1, SC_VIRTIO_BLK_T_IN, 0, 4096, true);
	run(2, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(base + DATA(1), base + DATA(0), 4096), 0);
	cr_assert_eq(q.sync_done, 2, "both done on the sidecore");
}

/* ---- limits, split transfers, write-zeroes fallbacks, delay ---- */

/* Start over on a fresh sparse disk file in folder (tmpfs: /dev/shm); skips if there is none. */
static void reopen_in(const char *folder)
{
	char file[128];
	snprintf(file, sizeof(file), "%s/sidecore-blk-XXXXXX", folder);
	int fd = mkstemp(file);
	if (fd < 0)
		cr_skip_test("cannot create a file in %s here", folder);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	reopen(file, false);
	unlink(file);   /* the open backend keeps it */
}

/* Queue request i with nseg data segments of seglen bytes each, from guest address data on. */
static int post_segs(unsigned i, uint32_t type, uint64_t sector, uint64_t data, uint32_t seglen, unsigned nseg,
		     bool data_in)
{
	struct sc_drv_seg s[SC_BLK_SEG_MAX + 4];
	cr_assert_leq(nseg, SC_BLK_SEG_MAX + 1);
	*(struct sc_virtio_blk_outhdr *)(base + HDR(i)) = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	base[STAT(i)] = 0xee;
	s[0] = (struct sc_drv_seg){ HDR(i), 16 };
	for (unsigned k = 0; k < nseg; k++)
		s[1 + k] = (struct sc_drv_seg){ data + (uint64_t)k * seglen, seglen };
	s[1 + nseg] = (struct sc_drv_seg){ STAT(i), 1 };
	int head = data_in ? sc_drv_vq_add(&dvq, s, 1, nseg + 1) : sc_drv_vq_add(&dvq, s, nseg + 1, 1);
	cr_assert_geq(head, 0);
	return head;
}

static void fill(uint64_t gpa, size_t len, uint32_t seed)
{
	uint32_t *p = (uint32_t *)(base + gpa);
	for (size_t k = 0; k < len / 4; k++)
		p[k] = (uint32_t)k * 2654435761u + seed;
}

/* The disk holds len bytes of guest memory at gpa from byte off on (read through the backend's fd). */
static bool disk_holds(uint64_t off, uint64_t gpa, size_t len)
{
	static uint8_t buf[1 << 20] __attribute__((aligned(4096)));   /* O_DIRECT backends too */
	for (size_t k = 0; k < len; k += sizeof(buf)) {
		size_t n = len - k < sizeof(buf) ? len - k : sizeof(buf);
		if (pread(be.fd, buf, n, (off_t)(off + k)) != (ssize_t)n || memcmp(buf, base + gpa + k, n))
			return false;
	}
	return true;
}

/* 64 MiB written and read back in one request each (64 segments of 1 MiB); returns nothing, asserts. */
static void big_write_then_read(void)
{
	const unsigned pieces = BIG / SC_BLK_PIECE_BYTES;
	fill(BIG_W, BIG, 1);
	memset(base + BIG_R, 0, BIG);
	unsigned p0 = polls;
	post_segs(0, SC_VIRTIO_BLK_T_OUT, 2048, BIG_W, 1 << 20, BIG >> 20, false);
	run(1, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert(disk_holds(1 << 20, BIG_W, BIG), "the disk holds the 64 MiB written");
	/* A piece per round at most: fewer rounds would mean more than a piece moved in one. */
	cr_assert_geq(polls - p0, pieces, "a 64 MiB write took %u rounds", polls - p0);
	p0 = polls;
	post_segs(1, SC_VIRTIO_BLK_T_IN, 2048, BIG_R, 1 << 20, BIG >> 20, true);
	run(1, NULL);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert_geq(polls - p0, pieces, "a 64 MiB read took %u rounds", polls - p0);
	cr_assert_eq(memcmp(base + BIG_R, base + BIG_W, BIG), 0, "read back the 64 MiB written");
	cr_assert_eq(q.split, 2);
	cr_assert_eq(q.nactive, 0);
	cr_assert(!sc_vq_broken(&q.vq));
}

Test(blk, a_64mib_read_and_write_on_tmpfs_move_in_pieces)
{
	reopen_in("/dev/shm");
	cr_assert(be.memory_backed);
	big_write_then_read();
	cr_assert_eq(q.sync_done, 2, "all on the sidecore, a piece per round");
}

Test(blk, a_64mib_read_and_write_on_a_regular_file_move_in_pieces)
{
	reopen_in("/var/tmp");
	big_write_then_read();
}

Test(blk, a_64mib_read_and_write_with_o_direct_move_in_pieces)
{
	reopen_direct();
	big_write_then_read();
}

Test(blk, a_queue_moves_about_a_piece_per_round_on_the_sidecore)
{
	reopen_in("/dev/shm");
	for (unsigned i = 0; i < 8; i++)
		post_segs(i, SC_VIRTIO_BLK_T_IN, i * 256, BIG_R + i * SC_BLK_PIECE_BYTES, SC_BLK_PIECE_BYTES, 1, true);
	unsigned p0 = polls;
	run(8, NULL);
	cr_assert_geq(polls - p0, 8, "8 pieces moved in %u rounds", polls - p0);
}

Test(blk, a_small_request_is_not_kept_waiting_by_a_huge_one_on_its_queue)
{
	reopen_in("/dev/shm");
	int big = post_segs(0, SC_VIRTIO_BLK_T_IN, 0, BIG_R, 1 << 20, BIG >> 20, true);
	sc_drv_vq_publish(&dvq);
	cr_assert_geq(sc_blk_queue_poll(&q, 32), 0);
	int small = post(1, SC_VIRTIO_BLK_T_IN, 0, 4096, true);
	uint16_t order[2];
	unsigned p0 = polls;
	run(1, order);
	cr_assert_eq(order[0], small);
	cr_assert_leq(polls - p0, 2, "the 4 KiB read waited %u rounds", polls - p0);
	run(1, order + 1);
	cr_assert_eq(order[1], big);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
}

/* Post n reads of 512 bytes (the smallest, the costliest per byte: a system call each), one slot each. */
static void post_small_reads(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		cr_assert_geq(post(i, SC_VIRTIO_BLK_T_IN, i, 512, true), 0);
	sc_drv_vq_publish(&dvq);
}

/* What one poll completed. */
static unsigned poll_once(void)
{
	uint16_t head;
	uint32_t len;
	unsigned got = 0;
	cr_assert_geq(sc_blk_queue_poll(&q, 32), 0, "%s", q.vq.broken_reason);
	while (sc_drv_vq_get_used(&dvq, &head, &len) == 1)
		got++;
	return got;
}

Test(blk, a_turn_ends_once_its_time_is_spent)
{
	reopen_in("/dev/shm");
	cr_assert(be.memory_backed, "every read is a copy on the sidecore");
	/* A spent turn still serves one request, and leaves the rest on the ring for later turns. */
	q.pq.turn_cycles = 0;
	post_small_reads(16);
	cr_assert_eq(poll_once(), 1, "a turn with no time takes one request");
	cr_assert_eq(poll_once(), 1);
	q.pq.turn_cycles = UINT64_MAX;
	cr_assert_eq(poll_once(), 14, "without a time bound the budget decides");
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.nactive, 0);
}

Test(blk, a_one_microsecond_turn_ends_before_the_budget)
{
	reopen_in("/dev/shm");
	/* 32 system calls cannot fit in 1 us (one takes hundreds of ns), so time, not the budget, ends it. */
	q.pq.turn_cycles = sc_ns_to_cycles(1000);
	post_small_reads(32);
	unsigned first = poll_once(), rest = 0;
	cr_assert(first >= 1 && first < 32, "a 1 us turn served %u of 32 small reads", first);
	for (unsigned k = 0; k < 100000 && first + rest < 32; k++)   /* turns in debt copy nothing */
		rest += poll_once();
	cr_assert_eq(first + rest, 32, "every read is served in later turns");
}

Test(blk, a_turn_that_overran_is_paid_back_by_turns_that_copy_nothing)
{
	reopen_in("/dev/shm");
	q.pq.turn_cycles = 1;   /* every copy overruns it */
	post_small_reads(8);
	cr_assert_eq(poll_once(), 1);
	uint64_t debt = q.turn_debt;
	cr_assert_eq(debt, 64, "the overrun is owed, at most 64 turns of it (BLK_TURN_DEBT_MAX)");
	unsigned skipped = 0;
	while (q.turn_debt >= q.pq.turn_cycles && skipped < 1000) {
		cr_assert_eq(poll_once(), 0, "a turn that pays back copies nothing");
		skipped++;
	}
	cr_assert_eq(skipped, debt, "one turn's time is paid back per round");
	cr_assert_eq(poll_once(), 1, "paid back: the next turn copies again");
	q.pq.turn_cycles = UINT64_MAX;
	q.turn_debt = 0;
	cr_assert_eq(poll_once(), 6);
	for (unsigned i = 0; i < 8; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK);
}

Test(blk, requests_beyond_size_max_or_seg_max_fail_alone)
{
	struct sc_virtio_blk_config cfg;
	sc_blk_config_space(&be, 1, &cfg);
	cr_assert(sc_blk_features(&be) & (1ull << SC_VIRTIO_BLK_F_SIZE_MAX));
	cr_assert_eq(cfg.size_max, SC_BLK_SIZE_MAX);
	cr_assert_eq(cfg.seg_max, SC_BLK_SEG_MAX);

	post_segs(0, SC_VIRTIO_BLK_T_IN, 0, BIG_R, SC_BLK_SIZE_MAX + 512, 1, true);    /* a segment over size_max */
	post_segs(1, SC_VIRTIO_BLK_T_OUT, 0, BIG_W, SC_BLK_SIZE_MAX + 512, 1, false);
	{
		/*
		 * More data segments than seg_max in a chain the ring still takes:
		 * the header's descriptor carries the first 512 bytes of data.
		 */
		const uint64_t hdr = BIG_R;
		struct sc_drv_seg s[SC_BLK_SEG_MAX + 2] = { { hdr, 16 + 512 } };
		*(struct sc_virtio_blk_outhdr *)(base + hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_OUT };
		for (unsigned k = 1; k <= SC_BLK_SEG_MAX; k++)
			s[k] = (struct sc_drv_seg){ BIG_W + k * 512, 512 };
		s[SC_BLK_SEG_MAX + 1] = (struct sc_drv_seg){ STAT(2), 1 };
		base[STAT(2)] = 0xee;
		cr_assert_geq(sc_drv_vq_add(&dvq, s, SC_BLK_SEG_MAX + 1, 1), 0);
	}
	post(3, SC_VIRTIO_BLK_T_IN, 0, 4096, true);                                     /* a good one after them */
	run(4, NULL);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_IOERR, "request %u", i);
	cr_assert_eq(base[STAT(3)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.stats.bad_requests, 3);

	/* A smaller seg_max is offered and kept; seg_max * size_max bounds a request's data with it. */
	be.seg_max = 4;
	sc_blk_config_space(&be, 1, &cfg);
	cr_assert_eq(cfg.seg_max, 4);
	post_segs(4, SC_VIRTIO_BLK_T_OUT, 0, BIG_W, 4096, 5, false);
	post_segs(5, SC_VIRTIO_BLK_T_IN, 0, BIG_R, SC_BLK_SIZE_MAX, 4, true);   /* at both limits: fine */
	run(2, NULL);
	cr_assert_eq(base[STAT(4)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(base[STAT(5)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q.stats.bad_requests, 4);
	cr_assert(!sc_vq_broken(&q.vq), "%s", q.vq.broken_reason);
}

Test(blk, a_flush_after_a_split_write_completes_after_all_its_pieces)
{
	reopen_in("/dev/shm");
	fill(BIG_W, 16 << 20, 7);
	int w = post_segs(0, SC_VIRTIO_BLK_T_OUT, 0, BIG_W, 1 << 20, 16, false);
	int f = post(1, SC_VIRTIO_BLK_T_FLUSH, 0, 0, false);
	uint16_t order[2];
	run(2, order);
	cr_assert_eq(order[0], w, "the flush completed before the split write it follows");
	cr_assert_eq(order[1], f);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert(disk_holds(0, BIG_W, 16 << 20));
}

/* Stop the queue with a 64 MiB write a few pieces in: fini finishes it, nothing is lost. */
static void stop_mid_split(void)
{
	fill(BIG_W, BIG, 9);
	post_segs(0, SC_VIRTIO_BLK_T_OUT, 0, BIG_W, 1 << 20, BIG >> 20, false);
	sc_drv_vq_publish(&dvq);
	for (int k = 0; k < 4; k++)
		cr_assert_geq(sc_blk_queue_poll(&q, 32), 0);
	cr_assert_eq(dvq.used->idx, 0, "the write is still under way");
	cr_assert_eq(q.nactive, 1);
	sc_blk_queue_fini(&q);
	cr_assert_eq(dvq.used->idx, 1, "fini completed the split write to the guest");
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert(disk_holds(0, BIG_W, BIG), "all 64 MiB are on the disk");
}

Test(blk, stopping_a_queue_mid_split_finishes_the_request)
{
	reopen_in("/dev/shm");
	stop_mid_split();
}

Test(blk, stopping_a_queue_mid_split_with_a_piece_in_io_uring_finishes_the_request)
{
	reopen_direct();
	stop_mid_split();
}

/* WRITE_ZEROES of 768 KiB inside 1 MiB of ones (more than a piece, for the write fallback). */
static void write_zeroes_zero(void)
{
	static uint8_t disk[1 << 20];
	memset(disk, 0xff, sizeof(disk));
	cr_assert_eq(pwrite(be.fd, disk, sizeof(disk), 0), (ssize_t)sizeof(disk));
	struct sc_virtio_blk_discard_write_zeroes *seg = (void *)(base + DATA(0));
	*seg = (struct sc_virtio_blk_discard_write_zeroes){ .sector = 256, .num_sectors = (768 << 10) / 512 };
	post(0, SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
	post(1, SC_VIRTIO_BLK_T_IN, 0, 4096, true);   /* and the queue goes on */
	run(2, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK, "zero mode %u", be.zero_mode);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(pread(be.fd, disk, sizeof(disk), 0), (ssize_t)sizeof(disk));
	for (size_t k = 0; k < sizeof(disk); k++)
		cr_assert_eq(disk[k], k >= (128 << 10) && k < (896 << 10) ? 0 : 0xff, "byte %zu", k);
	cr_assert_eq(q.io_errors, 0);
}

Test(blk, write_zeroes_on_tmpfs_punches_a_hole)
{
	reopen_in("/dev/shm");
	sc_blk_backend_unmap(&be);   /* mmap = false: through io_uring */
	write_zeroes_zero();
	cr_assert_eq(be.zero_mode, SC_BLK_ZERO_PUNCH, "tmpfs has no ZERO_RANGE: the backend moved down once");
	write_zeroes_zero();   /* straight to the hole now */
}

Test(blk, write_zeroes_on_a_regular_file)
{
	reopen_in("/var/tmp");
	write_zeroes_zero();
}

Test(blk, write_zeroes_by_writing_zeroes)
{
	/* Where neither ZERO_RANGE nor a hole works; forced here on both kinds of file. */
	reopen_in("/var/tmp");
	be.zero_mode = SC_BLK_ZERO_WRITE;
	write_zeroes_zero();
	reopen_in("/dev/shm");
	be.zero_mode = SC_BLK_ZERO_WRITE;
	write_zeroes_zero();
	cr_assert_eq(q.sync_done, 2, "done on the sidecore in pieces, the read too");
}

/* ---- memory-backed disks: mapped, served by memcpy ---- */

/* Write 4 KiB at sector, read it back into another buffer, FLUSH; all OK, and the copy matches. */
static void write_read_flush(uint64_t sector, uint32_t seed)
{
	fill(DATA(0), 4096, seed);
	post(0, SC_VIRTIO_BLK_T_OUT, sector, 4096, false);
	post(1, SC_VIRTIO_BLK_T_FLUSH, 0, 0, false);
	post(2, SC_VIRTIO_BLK_T_IN, sector, 4096, true);
	run(3, NULL);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(base[STAT(i)], SC_VIRTIO_BLK_S_OK, "request %u", i);
	cr_assert_eq(memcmp(base + DATA(2), base + DATA(0), 4096), 0);
}

Test(blk, a_tmpfs_disk_is_mapped_and_its_data_reads_back)
{
	reopen_in("/dev/shm");
	cr_assert_not_null(be.map, "a tmpfs file is mapped");
	unsigned uring_before = q.inflight;
	write_read_flush(2048, 7);
	cr_assert(disk_holds(2048 * 512, DATA(0), 4096), "the file holds what was written through the mapping");
	cr_assert_eq(q.inflight, uring_before, "nothing went to io_uring");
	cr_assert_eq(q.io_errors, 0);
}

Test(blk, a_ram_disk_holds_what_is_written)
{
	char err[256];
	sc_blk_queue_fini(&q);
	sc_blk_backend_close(&be);
	t_ring_init(&g, &dvq, 0, QSIZE, 0);
	cr_assert_eq(sc_blk_backend_open_ram(&be, 256ull << 20, "ram", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sc_blk_queue_init(&q, &be, &vcfg, "t"), 0);
	cr_assert_not_null(be.map);
	cr_assert_eq(be.capacity, (256ull << 20) / 512);
	write_read_flush(0, 1);
	write_read_flush(be.capacity - 8, 2);   /* the last 4 KiB */
	post(0, SC_VIRTIO_BLK_T_IN, be.capacity - 7, 4096, true);   /* past the end: checked before the copy */
	run(1, NULL);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(ftruncate(be.fd, 4096), -1, "sealed against shrinking");
}

Test(blk, ram_disk_sizes_out_of_bounds_are_refused)
{
	char err[256];
	struct sc_blk_backend b2;
	cr_assert_eq(sc_blk_backend_open_ram(&b2, 0, NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ram:0: a RAM disk is 512 bytes to 1 TiB"), "%s", err);
	cr_assert_eq(sc_blk_backend_open_ram(&b2, 1000, NULL, err, sizeof(err)), -EINVAL);
	cr_assert_eq(sc_blk_backend_open_ram(&b2, SC_BLK_RAM_MAX + 512, NULL, err, sizeof(err)), -EINVAL);
}

Test(blk, write_zeroes_on_a_mapped_disk_writes_zeroes_on_the_sidecore)
{
	reopen_in("/dev/shm");
	cr_assert_not_null(be.map);
	write_zeroes_zero();
	cr_assert_eq(be.zero_mode, SC_BLK_ZERO_RANGE, "no fallocate was tried");
}

Test(blk, a_mapped_disk_truncated_under_it_fails_requests_past_the_new_end_alone)
{
	reopen_in("/dev/shm");
	cr_assert_not_null(be.map);
	write_read_flush(0, 3);
	cr_assert_eq(ftruncate(be.fd, 1 << 20), 0);   /* someone cuts the file to 1 MiB */
	for (int round = 0; round < 2; round++) {
		post(0, SC_VIRTIO_BLK_T_IN, 4096, 4096, true);    /* 2 MiB: past the new end */
		post(1, SC_VIRTIO_BLK_T_OUT, 8192, 4096, false);
		run(2, NULL);
		cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_IOERR, "round %d", round);
		cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_IOERR, "round %d", round);
		write_read_flush(8, 4 + (uint32_t)round);      /* within it: still served */
	}
	cr_assert_eq(q.io_errors, 4);
	cr_assert(!sc_vq_broken(&q.vq), "the queue goes on");
}

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

Test(blk, delay_holds_each_completion_while_the_queue_goes_on)
{
	const uint64_t delay = 20000000;   /* 20 ms */
	uint64_t t[2] = { 0, 0 }, done[2] = { 0, 0 };
	uint16_t head;
	uint32_t len;
	int heads[2];
	unsigned got = 0;

	reopen_in("/dev/shm");
	be.delay_ns = delay;
	t[0] = mono_ns();
	heads[0] = post(0, SC_VIRTIO_BLK_T_IN, 0, 4096, true);
	sc_drv_vq_publish(&dvq);
	bool posted_second = false;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	while (got < 2) {
		uint64_t a = mono_ns();
		if (!posted_second && a - t[0] > delay / 4) {
			t[1] = a;
			heads[1] = post(1, SC_VIRTIO_BLK_T_IN, 8, 4096, true);
			sc_drv_vq_publish(&dvq);
			posted_second = true;
		}
		cr_assert_geq(sc_blk_queue_poll(&q, 32), 0);
		uint64_t b = mono_ns();
		if (posted_second && !got)
			cr_assert_eq(q.stats.reads, 2, "the second request is served while the first is held");
		if (q.nheld)
			cr_assert(q.pq.ops->notify_enable(&q.pq), "held completions keep the sidecore awake");
		while (sc_drv_vq_get_used(&dvq, &head, &len) == 1) {
			cr_assert_eq(head, heads[got], "completions leave in order");
			done[got++] = b;
		}
		cr_assert_lt(b - t[0], 2000000000ull, "requests did not complete");
	}
	cr_assert_geq(done[0] - t[0], delay, "completed %llu ns after it started", (unsigned long long)(done[0] - t[0]));
	cr_assert_geq(done[1] - t[1], delay);
	/* Preemption on a busy machine is involuntary; a poll that slept would show as voluntary. */
	getrusage(RUSAGE_THREAD, &ru1);
	cr_assert_eq(ru1.ru_nvcsw, ru0.ru_nvcsw, "the polling thread went to sleep %ld times", ru1.ru_nvcsw - ru0.ru_nvcsw);
	cr_assert_eq(base[STAT(0)], SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(base[STAT(1)], SC_VIRTIO_BLK_S_OK);

	/* Stopping the queue completes a held request, no sooner than its delay. */
	t[0] = mono_ns();
	post(2, SC_VIRTIO_BLK_T_IN, 0, 4096, true);
	sc_drv_vq_publish(&dvq);
	cr_assert_geq(sc_blk_queue_poll(&q, 32), 0);
	cr_assert_eq(q.nheld, 1);
	sc_blk_queue_fini(&q);
	cr_assert_geq(mono_ns() - t[0], delay);
	cr_assert_eq(dvq.used->idx, 3);
	cr_assert_eq(base[STAT(2)], SC_VIRTIO_BLK_S_OK);
}
