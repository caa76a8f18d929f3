/* SPDX-License-Identifier: MIT */
/*
 * The sidecore thread. Hot path: poll every attached queue with a budget,
 * count the round as busy or idle from what the queues returned (SPDK's
 * thread_update_stats idea), and look at one atomic flag for control
 * commands. No lock, allocation or system call until it goes to sleep.
 */
#include "polling/polling.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "guestmem/guestmem.h"

/* Larger than any kernel's NR_CPUS (8192): a bound on the mask we allocate, not a policy. */
#define POLLER_MAX_CPU 65536
/* Ready fds handled per wake-up; more stay readable and wake the next epoll_wait. */
#define POLLER_MAX_EVENTS 64

enum cmd { CMD_NONE, CMD_ATTACH, CMD_DETACH, CMD_STOP };

/*
 * Where a fault on guest memory goes (a SIGBUS, or a SIGSEGV on an isolated
 * region's reservation). One per sidecore thread; armed (q != NULL) only
 * while the sidecore is inside a queue's ops.
 */
struct fault_guard {
	struct sc_pollq *volatile q;   /* the queue being served; the handler reads it */
	sigjmp_buf *volatile jb;       /* where the handler jumps: loop_jb, or a control command's */
	void *addr;                    /* what faulted */
	int sig;                       /* SIGBUS, or SIGSEGV: a page no IOMMU entry grants */
	uint64_t *isolation_faults;    /* the sidecore's counter; NULL in a guard of sc_fault_guard_run's */
	sigjmp_buf loop_jb;            /* set once per run of the loop (poller_run) */
};

struct sc_poller {
	/* sidecore-private, read every round */
	struct fault_guard guard;
	struct sc_pollq *queues[SC_POLLER_MAX_QUEUES];
	unsigned nqueues;
	unsigned budget;
	uint64_t turn_cycles;           /* given to each queue at attach (sc_pollq.turn_cycles) */
	uint64_t idle_spin_cycles;      /* UINT64_MAX: never sleep */
	int epfd;
	struct sc_poller_stats stats;   /* written by the sidecore only, read relaxed */

	/* control: the sidecore reads cmd_pending every round, the rest under lock */
	sc_cache_aligned int cmd_pending;
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
	char name[16];                   /* the kernel keeps 15 chars and a NUL */
};

static void stat_add(uint64_t *c, uint64_t v)
{
	/* Single writer: a plain add; the relaxed store keeps readers tear-free. */
	__atomic_store_n(c, *c + v, __ATOMIC_RELAXED);
}

static void stat_set32(uint32_t *c, uint32_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

static void drain(int fd)
{
	uint64_t v;
	/*
	 * Every fd we read is nonblocking (ours by creation, kick fds since
	 * attach), so a counter someone else reset cannot park the sidecore
	 * here. One read resets an eventfd; EAGAIN means already drained.
	 */
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

/* ---- control commands, applied on the sidecore ---- */

static void notify_disable_one(struct sc_poller *p, struct sc_pollq *q);

static int apply_attach(struct sc_poller *p, struct sc_pollq *q)
{
	if (p->nqueues == SC_POLLER_MAX_QUEUES)
		return -ENOSPC;
	if (q->kick_fd >= 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = q };
		if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, q->kick_fd, &ev) < 0)
			return -errno;
		/*
		 * The drain after a wake-up must never block the sidecore. The
		 * flag is shared with the kicker's descriptor; an eventfd writer
		 * (QEMU's notifiers are nonblocking already, KVM's ioeventfd
		 * signals in the kernel) is not affected by it.
		 */
		int fl = fcntl(q->kick_fd, F_GETFL);
		if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(q->kick_fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
			int err = -errno;
			epoll_ctl(p->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
			return err;
		}
	}
	q->stopped = false;
	q->error = 0;
	/* Written here, on the sidecore, before its first poll: the device reads it there. */
	q->turn_cycles = p->turn_cycles;
	p->queues[p->nqueues++] = q;
	stat_set32(&p->stats.queues, p->nqueues);
	/* We poll from now on: the guest need not kick. */
	notify_disable_one(p, q);
	return 0;
}

static int apply_detach(struct sc_poller *p, struct sc_pollq *q)
{
	unsigned i;

	for (i = 0; i < p->nqueues && p->queues[i] != q; i++)
		;
	if (i == p->nqueues)
		return -ENOENT;
	/* A stopped queue left the epoll set when it stopped. */
	if (q->kick_fd >= 0 && !q->stopped)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
	/* Keep the order of the others: round robin stays fair across a detach. */
	memmove(&p->queues[i], &p->queues[i + 1], (p->nqueues - i - 1) * sizeof(p->queues[0]));
	p->nqueues--;
	if (q->stopped)
		stat_set32(&p->stats.stopped_queues, p->stats.stopped_queues - 1);
	stat_set32(&p->stats.queues, p->nqueues);
	/*
	 * Release pairs with the acquire load in sc_poller_attach: whoever
	 * sees NULL sees every store the sidecore made to q before it.
	 */
	__atomic_store_n(&q->poller, NULL, __ATOMIC_RELEASE);
	return 0;
}

/* Returns false when told to stop. */
static bool handle_command(struct sc_poller *p)
{
	bool run = true;

	pthread_mutex_lock(&p->lock);
	/*
	 * submit() wrote ctl_fd under this lock, so its wake-up is consumed
	 * here and a later sleep is not cut short by a command already done.
	 */
	drain(p->ctl_fd);
	switch (p->cmd) {
	case CMD_ATTACH: p->cmd_result = apply_attach(p, p->cmd_q); break;
	case CMD_DETACH: p->cmd_result = apply_detach(p, p->cmd_q); break;
	case CMD_STOP: run = false; p->cmd_result = 0; break;
	case CMD_NONE: break;
	}
	p->cmd = CMD_NONE;
	p->cmd_done = true;
	/*
	 * Relaxed is enough: cleared under the lock, before the next caller
	 * (who takes the lock after us) can set it again.
	 */
	__atomic_store_n(&p->cmd_pending, 0, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->lock);
	return run;
}

/* Called from any thread but the sidecore; one command at a time. */
static int submit(struct sc_poller *p, enum cmd cmd, struct sc_pollq *q)
{
	static const uint64_t one = 1;
	int ret;

	/* The sidecore would wait on itself for ever. */
	if (pthread_equal(pthread_self(), p->thread))
		return -EDEADLK;
	/*
	 * Held until our result is read: otherwise a second caller could reuse
	 * the slot between the sidecore finishing our command and us waking.
	 */
	pthread_mutex_lock(&p->serial);
	pthread_mutex_lock(&p->lock);
	p->cmd = cmd;
	p->cmd_q = q;
	p->cmd_done = false;
	/*
	 * Release pairs with the sidecore's acquire load of cmd_pending at the
	 * top of each round; it then takes the lock, which orders the slot.
	 */
	__atomic_store_n(&p->cmd_pending, 1, __ATOMIC_RELEASE);
	/*
	 * Wake it if it sleeps; a spinning sidecore sees the flag first and
	 * drains this in handle_command. It fails only if the counter is
	 * full, and then a wake-up is pending anyway.
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

/* A broken queue breaks only itself: stop polling it, serve the rest. */
static void stop_queue(struct sc_poller *p, struct sc_pollq *q, int err)
{
	q->stopped = true;
	q->error = err;
	/*
	 * Off the epoll set too, so a guest that keeps kicking a broken queue
	 * cannot keep the sidecore awake. A syscall, but on the error path.
	 */
	if (q->kick_fd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
	/* Release: pairs with sc_poller_get_stats's acquire, after the fault counts. */
	__atomic_store_n(&p->stats.stopped_queues, p->stats.stopped_queues + 1, __ATOMIC_RELEASE);
}

/* ---- faults on guest memory ---- */

static __thread struct fault_guard *tls_guard;   /* this thread's, if it is a sidecore */
static struct sigaction sigbus_prev, sigsegv_prev;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static uint64_t isolation_faults_seen;   /* process-wide, for the log line's rate */

/*
 * A fault (si_code > 0, not a kill) on guest memory while this thread is
 * inside a queue's ops (or a guarded call) jumps back to its guard: any
 * SIGBUS, and a SIGSEGV only on an isolated region's reservation (a page
 * the IOMMU does not grant: a device-model bug, not the memory's). Anything
 * else gets what it would have got without us.
 */
static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	struct fault_guard *g = tls_guard;
	const struct sigaction *prev = sig == SIGBUS ? &sigbus_prev : &sigsegv_prev;

	if (g && g->q && si->si_code > 0 && (sig == SIGBUS || sc_mem_isolated_at(si->si_addr))) {
		g->addr = si->si_addr;
		g->sig = sig;
		siglongjmp(*g->jb, 1);
	}
	if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
		prev->sa_sigaction(sig, si, uc);
		return;
	}
	if (!(prev->sa_flags & SA_SIGINFO) && prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
		prev->sa_handler(sig);
		return;
	}
	/* The default action: a fault re-executes the access and dies of it; a kill is sent again. */
	signal(sig, SIG_DFL);
	if (si->si_code <= 0)
		raise(sig);
}

static void fault_install(void)
{
	/*
	 * NODEFER: the walk leaves the handler by siglongjmp without restoring
	 * a mask (sigsetjmp(jb, 0) saves none: no system call per round), so
	 * the signal must not stay blocked for the next fault.
	 */
	struct sigaction sa = { .sa_sigaction = fault_handler, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &sigbus_prev);
	sigaction(SIGSEGV, &sa, &sigsegv_prev);
}

/* The faults a guard takes, unblocked: a blocked one from a fault kills the process whatever the handler. */
static void fault_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGBUS);
	sigaddset(set, SIGSEGV);
}

static void fault_reason(char *reason, size_t len, int sig, void *addr)
{
	if (sig == SIGSEGV)
		snprintf(reason, len, "SIGSEGV at %p: the device touched guest memory its IOMMU does not grant; reset it",
			 addr);
	else
		snprintf(reason, len,
			 "SIGBUS at %p: its guest memory shrank or failed under the sidecore; reset the device", addr);
}

/* After a fault in the ops of guard.q: stop that queue, with the reason. */
static void queue_faulted(struct sc_poller *p)
{
	struct sc_pollq *q = p->guard.q;
	char reason[112];

	p->guard.q = NULL;
	fault_reason(reason, sizeof(reason), p->guard.sig, p->guard.addr);
	/*
	 * Counted, then stopped, then reported: a stats reader that sees the
	 * queue stopped sees its fault counted (sc_poller_get_stats loads
	 * stopped_queues first), and whoever hears of the fault finds the
	 * queue stopped.
	 */
	stat_add(&p->stats.faults, 1);
	if (p->guard.sig == SIGSEGV)
		stat_add(&p->stats.isolation_faults, 1);
	stop_queue(p, q, -EFAULT);
	if (q->ops->fault)
		q->ops->fault(q, reason);
	else
		fprintf(stderr, "sidecore: %s: queue stopped: %s\n", q->name ? q->name : "unnamed queue", reason);
}

/* fn(arg) under a guard of its own; 0, or the signal that abandoned it at *addr. */
static int guard_run(void (*fn)(void *arg), void *arg, void **addr)
{
	static struct sc_pollq armed;   /* the handler only needs guard.q non-NULL here */
	struct fault_guard g = { .q = NULL };
	struct fault_guard *prev = tls_guard;
	sigjmp_buf jb;
	sigset_t faults, old;

	pthread_once(&fault_once, fault_install);
	fault_signals(&faults);
	pthread_sigmask(SIG_UNBLOCK, &faults, &old);
	g.jb = &jb;
	tls_guard = &g;
	if (sigsetjmp(jb, 0)) {
		/* Back from the handler (it disarmed nothing): fn was abandoned where it faulted. */
		volatile struct fault_guard *vg = &g;
		g.q = NULL;
		tls_guard = prev;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		*addr = vg->addr;
		return vg->sig;
	}
	g.q = &armed;
	fn(arg);
	g.q = NULL;
	tls_guard = prev;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return 0;
}

int sc_fault_guard_run(void (*fn)(void *arg), void *arg, char *reason, size_t len)
{
	void *addr;
	int sig = guard_run(fn, arg, &addr);

	if (!sig)
		return 0;
	fault_reason(reason, len, sig, addr);
	return -EFAULT;
}

static bool addr_in(const void *addr, const void *base, size_t len)
{
	return (uintptr_t)addr - (uintptr_t)base < len;
}

/*
 * A call of sc_fault_try touched a page the IOMMU does not grant: one line
 * for the first and then at each power of two (a device bug can repeat on
 * every request; the sidecore's stats count them all).
 */
static int isolation_fault(const char *queue, const void *addr)
{
	uint64_t n = __atomic_add_fetch(&isolation_faults_seen, 1, __ATOMIC_RELAXED);

	if (!(n & (n - 1)))
		fprintf(stderr, "sidecore: %s: a request touched guest memory at %p that the IOMMU does not grant "
			"(iommu_isolation); the request failed, the queue goes on: a device-model bug, please report "
			"it (%llu so far)\n", queue ? queue : "unnamed queue", addr, (unsigned long long)n);
	return -EACCES;
}

int sc_fault_try(void (*fn)(void *arg), void *arg, const void *base, size_t len)
{
	struct fault_guard *g = tls_guard;
	sigjmp_buf here;

	if (!g || !g->q) {
		/* Not on a guarded sidecore: a guard of our own (system calls; not a hot path). */
		void *addr;
		int sig = guard_run(fn, arg, &addr);
		return sig == SIGSEGV ? isolation_fault("control thread", addr) : sig ? -EFAULT : 0;
	}
	sigjmp_buf *volatile outer = g->jb;
	if (sigsetjmp(here, 0)) {
		g->jb = outer;
		if (g->sig == SIGSEGV) {
			/* The request's own touch, whatever the address: it fails, its memory is whole. */
			if (g->isolation_faults)
				stat_add(g->isolation_faults, 1);
			return isolation_fault(g->q->name, g->addr);
		}
		if (addr_in(g->addr, base, len))
			return -EFAULT;
		/* Not ours (guest memory, say): on to the outer guard, as if we were not here (g->q is still armed). */
		siglongjmp(*outer, 1);
	}
	g->jb = &here;
	fn(arg);
	g->jb = outer;
	return 0;
}

/* ---- the loop ---- */

/* One pass over every queue; returns the requests served. */
static uint64_t poll_round(struct sc_poller *p)
{
	uint64_t served = 0;

	for (unsigned i = 0; i < p->nqueues; i++) {
		struct sc_pollq *q = p->queues[i];
		if (q->stopped)
			continue;
		p->guard.q = q;   /* a SIGBUS from here on is this queue's (poller_run) */
		int n = q->ops->poll(q, p->budget);
		if (sc_unlikely(n < 0)) {
			stop_queue(p, q, n);
			continue;
		}
		served += (unsigned)n;
	}
	p->guard.q = NULL;
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

/* Re-arm (enable) or silence every live queue; true if a re-arm found work waiting. */
static bool notify_all(struct sc_poller *p, bool enable)
{
	bool work = false;

	for (unsigned i = 0; i < p->nqueues; i++) {
		struct sc_pollq *q = p->queues[i];
		if (q->stopped)
			continue;
		p->guard.q = q;
		if (!enable)
			q->ops->notify_disable(q);
		else if (q->ops->notify_enable(q))
			work = true;
	}
	p->guard.q = NULL;
	return work;
}

static void notify_disable_all(struct sc_poller *p)
{
	notify_all(p, false);
}

/*
 * One queue's notify_disable, at attach: inside a control command, under
 * its lock, so a fault must not jump out to the loop (the lock would stay
 * held). It jumps back here instead, and the caller drops the lock.
 */
static __attribute__((noinline)) void notify_disable_one(struct sc_poller *p, struct sc_pollq *q)
{
	sigjmp_buf here;

	p->guard.jb = &here;
	if (sc_unlikely(sigsetjmp(here, 0))) {
		p->guard.jb = &p->guard.loop_jb;
		queue_faulted(p);
		return;
	}
	p->guard.q = q;
	q->ops->notify_disable(q);
	p->guard.q = NULL;
	p->guard.jb = &p->guard.loop_jb;
}

/*
 * Re-arm notifications on every queue and re-check them (the SQPOLL
 * handshake: set "wake me", full barrier, look again; the barrier is inside
 * each queue's notify_enable, paired with the one the guest executes between
 * publishing work and reading the flag). True if it is safe to sleep.
 */
static bool rearm(struct sc_poller *p)
{
	bool work = notify_all(p, true);

	if (work) {
		stat_add(&p->stats.rearm_races, 1);
		notify_disable_all(p);
	}
	return !work;
}

/* Sleep until a kick or a control command; returns the TSC at wake-up. */
static uint64_t sleep_on_kicks(struct sc_poller *p)
{
	struct epoll_event evs[POLLER_MAX_EVENTS];
	uint64_t t0 = sc_rdtsc(), t1;
	bool kicked = false;
	int n;

	stat_add(&p->stats.sleeps, 1);
	do
		n = epoll_wait(p->epfd, evs, POLLER_MAX_EVENTS, -1);
	while (n < 0 && errno == EINTR);
	t1 = sc_rdtsc();

	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			/*
			 * A command. submit() set cmd_pending before writing, so
			 * the next round sees it even if this read takes the write.
			 */
			drain(p->ctl_fd);
			continue;
		}
		drain(((struct sc_pollq *)evs[i].data.ptr)->kick_fd);
		kicked = true;
	}
	if (kicked)
		stat_add(&p->stats.wakeups, 1);
	stat_add(&p->stats.sleep_cycles, t1 - t0);
	notify_disable_all(p);
	return t1;
}

/* The loop proper, until told to stop. Not inlined: after a fault it starts afresh, in its own frame. */
static __attribute__((noinline)) void poller_loop(struct sc_poller *p)
{
	uint64_t last_work, t;

	last_work = t = sc_rdtsc();
	for (;;) {
		/* Acquire pairs with the release store in submit(). */
		if (sc_unlikely(__atomic_load_n(&p->cmd_pending, __ATOMIC_ACQUIRE)) && !handle_command(p))
			return;

		uint64_t served = poll_round(p);
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
		if (!rearm(p)) {
			/* Work arrived while we re-armed: poll it, and spin a full window again. */
			last_work = sc_rdtsc();
			continue;
		}
		if (__atomic_load_n(&p->cmd_pending, __ATOMIC_ACQUIRE)) {
			/* Pairs with submit()'s release: a command first, then we keep polling. */
			notify_disable_all(p);
			last_work = sc_rdtsc();
			continue;
		}
		/* The re-arm counts as idle time; the sleep has its own counter. */
		now = sc_rdtsc();
		stat_add(&p->stats.idle_cycles, now - t);
		t = last_work = sleep_on_kicks(p);
	}
}

/*
 * Run the loop with the fault guard armed: one sigsetjmp for as long as no
 * queue faults, so a round costs only the guard.q stores. A SIGBUS in a
 * queue's ops lands here: that queue is stopped and the loop starts again
 * (a fresh round; the interval that faulted is not counted busy or idle).
 */
static __attribute__((noinline)) void poller_run(struct sc_poller *p)
{
	p->guard.jb = &p->guard.loop_jb;
	if (sigsetjmp(p->guard.loop_jb, 0))
		queue_faulted(p);
	poller_loop(p);
}

static void *poller_main(void *arg)
{
	struct sc_poller *p = arg;

	pthread_mutex_lock(&p->lock);
	if (p->cpu >= 0) {
		size_t sz = CPU_ALLOC_SIZE(p->cpu + 1);
		cpu_set_t *set = CPU_ALLOC(p->cpu + 1);
		if (!set) {
			p->start_error = -ENOMEM;
		} else {
			CPU_ZERO_S(sz, set);
			CPU_SET_S(p->cpu, sz, set);
			/* The kernel says EINVAL for a cpu outside our cgroup or offline. */
			p->start_error = -pthread_setaffinity_np(pthread_self(), sz, set);
			CPU_FREE(set);
		}
	}
	/* Best effort: a name helps top and perf, but nothing depends on it. */
	pthread_setname_np(pthread_self(), p->name);
	if (!p->start_error)
		p->start_error = -pthread_getcpuclockid(pthread_self(), &p->cpu_clock);
	p->thread_ready = true;
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->lock);
	if (p->start_error)
		return NULL;
	/*
	 * The thread was created with every signal blocked; a fault on guest
	 * memory must reach our handler (a blocked SIGBUS from a fault kills
	 * the process). A kill -BUS that lands here still takes the default.
	 */
	p->guard.isolation_faults = &p->stats.isolation_faults;
	tls_guard = &p->guard;
	sigset_t faults;
	fault_signals(&faults);
	pthread_sigmask(SIG_UNBLOCK, &faults, NULL);

	poller_run(p);

	/* Let go of every queue: they belong to their devices again. */
	for (unsigned i = 0; i < p->nqueues; i++)
		__atomic_store_n(&p->queues[i]->poller, NULL, __ATOMIC_RELEASE);   /* pairs with attach's acquire */
	p->nqueues = 0;
	stat_set32(&p->stats.queues, 0);
	stat_set32(&p->stats.stopped_queues, 0);
	return NULL;
}

int sc_poller_create(const struct sc_poller_config *cfg, struct sc_poller **out)
{
	struct sc_poller *p;
	sigset_t all, old;
	int ret;

	/*
	 * Whether we may use the cpu is the kernel's answer when the thread
	 * pins itself (cgroup cpuset, online cpus), not the caller's own
	 * affinity: the caller is often pinned already, to the guest's cpu.
	 */
	if (cfg->cpu < -1 || cfg->cpu >= POLLER_MAX_CPU)
		return -EINVAL;
	pthread_once(&fault_once, fault_install);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->epfd = p->ctl_fd = -1;
	p->cpu = cfg->cpu;
	p->budget = cfg->budget ? cfg->budget : SC_POLLER_DEFAULT_BUDGET;
	/* As idle_spin_ns: past ~10^17 ns the product would overflow the cast (and means "no bound"). */
	uint64_t turn_ns = cfg->turn_ns ? cfg->turn_ns : SC_POLLER_DEFAULT_TURN_NS;
	p->turn_cycles = turn_ns >= (UINT64_MAX >> 6) ? UINT64_MAX : sc_ns_to_cycles(turn_ns);
	/* Converted once; past ~10^17 ns (years) the double product would overflow the cast. */
	p->idle_spin_cycles = cfg->idle_spin_ns >= (UINT64_MAX >> 6) ? UINT64_MAX
			      : sc_ns_to_cycles(cfg->idle_spin_ns);
	snprintf(p->name, sizeof(p->name), "%s", cfg->name ? cfg->name : "sidecore");
	pthread_mutex_init(&p->serial, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->done_cv, NULL);

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0) {
		ret = -errno;
		goto err;
	}
	p->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->ctl_fd < 0) {
		ret = -errno;
		goto err;
	}
	/* data.ptr NULL marks the control fd; queues use their own address. */
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->ctl_fd, &ev) < 0) {
		ret = -errno;
		goto err;
	}
	/*
	 * The sidecore starts with every signal blocked, so process-directed
	 * signals go to the service's other threads and never into the loop.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&p->thread, NULL, poller_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		goto err;

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
	if (p->ctl_fd >= 0)
		close(p->ctl_fd);
	if (p->epfd >= 0)
		close(p->epfd);
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
	close(p->ctl_fd);
	close(p->epfd);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->serial);
	free(p);
}

int sc_poller_attach(struct sc_poller *p, struct sc_pollq *q)
{
	struct sc_poller *none = NULL;
	int ret;

	/*
	 * Claim q before asking the sidecore, so two attaches of one queue
	 * (to this poller or another) cannot both win. Acquire pairs with the
	 * release store of NULL in apply_detach and at poller exit.
	 */
	if (!__atomic_compare_exchange_n(&q->poller, &none, p, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return -EBUSY;
	ret = submit(p, CMD_ATTACH, q);
	if (ret < 0)
		__atomic_store_n(&q->poller, NULL, __ATOMIC_RELEASE);
	return ret;
}

int sc_poller_detach(struct sc_poller *p, struct sc_pollq *q)
{
	return submit(p, CMD_DETACH, q);
}

/* A new counter must be added to the loads below, too. */
_Static_assert(sizeof(struct sc_poller_stats) == 10 * sizeof(uint64_t) + 2 * sizeof(uint32_t),
	       "sc_poller_get_stats copies every field of sc_poller_stats");

void sc_poller_get_stats(struct sc_poller *p, struct sc_poller_stats *st)
{
	const struct sc_poller_stats *s = &p->stats;

	/*
	 * Field by field, tear-free; the set is not a snapshot of one instant,
	 * but a stopped queue read here has its fault counted (queue_faulted).
	 */
	st->stopped_queues = __atomic_load_n(&s->stopped_queues, __ATOMIC_ACQUIRE);
#define LOAD(f) st->f = __atomic_load_n(&s->f, __ATOMIC_RELAXED)
	LOAD(busy_cycles);
	LOAD(idle_cycles);
	LOAD(sleep_cycles);
	LOAD(rounds);
	LOAD(requests);
	LOAD(sleeps);
	LOAD(wakeups);
	LOAD(rearm_races);
	LOAD(faults);
	LOAD(isolation_faults);
	LOAD(queues);
#undef LOAD
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
