/* SPDX-License-Identifier: MIT */
/*
 * The data path end to end on two cpus: a driver thread (this one) posts
 * virtio-blk requests; a sidecore thread pinned to the other cpu serves a
 * null-blk device. Nothing here is faked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
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
	cr_assert_eq(sc_drv_vq_init(&x->dvq, base + gpa, gpa, QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	x->req_gpa = gpa + SC_ALIGN_UP(sc_drv_vq_ring_bytes(QSIZE), 4096ull);
	x->data_gpa = x->req_gpa + 4096;
	x->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct sc_vq_config cfg = {
		.size = QSIZE, .desc_addr = x->dvq.desc_gpa, .avail_addr = x->dvq.avail_gpa,
		.used_addr = x->dvq.used_gpa, .features = 1ull << SC_VIRTIO_F_VERSION_1,
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
	struct sc_virtio_blk_outhdr *h = (void *)(base + x->req_gpa);
	h->type = SC_VIRTIO_BLK_T_IN;
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
	cr_assert_eq(reap(&q[0], 2000000000ull), SC_VIRTIO_BLK_S_OK);
	uint64_t kicks = q[0].dvq.kicks;
	struct sc_poller_stats st0, st1;
	sc_poller_get_stats(poller, &st0);
	for (int i = 0; i < 10000; i++) {
		post_read(&q[0], (uint64_t)i % 1024);
		cr_assert_eq(reap(&q[0], 2000000000ull), SC_VIRTIO_BLK_S_OK, "request %d", i);
	}
	sc_poller_get_stats(poller, &st1);
	/*
	 * Every kick must be explained by the sidecore having re-armed
	 * notifications to go to sleep (a noisy host can stall this thread past
	 * the idle window): it slept, or its re-check found our request and it
	 * stayed up (a re-arm race). One more may come from a sleep that began
	 * before the first snapshot. A polling sidecore is never kicked.
	 */
	uint64_t k = q[0].dvq.kicks - kicks, sleeps = st1.sleeps - st0.sleeps;
	uint64_t races = st1.rearm_races - st0.rearm_races;
	cr_assert_leq(k, sleeps + races + 1, "%llu kicks while polling, the sidecore slept %llu times (%llu re-arm races)",
		      (unsigned long long)k, (unsigned long long)sleeps, (unsigned long long)races);
	cr_assert_lt(k, 100, "%llu kicks in 10000 requests", (unsigned long long)k);
	cr_assert_geq(sc_vq_stat(&q[0].dev.vq, offsetof(struct sc_vq_stats, kicks_avoided)), 1);
	cr_assert_eq(__atomic_load_n(&q[0].dev.stats.reads, __ATOMIC_RELAXED), 10001);
}

Test(sidecore, idle_sidecore_sleeps_and_still_serves_the_next_request)
{
	post_read(&q[0], 1);
	cr_assert_eq(reap(&q[0], 2000000000ull), SC_VIRTIO_BLK_S_OK);

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
	cr_assert_eq(reap(&q[0], 2000000000ull), SC_VIRTIO_BLK_S_OK);
	sc_poller_get_stats(poller, &st1);
	cr_assert_geq(st1.wakeups, 1);
}

Test(sidecore, a_broken_queue_does_not_stop_its_neighbour)
{
	/* Queue 0's guest posts a descriptor index beyond its ring. */
	struct sc_vring_avail *a = q[0].dvq.avail;
	a->ring[a->idx % QSIZE] = QSIZE + 7;
	sc_store_release(&a->idx, (uint16_t)(a->idx + 1));
	uint64_t one = 1;
	cr_assert_eq(write(q[0].kick_fd, &one, 8), 8);

	for (int i = 0; i < 1000; i++) {
		post_read(&q[1], 3);
		cr_assert_eq(reap(&q[1], 2000000000ull), SC_VIRTIO_BLK_S_OK, "neighbour request %d", i);
	}
	struct sc_poller_stats st;
	sc_poller_get_stats(poller, &st);
	cr_assert_eq(st.stopped_queues, 1);
	cr_assert(sc_vq_broken(&q[0].dev.vq));
	cr_assert(strstr(q[0].dev.vq.broken_reason, "out of range"), "%s", q[0].dev.vq.broken_reason);
	cr_assert_eq(sc_poller_detach(poller, &q[0].dev.pq), 0, "a broken queue can be detached");
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
	cr_assert_eq(reap(&q[1], 2000000000ull), SC_VIRTIO_BLK_S_OK);
}

/*
 * Fairness is the poller's budget: a queue gets at most `budget` requests
 * per round, so a lone request on one queue waits for at most one budget of
 * a flooded neighbour. The flood here is thousands of requests already
 * posted; without a budget the first poll of the flooded queue would serve
 * all of them before the neighbour's turn. The count is taken on the
 * sidecore itself, at the moment the lone request is served, so no timing
 * on this (shared, noisy) machine enters the verdict.
 */
#define FAIR_QSIZE 8192                     /* 2730 three-descriptor requests fit */
#define FAIR_FLOOD (FAIR_QSIZE / 3)
#define FAIR_MEM (2u << 20)                 /* per queue: rings (~420 KiB) then buffers */

struct fair {
	struct sc_mem mem;
	uint8_t *base;
	struct queue q[2];                     /* 0: flooded, 1: the lone request */
	struct sc_poller *poller;
	/*
	 * Set by the test once both queues hold their requests; until then the
	 * wrapped polls serve nothing, so the first serving round sees the whole
	 * flood and the lone request at once.
	 */
	int gate;
	/* Written on the sidecore only (both wrappers run there); read after `recorded`. */
	unsigned flood_turns;                  /* polls of the flooded queue that served */
	uint64_t flood_served_at_lone;         /* flooded queue's completions when the lone one was served */
	unsigned flood_turns_at_lone;
	unsigned budget_seen;
	int recorded;                          /* release: the three fields above are final */
};

static struct fair fair;

static int fair_poll_flood(struct sc_pollq *pq, unsigned budget)
{
	/* Acquire pairs with the test's release of the gate, after it published both rings. */
	if (!__atomic_load_n(&fair.gate, __ATOMIC_ACQUIRE))
		return 0;
	int n = sc_nullblk_poll(pq->ctx, budget);
	if (n > 0) {
		fair.flood_turns++;
		fair.budget_seen = budget;
	}
	return n;
}

static int fair_poll_lone(struct sc_pollq *pq, unsigned budget)
{
	/* The worst case for the lone request: the flood has had its turn first. */
	if (fair.flood_turns == 0)
		return 0;
	int n = sc_nullblk_poll(pq->ctx, budget);
	if (n > 0 && !fair.recorded) {
		/* reads is the flooded queue's own counter, written on this thread. */
		fair.flood_served_at_lone = fair.q[0].dev.stats.reads;
		fair.flood_turns_at_lone = fair.flood_turns;
		/* Release pairs with the test's acquire before it reads the fields. */
		__atomic_store_n(&fair.recorded, 1, __ATOMIC_RELEASE);
	}
	return n;
}

static bool fair_notify_enable(struct sc_pollq *pq)
{
	return sc_vq_notify_enable(&((struct sc_nullblk *)pq->ctx)->vq);
}

static void fair_notify_disable(struct sc_pollq *pq)
{
	sc_vq_notify_disable(&((struct sc_nullblk *)pq->ctx)->vq);
}

static const struct sc_pollq_ops fair_flood_ops = { fair_poll_flood, fair_notify_enable, fair_notify_disable, NULL };
static const struct sc_pollq_ops fair_lone_ops = { fair_poll_lone, fair_notify_enable, fair_notify_disable, NULL };

static void fair_fini(void)
{
	if (fair.poller)
		sc_poller_destroy(fair.poller);
	fair.poller = NULL;
	for (int i = 0; i < 2; i++)
		if (fair.q[i].kick_fd > 0)
			close(fair.q[i].kick_fd);
	sc_mem_fini(&fair.mem);
}

TestSuite(sidecore_budget, .fini = fair_fini, .timeout = 30);

/*
 * Post FAIR_FLOOD reads on queue 0 and one on queue 1 of a poller with this
 * budget (queue 0 attached first, so it comes first in a round), let the
 * sidecore at them, and wait until everything is served.
 */
static void fair_run(unsigned budget)
{
	struct sc_topology *t = calloc(1, sizeof(*t));
	cr_assert_eq(sc_topology_load(t), 0);
	if (sc_cpuset_pick_pair(t, &sidecore_cpu, &driver_cpu) < 0) {
		free(t);
		cr_skip_test("needs two cpus: a sidecore and a driver");
	}
	free(t);
	cr_assert_eq(sc_cpu_pin_self(driver_cpu), 0);

	sc_mem_init(&fair.mem);
	int fd = sc_mem_memfd_create("sidecore-fair", 2 * FAIR_MEM);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&fair.mem, 0, 2 * FAIR_MEM, fd, 0, SC_PERM_RW), 0);
	fair.base = base = fair.mem.regions[0].hva;   /* reap() reads the status through base */
	for (int i = 0; i < 2; i++) {
		struct queue *x = &fair.q[i];
		uint64_t gpa = (uint64_t)i * FAIR_MEM;
		cr_assert_eq(sc_drv_vq_init(&x->dvq, fair.base + gpa, gpa, FAIR_QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
		x->req_gpa = gpa + SC_ALIGN_UP(sc_drv_vq_ring_bytes(FAIR_QSIZE), 4096ull);
		x->data_gpa = x->req_gpa + 4096;
		cr_assert_leq(x->data_gpa + 4096, gpa + FAIR_MEM);
		x->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		struct sc_vq_config cfg = {
			.size = FAIR_QSIZE, .desc_addr = x->dvq.desc_gpa, .avail_addr = x->dvq.avail_gpa,
			.used_addr = x->dvq.used_gpa, .features = 1ull << SC_VIRTIO_F_VERSION_1,
			.xlate = sc_mem_xlate(&fair.mem), .call_fd = -1, .err_fd = -1, .kick_fd = x->kick_fd,
		};
		cr_assert_eq(sc_nullblk_init(&x->dev, &cfg, 1024, i ? "lone" : "flood"), 0);
		x->dev.pq.ops = i ? &fair_lone_ops : &fair_flood_ops;
		sc_drv_vq_interrupts_disable(&x->dvq);
		struct sc_virtio_blk_outhdr *h = (void *)(fair.base + x->req_gpa);
		*h = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = 0 };
	}

	/* Never sleeps: the gated polls serve nothing for a while, and no kick is needed. */
	struct sc_poller_config pc = { .cpu = sidecore_cpu, .budget = budget,
				       .idle_spin_ns = SC_POLLER_NEVER_SLEEP, .name = "sc-fair" };
	cr_assert_eq(sc_poller_create(&pc, &fair.poller), 0);
	cr_assert_eq(sc_poller_attach(fair.poller, &fair.q[0].dev.pq), 0);
	cr_assert_eq(sc_poller_attach(fair.poller, &fair.q[1].dev.pq), 0);

	for (int i = 0; i < 2; i++) {
		struct queue *x = &fair.q[i];
		struct sc_drv_seg segs[3] = { { x->req_gpa, 16 }, { x->data_gpa, 512 }, { x->req_gpa + 16, 1 } };
		for (int n = 0; n < (i ? 1 : FAIR_FLOOD); n++)
			cr_assert_geq(sc_drv_vq_add(&x->dvq, segs, 1, 2), 0, "queue %d request %d", i, n);
		sc_drv_vq_publish(&x->dvq);
	}
	/* Release pairs with the flooded queue's acquire: both rings are published before it. */
	__atomic_store_n(&fair.gate, 1, __ATOMIC_RELEASE);

	uint64_t deadline = now_ns() + 5000000000ull;
	while (!__atomic_load_n(&fair.recorded, __ATOMIC_ACQUIRE)) {
		cr_assert_lt(now_ns(), deadline, "the lone request was not served within 5 s");
		sc_cpu_relax();
	}
	cr_assert_eq(reap(&fair.q[1], 2000000000ull), SC_VIRTIO_BLK_S_OK);
	/* Every flooded request is served too: fairness does not drop anything. */
	uint16_t head;
	uint32_t len;
	for (int n = 0; n < FAIR_FLOOD; n++) {
		while (sc_drv_vq_get_used(&fair.q[0].dvq, &head, &len) == 0) {
			cr_assert_lt(now_ns(), deadline, "%d of %d flooded requests served within 5 s", n, FAIR_FLOOD);
			sc_cpu_relax();
		}
		cr_assert_eq(len, 513);
	}
	cr_assert_eq(fair.budget_seen, budget, "the poller passed budget %u", fair.budget_seen);
}

Test(sidecore_budget, a_lone_request_waits_for_one_budget_of_a_flood)
{
	fair_run(SC_POLLER_DEFAULT_BUDGET);
	/*
	 * Served in the round of the flood's first turn (at most the next one,
	 * should the round order ever rotate): the flood got one budget first.
	 */
	cr_assert_leq(fair.flood_turns_at_lone, 2, "the lone request waited %u turns of the flood",
		      fair.flood_turns_at_lone);
	cr_assert_leq(fair.flood_served_at_lone, 2 * SC_POLLER_DEFAULT_BUDGET,
		      "%llu of %d flooded requests were served before the lone one (budget %d)",
		      (unsigned long long)fair.flood_served_at_lone, FAIR_FLOOD, SC_POLLER_DEFAULT_BUDGET);
	cr_assert_geq(fair.flood_served_at_lone, 1);
}

/*
 * The same scenario with the budget effectively off: the lone request waits
 * for the whole flood. This is what the test above would see without a
 * budget, so it measures the budget, not its own fixture.
 */
Test(sidecore_budget, an_unlimited_budget_lets_the_flood_go_first)
{
	fair_run(UINT_MAX);
	/* All FAIR_FLOOD of them today; more than the bound above is what matters. */
	cr_assert_gt(fair.flood_served_at_lone, 2 * SC_POLLER_DEFAULT_BUDGET,
		     "only %llu of %d flooded requests went first", (unsigned long long)fair.flood_served_at_lone,
		     FAIR_FLOOD);
}
