/* SPDX-License-Identifier: MIT */
#include "cpuset/cpuset.h"

#include <errno.h>
#include <hwloc.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpuset/cpulist.h"

int sc_cpulist_parse(const char *s, bool *set, int nset)
{
	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b;
		if (end == s || a < 0)
			return -EINVAL;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a)
				return -EINVAL;
			s = end;
		}
		for (long c = a; c <= b && c < nset; c++)
			set[c] = true;
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return 0;
}

/* Read a sysfs cpu list; a missing file means "none". */
static void read_cpulist(const char *path, bool *set, int nset)
{
	char buf[4096];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f))
		sc_cpulist_parse(buf, set, nset);
	fclose(f);
}

int sc_topology_load(struct sc_topology *t)
{
	bool isolated[SC_MAX_CPUS] = { 0 }, nohz[SC_MAX_CPUS] = { 0 };
	hwloc_topology_t topo;

	memset(t, 0, sizeof(*t));
	read_cpulist("/sys/devices/system/cpu/isolated", isolated, SC_MAX_CPUS);
	read_cpulist("/sys/devices/system/cpu/nohz_full", nohz, SC_MAX_CPUS);

	if (hwloc_topology_init(&topo) < 0)
		return -ENOMEM;
	/* Whole machine, not just our cgroup: "allowed" comes from our affinity. */
	hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
	if (hwloc_topology_load(topo) < 0) {
		hwloc_topology_destroy(topo);
		return -EIO;
	}
	/* The process's cpus (cgroup cpuset), not this thread's affinity, which may be pinned already. */
	hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(topo);
	int npu = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	t->ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	t->nnumas = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	if (t->nnumas < 1)
		t->nnumas = 1;
	for (int i = 0; i < npu && t->ncpus < SC_MAX_CPUS; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu);
		int cpu = (int)pu->os_index;
		struct sc_cpu_info *c = &t->cpus[t->ncpus++];

		c->cpu = cpu;
		c->core = core ? (int)core->logical_index : cpu;
		c->numa = 0;
		for (int n = 0; n < hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE); n++) {
			hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)n);
			if (hwloc_bitmap_isset(node->cpuset, (unsigned)cpu))
				c->numa = (int)node->os_index;
		}
		c->allowed = hwloc_bitmap_isset(allowed, (unsigned)cpu);
		c->isolated = cpu < SC_MAX_CPUS && isolated[cpu];
		c->nohz_full = cpu < SC_MAX_CPUS && nohz[cpu];
	}
	if (t->ncores < 1)
		t->ncores = t->ncpus;
	hwloc_topology_destroy(topo);
	return t->ncpus ? 0 : -ENODEV;
}

const struct sc_cpu_info *sc_topology_cpu(const struct sc_topology *t, int cpu)
{
	for (int i = 0; i < t->ncpus; i++)
		if (t->cpus[i].cpu == cpu)
			return &t->cpus[i];
	return NULL;
}

/* Higher is better: isolated helps a sidecore most, then nohz_full. */
static int cpu_score(const struct sc_cpu_info *c)
{
	return (c->isolated ? 2 : 0) + (c->nohz_full ? 1 : 0);
}

int sc_cpuset_pick_pair(const struct sc_topology *t, int *sidecore, int *guest)
{
	int best = -1, best_s = -1, best_g = -1;

	/*
	 * Score every ordered pair: different physical cores first (SMT
	 * siblings share the caches the round trip is about), then the same
	 * NUMA node, then how isolated the sidecore is. The sidecore gets the
	 * higher-numbered cpu on a tie: cpu 0 takes most housekeeping.
	 */
	for (int i = 0; i < t->ncpus; i++) {
		for (int j = 0; j < t->ncpus; j++) {
			const struct sc_cpu_info *s = &t->cpus[i], *g = &t->cpus[j];
			if (i == j || !s->allowed || !g->allowed)
				continue;
			int score = (s->core != g->core ? 100 : 0) + (s->numa == g->numa ? 10 : 0) +
				    cpu_score(s) * 2 + cpu_score(g);
			if (score > best || (score == best && s->cpu > best_s)) {
				best = score;
				best_s = s->cpu;
				best_g = g->cpu;
			}
		}
	}
	if (best < 0)
		return -ENODEV;
	*sidecore = best_s;
	*guest = best_g;
	return 0;
}

int sc_cpu_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	int ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	return ret ? -ret : 0;
}

void *sc_numa_alloc_on_cpu(int cpu, size_t size)
{
	if (numa_available() >= 0 && cpu >= 0) {
		int node = numa_node_of_cpu(cpu);
		void *p = node >= 0 ? numa_alloc_onnode(size, node) : NULL;
		if (p)
			return p;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void sc_numa_free(void *p, size_t size)
{
	/* numa_alloc_onnode memory is an mmap as well; munmap frees either. */
	if (p)
		munmap(p, size);
}

int sc_machine_describe(char *buf, size_t len)
{
	char model[128] = "unknown cpu", line[1024];
	bool guest = false;
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct sc_topology *t = calloc(1, sizeof(*t));

	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char *v = strchr(line, ':');
			if (!v)
				continue;
			v += 2;
			v[strcspn(v, "\n")] = 0;
			if (!strncmp(line, "model name", 10))
				snprintf(model, sizeof(model), "%s", v);
			else if (!strncmp(line, "flags", 5) && strstr(v, " hypervisor"))
				guest = true;
		}
		fclose(f);
	}
	if (!t || sc_topology_load(t) < 0) {
		free(t);
		return snprintf(buf, len, "%s%s", model, guest ? ", running as a VM guest" : "");
	}
	int n = snprintf(buf, len, "%s, %d cpus, %d cores, %d numa node%s%s", model, t->ncpus,
			 t->ncores, t->nnumas, t->nnumas == 1 ? "" : "s",
			 guest ? ", running as a VM guest (nested KVM)" : "");
	free(t);
	return n;
}
