/* SPDX-License-Identifier: MIT */
/*
 * The poll loop alone, with fake queues (a unit test of one module): a
 * queue is a counter of pending requests the test raises, a flag for
 * "guest notifications enabled", and a real eventfd as its kick fd.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "polling/polling.h"

struct fake {
	struct sc_pollq pq;
	uint64_t pending;          /* raised by the test */
	uint64_t served;           /* by the sidecore */
	uint64_t polls;
	uint64_t max_per_poll;
	int notify_on;             /* 1 after notify_enable, 0 after notify_disable */
	int race_once;             /* notify_enable reports work once */
	int fail_with;             /* poll returns this when nonzero */
	struct fake *other;        /* fairness probe: other's polls minus ours, seen when we are polled */
	int64_t gap_min, gap_max;
};

static int fake_poll(struct sc_pollq *q, unsigned budget)
{
	struct fake *f = q->ctx;
	if (f->other) {
		/* Read on the sidecore itself, so no test-thread timing skews it. */
		int64_t gap = (int64_t)(f->other->polls - f->polls);
		f->gap_min = gap < f->gap_min ? gap : f->gap_min;
		f->gap_max = gap > f->gap_max ? gap : f->gap_max;
	}
	__atomic_add_fetch(&f->polls, 1, __ATOMIC_RELAXED);
	if (f->fail_with)
		return f->fail_with;
	uint64_t p = __atomic_load_n(&f->pending, __ATOMIC_ACQUIRE);
	uint64_t n = p - f->served;
	if (n > budget)
		n = budget;
	if (n > f->max_per_poll)
		f->max_per_poll = n;
	__atomic_store_n(&f->served, f->served + n, __ATOMIC_RELEASE);
	return (int)n;
}

static bool fake_notify_enable(struct sc_pollq *q)
{
	struct fake *f = q->ctx;
	__atomic_store_n(&f->notify_on, 1, __ATOMIC_SEQ_CST);
	if (f->race_once) {
		f->race_once = 0;
		return true;
	}
	return __atomic_load_n(&f->pending, __ATOMIC_SEQ_CST) != f->served;
}

static void fake_notify_disable(struct sc_pollq *q)
{
	__atomic_store_n(&((struct fake *)q->ctx)->notify_on, 0, __ATOMIC_RELAXED);
}

static const struct sc_pollq_ops fake_ops = { fake_poll, fake_notify_enable, fake_notify_disable };

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->pq = (struct sc_pollq){ .ops = &fake_ops, .ctx = f, .name = "fake",
				   .kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) };
	cr_assert_geq(f->pq.kick_fd, 0);
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
	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want)
		if (now_ns() > deadline)
			return false;
		else
			usleep(100);
	return true;
}

static int last_cpu(void)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = CPU_SETSIZE - 1; c >= 0; c--)
		if (CPU_ISSET(c, &set))
			return c;
	return 0;
}

static struct sc_poller *p;
static struct fake a, b;

static void start(uint64_t idle_ns, unsigned budget)
{
	struct sc_poller_config c = { .cpu = last_cpu(), .idle_spin_ns = idle_ns, .budget = budget, .name = "sc-unit" };
	cr_assert_eq(sc_poller_create(&c, &p), 0);
	fake_init(&a);
	fake_init(&b);
}

static void teardown(void)
{
	sc_poller_destroy(p);
	p = NULL;
	close(a.pq.kick_fd);
	close(b.pq.kick_fd);
}

TestSuite(poller, .fini = teardown, .timeout = 20);

Test(poller, attached_queue_is_served)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(a.notify_on, 0, "attached queues poll: notifications off");
	__atomic_store_n(&a.pending, 100, __ATOMIC_RELEASE);
	cr_assert(wait_for(&a.served, 100));
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.requests, 100);
	cr_assert_eq(st.queues, 1);
	cr_assert_gt(st.busy_cycles, 0);
}

Test(poller, budget_per_queue_per_round)
{
	start(SC_POLLER_NEVER_SLEEP, 8);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	__atomic_store_n(&a.pending, 1000, __ATOMIC_RELEASE);
	cr_assert(wait_for(&a.served, 1000));
	cr_assert_eq(a.max_per_poll, 8);
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
	cr_assert(sc_poller_detach(p, &b.pq) == 0);
	/* Round robin: between two polls of b, a was polled exactly once, every round. */
	cr_assert_eq(b.gap_max - b.gap_min, 0, "a got %lld..%lld polls ahead of b",
		     (long long)b.gap_min, (long long)b.gap_max);
}

Test(poller, detach_returns_only_when_let_go)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert(wait_for(&a.polls, 10));
	cr_assert_eq(sc_poller_detach(p, &a.pq), 0);
	uint64_t polls = __atomic_load_n(&a.polls, __ATOMIC_ACQUIRE);
	usleep(20000);
	cr_assert_eq(__atomic_load_n(&a.polls, __ATOMIC_ACQUIRE), polls, "polled after detach returned");
	cr_assert_null(a.pq.poller);
}

Test(poller, attach_twice_is_busy)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), -EBUSY);
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
	close(a.pq.kick_fd);
	cr_assert_eq(sc_poller_attach(p, &a.pq), -EBADF);
	a.pq.kick_fd = eventfd(0, 0);   /* for teardown */
	__atomic_store_n(&b.pending, 5, __ATOMIC_RELEASE);
	fake_kick(&b);
	cr_assert(wait_for(&b.served, 5));
}

Test(poller, broken_queue_is_stopped_and_others_go_on)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	a.fail_with = -EIO;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	cr_assert_eq(sc_poller_attach(p, &b.pq), 0);
	__atomic_store_n(&b.pending, 20, __ATOMIC_RELEASE);
	cr_assert(wait_for(&b.served, 20));
	cr_assert_eq(__atomic_load_n(&a.polls, __ATOMIC_RELAXED), 1, "a failed queue is not polled again");
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.stopped_queues, 1);
	cr_assert_eq(a.pq.error, -EIO);
	cr_assert_eq(sc_poller_detach(p, &a.pq), 0);
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.stopped_queues, 0);
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

	__atomic_store_n(&a.pending, 3, __ATOMIC_RELEASE);
	fake_kick(&a);
	cr_assert(wait_for(&a.served, 3));
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.wakeups, 1);
	cr_assert_gt(st.sleep_cycles, 0);
}

Test(poller, work_found_while_rearming_prevents_the_sleep)
{
	start(0, 0);
	a.race_once = 1;
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	usleep(50000);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_geq(st.rearm_races, 1);
}

Test(poller, never_sleep_mode_never_sleeps)
{
	start(SC_POLLER_NEVER_SLEEP, 0);
	cr_assert_eq(sc_poller_attach(p, &a.pq), 0);
	usleep(100000);
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.sleeps, 0);
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
	a.pq.kick_fd = eventfd(0, 0);
}

Test(poller, bad_cpu_is_refused)
{
	struct sc_poller_config c = { .cpu = 99999 };
	struct sc_poller *q;
	cr_assert_eq(sc_poller_create(&c, &q), -EINVAL);
	c.cpu = -2;
	cr_assert_eq(sc_poller_create(&c, &q), -EINVAL);
	start(0, 0);   /* for teardown */
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
		memset(&c[i], 0, sizeof(c[i]));
		fake_init(&c[i].f);
		cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(c[i].failures, 0, "thread %d saw %d wrong results", i, c[i].failures);
		cr_assert_null(c[i].f.pq.poller);
		close(c[i].f.pq.kick_fd);
	}
	struct sc_poller_stats st;
	sc_poller_get_stats(p, &st);
	cr_assert_eq(st.queues, 0);
}
