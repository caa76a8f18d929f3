/* SPDX-License-Identifier: MIT */
/*
 * The sidecore thread. Hot path: poll every attached queue with a budget,
 * count the round as busy or idle from what the queues returned (SPDK's
 * thread_update_stats idea), and look at one atomic flag for control
 * commands. No lock, allocation or system call until it goes to sleep.
 */
#include "polling/polling.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/tsc.h"

enum cmd { CMD_NONE, CMD_ATTACH, CMD_DETACH, CMD_STOP };

struct sc_poller {
	/* sidecore-private */
	struct sc_pollq *queues[SC_POLLER_MAX_QUEUES];
	unsigned nqueues;
	unsigned budget;
	uint64_t idle_spin_cycles;
	int epfd;
	struct sc_poller_stats stats;   /* written by the sidecore only, read relaxed */

	/* control: the sidecore reads cmd_pending every round, the rest under lock */
	int cmd_pending;
	pthread_mutex_t serial;          /* one control caller at a time, for the whole command */
	pthread_mutex_t lock;            /* guards the slot; the sidecore takes it only for a command */
	pthread_cond_t done_cv;
	enum cmd cmd;
	struct sc_pollq *cmd_q;
	int cmd_result;
	bool cmd_done;
	int ctl_fd;                      /* eventfd that wakes a sleeping sidecore */

	int cpu;
	pthread_t thread;
	clockid_t cpu_clock;
	bool thread_ready;
	int start_error;
	const char *name;
};

static void stat_add(uint64_t *c, uint64_t v)
{
	/* Single writer: a plain add; the relaxed store keeps readers tear-free. */
	__atomic_store_n(c, *c + v, __ATOMIC_RELAXED);
}

static void drain(int fd)
{
	uint64_t v;
	/* Nonblocking eventfd: one read resets the counter; EAGAIN means already drained. */
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

/* ---- control commands, applied on the sidecore ---- */

static int apply_attach(struct sc_poller *p, struct sc_pollq *q)
{
	if (q->poller)
		return -EBUSY;
	if (p->nqueues == SC_POLLER_MAX_QUEUES)
		return -ENOSPC;
	if (q->kick_fd >= 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = q };
		if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, q->kick_fd, &ev) < 0)
			return -errno;
	}
	q->stopped = false;
	q->error = 0;
	q->poller = p;
	/* We poll from now on: the guest need not kick. */
	q->ops->notify_disable(q);
	p->queues[p->nqueues++] = q;
	__atomic_store_n(&p->stats.queues, p->nqueues, __ATOMIC_RELAXED);
	return 0;
}

static int apply_detach(struct sc_poller *p, struct sc_pollq *q)
{
	unsigned i;

	for (i = 0; i < p->nqueues && p->queues[i] != q; i++)
		;
	if (i == p->nqueues)
		return -ENOENT;
	if (q->kick_fd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
	/* Keep the order of the others: round robin stays fair across a detach. */
	memmove(&p->queues[i], &p->queues[i + 1], (p->nqueues - i - 1) * sizeof(p->queues[0]));
	p->nqueues--;
	if (q->stopped)
		__atomic_store_n(&p->stats.stopped_queues, p->stats.stopped_queues - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&p->stats.queues, p->nqueues, __ATOMIC_RELAXED);
	q->poller = NULL;
	return 0;
}

/* Returns false when told to stop. */
static bool handle_command(struct sc_poller *p)
{
	bool run = true;

	pthread_mutex_lock(&p->lock);
	switch (p->cmd) {
	case CMD_ATTACH: p->cmd_result = apply_attach(p, p->cmd_q); break;
	case CMD_DETACH: p->cmd_result = apply_detach(p, p->cmd_q); break;
	case CMD_STOP: run = false; p->cmd_result = 0; break;
	case CMD_NONE: break;
	}
	p->cmd = CMD_NONE;
	p->cmd_done = true;
	/* Release pairs with the acquire in the round: the next command is seen whole. */
	__atomic_store_n(&p->cmd_pending, 0, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->lock);
	return run;
}

/* Called from any thread but the sidecore; one command at a time. */
static int submit(struct sc_poller *p, enum cmd cmd, struct sc_pollq *q)
{
	static const uint64_t one = 1;
	int ret;

	/*
	 * Held until our result is read: otherwise a second caller could reuse
	 * the slot between the sidecore finishing our command and us waking.
	 */
	pthread_mutex_lock(&p->serial);
	pthread_mutex_lock(&p->lock);
	p->cmd = cmd;
	p->cmd_q = q;
	p->cmd_done = false;
	/* Pairs with the sidecore's acquire load of cmd_pending. */
	__atomic_store_n(&p->cmd_pending, 1, __ATOMIC_RELEASE);
	/*
	 * Wake it if it sleeps; harmless if it spins (drained on its next
	 * sleep). It can fail only if the counter is full, and then a wake-up
	 * is pending anyway.
	 */
	ssize_t w = write(p->ctl_fd, &one, sizeof(one));
	(void)w;
	while (!p->cmd_done)
		pthread_cond_wait(&p->done_cv, &p->lock);
	ret = p->cmd_result;
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->serial);
	return ret;
}

/* ---- the loop ---- */

/* One pass over every queue; returns the requests served. */
static unsigned poll_round(struct sc_poller *p)
{
	unsigned served = 0;

	for (unsigned i = 0; i < p->nqueues; i++) {
		struct sc_pollq *q = p->queues[i];
		if (q->stopped)
			continue;
		int n = q->ops->poll(q, p->budget);
		if (n < 0) {
			/* A broken queue breaks only itself: stop polling it, serve the rest. */
			q->stopped = true;
			q->error = n;
			__atomic_store_n(&p->stats.stopped_queues, p->stats.stopped_queues + 1, __ATOMIC_RELAXED);
			continue;
		}
		served += (unsigned)n;
	}
	return served;
}

/* Can every live queue wake us with a kick? */
static bool can_sleep(const struct sc_poller *p)
{
	for (unsigned i = 0; i < p->nqueues; i++)
		if (!p->queues[i]->stopped && p->queues[i]->kick_fd < 0)
			return false;
	return true;
}

static void notify_disable_all(struct sc_poller *p)
{
	for (unsigned i = 0; i < p->nqueues; i++)
		if (!p->queues[i]->stopped)
			p->queues[i]->ops->notify_disable(p->queues[i]);
}

/*
 * Re-arm notifications on every queue and re-check them (the SQPOLL
 * handshake: set "wake me", full barrier, look again; the barrier is inside
 * each queue's notify_enable). True if it is safe to sleep.
 */
static bool rearm(struct sc_poller *p)
{
	bool work = false;

	for (unsigned i = 0; i < p->nqueues; i++) {
		struct sc_pollq *q = p->queues[i];
		if (!q->stopped && q->ops->notify_enable(q))
			work = true;
	}
	if (work) {
		stat_add(&p->stats.rearm_races, 1);
		notify_disable_all(p);
	}
	return !work;
}

/* Sleep until a kick or a control command. */
static void sleep_on_kicks(struct sc_poller *p)
{
	struct epoll_event evs[64];
	uint64_t t0 = sc_rdtsc();
	int n;

	stat_add(&p->stats.sleeps, 1);
	do
		n = epoll_wait(p->epfd, evs, 64, -1);
	while (n < 0 && errno == EINTR);

	bool kicked = false;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			drain(p->ctl_fd);
		} else {
			drain(((struct sc_pollq *)evs[i].data.ptr)->kick_fd);
			kicked = true;
		}
	}
	if (kicked)
		stat_add(&p->stats.wakeups, 1);
	stat_add(&p->stats.sleep_cycles, sc_rdtsc() - t0);
	notify_disable_all(p);
}

static void *poller_main(void *arg)
{
	struct sc_poller *p = arg;
	uint64_t last_work, t;

	pthread_mutex_lock(&p->lock);
	if (p->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(p->cpu, &set);
		p->start_error = -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	pthread_getcpuclockid(pthread_self(), &p->cpu_clock);
	p->thread_ready = true;
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->lock);
	if (p->start_error)
		return NULL;

	last_work = t = sc_rdtsc();
	for (;;) {
		/* Acquire pairs with the release in submit(): the command slot is complete. */
		if (__atomic_load_n(&p->cmd_pending, __ATOMIC_ACQUIRE) && !handle_command(p))
			break;

		unsigned served = poll_round(p);
		uint64_t now = sc_rdtsc();
		stat_add(served ? &p->stats.busy_cycles : &p->stats.idle_cycles, now - t);
		stat_add(&p->stats.rounds, 1);
		t = now;
		if (served) {
			stat_add(&p->stats.requests, served);
			last_work = now;
			continue;
		}
		if (now - last_work < p->idle_spin_cycles || !can_sleep(p)) {
			sc_cpu_relax();
			continue;
		}
		if (rearm(p)) {
			if (!__atomic_load_n(&p->cmd_pending, __ATOMIC_ACQUIRE))
				sleep_on_kicks(p);
			else
				notify_disable_all(p);   /* a command first; we keep polling after it */
		}
		t = last_work = sc_rdtsc();
	}

	/* Let go of every queue: they belong to their devices again. */
	for (unsigned i = 0; i < p->nqueues; i++)
		p->queues[i]->poller = NULL;
	p->nqueues = 0;
	return NULL;
}

int sc_poller_create(const struct sc_poller_config *cfg, struct sc_poller **out)
{
	struct sc_poller *p;
	int ret;

	/*
	 * Whether the cpu is one we may use is the kernel's answer to the
	 * thread pinning itself (cgroups, offline cpus), not the caller's own
	 * affinity, which may already be pinned elsewhere.
	 */
	if (cfg->cpu < -1 || cfg->cpu >= CPU_SETSIZE)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cpu = cfg->cpu;
	p->budget = cfg->budget ? cfg->budget : SC_POLLER_DEFAULT_BUDGET;
	p->idle_spin_cycles = cfg->idle_spin_ns == SC_POLLER_NEVER_SLEEP ? UINT64_MAX
			      : sc_ns_to_cycles(cfg->idle_spin_ns);
	p->name = cfg->name ? cfg->name : "sidecore";
	pthread_mutex_init(&p->serial, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->done_cv, NULL);

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->epfd < 0 || p->ctl_fd < 0) {
		ret = -errno;
		goto err;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->ctl_fd, &ev) < 0) {
		ret = -errno;
		goto err;
	}
	ret = -pthread_create(&p->thread, NULL, poller_main, p);
	if (ret)
		goto err;
	pthread_setname_np(p->thread, p->name);

	pthread_mutex_lock(&p->lock);
	while (!p->thread_ready)
		pthread_cond_wait(&p->done_cv, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (p->start_error) {
		ret = p->start_error;
		pthread_join(p->thread, NULL);
		goto err;
	}
	*out = p;
	return 0;
err:
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->ctl_fd >= 0)
		close(p->ctl_fd);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->serial);
	free(p);
	return ret;
}

void sc_poller_destroy(struct sc_poller *p)
{
	if (!p)
		return;
	submit(p, CMD_STOP, NULL);
	pthread_join(p->thread, NULL);
	close(p->epfd);
	close(p->ctl_fd);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->serial);
	free(p);
}

int sc_poller_attach(struct sc_poller *p, struct sc_pollq *q)
{
	return submit(p, CMD_ATTACH, q);
}

int sc_poller_detach(struct sc_poller *p, struct sc_pollq *q)
{
	return submit(p, CMD_DETACH, q);
}

void sc_poller_get_stats(struct sc_poller *p, struct sc_poller_stats *st)
{
	const uint64_t *src = (const uint64_t *)&p->stats;
	uint64_t *dst = (uint64_t *)st;

	/* Field by field, tear-free; the set is not a snapshot of one instant. */
	for (size_t i = 0; i < offsetof(struct sc_poller_stats, queues) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	st->queues = __atomic_load_n(&p->stats.queues, __ATOMIC_RELAXED);
	st->stopped_queues = __atomic_load_n(&p->stats.stopped_queues, __ATOMIC_RELAXED);
}

uint64_t sc_poller_cpu_time_ns(struct sc_poller *p)
{
	struct timespec ts;

	if (clock_gettime(p->cpu_clock, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int sc_poller_cpu(const struct sc_poller *p)
{
	return p->cpu;
}
