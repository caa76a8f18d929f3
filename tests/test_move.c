/* SPDX-License-Identifier: MIT */
/*
 * Moving a queue between sidecores while a front end keeps 64 requests in
 * flight: every request completes exactly once, with its own data, in the
 * order it was submitted, however often the queue moves. Twice: on tmpfs
 * (each read a copy on the sidecore, completed in order) and with O_DIRECT
 * on the file system under /var/tmp (reads really in flight in the queue's
 * io_uring, which completes them in the disk's order).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spec/sc_virtio_blk.h"
#include "runtime/vu_blk.h"
#include "runtime/vu_frontend.h"

#define BLOCKS 2048            /* 4 KiB blocks: an 8 MiB disk */
#define QD 64
#define RUN_MS 1500

static char dir[64], sock[96], img[96];
static bool direct;
static struct sc_poller *pollers[2];
static struct sc_poller *slot[1];   /* the disk's one vring: its poller slot */
static struct sc_blk_backend be;
static struct sc_vu_blk dev;
static struct sc_vu_server *srv;
static volatile bool stop_moving;
static unsigned moves, move_errors;

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void setup_in(const char *parent, bool o_direct)
{
	char err[256];
	direct = o_direct;
	snprintf(dir, sizeof(dir), "%s/sidecore-mv-XXXXXX", parent);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/d.sock", dir);
	snprintf(img, sizeof(img), "%s/d.img", dir);
	/* Block b holds b in every word, so a completion shows which block it read. */
	int fd = open(img, O_CREAT | O_RDWR, 0644);
	static uint32_t block[1024];
	for (uint32_t b = 0; b < BLOCKS; b++) {
		for (int i = 0; i < 1024; i++)
			block[i] = b;
		cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	}
	close(fd);
	for (int i = 0; i < 2; i++) {
		char name[16];
		snprintf(name, sizeof(name), "mv%d", i);
		/* Unpinned and quick to sleep: two sidecores and the front end share this machine's cpus. */
		struct sc_poller_config pc = { .cpu = -1, .idle_spin_ns = 20000, .name = name };
		cr_assert_eq(sc_poller_create(&pc, &pollers[i]), 0);
	}
	slot[0] = pollers[0];
	if (sc_blk_backend_open(&be, img, false, direct, "mv", err, sizeof(err)) < 0) {
		unlink(img);
		rmdir(dir);
		cr_skip_test("cannot open %s%s: %s", img, direct ? " with O_DIRECT" : "", err);
	}
	sc_vu_blk_init(&dev, &be, slot, 1, 1);
	cr_assert_eq(sc_vu_server_create(sock, &dev.ops, &dev, &srv, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sc_vu_server_start(srv), 0);
}

static void teardown(void)
{
	sc_vu_server_destroy(srv);
	sc_blk_backend_close(&be);
	for (int i = 0; i < 2; i++)
		sc_poller_destroy(pollers[i]);
	unlink(img);
	rmdir(dir);
}

static void setup_tmpfs(void)
{
	setup_in("/dev/shm", false);
}

static void setup_direct(void)
{
	setup_in("/var/tmp", true);
}

TestSuite(move, .init = setup_tmpfs, .fini = teardown, .timeout = 60);
TestSuite(move_direct, .init = setup_direct, .fini = teardown, .timeout = 60);

static void *mover(void *arg)
{
	(void)arg;
	while (!stop_moving) {
		struct sc_poller *to = sc_vu_blk_queue_poller(&dev, 0) == pollers[0] ? pollers[1] : pollers[0];
		if (sc_vu_blk_queue_move(&dev, 0, to) == 0)
			moves++;
		else
			move_errors++;
		usleep(2000);
	}
	return NULL;
}

static void move_under_load(void)
{
	static struct sc_vu_fe fe;
	/*
	 * Completions per request id, a ring: at most QD ids are in flight, so
	 * an id's slot is free again long before the ring wraps, and the run
	 * lasts RUN_MS however fast the disk is.
	 */
	static uint8_t done[1u << 16];
	uint64_t id_of[256], submitted = 0, completed = 0, next_expected = 0;
	unsigned slot_of[256], free_slots[QD], nfree = QD, inflight = 0;
	char err[256];
	pthread_t th;

	cr_assert_eq(sc_vu_fe_connect(&fe, sock, 16u << 20, 1, 256, err, sizeof(err)), 0, "%s", err);
	for (unsigned s = 0; s < QD; s++)
		free_slots[s] = s;
	cr_assert_eq(pthread_create(&th, NULL, mover, NULL), 0);
	struct sc_drv_vq *vq = &fe.vq[0];
	int64_t end = now_ms() + RUN_MS, deadline = end + 10000;
	for (;;) {
		bool more = now_ms() < end, added = false;
		while (more && nfree) {
			unsigned s = free_slots[--nfree];
			uint64_t hdr = fe.buf_gpa + s * 64, data = fe.buf_gpa + 0x10000 + s * 4096;
			*(struct sc_virtio_blk_outhdr *)(fe.mem + hdr) =
				(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = (submitted % BLOCKS) * 8 };
			fe.mem[hdr + 16] = 0xff;
			struct sc_drv_seg segs[3] = { { hdr, 16 }, { data, 4096 }, { hdr + 16, 1 } };
			int head = sc_drv_vq_add(vq, segs, 1, 2);
			cr_assert_geq(head, 0);
			slot_of[head] = s;
			done[submitted % sizeof(done)] = 0;
			id_of[head] = submitted++;
			inflight++;
			added = true;
		}
		if (added) {
			sc_drv_vq_publish(vq);
			sc_vu_fe_kick(&fe, 0);
		}
		uint16_t head;
		uint32_t len;
		int got;
		while ((got = sc_drv_vq_get_used(vq, &head, &len)) == 1) {
			unsigned s = slot_of[head];
			uint64_t id = id_of[head];
			uint32_t word;
			cr_assert_lt(id, submitted);
			cr_assert_eq(++done[id % sizeof(done)], 1, "request %llu completed twice", (unsigned long long)id);
			/*
			 * Order: tmpfs reads complete in pop order, so any reordering is the
			 * move's. io_uring completes O_DIRECT reads as the disk does (virtio
			 * has no order without VIRTIO_F_IN_ORDER): there, exactly once.
			 */
			if (!direct)
				cr_assert_eq(id, next_expected, "request %llu completed before %llu", (unsigned long long)id,
					     (unsigned long long)next_expected);
			next_expected++;
			cr_assert_eq(fe.mem[fe.buf_gpa + s * 64 + 16], SC_VIRTIO_BLK_S_OK, "request %llu failed",
				     (unsigned long long)id);
			memcpy(&word, fe.mem + fe.buf_gpa + 0x10000 + s * 4096 + 4092, 4);
			cr_assert_eq(word, id % BLOCKS, "request %llu read block %u", (unsigned long long)id, word);
			free_slots[nfree++] = s;
			inflight--;
			completed++;
		}
		cr_assert_geq(got, 0, "the used ring broke");
		if (!more && !inflight)
			break;
		cr_assert_lt(now_ms(), deadline, "%u requests never completed (after %u moves)", inflight, moves);
	}
	stop_moving = true;
	pthread_join(th, NULL);
	cr_log_info("%s: %llu requests, %u moves", direct ? "O_DIRECT" : "tmpfs", (unsigned long long)completed, moves);
	cr_assert_eq(completed, submitted);
	cr_assert_eq(move_errors, 0);
	cr_assert_gt(moves, 50, "only %u moves in %d ms", moves, RUN_MS);
	cr_assert_gt(completed, 10 * QD, "only %llu requests", (unsigned long long)completed);
	sc_vu_fe_close(&fe);
}

Test(move, a_queue_moved_back_and_forth_under_64_requests_loses_duplicates_and_reorders_none)
{
	move_under_load();
}

Test(move_direct, a_queue_moved_with_64_reads_in_its_io_uring_loses_duplicates_and_reorders_none)
{
	move_under_load();
}

Test(move, moving_needs_a_poller_slot_per_vring_and_a_vring_that_exists)
{
	cr_assert_eq(sc_vu_blk_queue_move(&dev, 1, pollers[1]), -ENOENT);
	struct sc_vu_blk shared;
	struct sc_poller *one = pollers[0];
	sc_vu_blk_init(&shared, &be, &one, 1, 2);
	cr_assert_eq(sc_vu_blk_queue_move(&shared, 0, pollers[1]), -ENOTSUP);
	/* A ring that is not running moves too: it will start on the new sidecore. */
	cr_assert_eq(sc_vu_blk_queue_move(&dev, 0, pollers[1]), 0);
	cr_assert_eq(sc_vu_blk_queue_poller(&dev, 0), pollers[1]);
}
