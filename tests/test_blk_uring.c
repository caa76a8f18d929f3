/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on io_uring with what it registers: guest memory as fixed
 * buffers (O_DIRECT disks), the backing fd as a fixed file, and polled
 * completions. Real files on a real (not tmpfs) file system; the test plays
 * the sidecore by calling poll, and the runtime by stopping the queue
 * around a memory-table change.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "harness.h"

#define QSIZE 64
#define RINGS_BYTES (1u << 20)            /* region A at GPA 0: rings, headers, status bytes */
#define DATA_BYTES (1u << 20)             /* region B (then C): the data */
#define GPA_B 0x10000000ull
#define GPA_C 0x20000000ull
#define DISK_BYTES (8u << 20)
#define HDR(i)  (0x10000ull + (uint64_t)(i) * 64)
#define STAT(i) (HDR(i) + 16)

static struct t_guest g;   /* region A from t_guest_init, B and C added */
static uint8_t *rings;
static struct sc_drv_vq dvq;
static struct sc_blk_backend be;
static struct sc_blk_queue q;
static bool q_live;
static char path[256];

static uint8_t *host(uint64_t gpa, uint64_t len)
{
	uint8_t *p = sc_mem_translate(&g.mem, gpa, len, SC_PERM_RW);
	cr_assert_not_null(p, "gpa 0x%llx not in the table", (unsigned long long)gpa);
	return p;
}

/* A disk file on a file system that is not tmpfs (O_DIRECT and polling are what is tested); skips if none. */
static void make_disk(void)
{
	static const char *const dirs[] = { "/var/tmp", "/tmp", "." };
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		struct statfs sfs;
		if (statfs(dirs[i], &sfs) < 0 || sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC)
			continue;
		snprintf(path, sizeof(path), "%s/sidecore-uring-XXXXXX", dirs[i]);
		int fd = mkstemp(path);
		if (fd < 0)
			continue;
		cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
		close(fd);
		return;
	}
	cr_skip_test("no file system other than tmpfs to put a disk on");
}

/* What the runtime does on start: a queue over the current table. */
static void queue_start(void)
{
	struct sc_vq_config cfg;
	t_vq_config(&g, &dvq, 0, &cfg);
	cfg.last_avail = dvq.avail_idx;
	cr_assert_eq(sc_blk_queue_init(&q, &be, &cfg, "t"), 0);
	q_live = true;
}

static void queue_stop(void)
{
	sc_blk_queue_fini(&q);
	q_live = false;
}

static void teardown(void);

static void open_backend(const char *file, bool direct)
{
	char err[256];
	if (sc_blk_backend_open(&be, file, false, direct, NULL, err, sizeof(err)) < 0) {
		teardown();   /* a skip does not run the suite's fini */
		cr_skip_test("cannot open %s%s here: %s", file, direct ? " with O_DIRECT" : "", err);
	}
}

static void setup(void)
{
	cr_assert_eq(t_guest_init(&g, 0, RINGS_BYTES), 0);
	cr_assert_eq(t_guest_add(&g, GPA_B, DATA_BYTES), 0);
	rings = g.base;
	cr_assert_eq(t_ring_init(&g, &dvq, 0, QSIZE, 0), 0);
	be.fd = -1;
	make_disk();
	open_backend(path, true);
}

/* Idempotent: a test that skips runs it first itself. */
static void teardown(void)
{
	if (q_live)
		queue_stop();
	sc_blk_backend_close(&be);
	t_guest_fini(&g);
	if (path[0])
		unlink(path);
	path[0] = '\0';
}

TestSuite(blk_uring, .init = setup, .fini = teardown, .timeout = 30);

/* Queue request i: nseg data segments of seglen bytes from guest address data on. */
static void post(unsigned i, uint32_t type, uint64_t sector, uint64_t data, uint32_t seglen, unsigned nseg, bool in)
{
	struct sc_drv_seg s[8];
	*(struct sc_virtio_blk_outhdr *)(rings + HDR(i)) = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	rings[STAT(i)] = 0xee;
	s[0] = (struct sc_drv_seg){ HDR(i), 16 };
	for (unsigned k = 0; k < nseg; k++)
		s[1 + k] = (struct sc_drv_seg){ data + (uint64_t)k * seglen, seglen };
	s[1 + nseg] = (struct sc_drv_seg){ STAT(i), 1 };
	cr_assert_geq(in ? sc_drv_vq_add(&dvq, s, 1, nseg + 1) : sc_drv_vq_add(&dvq, s, nseg + 1, 1), 0);
}

/* Serve until n completions arrived (bounded in time). */
static void run(unsigned n)
{
	uint16_t head;
	uint32_t len;
	unsigned got = 0;
	struct timespec t0, t;
	sc_drv_vq_publish(&dvq);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n) {
		cr_assert_geq(sc_blk_queue_poll(&q, 32), 0, "%s", q.vq.broken_reason);
		while (got < n && sc_drv_vq_get_used(&dvq, &head, &len) == 1)
			got++;
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 5, "requests did not complete");
	}
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t k = 0; k < len / 4; k++)
		((uint32_t *)p)[k] = (uint32_t)k * 2654435761u + seed;
}

/* Write 8 pages from data (one segment each, then one request of two), read them back into data + 64 KiB. */
static void write_then_read_back(uint64_t data, uint32_t seed)
{
	uint8_t *src = host(data, 64 << 10), *dst = host(data + (64 << 10), 64 << 10);
	fill(src, 40 << 10, seed);
	memset(dst, 0, 64 << 10);
	for (unsigned i = 0; i < 8; i++)
		post(i, SC_VIRTIO_BLK_T_OUT, i * 8, data + i * 4096ull, 4096, 1, false);
	post(8, SC_VIRTIO_BLK_T_OUT, 64, data + (32 << 10), 4096, 2, false);
	run(9);
	for (unsigned i = 0; i < 9; i++)
		cr_assert_eq(rings[STAT(i)], SC_VIRTIO_BLK_S_OK, "write %u", i);
	for (unsigned i = 0; i < 8; i++)
		post(i, SC_VIRTIO_BLK_T_IN, i * 8, data + (64 << 10) + i * 4096ull, 4096, 1, true);
	post(8, SC_VIRTIO_BLK_T_IN, 64, data + (64 << 10) + (32 << 10), 4096, 2, true);
	run(9);
	for (unsigned i = 0; i < 9; i++)
		cr_assert_eq(rings[STAT(i)], SC_VIRTIO_BLK_S_OK, "read %u", i);
	cr_assert(!memcmp(src, dst, 40 << 10), "the data read back is what was written");
	/* And it is on the disk, not only in guest memory. */
	static uint8_t buf[40 << 10] __attribute__((aligned(4096)));
	cr_assert_eq(pread(be.fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert(!memcmp(buf, src, sizeof(buf)));
}

Test(blk_uring, o_direct_transfers_use_registered_guest_memory_and_carry_the_data)
{
	queue_start();
	write_then_read_back(GPA_B, 1);
	/* 16 one-segment transfers went fixed; the two-segment ones went vectored. */
	cr_assert_eq(q.fixed_ios, 16, "fixed transfers: %llu", (unsigned long long)q.fixed_ios);
	cr_assert_eq(q.io_errors, 0);
}

Test(blk_uring, a_disk_told_not_to_register_pins_per_request)
{
	be.no_fixed_buffers = true;
	queue_start();
	write_then_read_back(GPA_B, 9);
	cr_assert_eq(q.fixed_ios, 0);
}

Test(blk_uring, buffered_disks_register_nothing)
{
	sc_blk_backend_close(&be);
	open_backend(path, false);
	queue_start();
	write_then_read_back(GPA_B, 2);
	cr_assert_eq(q.fixed_ios, 0, "a buffered disk copies: pinning all of guest memory would buy nothing");
}

Test(blk_uring, the_registration_follows_a_memory_table_change)
{
	queue_start();
	write_then_read_back(GPA_B, 3);
	/* The runtime stops the ring, changes the table, starts it again (vu_server.c dispatch). */
	queue_stop();
	cr_assert_eq(sc_mem_remove(&g.mem, GPA_B), 0);
	cr_assert_eq(t_guest_add(&g, GPA_C, DATA_BYTES), 0);
	queue_start();
	uint8_t *c = host(GPA_C, DATA_BYTES);
	memset(c, 0x5a, DATA_BYTES);
	post(0, SC_VIRTIO_BLK_T_IN, 0, GPA_C, 4096, 1, true);
	run(1);
	cr_assert_eq(rings[STAT(0)], SC_VIRTIO_BLK_S_OK);
	static uint8_t buf[4096] __attribute__((aligned(4096)));
	cr_assert_eq(pread(be.fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert(!memcmp(c, buf, sizeof(buf)), "the read landed in the new region");
	cr_assert_eq(q.fixed_ios, 1, "through the new region's registration");
	/* Written from the new region, read back into it. */
	write_then_read_back(GPA_C, 4);
	cr_assert_eq(q.fixed_ios, 17);
	/* A request into the removed region fails alone: nothing is read or written there. */
	post(0, SC_VIRTIO_BLK_T_IN, 0, GPA_B, 4096, 1, true);
	sc_drv_vq_publish(&dvq);
	int r = 0;
	for (int k = 0; k < 10 && r >= 0; k++)
		r = sc_blk_queue_poll(&q, 32);
	cr_assert(r < 0 || rings[STAT(0)] == SC_VIRTIO_BLK_S_IOERR,
		  "a request to a removed region must fail (status %u, poll %d)", rings[STAT(0)], r);
	cr_assert_eq(q.fixed_ios, 17);
}

/* Drop CAP_IPC_LOCK (so RLIMIT_MEMLOCK applies to root too), then lower the limit. */
static int lock_limit_low(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	d[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	struct rlimit lim = { 64 << 10, 64 << 10 };
	return setrlimit(RLIMIT_MEMLOCK, &lim) < 0 ? -errno : 0;
}

Test(blk_uring, a_failed_registration_says_so_once_and_still_serves)
{
	char log[] = "/tmp/sidecore-uring-log-XXXXXX";
	int lfd = mkstemp(log);
	cr_assert_geq(lfd, 0);
	fflush(stderr);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(lfd, 2);
		if (lock_limit_low() < 0)
			_exit(3);
		queue_start();
		write_then_read_back(GPA_B, 5);
		_exit(q.fixed_ios == 0 ? 0 : 4);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	char text[1024] = "";
	ssize_t n = pread(lfd, text, sizeof(text) - 1, 0);
	close(lfd);
	unlink(log);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
		cr_skip_test("cannot drop CAP_IPC_LOCK or lower RLIMIT_MEMLOCK here");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child served with readv/writev (status 0x%x): %s", st, text);
	cr_assert_gt(n, 0);
	cr_assert(strstr(text, "sidecore: t: guest memory not registered with io_uring ("), "%s", text);
	cr_assert(strstr(text, "RLIMIT_MEMLOCK 64 KiB"), "%s", text);
	cr_assert_eq(strchr(text, '\n') - text, (long)strlen(text) - 1, "one line: %s", text);
}

Test(blk_uring, iopoll_needs_o_direct)
{
	char err[512];
	sc_blk_backend_close(&be);
	open_backend(path, false);
	cr_assert_eq(sc_blk_backend_set_iopoll(&be, path, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "iopoll needs O_DIRECT: set direct = yes"), "%s", err);
	cr_assert(!be.iopoll);
}

Test(blk_uring, iopoll_on_tmpfs_says_so_and_serves_with_interrupts)
{
	char file[] = "/dev/shm/sidecore-uring-XXXXXX", err[512];
	struct statfs sfs;
	int fd = mkstemp(file);
	if (fd < 0 || fstatfs(fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC)
		cr_skip_test("no tmpfs at /dev/shm");
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	sc_blk_backend_close(&be);
	unlink(path);
	snprintf(path, sizeof(path), "%s", file);
	open_backend(path, true);   /* tmpfs takes O_DIRECT since Linux 6.6; skips before */
	cr_assert_eq(sc_blk_backend_set_iopoll(&be, path, err, sizeof(err)), -EOPNOTSUPP, "%s", err);
	char want[512];
	snprintf(want, sizeof(want), "%s: polled completions (iopoll) do not work on this file (", path);
	cr_assert(!strncmp(err, want, strlen(want)), "%s", err);
	cr_assert(strstr(err, "serving it with interrupt completions instead"), "%s", err);
	cr_assert(!be.iopoll);
	queue_start();
	write_then_read_back(GPA_B, 6);
}

/* FLUSH, then WRITE_ZEROES of the first 4 KiB (both through the plain ring beside a polled one). */
static void flush_and_write_zeroes(void)
{
	post(0, SC_VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, true);
	run(1);
	cr_assert_eq(rings[STAT(0)], SC_VIRTIO_BLK_S_OK);
	struct sc_virtio_blk_discard_write_zeroes *seg = (void *)host(GPA_B + (200 << 10), sizeof(*seg));
	*seg = (struct sc_virtio_blk_discard_write_zeroes){ .sector = 0, .num_sectors = 8 };
	post(1, SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, GPA_B + (200 << 10), sizeof(*seg), 1, false);
	run(1);
	cr_assert_eq(rings[STAT(1)], SC_VIRTIO_BLK_S_OK);
	static uint8_t buf[4096] __attribute__((aligned(4096)));
	cr_assert_eq(pread(be.fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	for (unsigned k = 0; k < sizeof(buf); k++)
		cr_assert_eq(buf[k], 0, "byte %u after WRITE_ZEROES", k);
}

Test(blk_uring, iopoll_serves_reads_writes_flush_and_write_zeroes)
{
	char err[512];
	if (sc_blk_backend_set_iopoll(&be, path, err, sizeof(err)) < 0) {
		teardown();   /* a skip does not run the suite's fini */
		cr_skip_test("%s", err);
	}
	cr_assert(be.iopoll);
	queue_start();
	write_then_read_back(GPA_B, 7);
	cr_assert_eq(q.fixed_ios, 16);
	flush_and_write_zeroes();
}

/*
 * Where the device has no poll queues (this test's usual machine), the
 * kernel still completes polled writes that allocate (it drops the poll
 * flag for them): enough to drive a polled ring and its plain aux ring.
 */
Test(blk_uring, a_polled_ring_passes_flush_and_write_zeroes_to_its_plain_ring)
{
	be.iopoll = true;   /* as sc_blk_backend_set_iopoll would, had the device poll queues */
	queue_start();
	uint8_t *src = host(GPA_B, 4096);
	fill(src, 4096, 8);
	post(0, SC_VIRTIO_BLK_T_OUT, 0, GPA_B, 4096, 1, false);
	run(1);
	if (rings[STAT(0)] != SC_VIRTIO_BLK_S_OK) {
		teardown();
		cr_skip_test("this kernel refuses a polled write here too");
	}
	static uint8_t buf[4096] __attribute__((aligned(4096)));
	cr_assert_eq(pread(be.fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert(!memcmp(buf, src, sizeof(buf)));
	cr_assert_eq(q.fixed_ios, 1);
	flush_and_write_zeroes();
}
