/* SPDX-License-Identifier: MIT */
/*
 * polling: the sidecore thread.
 *
 * One thread per sidecore, pinned to its cpu, serves many queues
 * round-robin with a budget per queue per round, so no queue can starve
 * another. A turn is bounded in time too (turn_ns): a device whose requests
 * are expensive (a copy on the sidecore) ends its turn once it has spent
 * that long, as Linux vhost bounds a turn by packets and bytes
 * (vhost_exceeds_weight), so a quiet queue waits at most about one turn per
 * busy neighbour, however cheap the neighbour's requests are to queue.
 * While work arrives it spins (with pause) and the guest is told not
 * to notify. After idle_spin_ns without work it re-arms every queue's
 * notifications, re-checks the rings (closing the race with a guest that
 * published just before it saw the re-arm), and only then sleeps on the
 * queues' kick eventfds. A kick wakes it; it disables notifications and
 * polls again.
 *
 * Queues are attached and detached from other threads; both calls return
 * only once the sidecore has taken or let go of the queue, so a detached
 * queue may be torn down immediately.
 *
 * Faults: guest memory is a front end's file, which it can shrink under
 * us. A SIGBUS while the sidecore is inside a queue's ops (the fault
 * address is kernel-reported, si_code > 0) stops that queue only, with a
 * reason naming the address (ops->fault), and the sidecore goes on. The
 * cost is a pointer store per queue per round (one sigsetjmp per run of
 * the loop, again only after a fault); no system call. A SIGBUS anywhere else (another thread, poller
 * code between queues, a kill) behaves as if the handler were not there.
 * A SIGSEGV is contained the same way only where its address lies in an
 * isolated region's reservation (guestmem's sc_mem_isolated_at: a guest
 * page the IOMMU does not grant the device, so a device-model bug); inside
 * sc_fault_try it fails that call alone (-EACCES). Any other SIGSEGV, on
 * any thread, takes its default action (or the handler there before us).
 * The handlers are installed process-wide by the first sc_poller_create.
 */
#ifndef SC_POLLING_H
#define SC_POLLING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sc_pollq;

/* What the poller needs from a device queue. Called on the sidecore only. */
struct sc_pollq_ops {
	/*
	 * Serve up to budget requests. Returns how many were served (0: the
	 * queue had nothing), or a negative errno if the queue is broken; the
	 * poller then stops polling it until it is detached.
	 */
	int (*poll)(struct sc_pollq *q, unsigned budget);
	/* Re-arm guest notifications; true if work is already waiting. */
	bool (*notify_enable)(struct sc_pollq *q);
	/* Tell the guest not to notify: we are polling. */
	void (*notify_disable)(struct sc_pollq *q);
	/*
	 * Optional. Guest memory faulted (SIGBUS, or SIGSEGV on a page the
	 * IOMMU does not grant: polling.h "Faults") inside one of the calls above;
	 * the call was abandoned where it faulted, and the poller stops the
	 * queue. Mark the queue broken with reason (and touch no guest memory).
	 * NULL: the poller logs "sidecore: NAME: queue stopped: REASON" itself.
	 */
	void (*fault)(struct sc_pollq *q, const char *reason);
};

/* A queue as the poller sees it; owned by the device, linked by the poller. */
struct sc_pollq {
	const struct sc_pollq_ops *ops;
	void *ctx;            /* the device's own queue state */
	int kick_fd;          /* eventfd the guest kicks, or -1 (then the poller never sleeps while it is attached) */
	const char *name;
	/*
	 * Set by the poller when it takes the queue, read by the device's poll
	 * on the sidecore: the TSC cycles a turn may take. A device whose
	 * requests cost real time reads the TSC once it has done some work and
	 * ends the turn (leaving the rest for the next round) once this much
	 * has passed; it always serves at least one request per turn (blk pays
	 * back an overrun with turns that copy nothing). Devices with cheap
	 * requests may ignore it: the budget bounds them.
	 */
	uint64_t turn_cycles;
	/* private to the poller */
	struct sc_poller *poller;
	bool stopped;         /* poll() failed or faulted; skipped until detached */
	int error;            /* what poll() returned when it failed; -EFAULT after a SIGBUS */
};

struct sc_poller_config {
	int cpu;              /* pin to this cpu; -1 leaves the thread unpinned */
	unsigned budget;      /* requests per queue per round; 0 means 32 */
	/*
	 * Spin this long with no work before re-arming notifications and
	 * sleeping. 0 sleeps as soon as the queues are empty (the classic
	 * vhost/ioeventfd model); SC_POLLER_NEVER_SLEEP never sleeps.
	 */
	uint64_t idle_spin_ns;
	/*
	 * How long one queue's turn may take, in ns (sc_pollq.turn_cycles);
	 * 0 means SC_POLLER_DEFAULT_TURN_NS. The budget still caps it in requests.
	 */
	uint64_t turn_ns;
	const char *name;     /* thread name (15 chars shown) */
};

#define SC_POLLER_DEFAULT_BUDGET 32
#define SC_POLLER_DEFAULT_IDLE_NS 200000ull  /* 200 µs */
/*
 * 2 µs: a few 512-byte tmpfs reads (0.5-2 µs each on our machines). Beside
 * a QD128 flood of them, quiet 4 KiB readers' p50 went from 63-116 µs to
 * 10-14 µs (sidecore-bench fairness, 2026-11-30); 1 µs bought under 1 µs
 * more, 5 µs cost 3-4 µs.
 */
#define SC_POLLER_DEFAULT_TURN_NS 2000ull
#define SC_POLLER_NEVER_SLEEP UINT64_MAX
#define SC_POLLER_MAX_QUEUES 256

/* Per-sidecore counters. Cycles are TSC cycles. */
struct sc_poller_stats {
	uint64_t busy_cycles;    /* rounds that served at least one request */
	uint64_t idle_cycles;    /* rounds that found nothing (spinning) */
	uint64_t sleep_cycles;   /* asleep on the kick eventfds */
	uint64_t rounds;
	uint64_t requests;
	uint64_t sleeps;
	uint64_t wakeups;        /* woken by a guest kick (not by control) */
	uint64_t rearm_races;    /* re-arm found work already waiting: no sleep */
	uint64_t faults;         /* queues stopped by a fault on guest memory (SIGBUS, or SIGSEGV below) */
	uint64_t isolation_faults; /* touches of guest pages the IOMMU does not grant (failed requests, stopped queues) */
	uint32_t queues;         /* attached now */
	uint32_t stopped_queues; /* attached but broken */
};

struct sc_poller;

/*
 * Start a sidecore thread. Returns 0 and *out, -EINVAL if cfg->cpu is not
 * a cpu this process may run on, or -errno from thread or fd creation.
 */
int sc_poller_create(const struct sc_poller_config *cfg, struct sc_poller **out);

/* Stop the thread (it lets go of every queue first) and free the poller. */
void sc_poller_destroy(struct sc_poller *p);

/*
 * Hand q to the sidecore. Returns once the sidecore is polling it: 0,
 * -EBUSY if q is attached somewhere, -ENOSPC if the poller is full, or
 * epoll_ctl's -errno for a bad kick_fd (which the poller sets O_NONBLOCK,
 * so draining it can never block the sidecore). Any thread but the
 * sidecore's (-EDEADLK from the sidecore itself).
 */
int sc_poller_attach(struct sc_poller *p, struct sc_pollq *q);

/*
 * Take q back. Returns once the sidecore no longer touches q (it is then
 * safe to free): 0, or -ENOENT if q is not attached to p.
 * Any thread but the sidecore's (-EDEADLK from the sidecore itself).
 */
int sc_poller_detach(struct sc_poller *p, struct sc_pollq *q);

/*
 * Run fn(arg) on the calling thread with a fault on guest memory contained
 * as on a sidecore (a SIGBUS, or a SIGSEGV on an ungranted page of an
 * isolated region): for the control thread's own touches of a front end's
 * memory (a ring's set-up, finishing a stopped queue's requests). Returns
 * 0, or -EFAULT if fn faulted: it was abandoned where it faulted (it must
 * leave its state safe to clean up from any point), and reason says where
 * and which, as the sidecore's fault reason does. SIGBUS and SIGSEGV are
 * unblocked for the call.
 * Any thread but a sidecore; a system call or two, not for a hot path.
 */
int sc_fault_guard_run(void (*fn)(void *arg), void *arg, char *reason, size_t len);

/*
 * Run fn(arg) with a SIGBUS at an address in [base, base + len) contained
 * to this call: fn is abandoned where it faulted and the call returns
 * -EFAULT (for a device's own memory mappings, e.g. a disk file that can be
 * truncated under us: the request fails, the queue goes on). A SIGSEGV on
 * an isolated region's page the IOMMU does not grant, at any address, is
 * this call's too: -EACCES, counted (sc_poller_stats.isolation_faults) and
 * logged (one line, then at each power of two), since the memory is whole
 * and only the request touched what it should not. Any other fault goes
 * where it would have gone without this call (on a sidecore: the queue's
 * guest-memory fault, which stops the queue). Returns 0 if fn finished. On
 * a sidecore inside a queue's ops it costs one sigsetjmp and no system
 * call (a hot path may use it); on any other thread it is
 * sc_fault_guard_run's cost, and a SIGBUS elsewhere is -EFAULT too.
 */
int sc_fault_try(void (*fn)(void *arg), void *arg, const void *base, size_t len);

/* A consistent-enough snapshot of the counters, from any thread. */
void sc_poller_get_stats(struct sc_poller *p, struct sc_poller_stats *st);

/* CPU time the sidecore thread has used, in ns (from its thread clock). */
uint64_t sc_poller_cpu_time_ns(struct sc_poller *p);

/* The cpu the sidecore is pinned to, or -1 if it is not pinned. */
int sc_poller_cpu(const struct sc_poller *p);

#endif
