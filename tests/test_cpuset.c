/* SPDX-License-Identifier: MIT */
/*
 * cpuset: the real topology of this machine where a test can check it
 * against the kernel, and made-up topologies for the pair-picking policy.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "cpuset/cpulist.h"
#include "cpuset/cpuset.h"

static struct sc_topology *t;

static void setup(void)
{
	t = calloc(1, sizeof(*t));
	cr_assert_not_null(t);
	cr_assert_eq(sc_topology_load(t), 0);
}

static void teardown(void)
{
	free(t);
	t = NULL;
}

TestSuite(cpuset, .init = setup, .fini = teardown, .timeout = 10);

static int allowed_cpus(void)
{
	int n = 0;
	for (int i = 0; i < t->ncpus; i++)
		n += t->cpus[i].allowed;
	return n;
}

/* A made-up topology: cpu i on core[i], node numa[i], all allowed. */
static void fake_topology(int n, const int *core, const int *numa)
{
	memset(t, 0, sizeof(*t));
	t->ncpus = n;
	for (int i = 0; i < n; i++)
		t->cpus[i] = (struct sc_cpu_info){ .cpu = i, .core = core[i], .numa = numa ? numa[i] : 0,
						   .allowed = true };
}

/* ---- the real machine ---- */

Test(cpuset, topology_has_a_cpu_a_core_and_a_node)
{
	cr_assert_geq(t->ncpus, 1);
	cr_assert_geq(t->ncores, 1);
	cr_assert_leq(t->ncores, t->ncpus);
	cr_assert_geq(t->nnumas, 1);
	cr_assert_geq(allowed_cpus(), 1);
}

Test(cpuset, every_cpu_we_may_use_is_listed_as_allowed)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		const struct sc_cpu_info *i = sc_topology_cpu(t, c);
		if (!CPU_ISSET(c, &set)) {
			cr_assert(!i || !i->allowed, "cpu %d is not in our mask but marked allowed", c);
			continue;
		}
		cr_assert_not_null(i, "cpu %d missing", c);
		cr_assert_eq(i->cpu, c);
		cr_assert(i->allowed, "cpu %d not marked allowed", c);
		cr_assert_geq(i->core, 0);
		cr_assert_geq(i->numa, 0);
	}
}

Test(cpuset, unknown_cpu_has_no_entry)
{
	cr_assert_null(sc_topology_cpu(t, 100000));
	cr_assert_null(sc_topology_cpu(t, -1));
}

Test(cpuset, pair_is_two_distinct_allowed_cpus)
{
	int s, g;
	if (allowed_cpus() < 2)
		cr_skip_test("this process may use one cpu");
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_neq(s, g);
	cr_assert_not_null(sc_topology_cpu(t, s));
	cr_assert_not_null(sc_topology_cpu(t, g));
	cr_assert(sc_topology_cpu(t, s)->allowed && sc_topology_cpu(t, g)->allowed);
}

Test(cpuset, pin_self_to_each_allowed_cpu)
{
	for (int i = 0; i < t->ncpus; i++) {
		int cpu = t->cpus[i].cpu;
		if (!t->cpus[i].allowed)
			continue;
		cr_assert_eq(sc_cpu_pin_self(cpu), 0, "cpu %d", cpu);
		cr_assert_eq(sched_getcpu(), cpu);
	}
}

Test(cpuset, pinned_thread_can_be_moved)
{
	int first = -1, last = -1;
	for (int i = 0; i < t->ncpus; i++)
		if (t->cpus[i].allowed) {
			if (first < 0)
				first = t->cpus[i].cpu;
			last = t->cpus[i].cpu;
		}
	if (first == last)
		cr_skip_test("this process may use one cpu");
	cr_assert_eq(sc_cpu_pin_self(first), 0);
	cr_assert_eq(sc_cpu_pin_self(last), 0, "a pinned thread must be able to move");
	cr_assert_eq(sched_getcpu(), last);
}

Test(cpuset, pin_self_refuses_impossible_cpus)
{
	cr_assert_eq(sc_cpu_pin_self(-1), -EINVAL);
	cr_assert_eq(sc_cpu_pin_self(100000), -EINVAL);
	cr_assert_eq(sc_cpu_pin_self(SC_MAX_CPUS - 1 > t->ncpus + 8 ? SC_MAX_CPUS - 1 : 100000), -EINVAL);
}

Test(cpuset, numa_local_memory_is_writable)
{
	const size_t sz = 1 << 20;
	char *p = sc_numa_alloc_on_cpu(t->cpus[0].cpu, sz);
	cr_assert_not_null(p);
	memset(p, 0xa5, sz);
	cr_assert_eq(p[sz - 1], (char)0xa5);
	sc_numa_free(p, sz);
}

Test(cpuset, numa_alloc_for_no_cpu_falls_back)
{
	char *p = sc_numa_alloc_on_cpu(-1, 4096);
	cr_assert_not_null(p);
	p[0] = 1;
	sc_numa_free(p, 4096);
	sc_numa_free(NULL, 0);
}

Test(cpuset, machine_description_is_one_line)
{
	char buf[256];
	int n = sc_machine_describe(buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(buf));
	cr_assert_null(strchr(buf, '\n'), "%s", buf);
	cr_assert(strstr(buf, " cpu"), "%s", buf);
	cr_assert(strstr(buf, "numa node"), "%s", buf);
	cr_log_info("machine: %s", buf);
}

Test(cpuset, machine_description_fits_a_small_buffer)
{
	char buf[8];
	memset(buf, 'x', sizeof(buf));
	cr_assert_gt(sc_machine_describe(buf, sizeof(buf)), 0);
	cr_assert_eq(buf[7], 0);
	cr_assert_eq(sc_machine_describe(buf, 0), -EINVAL);
}

/* ---- the pair policy, on made-up machines ---- */

Test(cpuset, pair_needs_two_allowed_cpus)
{
	for (int i = 1; i < t->ncpus; i++)
		t->cpus[i].allowed = false;
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), -ENODEV);
}

Test(cpuset, pair_takes_different_cores_over_smt_siblings)
{
	/* 0,1 share core 0; 2,3 share core 1. */
	fake_topology(4, (const int[]){ 0, 0, 1, 1 }, NULL);
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_neq(t->cpus[s].core, t->cpus[g].core, "picked siblings %d,%d", s, g);
}

Test(cpuset, pair_falls_back_to_smt_siblings)
{
	fake_topology(2, (const int[]){ 0, 0 }, NULL);
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_neq(s, g);
}

Test(cpuset, pair_skips_cpus_we_may_not_use)
{
	fake_topology(4, (const int[]){ 0, 1, 2, 3 }, NULL);
	t->cpus[3].allowed = false;
	t->cpus[1].allowed = false;
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert((s == 2 && g == 0) || (s == 0 && g == 2), "%d,%d", s, g);
}

Test(cpuset, pair_prefers_an_isolated_sidecore)
{
	fake_topology(4, (const int[]){ 0, 1, 2, 3 }, NULL);
	t->cpus[1].isolated = true;
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_eq(s, 1);
	t->cpus[2].isolated = true;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert((s == 1 && g == 2) || (s == 2 && g == 1), "both isolated cpus: %d,%d", s, g);
}

Test(cpuset, pair_prefers_one_numa_node)
{
	/* Node 0: cpus 0,1; node 1: cpus 2,3; each its own core. */
	fake_topology(4, (const int[]){ 0, 1, 2, 3 }, (const int[]){ 0, 0, 1, 1 });
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_eq(t->cpus[s].numa, t->cpus[g].numa, "%d,%d span nodes", s, g);
	cr_assert_eq(s, 3, "ties give the sidecore the higher cpu");
}

/* ---- the kernel's cpu-list format (/sys/devices/system/cpu/isolated) ---- */

Test(cpuset, cpulist_ranges_and_singles)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("0-2,5\n", set, 16), 0);
	cr_assert(set[0] && set[1] && set[2] && !set[3] && !set[4] && set[5] && !set[6]);
}

Test(cpuset, cpulist_single_cpu)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("7", set, 16), 0);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(set[i], i == 7);
}

Test(cpuset, cpulist_empty_means_none)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("", set, 16), 0);
	cr_assert_eq(sc_cpulist_parse("\n", set, 16), 0);
	for (int i = 0; i < 16; i++)
		cr_assert(!set[i]);
}

Test(cpuset, cpulist_rejects_malformed_lists)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("3-1", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("x", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("-1", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("1,,2", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("1-", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("1;2", set, 16), -EINVAL);
}

Test(cpuset, cpulist_ignores_cpus_past_the_array)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("14-200", set, 16), 0);
	cr_assert(set[14] && set[15]);
	cr_assert_eq(sc_cpulist_parse("100000000000000000000", set, 16), 0);
}

Test(cpuset, cpulist_rejects_signs_spaces_and_dangling_commas)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse(" 1", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("+1", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("1-+3", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("1,", set, 16), -EINVAL);
}

/* ---- isolation from the kernel command line ---- */

static void isolation(const char *cmdline, bool *iso, bool *nohz, bool *rcu)
{
	memset(iso, 0, 16);
	memset(nohz, 0, 16);
	memset(rcu, 0, 16);
	sc_cmdline_isolation(cmdline, iso, nohz, rcu, 16);
}

Test(cpuset, cmdline_isolcpus_with_flags_nohz_full_and_rcu_nocbs)
{
	bool iso[16], nohz[16], rcu[16];
	isolation("ro quiet isolcpus=nohz,domain,managed_irq,2-3 nohz_full=3,5 rcu_nocbs=2-5 console=ttyS0\n", iso, nohz,
		  rcu);
	for (int i = 0; i < 16; i++) {
		cr_assert_eq(iso[i], i == 2 || i == 3, "isolcpus cpu %d", i);
		cr_assert_eq(nohz[i], i == 3 || i == 5, "nohz_full cpu %d", i);
		cr_assert_eq(rcu[i], i >= 2 && i <= 5, "rcu_nocbs cpu %d", i);
	}
}

Test(cpuset, cmdline_plain_isolcpus_list)
{
	bool iso[16], nohz[16], rcu[16];
	isolation("isolcpus=1,7", iso, nohz, rcu);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(iso[i], i == 1 || i == 7, "cpu %d", i);
}

Test(cpuset, cmdline_all_and_an_empty_rcu_nocbs_mean_every_cpu)
{
	bool iso[16], nohz[16], rcu[16];
	isolation("rcu_nocbs= nohz_full=all", iso, nohz, rcu);
	for (int i = 0; i < 16; i++)
		cr_assert(rcu[i] && nohz[i] && !iso[i], "cpu %d", i);
}

Test(cpuset, cmdline_lookalike_parameters_are_not_isolation)
{
	bool iso[16], nohz[16], rcu[16];
	isolation("myisolcpus=1 xnohz_full=2 rcu_nocbs_poll isolcpus", iso, nohz, rcu);
	for (int i = 0; i < 16; i++)
		cr_assert(!iso[i] && !nohz[i] && !rcu[i], "cpu %d", i);
}

Test(cpuset, cmdline_without_isolation_isolates_nothing)
{
	bool iso[16], nohz[16], rcu[16];
	isolation("", iso, nohz, rcu);
	for (int i = 0; i < 16; i++)
		cr_assert(!iso[i] && !nohz[i] && !rcu[i]);
}

Test(cpuset, this_machines_online_cpus_are_not_offline)
{
	for (int i = 0; i < t->ncpus; i++)
		cr_assert(!t->offline[t->cpus[i].cpu], "cpu %d is listed and offline", t->cpus[i].cpu);
}
