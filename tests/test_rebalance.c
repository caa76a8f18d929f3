/* SPDX-License-Identifier: MIT */
/*
 * The rebalance policy (runtime/rebalance.h) on made-up loads: which queue
 * it moves, what it never moves, and that a steady load settles after one
 * move instead of sending a queue back and forth.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "runtime/rebalance.h"

static const struct sc_rebalance_params params = { .busy = 0.9, .idle = 0.5, .intervals = 3,
						   .cooldown = SC_REBALANCE_COOLDOWN };

/* A sidecore that was at busy for n intervals. */
static struct sc_rebalance_core core_at(double busy, unsigned n)
{
	struct sc_rebalance_core c = { 0 };
	for (unsigned i = 0; i < n; i++)
		sc_rebalance_core_push(&c, busy);
	return c;
}

static struct sc_rebalance_queue q_on(int core, uint64_t load, bool movable)
{
	return (struct sc_rebalance_queue){ .core = core, .load = load, .movable = movable, .since_move = UINT32_MAX };
}

Test(rebalance, two_busy_queues_on_a_hot_sidecore_one_moves_to_the_cold_one)
{
	struct sc_rebalance_core cores[2] = { core_at(0.98, 3), core_at(0.02, 3) };
	struct sc_rebalance_queue qs[2] = { q_on(0, 1000, true), q_on(0, 1000, true) };
	struct sc_rebalance_move m;
	cr_assert(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
	cr_assert_eq(m.from, 0);
	cr_assert_eq(m.to, 1);
	cr_assert(m.queue == 0 || m.queue == 1);
	cr_assert_float_eq(m.share, 0.49, 1e-9);
	cr_assert_float_eq(m.from_busy, 0.98, 1e-9);
	cr_assert_float_eq(m.to_busy, 0.02, 1e-9);
}

Test(rebalance, the_queue_that_leaves_the_two_closest_moves)
{
	/* Shares 0.1, 0.3, 0.6 of a sidecore at 100%: moving the 0.6 leaves 0.4 against 0.6, the closest pair. */
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	struct sc_rebalance_queue qs[3] = { q_on(0, 100, true), q_on(0, 300, true), q_on(0, 600, true) };
	struct sc_rebalance_move m;
	cr_assert(sc_rebalance_decide(&params, cores, 2, qs, 3, &m));
	cr_assert_eq(m.queue, 2);
}

Test(rebalance, the_coldest_sidecore_is_the_target_and_an_idle_queue_never_counts)
{
	struct sc_rebalance_core cores[3] = { core_at(0.3, 3), core_at(0.95, 3), core_at(0.1, 3) };
	struct sc_rebalance_queue qs[4] = { q_on(1, 0, true), q_on(1, 500, true), q_on(0, 10, true), q_on(1, 400, true) };
	struct sc_rebalance_move m;
	cr_assert(sc_rebalance_decide(&params, cores, 3, qs, 4, &m));
	cr_assert_eq(m.from, 1);
	cr_assert_eq(m.to, 2);
	cr_assert_neq(m.queue, 0, "a queue without requests was moved");
}

Test(rebalance, a_queue_pinned_by_config_never_moves)
{
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	struct sc_rebalance_queue pinned[2] = { q_on(0, 1000, false), q_on(0, 1000, false) };
	struct sc_rebalance_move m;
	cr_assert_not(sc_rebalance_decide(&params, cores, 2, pinned, 2, &m));
	/* One pinned, one auto: the auto one goes, whatever the pinned one's load. */
	struct sc_rebalance_queue mixed[2] = { q_on(0, 1000, false), q_on(0, 900, true) };
	cr_assert(sc_rebalance_decide(&params, cores, 2, mixed, 2, &m));
	cr_assert_eq(m.queue, 1);
}

Test(rebalance, a_sidecores_only_busy_queue_stays)
{
	/* Moving it would only move the heat. */
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	struct sc_rebalance_queue qs[2] = { q_on(0, 5000, true), q_on(0, 0, true) };
	struct sc_rebalance_move m;
	cr_assert_not(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
}

Test(rebalance, every_one_of_the_last_intervals_must_be_hot_and_cold)
{
	struct sc_rebalance_queue qs[2] = { q_on(0, 1000, true), q_on(0, 1000, true) };
	struct sc_rebalance_move m;
	/* Too few intervals measured yet (as after a move or at start). */
	struct sc_rebalance_core fresh[2] = { core_at(1.0, 2), core_at(0.0, 3) };
	cr_assert_not(sc_rebalance_decide(&params, fresh, 2, qs, 2, &m));
	/* One of the last three below the busy threshold. */
	struct sc_rebalance_core dip[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	dip[0].busy[1] = 0.89;
	cr_assert_not(sc_rebalance_decide(&params, dip, 2, qs, 2, &m));
	/* One of the target's above the idle threshold. */
	struct sc_rebalance_core blip[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	blip[1].busy[2] = 0.51;
	cr_assert_not(sc_rebalance_decide(&params, blip, 2, qs, 2, &m));
	/* An older interval outside the window does not count. */
	blip[1].busy[3] = 0.7;
	blip[1].busy[2] = 0.0;
	blip[1].nbusy = 4;
	cr_assert(sc_rebalance_decide(&params, blip, 2, qs, 2, &m));
}

Test(rebalance, no_move_that_would_invite_the_move_back)
{
	/* The target at 45% would get half of 100%: 95% against the 50% left, a gap as wide as busy - idle (40%). */
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.45, 3) };
	struct sc_rebalance_queue qs[2] = { q_on(0, 1000, true), q_on(0, 1000, true) };
	struct sc_rebalance_move m;
	cr_assert_not(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
	/* A smaller queue fits: 45% + 23% against 77%. */
	qs[1].load = 300;
	cr_assert(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
	cr_assert_eq(m.queue, 1);
}

Test(rebalance, a_queue_that_moved_stays_for_the_cooldown)
{
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	struct sc_rebalance_queue qs[2] = { q_on(0, 1000, true), q_on(0, 1000, true) };
	struct sc_rebalance_move m;
	qs[0].since_move = qs[1].since_move = SC_REBALANCE_COOLDOWN - 1;
	cr_assert_not(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
	qs[1].since_move = SC_REBALANCE_COOLDOWN;
	cr_assert(sc_rebalance_decide(&params, cores, 2, qs, 2, &m));
	cr_assert_eq(m.queue, 1);
}

Test(rebalance, params_it_cannot_use_move_nothing)
{
	struct sc_rebalance_core cores[2] = { core_at(1.0, 3), core_at(0.0, 3) };
	struct sc_rebalance_queue qs[2] = { q_on(0, 1000, true), q_on(0, 1000, true) };
	struct sc_rebalance_move m;
	struct sc_rebalance_params p = params;
	p.intervals = 0;
	cr_assert_not(sc_rebalance_decide(&p, cores, 2, qs, 2, &m));
	p.intervals = SC_REBALANCE_MAX_INTERVALS + 1;
	cr_assert_not(sc_rebalance_decide(&p, cores, 2, qs, 2, &m));
	p = params;
	p.idle = p.busy;
	cr_assert_not(sc_rebalance_decide(&p, cores, 2, qs, 2, &m));
}

/*
 * A steady load, run for 200 intervals the way sidecored runs the policy:
 * a sidecore's busy share is what its queues demand (at most 1), a queue's
 * requests its demand times what the sidecore can give; after a move both
 * sidecores' histories start again. Returns the number of moves.
 */
static unsigned simulate(int ncores, int nq, const double *demand, int *core_of)
{
	struct sc_rebalance_core cores[4] = { 0 };
	struct sc_rebalance_queue qs[8];
	unsigned moves = 0;

	for (int q = 0; q < nq; q++)
		qs[q] = q_on(core_of[q], 0, true);
	for (int t = 0; t < 200; t++) {
		double sum[4] = { 0 };
		for (int q = 0; q < nq; q++)
			sum[qs[q].core] += demand[q];
		for (int c = 0; c < ncores; c++)
			sc_rebalance_core_push(&cores[c], sum[c] > 1 ? 1 : sum[c]);
		for (int q = 0; q < nq; q++) {
			double scale = sum[qs[q].core] > 1 ? 1 / sum[qs[q].core] : 1;
			qs[q].load = (uint64_t)(demand[q] * scale * 100000);
			if (qs[q].since_move != UINT32_MAX)
				qs[q].since_move++;
		}
		struct sc_rebalance_move m;
		if (sc_rebalance_decide(&params, cores, ncores, qs, nq, &m)) {
			qs[m.queue].core = m.to;
			qs[m.queue].since_move = 0;
			cores[m.from].nbusy = cores[m.to].nbusy = 0;
			moves++;
		}
	}
	for (int q = 0; q < nq; q++)
		core_of[q] = qs[q].core;
	return moves;
}

Test(rebalance, a_steady_load_settles_without_ping_pong)
{
	/* Two queues that each want 60% of a sidecore: one move, then both stay. */
	double d2[2] = { 0.6, 0.6 };
	int c2[2] = { 0, 0 };
	cr_assert_eq(simulate(2, 2, d2, c2), 1);
	cr_assert_neq(c2[0], c2[1]);
	/* Three of 40%: one moves (80% and 40% are neither hot nor both extreme), then quiet. */
	double d3[3] = { 0.4, 0.4, 0.4 };
	int c3[3] = { 0, 0, 0 };
	cr_assert_eq(simulate(2, 3, d3, c3), 1);
	/* One queue wants a whole sidecore, another a little: moving either leaves one hot. */
	double d4[2] = { 1.0, 0.05 };
	int c4[2] = { 0, 0 };
	cr_assert_leq(simulate(2, 2, d4, c4), 1);
	/* Four of 45% over three sidecores from one: spread once each at most, then quiet. */
	double d5[4] = { 0.45, 0.45, 0.45, 0.45 };
	int c5[4] = { 0, 0, 0, 0 };
	cr_assert_leq(simulate(3, 4, d5, c5), 3);
	int per[3] = { 0 };
	for (int q = 0; q < 4; q++)
		per[c5[q]]++;
	cr_assert(per[0] <= 2 && per[1] <= 2 && per[2] <= 2, "placement %d %d %d", per[0], per[1], per[2]);
}
