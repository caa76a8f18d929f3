/* SPDX-License-Identifier: MIT */
/*
 * rebalance: when to move a queue from a busy sidecore to an idle one
 * ([sidecore] rebalance). The policy is one pure function over numbers the
 * caller measured (each sidecore's busy share over its last intervals, each
 * queue's requests in the last interval), so it is tested without threads;
 * sidecored samples the pollers every rebalance_interval_ms, calls it, and
 * moves the queue it names with sc_vu_blk_queue_move.
 *
 * A move is proposed only when it helps and will not be undone:
 * - the source has stayed hot (busy ≥ params.busy) and the target cold
 *   (busy ≤ params.idle) over each of the last params.intervals intervals;
 * - the source serves at least two queues with requests, so the queue that
 *   moves leaves work behind (moving a sidecore's only busy queue only
 *   moves the heat);
 * - the queue is movable (its device says sidecore = auto) and has not
 *   moved in the last params.cooldown intervals;
 * - given the queue's share of the source's busy time, the target does not
 *   end up busy - idle or more above the source: the move back, which
 *   needs the target hot and the source cold, is then ruled out as far as
 *   the shares predict (and the gap between the two narrows).
 * Of the queues that qualify, the one that leaves the two closest wins.
 * The caller forgets both sidecores' history after a move, so the next
 * decision about them rests on intervals measured after it.
 */
#ifndef SC_RUNTIME_REBALANCE_H
#define SC_RUNTIME_REBALANCE_H

#include <stdbool.h>
#include <stdint.h>

#define SC_REBALANCE_MAX_INTERVALS 16
#define SC_REBALANCE_COOLDOWN 10   /* intervals a queue that moved stays where it went */

struct sc_rebalance_params {
	double busy;          /* hot: busy share at or above this (0..1) ... */
	double idle;          /* cold: busy share at or below this ... */
	unsigned intervals;   /* ... over each of this many last intervals, 1..SC_REBALANCE_MAX_INTERVALS */
	unsigned cooldown;    /* intervals a queue that moved may not move again */
};

/* A sidecore's recent busy shares. */
struct sc_rebalance_core {
	double busy[SC_REBALANCE_MAX_INTERVALS];   /* newest first */
	unsigned nbusy;                            /* how many are measured (0 after a move) */
};

struct sc_rebalance_queue {
	int core;             /* index of the sidecore serving it */
	uint64_t load;        /* requests it took in the last interval */
	bool movable;         /* its device says sidecore = auto, and its ring runs */
	unsigned since_move;  /* intervals since it last moved; UINT32_MAX if never */
};

struct sc_rebalance_move {
	int queue, from, to;          /* indices into the caller's queues and cores */
	double from_busy, to_busy;    /* their mean busy share over the intervals */
	double share;                 /* the queue's part of from's busy share */
};

/* Add this interval's busy share (0..1) to c's history, dropping the oldest. */
void sc_rebalance_core_push(struct sc_rebalance_core *c, double busy);

/*
 * The move the policy above proposes for these sidecores and queues, if
 * any. Pure: reads its inputs, writes only *m. Returns true and fills *m,
 * or false: nothing to do (also for params it cannot use: intervals 0 or
 * above SC_REBALANCE_MAX_INTERVALS, idle ≥ busy).
 */
bool sc_rebalance_decide(const struct sc_rebalance_params *p, const struct sc_rebalance_core *cores, int ncores,
			 const struct sc_rebalance_queue *queues, int nqueues, struct sc_rebalance_move *m);

#endif
