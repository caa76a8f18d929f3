/* SPDX-License-Identifier: MIT */
#include "runtime/rebalance.h"

#include <string.h>

void sc_rebalance_core_push(struct sc_rebalance_core *c, double busy)
{
	memmove(&c->busy[1], &c->busy[0], sizeof(c->busy) - sizeof(c->busy[0]));
	c->busy[0] = busy;
	if (c->nbusy < SC_REBALANCE_MAX_INTERVALS)
		c->nbusy++;
}

/* Was c at or above (hot) or at or below (!hot) limit over each of the last n intervals? Its mean then. */
static bool steady(const struct sc_rebalance_core *c, unsigned n, double limit, bool hot, double *mean)
{
	double sum = 0;

	if (c->nbusy < n)
		return false;
	for (unsigned k = 0; k < n; k++) {
		if (hot ? c->busy[k] < limit : c->busy[k] > limit)
			return false;
		sum += c->busy[k];
	}
	*mean = sum / n;
	return true;
}

bool sc_rebalance_decide(const struct sc_rebalance_params *p, const struct sc_rebalance_core *cores, int ncores,
			 const struct sc_rebalance_queue *queues, int nqueues, struct sc_rebalance_move *m)
{
	int to = -1;
	double to_busy = 0, best_gap = 0;
	bool found = false;

	if (!p->intervals || p->intervals > SC_REBALANCE_MAX_INTERVALS || p->idle >= p->busy)
		return false;
	/* The target: the least busy of the cold sidecores (ties: the first). */
	for (int c = 0; c < ncores; c++) {
		double mean;
		if (steady(&cores[c], p->intervals, p->idle, false, &mean) && (to < 0 || mean < to_busy)) {
			to = c;
			to_busy = mean;
		}
	}
	if (to < 0)
		return false;
	for (int h = 0; h < ncores; h++) {
		double hot;
		if (h == to || !steady(&cores[h], p->intervals, p->busy, true, &hot))
			continue;
		uint64_t total = 0;
		int loaded = 0;
		for (int q = 0; q < nqueues; q++)
			if (queues[q].core == h && queues[q].load) {
				total += queues[q].load;
				loaded++;
			}
		if (loaded < 2)
			continue;
		for (int q = 0; q < nqueues; q++) {
			const struct sc_rebalance_queue *x = &queues[q];
			if (x->core != h || !x->load || !x->movable || x->since_move < p->cooldown)
				continue;
			/* Its part of h's busy time is what it would bring to the target. */
			double share = hot * (double)x->load / (double)total;
			double after_from = hot - share, after_to = to_busy + share;
			double gap = after_from > after_to ? after_from - after_to : after_to - after_from;
			/*
			 * The move back would need the target hot and the source cold,
			 * after_to - after_from ≥ busy - idle: rule it out as far as the
			 * shares predict. (Below that, the gap also narrows.)
			 */
			if (after_to - after_from >= p->busy - p->idle || (found && gap >= best_gap))
				continue;
			best_gap = gap;
			*m = (struct sc_rebalance_move){ .queue = q, .from = h, .to = to, .from_busy = hot, .to_busy = to_busy,
							 .share = share };
			found = true;
		}
	}
	return found;
}
