/* SPDX-License-Identifier: MIT */
/*
 * The data path end to end on two cpus: a driver thread (this one) posts
 * virtio-blk requests; a sidecore thread pinned to the other cpu serves a
 * null-blk device. Nothing here is faked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "cpuset/cpuset.h"
#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "polling/polling.h"

#define QSIZE 64
#define MEM_SIZE (2u << 20)
#define NQ 2

struct queue {
	struct sc_drv_vq dvq;
	struct sc_nullblk dev;
	int kick_fd;
	uint64_t req_gpa;         /* header + status */
	uint64_t data_gpa;
};

static struct sc_mem mem;
static uint8_t *base;
static struct queue q[NQ];
static struct sc_poller *poller;
static int sidecore_cpu = -1, driver_cpu = -1;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void queue_setup(struct queue *x, uint64_t gpa)
{
	cr_assert_eq(sc_drv_vq_init(&x->dvq, base + gpa, gpa, QSIZE, 1ull << VIRTIO_F_VERSION_1), 0);
	x->req_gpa = gpa + SC_ALIGN_UP(sc_drv_vq_ring_bytes(QSIZE), 4096ull);
	x->data_gpa = x->req_gpa + 4096;
	x->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct sc_vq_config cfg = {
		.size = QSIZE, .desc_addr = x->dvq.desc_gpa, .avail_addr = x->dvq.avail_gpa,
		.used_addr = x->dvq.used_gpa, .features = 1ull << VIRTIO_F_VERSION_1,
		.xlate = sc_mem_xlate(&mem), .call_fd = -1, .err_fd = -1, .kick_fd = x->kick_fd,
	};
	cr_assert_eq(sc_nullblk_init(&x->dev, &cfg, 1024, "q"), 0);
	sc_drv_vq_interrupts_disable(&x->dvq);
}

static void setup(void)
{
	struct sc_topology *t = calloc(1, sizeof(*t));
	cr_assert_eq(sc_topology_load(t), 0);
	if (sc_cpuset_pick_pair(t, &sidecore_cpu, &driver_cpu) < 0) {
		free(t);
		cr_skip_test("needs two cpus: a sidecore and a driver");
	}
	free(t);
	cr_assert_eq(sc_cpu_pin_self(driver_cpu), 0);

	sc_mem_init(&mem);
	int fd = sc_mem_memfd_create("sidecore-test", MEM_SIZE);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&mem, 0, MEM_SIZE, fd, 0, SC_PERM_RW), 0);
	base = mem.regions[0].hva;
	for (int i = 0; i < NQ; i++)
		queue_setup(&q[i], (uint64_t)i * (MEM_SIZE / NQ));

	struct sc_poller_config pc = { .cpu = sidecore_cpu, .idle_spin_ns = 2000000, .name = "sc-test" };
	cr_assert_eq(sc_poller_create(&pc, &poller), 0);
	for (int i = 0; i < NQ; i++)
		cr_assert_eq(sc_poller_attach(poller, &q[i].dev.pq), 0);
}

static void teardown(void)
{
	if (poller)
		sc_poller_destroy(poller);   /* lets go of every queue first */
	poller = NULL;
	for (int i = 0; i < NQ; i++)
		if (q[i].kick_fd > 0)
			close(q[i].kick_fd);
	sc_mem_fini(&mem);
}

TestSuite(sidecore, .init = setup, .fini = teardown, .timeout = 30);

/* Post one read of sector 'sector'; kick only if the device asked. */
static void post_read(struct queue *x, uint64_t sector)
{
	struct virtio_blk_outhdr *h = (void *)(base + x->req_gpa);
	h->type = VIRTIO_BLK_T_IN;
	h->sector = sector;
	base[x->req_gpa + 16] = 0xff;
	struct sc_drv_seg segs[3] = { { x->req_gpa, 16 }, { x->data_gpa, 512 }, { x->req_gpa + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&x->dvq, segs, 1, 2), 0);
	sc_drv_vq_publish(&x->dvq);
	if (sc_drv_vq_kick_needed(&x->dvq)) {
		uint64_t one = 1;
		cr_assert_eq(write(x->kick_fd, &one, 8), 8);
	}
}

/* Wait (bounded) for one completion; returns its status byte, or -1 on timeout. */
static int reap(struct queue *x, uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;
	uint16_t head;
	uint32_t len;
	while (sc_drv_vq_get_used(&x->dvq, &head, &len) == 0) {
		if (now_ns() > deadline)
			return -1;
		sc_cpu_relax();
	}
	return base[x->req_gpa + 16];
}

Test(sidecore, polled_requests_need_no_kicks)
{
	/* The first request may need a kick (the sidecore may be asleep); after that it polls. */
	post_read(&q[0], 0);
	cr_assert_eq(reap(&q[0], 2000000000ull), VIRTIO_BLK_S_OK);
	uint64_t kicks = q[0].dvq.kicks;
	struct sc_poller_stats st0, st1;
	sc_poller_get_stats(poller, &st0);
	for (int i = 0; i < 10000; i++) {
		post_read(&q[0], (uint64_t)i % 1024);
		cr_assert_eq(reap(&q[0], 2000000000ull), VIRTIO_BLK_S_OK, "request %d", i);
	}
	sc_poller_get_stats(poller, &st1);
	/*
	 * Every kick must be explained by the sidecore having gone to sleep (a
	 * noisy host can stall this thread past the idle window); a polling
	 * sidecore is never kicked.
	 */
	uint64_t k = q[0].dvq.kicks - kicks, sleeps = st1.sleeps - st0.sleeps;
	cr_assert_leq(k, sleeps, "%llu kicks while polling, the sidecore slept %llu times",
		      (unsigned long long)k, (unsigned long long)sleeps);
	cr_assert_lt(k, 100, "%llu kicks in 10000 requests", (unsigned long long)k);
	cr_assert_geq(sc_vq_stat(&q[0].dev.vq, offsetof(struct sc_vq_stats, kicks_avoided)), 1);
	cr_assert_eq(__atomic_load_n(&q[0].dev.stats.reads, __ATOMIC_RELAXED), 10001);
}

Test(sidecore, idle_sidecore_sleeps_and_still_serves_the_next_request)
{
	post_read(&q[0], 1);
	cr_assert_eq(reap(&q[0], 2000000000ull), VIRTIO_BLK_S_OK);

	struct sc_poller_stats st0, st1;
	usleep(100000);   /* past the 2 ms spin: asleep */
	sc_poller_get_stats(poller, &st0);
	uint64_t cpu0 = sc_poller_cpu_time_ns(poller), t0 = now_ns();
	usleep(1000000);  /* one second without requests */
	uint64_t cpu1 = sc_poller_cpu_time_ns(poller), t1 = now_ns();
	sc_poller_get_stats(poller, &st1);

	double share = (double)(cpu1 - cpu0) / (double)(t1 - t0);
	cr_assert_geq(st1.sleeps, 1, "the sidecore never slept");
	cr_assert_lt(share, 0.05, "sidecore used %.1f%% of a cpu while idle", share * 100);
	uint64_t busy = st1.busy_cycles - st0.busy_cycles;
	uint64_t total = busy + (st1.idle_cycles - st0.idle_cycles) + (st1.sleep_cycles - st0.sleep_cycles);
	cr_assert_lt((double)busy, 0.05 * (double)total + 1, "busy share from the poller's own counters");

	/* The first request after the idle second: the driver must now kick, and be served. */
	uint64_t kicks = q[0].dvq.kicks;
	post_read(&q[0], 2);
	cr_assert_eq(q[0].dvq.kicks, kicks + 1, "notifications were re-armed: the driver kicks");
	cr_assert_eq(reap(&q[0], 2000000000ull), VIRTIO_BLK_S_OK);
	sc_poller_get_stats(poller, &st1);
	cr_assert_geq(st1.wakeups, 1);
}

Test(sidecore, a_broken_queue_does_not_stop_its_neighbour)
{
	/* Queue 0's guest posts a descriptor index beyond its ring. */
	struct vring_avail *a = q[0].dvq.avail;
	a->ring[a->idx % QSIZE] = QSIZE + 7;
	sc_store_release(&a->idx, (uint16_t)(a->idx + 1));
	uint64_t one = 1;
	cr_assert_eq(write(q[0].kick_fd, &one, 8), 8);

	for (int i = 0; i < 1000; i++) {
		post_read(&q[1], 3);
		cr_assert_eq(reap(&q[1], 2000000000ull), VIRTIO_BLK_S_OK, "neighbour request %d", i);
	}
	struct sc_poller_stats st;
	sc_poller_get_stats(poller, &st);
	cr_assert_eq(st.stopped_queues, 1);
	cr_assert(sc_vq_broken(&q[0].dev.vq));
	cr_assert(strstr(q[0].dev.vq.broken_reason, "out of range"), "%s", q[0].dev.vq.broken_reason);
	cr_assert_eq(sc_poller_detach(poller, &q[0].dev.pq), 0, "a broken queue can be detached");
}

Test(sidecore, a_flooded_queue_does_not_starve_its_neighbour)
{
	/* Fill queue 0 to the brim again and again while queue 1 does single requests. */
	struct sc_drv_seg segs[3] = { { q[0].req_gpa, 16 }, { q[0].data_gpa, 512 }, { q[0].req_gpa + 16, 1 } };
	struct virtio_blk_outhdr *h = (void *)(base + q[0].req_gpa);
	h->type = VIRTIO_BLK_T_IN;
	h->sector = 0;
	uint64_t worst = 0;
	for (int round = 0; round < 200; round++) {
		while (sc_drv_vq_add(&q[0].dvq, segs, 1, 2) >= 0)
			;
		sc_drv_vq_publish(&q[0].dvq);
		uint64_t t0 = now_ns();
		post_read(&q[1], 4);
		cr_assert_eq(reap(&q[1], 2000000000ull), VIRTIO_BLK_S_OK);
		uint64_t dt = now_ns() - t0;
		worst = dt > worst ? dt : worst;
		uint16_t head;
		uint32_t len;
		while (q[0].dvq.num_free < QSIZE)
			sc_drv_vq_get_used(&q[0].dvq, &head, &len);
	}
	/* Behavioural, not a timing target: served every round, within a generous bound. */
	cr_assert_lt(worst, 100000000ull, "neighbour waited %llu ns", (unsigned long long)worst);
}

Test(sidecore, detached_queue_is_not_touched)
{
	cr_assert_eq(sc_poller_detach(poller, &q[1].dev.pq), 0);
	uint16_t used_before = sc_load_acquire(&q[1].dvq.used->idx);
	post_read(&q[1], 5);
	usleep(50000);
	cr_assert_eq(sc_load_acquire(&q[1].dvq.used->idx), used_before, "served after detach");
	/* Re-attach: the pending request is picked up. */
	cr_assert_eq(sc_poller_attach(poller, &q[1].dev.pq), 0);
	uint64_t one = 1;
	cr_assert_eq(write(q[1].kick_fd, &one, 8), 8);
	cr_assert_eq(reap(&q[1], 2000000000ull), VIRTIO_BLK_S_OK);
}
