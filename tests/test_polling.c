/* SPDX-License-Identifier: MIT */
/*
 * The poll loop alone, with fake queues (a unit test of one module): a
 * queue is a counter of pending requests the test raises, a flag for
 * "guest notifications enabled", and a real eventfd as its kick fd.
 * Every wait has a deadline, and the fixture destroys the poller even when
 * an assertion fails half-way.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/tsc.h"
#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "polling/polling.h"

static struct sc_poller *p;

struct fake {
	struct sc_pollq pq;
	uint64_t pending;          /* raised by the test */
	uint64_t served;           /* by the sidecore */
	uint64_t polls;
	uint64_t max_per_poll;
	uint64_t disables;         /* notify_disable calls */
	uint64_t served_while_armed; /* requests served with notifications on: must stay 0 */
	int notify_on;             /* 1 after notify_enable, 0 after notify_disable */
	int fail_with;             /* poll returns this when nonzero */
	unsigned slow_us;          /* poll sleeps this long (a device busy in its callback) */
	int in_poll;
	struct fake *other;        /* fairness probe: other's polls minus ours, seen when we are polled */
	int64_t gap_min, gap_max;
	struct fake *expect_prev;  /* order probe: the queue polled just before this one */
	/* re-arm race probe */
	int race_once;             /* notify_enable reports work once */
	int race_seen;
	int polled_after_race;
	uint64_t sleeps_at_race, sleeps_after_race;
	/* control from inside the callback */
	int detach_self;
	int detach_self_result;
};

/* Order probe, touched by the sidecore only (but check_order). */
static struct fake *last_polled;
static int check_order;
static uint64_t order_errors;

static uint64_t poller_sleeps(void)
{
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	return st.sleeps;
}

static int fake_poll(struct sc_pollq *q, unsigned budget)
{
	struct fake *f = q->ctx;

	__atomic_store_n(&f->in_poll, 1, __ATOMIC_RELAXED);
	if (f->other) {
		/* Read on the sidecore itself, so no test-thread timing skews it. */
		int64_t gap = (int64_t)(f->other->polls - f->polls);
		f->gap_min = gap < f->gap_min ? gap : f->gap_min;
		f->gap_max = gap > f->gap_max ? gap : f->gap_max;
	}
	if (__atomic_load_n(&check_order, __ATOMIC_ACQUIRE) && last_polled != f->expect_prev)
		__atomic_add_fetch(&order_errors, 1, __ATOMIC_RELAXED);
	last_polled = f;
	if (f->race_seen && !f->polled_after_race) {
		f->sleeps_after_race = poller_sleeps();
		__atomic_store_n(&f->polled_after_race, 1, __ATOMIC_RELEASE);
	}
	if (f->detach_self == 1) {
		f->detach_self_result = sc_poller_detach(p, q);
		__atomic_store_n(&f->detach_self, 2, __ATOMIC_RELEASE);
	}
	if (f->slow_us)
		usleep(f->slow_us);
	__atomic_add_fetch(&f->polls, 1, __ATOMIC_RELEASE);
	if (f->fail_with) {
		__atomic_store_n(&f->in_poll, 0, __ATOMIC_RELEASE);
		return f->fail_with;
	}
	uint64_t pend = __atomic_load_n(&f->pending, __ATOMIC_ACQUIRE);
	uint64_t n = pend - f->served;
	if (n > budget)
		n = budget;
	if (n > f->max_per_poll)
		f->max_per_poll = n;
	if (n && __atomic_load_n(&f->notify_on, __ATOMIC_RELAXED))
		f->served_while_armed += n;
	__atomic_store_n(&f->served, f->served + n, __ATOMIC_RELEASE);
	__atomic_store_n(&f->in_poll, 0, __ATOMIC_RELEASE);
	return (int)n;
}

static bool fake_notify_enable(struct sc_pollq *q)
{
	struct fake *f = q->ctx;
	/* seq_cst store then load: the "set flag, full barrier, re-check" handshake. */
	__atomic_store_n(&f->notify_on, 1, __ATOMIC_SEQ_CST);
	if (f->race_once) {
		f->race_once = 0;
		f->sleeps_at_race = poller_sleeps();
		f->race_seen = 1;
		return true;
	}
	return __atomic_load_n(&f->pending, __ATOMIC_SEQ_CST) != f->served;
}

static void fake_notify_disable(struct sc_pollq *q)
{
	struct fake *f = q->ctx;
	__atomic_store_n(&f->notify_on, 0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&f->disables, 1, __ATOMIC_RELEASE);
}

static const struct sc_pollq_ops fake_ops = { fake_poll, fake_notify_enable, fake_notify_disable, NULL };

static void fake_init(struct fake *f, bool with_kick_fd)
{
	memset(f, 0, sizeof(*f));
	f->pq = (struct sc_pollq){ .ops = &fake_ops, .ctx = f, .name = "fake", .kick_fd = -1 };
	if (with_kick_fd) {
		f->pq.kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		cr_assert_geq(f->pq.kick_fd, 0);
	}
}

static void fake_fini(struct fake *f)
{
	if (f->pq.kick_fd >= 0)
		close(f->pq.kick_fd);
	f->pq.kick_fd = -1;
}

static void fake_kick(struct fake *f)
{
	uint64_t one = 1;
	cr_assert_eq(write(f->pq.kick_fd, &one, 8), 8);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wait up to 3 s for *v to reach want. */
static bool wait_for(uint64_t *v, uint64_t want)
{
	uint64_t deadline = now_ns() + 3000000000ull;
	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want) {
		if (now_ns() > deadline)
			return false;
		usleep(100);
	}
	return true;
}

static bool wait_for_int(int *v, int want)
{
	uint64_t deadline = now_ns() + 3000000000ull;
	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) != want) {
		if (now_ns() > deadline)
			return false;
		usleep(100);
	}
	return true;
}

/* The last cpu we may use: cpu 0 takes most housekeeping. */
static int last_cpu(void)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = CPU_SETSIZE - 1; c >= 0; c--)
		if (CPU_ISSET(c, &set))
			return c;
	return 0;
}

static struct fake a, b;

static void start(uint64_t idle_ns, unsigned budget)
{
	struct sc_poller_config c = { .cpu = last_cpu(), .idle_spin_ns = idle_ns, .budget = budget,
				      .name = "sc-unit-test-long-name" };
	cr_assert_eq(sc_poller_create(&c, &p), 0);
	cr_assert_eq(sc_poller_cpu(p), c.cpu);
}

static void setup(void)
{
	fake_init(&a, true);
	fake_init(&b, true);
}

static void teardown(void)
{
	sc_poller_destroy(p);   /* lets go of a and b if a test stopped half-way */
	p = NULL;
	fake_fini(&a);
	fake_fini(&b);
}

TestSuite(poller, .init = setup, .fini = teardown, .timeout = 20);

Test(poller, attached_queue_is_served)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(a.pq.poller, p);
	cr_assert_eq(a.notify_on, 0, "attached queues poll: notifications off");
	cr_assert_geq(a.disables, 1, "the sidecore disables notifications when it takes a queue");
	__atomic_store_n(&a.pending, 100, __ATOMIC_RELEASE);
	cr_assert(wait_for(&a.served, 100));
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.requests, 100);
	cr_assert_eq(st.queues, 1);
	cr_assert_gt(st.busy_cycles, 0);
}

Test(poller, default_budget_is_32_per_queue_per_round)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	__atomic_store_n(&a.pending, 1000, __ATOMIC_RELEASE);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for(&a.served, 1000));
	cr_assert_eq(a.max_per_poll, SC_POLLER_DEFAULT_BUDGET);
}

Test(poller, budget_per_queue_per_round_is_respected)
{
	start(SC_POLLER_NEVER_SLEEP, 8);
	__atomic_store_n(&a.pending, 1000, __ATOMIC_RELEASE);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for(&a.served, 1000));
	cr_assert_eq(a.max_per_poll, 8);
}

Test(poller, each_queue_is_given_the_turn_time_at_attach)
{
	struct sc_poller_config c = { .cpu = last_cpu(), .idle_spin_ns = SC_POLLER_NEVER_SLEEP, .turn_ns = 5000,
				      .name = "sc-turn" };
	cr_assert_eq(sc_poller_create(&c, &p), 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(a.pq.turn_cycles, sc_ns_to_cycles(5000));
	sc_poller_destroy(p);
	p = NULL;
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	cr_assert_eq(b.pq.turn_cycles, sc_ns_to_cycles(SC_POLLER_DEFAULT_TURN_NS), "0 means the default");
}

Test(poller, endless_work_does_not_starve_a_neighbour)
{
	start(SC_POLLER_NEVER_SLEEP, 4);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	/* Set before b is attached: the sidecore reads these only when it polls b. */
	b.other = &a;
	b.gap_min = INT64_MAX;
	b.gap_max = INT64_MIN;
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	__atomic_store_n(&a.pending, UINT64_MAX / 2, __ATOMIC_RELEASE);   /* never drains */
	__atomic_store_n(&b.pending, 50, __ATOMIC_RELEASE);
	cr_assert(wait_for(&b.served, 50), "neighbour starved: served %llu", (unsigned long long)b.served);
	cr_assert_eq(sc_poller_detach(p, &b.pq), 0);
	cr_assert_eq(b.max_per_poll, 4);
	cr_assert_eq(a.max_per_poll, 4);
	/* Round robin: between two polls of b, a was polled exactly once, every round. */
	cr_assert_eq(b.gap_max - b.gap_min, 0, "a got %lld..%lld polls ahead of b",
		     (long long)b.gap_min, (long long)b.gap_max);
}

Test(poller, detach_returns_only_when_the_sidecore_has_let_go)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	a.slow_us = 5000;   /* the sidecore is inside poll() nearly all the time */
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for(&a.polls, 2));
	cr_assert_eq(sc_poller_detach(p, &a.pq), 0);
	cr_assert_eq(__atomic_load_n(&a.in_poll, __ATOMIC_ACQUIRE), 0, "detach returned inside poll()");
	uint64_t polls = __atomic_load_n(&a.polls, __ATOMIC_ACQUIRE);
	usleep(30000);
	cr_assert_eq(__atomic_load_n(&a.polls, __ATOMIC_ACQUIRE), polls, "polled after detach returned");
	cr_assert_null(a.pq.poller);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.queues, 0);
}

Test(poller, detach_keeps_the_round_robin_order)
{
	struct fake c, d;
	start(SC_POLLER_NEVER_SLEEP, 0);
	fake_init(&c, true);
	fake_init(&d, true);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &c.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &d.pq), 0);
	/* Detaching from the middle keeps a, c, d (a swap with the last would give a, d, c). */
	a.expect_prev = &d;
	c.expect_prev = &a;
	d.expect_prev = &c;
	cr_assert_eq(sc_poller_detach(p, &b.pq), 0);
	__atomic_store_n(&check_order, 1, __ATOMIC_RELEASE);
	uint64_t a0 = __atomic_load_n(&a.polls, __ATOMIC_ACQUIRE);
	cr_assert(wait_for(&a.polls, a0 + 1000));
	cr_assert_eq(__atomic_load_n(&order_errors, __ATOMIC_ACQUIRE), 0, "polled out of order after a detach");
	cr_assert_eq(sc_poller_detach(p, &c.pq), 0);
	cr_assert_eq(sc_poller_detach(p, &d.pq), 0);
	fake_fini(&c);
	fake_fini(&d);
}

Test(poller, attach_twice_is_busy)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), -EBUSY);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.queues, 1);
}

Test(poller, attach_to_a_second_poller_is_busy)
{
	struct sc_poller *p2;
	struct sc_poller_config c = { .cpu = -1, .idle_spin_ns = 0 };
	start(0, 0);
	cr_assert_eq(sc_poller_create(&c, &p2), 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	int r1 = sc_poller_attach(p2, &a.pq);
	int r2 = sc_poller_detach(p2, &a.pq);
	sc_poller_destroy(p2);
	cr_assert_eq(r1, -EBUSY);
	cr_assert_eq(r2, -ENOENT);
	cr_assert_eq(a.pq.poller, p);
}

Test(poller, detach_unknown_queue)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_detach(p, &a.pq), -ENOENT);
}

Test(poller, attach_with_a_closed_kick_fd_fails_and_others_go_on)
{
	start(0, 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	close(a.pq.kick_fd);   /* the number stays in a.pq: nothing else opens fds meanwhile */
	cr_assert_eq(sc_poller_attach(p, &a.pq), -EBADF);
	a.pq.kick_fd = -1;
	cr_assert_null(a.pq.poller, "a failed attach leaves the queue free");
	__atomic_store_n(&b.pending, 5, __ATOMIC_RELEASE);
	fake_kick(&b);
	cr_assert(wait_for(&b.served, 5));
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.queues, 1);
}

Test(poller, attach_beyond_the_maximum_is_nospc)
{
	static struct fake many[SC_POLLER_MAX_QUEUES + 1];
	start(SC_POLLER_NEVER_SLEEP, 0);
	for (int i = 0; i < SC_POLLER_MAX_QUEUES; i++) {
		fake_init(&many[i], false);
		cr_assert_eq(sc_poller_attach(p, &many[i].pq), 0, "queue %d", i);
	}
	fake_init(&many[SC_POLLER_MAX_QUEUES], false);
	cr_assert_eq(sc_poller_attach(p, &many[SC_POLLER_MAX_QUEUES].pq), -ENOSPC);
	cr_assert_null(many[SC_POLLER_MAX_QUEUES].pq.poller);
	/* The full poller still serves its last queue. */
	__atomic_store_n(&many[SC_POLLER_MAX_QUEUES - 1].pending, 3, __ATOMIC_RELEASE);
	cr_assert(wait_for(&many[SC_POLLER_MAX_QUEUES - 1].served, 3));
	for (int i = 0; i < SC_POLLER_MAX_QUEUES; i++)
		cr_assert_eq(sc_poller_detach(p, &many[i].pq), 0);
}

Test(poller, broken_queue_is_stopped_and_others_go_on)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	a.fail_with = -EIO;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	__atomic_store_n(&b.pending, 20, __ATOMIC_RELEASE);
	cr_assert(wait_for(&b.served, 20));
	cr_assert_eq(__atomic_load_n(&a.polls, __ATOMIC_ACQUIRE), 1, "a failed queue is not polled again");
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.stopped_queues, 1);
	cr_assert_eq(st.queues, 2, "a stopped queue stays attached until detached");
	cr_assert(a.pq.stopped);
	cr_assert_eq(a.pq.error, -EIO);
	cr_assert_eq(sc_poller_detach(p, &a.pq), 0, "a stopped queue can be detached");
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.stopped_queues, 0);
	cr_assert_eq(st.queues, 1);
}

Test(poller, broken_queue_does_not_keep_an_idle_sidecore_awake)
{
	start(0, 0);
	a.fail_with = -EIO;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for(&a.polls, 1));
	usleep(20000);
	struct sc_poller_stats st0, st;
	sc_poller_get_stats(p, &st0);
	for (int i = 0; i < 20; i++)
		fake_kick(&a);   /* a hostile guest kicking its broken queue */
	usleep(20000);
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.wakeups, st0.wakeups, "woken by a stopped queue");
	cr_assert_eq(st.sleeps, st0.sleeps);
}

Test(poller, idle_sidecore_rearms_sleeps_and_wakes_on_a_kick)
{
	start(1000000, 0);   /* 1 ms of spinning, then sleep */
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	usleep(50000);
	uint64_t cpu0 = sc_poller_cpu_time_ns(p), t0 = now_ns();
	usleep(300000);
	uint64_t cpu1 = sc_poller_cpu_time_ns(p), t1 = now_ns();
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.sleeps, 1);
	cr_assert_eq(__atomic_load_n(&a.notify_on, __ATOMIC_SEQ_CST), 1, "re-armed before sleeping");
	cr_assert_lt((double)(cpu1 - cpu0), 0.05 * (double)(t1 - t0), "asleep but used %llu ns of %llu",
		     (unsigned long long)(cpu1 - cpu0), (unsigned long long)(t1 - t0));
	cr_assert_eq(st.wakeups, 0);

	uint64_t disables = __atomic_load_n(&a.disables, __ATOMIC_ACQUIRE);
	__atomic_store_n(&a.pending, 3, __ATOMIC_RELEASE);
	fake_kick(&a);
	cr_assert(wait_for(&a.served, 3));
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.wakeups, 1);
	cr_assert_gt(st.sleep_cycles, 0);
	cr_assert_gt(__atomic_load_n(&a.disables, __ATOMIC_ACQUIRE), disables, "notifications off after the kick");
	cr_assert_eq(a.served_while_armed, 0, "served work with notifications still on");
}

Test(poller, idle_spin_zero_sleeps_at_once)
{
	start(0, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	usleep(20000);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.sleeps, 1);
	cr_assert_lt(st.rounds, 100, "spun %llu rounds with nothing to do", (unsigned long long)st.rounds);
	for (int i = 1; i <= 5; i++) {
		__atomic_store_n(&a.pending, (uint64_t)i, __ATOMIC_RELEASE);
		fake_kick(&a);
		cr_assert(wait_for(&a.served, (uint64_t)i));
	}
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.wakeups, 1);
}

Test(poller, work_found_while_rearming_prevents_the_sleep)
{
	start(0, 0);
	a.race_once = 1;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for_int(&a.polled_after_race, 1), "not polled after the race");
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.rearm_races, 1);
	cr_assert_eq(a.sleeps_after_race, a.sleeps_at_race, "slept although the re-check found work");
}

Test(poller, never_sleep_mode_never_sleeps)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	usleep(100000);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.sleeps, 0);
	cr_assert_eq(a.notify_on, 0, "never re-armed");
	cr_assert_gt(st.idle_cycles, 0);
}

Test(poller, queue_without_kick_fd_keeps_the_sidecore_awake)
{
	start(0, 0);
	close(a.pq.kick_fd);
	a.pq.kick_fd = -1;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	struct sc_poller_stats st0, st;
	sc_poller_get_stats(p, &st0);   /* with no queue it slept; count from here */
	usleep(50000);
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.sleeps, st0.sleeps, "it could never be woken");
	cr_assert_gt(st.rounds, st0.rounds + 100, "still polling");
	__atomic_store_n(&a.pending, 7, __ATOMIC_RELEASE);
	cr_assert(wait_for(&a.served, 7));
}

Test(poller, bad_cpu_is_refused)
{
	struct sc_poller_config c = { .cpu = 99999 };
	struct sc_poller *q = NULL;
	cr_assert_eq(sc_poller_create(&c, &q), -EINVAL);
	c.cpu = -2;
	cr_assert_eq(sc_poller_create(&c, &q), -EINVAL);
	/* In range for a mask but not a cpu this machine has: the kernel refuses the pin. */
	c.cpu = (int)sysconf(_SC_NPROCESSORS_CONF);
	cr_assert_eq(sc_poller_create(&c, &q), -EINVAL, "cpu %d", c.cpu);
	cr_assert_null(q);
}

Test(poller, unpinned_poller_works)
{
	struct sc_poller_config c = { .cpu = -1, .idle_spin_ns = 0 };
	cr_assert_eq(sc_poller_create(&c, &p), 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	__atomic_store_n(&a.pending, 4, __ATOMIC_RELEASE);
	fake_kick(&a);
	cr_assert(wait_for(&a.served, 4));
}

Test(poller, control_call_from_the_sidecore_is_refused)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	a.detach_self = 1;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for_int(&a.detach_self, 2));
	cr_assert_eq(a.detach_self_result, -EDEADLK);
}

Test(poller, destroy_lets_go_of_attached_queues)
{
	start(0, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	sc_poller_destroy(p);
	p = NULL;
	cr_assert_null(a.pq.poller);
	cr_assert_null(b.pq.poller);
}

struct churn {
	struct fake f;
	int failures;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 200; i++) {
		/* Distinct expected results, so a caller handed another's result shows. */
		c->failures += sc_poller_attach(p, &c->f.pq) != 0;
		c->failures += sc_poller_attach(p, &c->f.pq) != -EBUSY;
		c->failures += sc_poller_detach(p, &c->f.pq) != 0;
		c->failures += sc_poller_detach(p, &c->f.pq) != -ENOENT;
	}
	return NULL;
}

Test(poller, concurrent_attach_and_detach_from_many_threads)
{
	start(0, 0);
	struct churn c[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		fake_init(&c[i].f, true);
		c[i].failures = 0;
		cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(c[i].failures, 0, "thread %d saw %d wrong results", i, c[i].failures);
		cr_assert_null(c[i].f.pq.poller);
		fake_fini(&c[i].f);
	}
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.queues, 0);
}

/*
 * Guest memory that faults under the sidecore (a front end shrinks the file
 * behind it; QEMU's memory-backend-file cannot be sealed). A SIGBUS inside
 * one queue's ops stops that queue only, with the fault address in the
 * reason, and the sidecore serves the rest.
 */

/* A page of a tmpfs file (not sealed), mapped shared; *fd keeps the file for ftruncate. */
static volatile uint8_t *shrinkable_page(int *fd)
{
	char path[] = "/dev/shm/sidecore-fault-XXXXXX";
	*fd = mkstemp(path);
	if (*fd < 0)
		cr_skip_test("needs a tmpfs at /dev/shm: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(ftruncate(*fd, 4096), 0);
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	return m;
}

static struct fake_faulting {
	struct fake f;
	volatile uint8_t *touch;     /* read in every poll (and notify_enable) when set */
	int touch_in_notify;
	uint64_t faults;
	char reason[160];
} fa;

static int touching_poll(struct sc_pollq *q, unsigned budget)
{
	if (fa.touch && !fa.touch_in_notify)
		(void)*fa.touch;
	return fake_poll(q, budget);
}

static bool touching_notify_enable(struct sc_pollq *q)
{
	if (fa.touch && fa.touch_in_notify)
		(void)*fa.touch;
	return fake_notify_enable(q);
}

static void record_fault(struct sc_pollq *q, const char *reason)
{
	(void)q;
	snprintf(fa.reason, sizeof(fa.reason), "%s", reason);
	__atomic_add_fetch(&fa.faults, 1, __ATOMIC_RELEASE);
}

static const struct sc_pollq_ops faulting_ops = { touching_poll, touching_notify_enable,
						  fake_notify_disable, record_fault };

static void fault_setup(void)
{
	setup();
	memset(&fa, 0, sizeof(fa));
	fake_init(&fa.f, true);
	fa.f.pq.ops = &faulting_ops;
	fa.f.pq.ctx = &fa.f;
}

static void fault_teardown(void)
{
	teardown();
	fake_fini(&fa.f);
}

TestSuite(fault, .init = fault_setup, .fini = fault_teardown, .timeout = 20);

static void expect_fault_contained(int fd, uint64_t idle_ns)
{
	start(idle_ns, 0);
	cr_assert_eq(sc_poller_attach(p, &fa.f.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	__atomic_store_n(&b.pending, 10, __ATOMIC_RELEASE);
	fake_kick(&b);
	cr_assert(wait_for(&b.served, 10));
	cr_assert_eq(fa.faults, 0, "no fault while the file is whole");

	cr_assert_eq(ftruncate(fd, 0), 0);   /* the front end shrinks guest memory */
	fake_kick(&fa.f);
	cr_assert(wait_for(&fa.faults, 1), "the sidecore reported the fault");
	char addr[32];
	snprintf(addr, sizeof(addr), "SIGBUS at %p", (void *)fa.touch);
	cr_assert(strstr(fa.reason, addr), "reason '%s' lacks '%s'", fa.reason, addr);
	cr_assert(fa.f.pq.stopped);
	cr_assert_eq(fa.f.pq.error, -EFAULT);

	/* The sidecore lives and serves the other queue. */
	__atomic_store_n(&b.pending, 30, __ATOMIC_RELEASE);
	fake_kick(&b);
	cr_assert(wait_for(&b.served, 30));
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.faults, 1);
	cr_assert_eq(st.stopped_queues, 1);
	cr_assert_eq(fa.faults, 1, "a stopped queue is not touched again");
	cr_assert_eq(sc_poller_detach(p, &fa.f.pq), 0);
}

Test(fault, sigbus_while_polling_stops_only_that_queue)
{
	int fd;
	fa.touch = shrinkable_page(&fd);
	expect_fault_contained(fd, SC_POLLER_NEVER_SLEEP);
	close(fd);
}

Test(fault, sigbus_while_rearming_stops_only_that_queue)
{
	/* Idle at once: every empty round re-arms, so notify_enable is what faults. */
	int fd;
	fa.touch = shrinkable_page(&fd);
	fa.touch_in_notify = 1;
	expect_fault_contained(fd, 0);
	close(fd);
}

/*
 * "As before" depends on who handled SIGBUS before us: the default action
 * (killed by SIGBUS), or AddressSanitizer's handler, which reports and
 * then exits 1 or aborts (abort_on_error). A child process shows which.
 */
Test(fault, sigbus_outside_a_queue_still_kills)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd;
		volatile uint8_t *m = shrinkable_page(&fd);
		start(SC_POLLER_NEVER_SLEEP, 0);   /* the handler is installed */
		if (ftruncate(fd, 0) < 0)
			_exit(3);
		(void)*m;                          /* not a sidecore serving a queue: the default action */
		_exit(0);                          /* survived a SIGBUS outside a guarded queue */
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
#ifdef __SANITIZE_ADDRESS__
	cr_assert((WIFEXITED(st) && WEXITSTATUS(st) == 1) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT),
		  "the child should die in ASan's SIGBUS report (status 0x%x)", st);
#else
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "the child should die of SIGBUS (status 0x%x)", st);
#endif
}

/* The same with real queues: two null-blk queues on one sidecore, one on a file that shrinks. */

struct blkq {
	struct sc_drv_vq dvq;
	struct sc_nullblk dev;
	int err_fd;
	uint64_t req_gpa;     /* header, 20-byte id, status */
	uint8_t *req;
};

static void blkq_init(struct blkq *x, struct sc_mem *mem, uint64_t gpa, const char *name)
{
	const struct sc_mem_region *r = sc_mem_find(mem, gpa);
	uint8_t *base = r->hva + (gpa - r->gpa);
	cr_assert_eq(sc_drv_vq_init(&x->dvq, base, gpa, 16, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	sc_drv_vq_interrupts_disable(&x->dvq);
	x->req_gpa = gpa + 8192;
	x->req = base + 8192;
	x->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct sc_vq_config cfg = {
		.size = 16, .desc_addr = x->dvq.desc_gpa, .avail_addr = x->dvq.avail_gpa,
		.used_addr = x->dvq.used_gpa, .features = 1ull << SC_VIRTIO_F_VERSION_1,
		.xlate = sc_mem_xlate(mem), .call_fd = -1, .kick_fd = -1, .err_fd = x->err_fd,
		.name = name,
	};
	cr_assert_eq(sc_nullblk_init(&x->dev, &cfg, 8, name), 0, "%s", x->dev.vq.broken_reason);
}

/* One GET_ID request through the driver ring; true once it completed with OK. */
static bool blkq_get_id(struct blkq *x)
{
	struct sc_virtio_blk_outhdr h = { .type = SC_VIRTIO_BLK_T_GET_ID };
	struct sc_drv_seg segs[] = { { x->req_gpa, sizeof(h) }, { x->req_gpa + 16, 20 },
				     { x->req_gpa + 36, 1 } };
	uint64_t deadline = now_ns() + 3000000000ull;
	uint16_t head;
	uint32_t len;

	memcpy(x->req, &h, sizeof(h));
	x->req[36] = 0xff;
	cr_assert_geq(sc_drv_vq_add(&x->dvq, segs, 1, 2), 0);
	sc_drv_vq_publish(&x->dvq);
	while (sc_drv_vq_get_used(&x->dvq, &head, &len) != 1)
		if (now_ns() > deadline)
			return false;
	return x->req[36] == SC_VIRTIO_BLK_S_OK && memcmp(x->req + 16, "sidecore-null", 13) == 0;
}

Test(fault, truncated_guest_memory_breaks_only_its_queue)
{
	const uint64_t gpa_a = 0x100000, gpa_b = 0x200000, size = 64 << 10;
	struct sc_mem mem;
	struct blkq qa, qb;
	int fd;

	sc_mem_init(&mem);
	shrinkable_page(&fd);   /* (the page itself is not used) */
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	cr_assert_eq(sc_mem_add_fd(&mem, gpa_a, size, dup(fd), 0, SC_PERM_RW), 0);
	cr_assert_eq(sc_mem_add_fd(&mem, gpa_b, size, sc_mem_memfd_create("b", size), 0, SC_PERM_RW), 0);
	blkq_init(&qa, &mem, gpa_a, "shrinking.sock vring 0");
	blkq_init(&qb, &mem, gpa_b, "other.sock vring 0");
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &qa.dev.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &qb.dev.pq), 0);
	cr_assert(blkq_get_id(&qa));
	cr_assert(blkq_get_id(&qb));

	cr_assert_eq(ftruncate(fd, 0), 0);
	uint64_t deadline = now_ns() + 3000000000ull;
	while (!sc_vq_broken(&qa.dev.vq))
		cr_assert_lt(now_ns(), deadline, "the queue on the shrunk file never broke");
	cr_assert(strstr(qa.dev.vq.broken_reason, "SIGBUS at 0x"), "%s", qa.dev.vq.broken_reason);
	cr_assert_eq(qa.dev.vq.broken_err, -EFAULT);
	/* broken is published first (a VMM woken by the err fd must see it), the eventfd just after. */
	uint64_t v = 0;
	while (read(qa.err_fd, &v, 8) != 8)
		cr_assert_lt(now_ns(), deadline, "the err eventfd was never written");
	cr_assert_eq(v, 1);
	cr_assert_eq(sc_vq_stat(&qa.dev.vq, offsetof(struct sc_vq_stats, broken)), 1);

	cr_assert(blkq_get_id(&qb), "the other queue on the same sidecore is served");
	cr_assert(blkq_get_id(&qb));
	cr_assert(!sc_vq_broken(&qb.dev.vq));
	cr_assert_eq(read(qb.err_fd, &v, 8), -1);
	cr_assert_eq(sc_poller_detach(p, &qa.dev.pq), 0);
	cr_assert_eq(sc_poller_detach(p, &qb.dev.pq), 0);
	close(qa.err_fd);
	close(qb.err_fd);
	close(fd);
	sc_mem_fini(&mem);
}

/*
 * A SIGSEGV is contained only on an isolated region's reservation (a guest
 * page the IOMMU does not grant: test_iotlb's isolation_fault suite); any
 * other still kills the process as before, even inside a queue's ops on a
 * sidecore, where the guard is armed. As for SIGBUS, "as before" is the
 * default action, or AddressSanitizer's report.
 */
static void expect_child_dies_of_sigsegv(void (*child)(void))
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		child();
		_exit(0);   /* survived a SIGSEGV that is not ours */
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
#ifdef __SANITIZE_ADDRESS__
	cr_assert((WIFEXITED(st) && WEXITSTATUS(st) == 1) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT),
		  "the child should die in ASan's SIGSEGV report (status 0x%x)", st);
#else
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "the child should die of SIGSEGV (status 0x%x)", st);
#endif
}

/* A PROT_NONE page of our own, as a reservation is, but no isolated region's: a plain bug. */
static void sidecore_touches_a_page_no_region_reserved(void)
{
	void *m = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		_exit(3);
	fa.touch = m;
	start(SC_POLLER_NEVER_SLEEP, 0);
	if (sc_poller_attach(p, &fa.f.pq) < 0)
		_exit(4);
	usleep(2000000);   /* the sidecore touches it on its first round */
}

Test(fault, sigsegv_inside_a_queue_outside_any_reservation_still_kills)
{
	expect_child_dies_of_sigsegv(sidecore_touches_a_page_no_region_reserved);
}

/* An ungranted page of an isolated region, touched by a thread that is not serving a queue. */
static void plain_thread_touches_an_ungranted_page(void)
{
	struct sc_mem m;
	sc_mem_init(&m);
	int fd = sc_mem_memfd_create("iso", 1 << 16);
	if (fd < 0 || sc_mem_add_fd_isolated(&m, 0, 1 << 16, fd, 0, SC_PERM_RW) < 0)
		_exit(3);
	start(SC_POLLER_NEVER_SLEEP, 0);   /* the handlers are installed */
	(void)*(volatile uint8_t *)m.regions[0].hva;
}

Test(fault, sigsegv_on_an_ungranted_page_outside_a_queue_still_kills)
{
	expect_child_dies_of_sigsegv(plain_thread_touches_an_ungranted_page);
}
