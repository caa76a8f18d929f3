/* SPDX-License-Identifier: MIT */
/*
 * The pinning plan: made-up machines (hwloc synthetic topologies) and this
 * one. Each check gets the config that trips it, and the one line it must
 * print (file, line, key).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polling/polling.h"
#include "runtime/plan.h"

static char dir[] = "/tmp/sidecore-plan-XXXXXX", path[128];
static struct sc_config cfg;
static struct sc_topology topo;
static struct sc_plan plan;
static char *out;
static size_t outlen;

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sc.conf", dir);
}

static void teardown(void)
{
	unlink(path);
	rmdir(dir);
	free(out);
	out = NULL;
}

TestSuite(plan, .init = setup, .fini = teardown, .timeout = 10);

/* Two sockets, two cores each, two SMT threads a core: cpus 0-7, core k = cpus 2k, 2k+1, node = socket. */
#define TWO_SOCKET_SMT "pack:2 numa:1 core:2 pu:2"

static void conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void conf(const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	char err[1024];
	cr_assert_eq(sc_config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
}

static void machine(const char *synthetic)
{
	cr_assert_eq(sc_topology_load_from(&topo, synthetic), 0, "hwloc refused '%s'", synthetic);
}

/* Build the plan (not local), capturing what it prints; returns sc_plan_build's result. */
static int build(void)
{
	free(out);
	out = NULL;
	FILE *f = open_memstream(&out, &outlen);
	cr_assert_not_null(f);
	int r = sc_plan_build(&plan, &cfg, &topo, false, f);
	fclose(f);
	return r;
}

/* One printed line starts with PATH:LINE: KIND: and holds what. */
static void said(int line, const char *kind, const char *what)
{
	char prefix[200];
	snprintf(prefix, sizeof(prefix), "%s:%d: %s: ", path, line, kind);
	for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
		size_t n = strcspn(l, "\n");
		if (!strncmp(l, prefix, strlen(prefix)) && memmem(l, n, what, strlen(what)))
			return;
	}
	cr_assert_fail("no line '%s...%s' in:\n%s", prefix, what, out ? out : "");
}

static void silent_about(const char *what)
{
	cr_assert(!out || !strstr(out, what), "'%s' should not be said:\n%s", what, out);
}

#define SC_HEAD "[sidecore]\n"
#define DISK(name, extra) "[blk." name "]\nsocket = /tmp/" name ".sock\nbacking = /tmp/" name ".img\n" extra

/* ---- the machine as hwloc describes it ---- */

Test(plan, a_synthetic_two_socket_smt_machine_loads)
{
	machine(TWO_SOCKET_SMT);
	cr_assert_eq(topo.ncpus, 8);
	cr_assert_eq(topo.ncores, 4);
	cr_assert_eq(topo.npackages, 2);
	cr_assert_eq(topo.nnumas, 2);
	cr_assert_eq(sc_topology_cpu(&topo, 5)->package, 1);
	cr_assert_eq(sc_topology_cpu(&topo, 5)->numa, 1);
	char sib[32];
	sc_topology_siblings(&topo, 5, sib, sizeof(sib));
	cr_assert_str_eq(sib, "4");
}

Test(plan, a_topology_hwloc_refuses_is_einval)
{
	cr_assert_eq(sc_topology_load_from(&topo, "bogus:3 nonsense"), -EINVAL);
}

/* ---- placement ---- */

Test(plan, queues_are_balanced_by_count_in_file_order)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\nguest_cpus = 0,4\n" DISK("a", "queues = 3\n") DISK("b", "queues = 1\n"));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert_eq(plan.nsidecores, 2);
	cr_assert_eq(plan.load[0], 2);
	cr_assert_eq(plan.load[1], 2);
	cr_assert_eq(plan.queue_sidecore[0][0], 0);
	cr_assert_eq(plan.queue_sidecore[0][1], 1);
	cr_assert_eq(plan.queue_sidecore[0][2], 0);
	cr_assert_eq(plan.queue_sidecore[1][0], 1);
}

Test(plan, a_device_runs_on_the_sidecore_it_names)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\n" DISK("a", "queues = 2\nsidecore = 6\n") DISK("b", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert_eq(plan.queue_sidecore[0][0], 1);
	cr_assert_eq(plan.queue_sidecore[0][1], 1);
	/* b then balances onto the emptier sidecore */
	cr_assert_eq(plan.queue_sidecore[1][0], 0);
	cr_assert_eq(plan.queue_sidecore[1][1], 0);
}

Test(plan, ties_go_to_a_sidecore_on_the_disks_node)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\n" DISK("a", "numa_node = 1\n"));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert_eq(plan.sidecores[plan.queue_sidecore[0][0]], 6);
}

Test(plan, a_device_naming_a_cpu_that_is_not_a_sidecore_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\n" DISK("a", "sidecore = 3\n"));
	cr_assert_eq(build(), -EINVAL);
	said(6, "error", "[blk.a] sidecore: cpu 3 is not a sidecore (cpus: 2)");
}

/* ---- errors ---- */

Test(plan, a_cpu_that_does_not_exist_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,9\n" DISK("a", ""));
	cr_assert_eq(build(), -EINVAL);
	cr_assert_eq(plan.errors, 1);
	said(2, "error", "cpus: cpu 9 does not exist on this machine (online cpus: 0-7)");
}

Test(plan, an_offline_cpu_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	topo.offline[9] = true;
	conf(SC_HEAD "cpus = 9\n" DISK("a", ""));
	cr_assert_eq(build(), -EINVAL);
	said(2, "error", "cpus: cpu 9 is offline; bring it online (echo 1 > /sys/devices/system/cpu/cpu9/online)");
}

Test(plan, a_guest_cpu_that_does_not_exist_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nguest_cpus = 0,12\n" DISK("a", ""));
	cr_assert_eq(build(), -EINVAL);
	said(3, "error", "guest_cpus: cpu 12 does not exist");
}

Test(plan, a_sidecore_that_is_also_a_guest_cpu_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "guest_cpus = 0-3\ncpus = 3,6\n" DISK("a", ""));
	cr_assert_eq(build(), -EINVAL);
	said(3, "error", "cpus: cpu 3 is also a guest cpu (guest_cpus, line 2)");
}

Test(plan, a_cpu_this_process_may_not_use_is_an_error_on_this_machine)
{
	cpu_set_t set;
	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	machine(NULL);
	int out_of_mask = -1;
	for (int i = 0; i < topo.ncpus; i++)
		if (!CPU_ISSET(topo.cpus[i].cpu, &set))
			out_of_mask = topo.cpus[i].cpu;
	if (out_of_mask < 0) {
		/* Narrow the mask to one cpu so another one is refused. */
		if (topo.ncpus < 2)
			cr_skip_test("one cpu: no cpu outside this process's mask to try");
		topo.cpus[0].allowed = false;
		out_of_mask = topo.cpus[0].cpu;
	}
	conf(SC_HEAD "cpus = %d\n" DISK("a", ""), out_of_mask);
	FILE *f = open_memstream(&out, &outlen);
	cr_assert_eq(sc_plan_build(&plan, &cfg, &topo, true, f), -EINVAL);
	fclose(f);
	said(2, "error", "is not a cpu this process may use (allowed: ");
}

Test(plan, sidecores_masked_out_of_this_process_are_errors_guest_cpus_are_not)
{
	machine(TWO_SOCKET_SMT);
	for (int i = 0; i < topo.ncpus; i++)
		topo.cpus[i].allowed = topo.cpus[i].cpu != 1 && topo.cpus[i].cpu < 6;
	conf("; x\n" SC_HEAD "cpus = 2,1\nguest_cpus = 7\n" DISK("a", ""));
	FILE *f = open_memstream(&out, &outlen);
	cr_assert_eq(sc_plan_build(&plan, &cfg, &topo, true, f), -EINVAL);
	fclose(f);
	cr_assert_eq(plan.errors, 1, "%s", out);
	said(3, "error", "cpus: cpu 1 is not a cpu this process may use (allowed: 0,2-5; taskset or cgroup cpuset)");
	silent_about("guest_cpus: cpu 7");
}

/* ---- warnings ---- */

Test(plan, a_sidecore_on_a_guest_cpus_core_is_a_smt_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 3\nguest_cpus = 2\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "cpus: sidecore cpu 3 is an SMT sibling of guest cpu 2");
}

Test(plan, two_sidecores_on_one_core_are_a_smt_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 4,5\n" DISK("a", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "cpus: sidecore cpus 4 and 5 are SMT siblings");
}

Test(plan, sidecores_on_separate_cores_say_nothing_about_smt)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,4\nguest_cpus = 0\n" DISK("a", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	silent_about("SMT");
}

Test(plan, a_sidecore_on_another_node_than_its_disk_is_a_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\n" DISK("a", "numa_node = 1\n"));
	cr_assert_eq(build(), 0, "%s", out);
	said(6, "warning", "[blk.a] sidecore: cpu 2 is on NUMA node 0, the disk on node 1");
}

Test(plan, a_sidecore_on_its_disks_node_says_nothing_about_numa)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 6\n" DISK("a", "numa_node = 1\n"));
	cr_assert_eq(build(), 0, "%s", out);
	silent_about("NUMA");
}

Test(plan, sidecores_not_isolated_name_the_kernel_parameters)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "add isolcpus=2,6 nohz_full=2,6 rcu_nocbs=2,6 to the kernel command line");
}

Test(plan, only_the_missing_isolation_parameter_is_named)
{
	machine(TWO_SOCKET_SMT);
	for (int i = 0; i < topo.ncpus; i++)
		topo.cpus[i].isolated = topo.cpus[i].nohz_full = true;
	conf(SC_HEAD "cpus = 2\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "(no rcu_nocbs): the scheduler");
	said(2, "warning", "add rcu_nocbs=2 to the kernel command line");
	silent_about("isolcpus=");
}

Test(plan, isolated_sidecores_say_nothing_about_isolation)
{
	machine(TWO_SOCKET_SMT);
	for (int i = 0; i < topo.ncpus; i++)
		topo.cpus[i].isolated = topo.cpus[i].nohz_full = topo.cpus[i].rcu_nocbs = true;
	conf(SC_HEAD "cpus = 2\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	silent_about("isolated");
}

Test(plan, more_queues_than_a_round_holds_is_a_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nbudget = 32\n" DISK("a", "queues = 33\n"));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "cpus: sidecore cpu 2 serves 33 queues × budget 32 = 1056 requests a round, more than 1024");
}

Test(plan, a_round_within_the_limit_says_nothing)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nbudget = 32\n" DISK("a", "queues = 32\n"));
	cr_assert_eq(build(), 0, "%s", out);
	silent_about("a round");
}

Test(plan, more_queues_than_a_poller_holds_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nbudget = 1\n" DISK("a", "queues = 64\n") DISK("b", "queues = 64\n")
	     DISK("c", "queues = 64\n") DISK("d", "queues = 64\n") DISK("e", "queues = 1\n"));
	cr_assert_eq(build(), -EINVAL);
	said(2, "error", "cpus: sidecore cpu 2 would serve 257 queues, more than the 256 one sidecore holds");
}

Test(plan, a_sidecore_with_no_queue_is_a_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,4\n" DISK("a", "sidecore = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	said(2, "warning", "cpus: sidecore cpu 4 serves no queue");
}

/* ---- cpus = auto ---- */

Test(plan, auto_keeps_off_the_guests_cores_and_each_others)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = auto\ncount = 2\nguest_cpus = 0,2\n" DISK("a", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert_eq(plan.nsidecores, 2);
	for (int i = 0; i < 2; i++)
		cr_assert_geq(plan.sidecores[i], 4, "cpu %d shares a core with a guest cpu", plan.sidecores[i]);
	cr_assert_neq(plan.sidecores[0] / 2, plan.sidecores[1] / 2, "auto chose SMT siblings %d and %d",
		      plan.sidecores[0], plan.sidecores[1]);
	silent_about("SMT");
}

Test(plan, auto_prefers_isolated_cpus)
{
	machine(TWO_SOCKET_SMT);
	for (int i = 0; i < topo.ncpus; i++)
		topo.cpus[i].isolated = topo.cpus[i].cpu == 2;
	conf(SC_HEAD "cpus = auto\ncount = 1\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert_eq(plan.sidecores[0], 2);
}

Test(plan, auto_with_too_few_cpus_left_is_an_error)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = auto\nguest_cpus = 0-5\ncount = 3\n" DISK("a", ""));
	cr_assert_eq(build(), -EINVAL);
	said(4, "error", "count = 3: only 2 cpus are left for sidecores (guest_cpus: 0-5)");
}

/* ---- io-wq and idle ---- */

Test(plan, iowq_auto_avoids_sidecores_and_guests)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nguest_cpus = 4-7\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert(plan.iowq_set);
	bool want[8] = { true, true, false, true };
	for (int c = 0; c < 8; c++)
		cr_assert_eq(plan.iowq[c], want[c], "cpu %d", c);
}

Test(plan, iowq_auto_falls_back_to_guest_cpus_but_never_a_sidecore)
{
	machine("pu:2");
	conf(SC_HEAD "cpus = 1\nguest_cpus = 0\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert(plan.iowq_set && plan.iowq[0] && !plan.iowq[1]);
}

Test(plan, iowq_with_every_cpu_a_sidecore_is_a_warning)
{
	machine("pu:2");
	conf(SC_HEAD "cpus = 0,1\n" DISK("a", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert(!plan.iowq_set);
	said(2, "warning", "iowq_cpus: every cpu is a sidecore (0-1)");
}

Test(plan, iowq_list_on_a_sidecore_is_a_warning)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\niowq_cpus = 0,2\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	said(3, "warning", "iowq_cpus: cpu 2 is a sidecore");
	cr_assert(plan.iowq[0] && plan.iowq[2] && !plan.iowq[1]);
}

Test(plan, iowq_none_leaves_them_alone)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\niowq_cpus = none\n" DISK("a", ""));
	cr_assert_eq(build(), 0, "%s", out);
	cr_assert(!plan.iowq_set);
}

Test(plan, idle_policies_become_spin_times)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2\nidle = spin\n" DISK("a", ""));
	build();
	cr_assert_eq(plan.idle_spin_ns, SC_POLLER_NEVER_SLEEP);
	conf(SC_HEAD "cpus = 2\nidle = sleep\nidle_spin_us = 50\n" DISK("a", ""));
	build();
	cr_assert_eq(plan.idle_spin_ns, 0);
	conf(SC_HEAD "cpus = 2\nidle_spin_us = 50\n" DISK("a", ""));
	build();
	cr_assert_eq(plan.idle_spin_ns, 50000);
}

/* ---- the table ---- */

Test(plan, the_table_has_a_row_per_cpu_with_its_queues)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\nguest_cpus = 0,4\n" DISK("a", "queues = 2\n"));
	cr_assert_eq(build(), 0, "%s", out);
	free(out);
	FILE *f = open_memstream(&out, &outlen);
	sc_plan_print(&plan, &cfg, &topo, f);
	fclose(f);
	cr_assert(strstr(out, "\n2     sidecore  0       0    1     3            -     a:0\n"), "%s", out);
	cr_assert(strstr(out, "\n4     guest     1       1    2     5            -     -\n"), "%s", out);
	cr_assert(strstr(out, "\n1     host      0       0    0     0            yes   -\n"), "%s", out);
}

Test(plan, auto_placement_keeps_a_disk_on_its_nodes_sidecores)
{
	machine(TWO_SOCKET_SMT);
	conf(SC_HEAD "cpus = 2,6\n" DISK("a", "queues = 4\nnuma_node = 1\n") DISK("b", "queues = 2\nnuma_node = 0\n"));
	cr_assert_eq(build(), 0, "%s", out);
	for (int q = 0; q < 4; q++)
		cr_assert_eq(plan.sidecores[plan.queue_sidecore[0][q]], 6, "a:%d", q);
	for (int q = 0; q < 2; q++)
		cr_assert_eq(plan.sidecores[plan.queue_sidecore[1][q]], 2, "b:%d", q);
	silent_about("NUMA");
}
