/* SPDX-License-Identifier: MIT */
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
	cr_assert_eq(sc_topology_load(t), 0);
}

static void teardown(void) { free(t); }

TestSuite(cpuset, .init = setup, .fini = teardown, .timeout = 10);

Test(cpuset, topology_lists_every_cpu_we_may_use)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cr_assert_geq(t->ncpus, 1);
	cr_assert_geq(t->ncores, 1);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		const struct sc_cpu_info *i = sc_topology_cpu(t, c);
		cr_assert_not_null(i, "cpu %d missing", c);
		cr_assert(i->allowed, "cpu %d not marked allowed", c);
	}
	cr_assert_null(sc_topology_cpu(t, 100000));
}

Test(cpuset, pair_is_two_distinct_allowed_cpus)
{
	int s, g;
	if (t->ncpus < 2)
		cr_skip_test("one cpu");
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), 0);
	cr_assert_neq(s, g);
	cr_assert(sc_topology_cpu(t, s)->allowed && sc_topology_cpu(t, g)->allowed);
	if (t->ncores >= 2)
		cr_assert_neq(sc_topology_cpu(t, s)->core, sc_topology_cpu(t, g)->core, "different physical cores first");
}

Test(cpuset, pair_needs_two_cpus)
{
	for (int i = 1; i < t->ncpus; i++)
		t->cpus[i].allowed = false;
	int s, g;
	cr_assert_eq(sc_cpuset_pick_pair(t, &s, &g), -ENODEV);
}

Test(cpuset, pin_self)
{
	int cpu = t->cpus[t->ncpus - 1].cpu;
	cr_assert_eq(sc_cpu_pin_self(cpu), 0);
	cr_assert_eq(sched_getcpu(), cpu);
	cr_assert_eq(sc_cpu_pin_self(-1), -EINVAL);
	cr_assert_eq(sc_cpu_pin_self(100000), -EINVAL);
}

Test(cpuset, numa_local_memory_is_usable)
{
	char *p = sc_numa_alloc_on_cpu(t->cpus[0].cpu, 1 << 20);
	cr_assert_not_null(p);
	memset(p, 1, 1 << 20);
	sc_numa_free(p, 1 << 20);
}

Test(cpuset, machine_description)
{
	char buf[256];
	cr_assert_gt(sc_machine_describe(buf, sizeof(buf)), 0);
	cr_assert(strstr(buf, "cpus"), "%s", buf);
}

Test(cpuset, cpulist_format)
{
	bool set[16] = { 0 };
	cr_assert_eq(sc_cpulist_parse("0-2,5\n", set, 16), 0);
	cr_assert(set[0] && set[1] && set[2] && !set[3] && set[5]);
	memset(set, 0, sizeof(set));
	cr_assert_eq(sc_cpulist_parse("", set, 16), 0);
	cr_assert(!set[0]);
	cr_assert_eq(sc_cpulist_parse("7", set, 16), 0);
	cr_assert(set[7]);
	cr_assert_eq(sc_cpulist_parse("3-1", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("x", set, 16), -EINVAL);
	cr_assert_eq(sc_cpulist_parse("100-200", set, 16), 0, "cpus past the array are ignored");
}
