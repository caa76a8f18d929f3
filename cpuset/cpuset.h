/* SPDX-License-Identifier: MIT */
/*
 * cpuset: the machine's cpus as hwloc sees them, and where sidecores and
 * guest cpus go.
 *
 * This module knows the topology (cpus, physical cores, SMT siblings, NUMA
 * nodes), which cpus this process may use, and which are isolated
 * (isolcpus / nohz_full). It pins threads and allocates NUMA-local memory.
 * The full pinning policy of the service builds on it.
 */
#ifndef SC_CPUSET_H
#define SC_CPUSET_H

#include <stdbool.h>
#include <stddef.h>

#define SC_MAX_CPUS 1024

struct sc_cpu_info {
	int cpu;        /* OS cpu number */
	int core;       /* physical core id (logical index), SMT siblings share it */
	int numa;       /* NUMA node, 0 when the machine has one */
	int package;    /* package (socket) logical index, 0 when hwloc shows none */
	bool allowed;   /* in this process's affinity mask */
	bool isolated;  /* in /sys/devices/system/cpu/isolated, or isolcpus= on the kernel command line */
	bool nohz_full; /* in /sys/devices/system/cpu/nohz_full, or nohz_full= */
	bool rcu_nocbs; /* rcu_nocbs= on the kernel command line */
};

struct sc_topology {
	int ncpus;                          /* entries in cpus[]: the online cpus */
	int ncores;
	int nnumas;
	int npackages;
	struct sc_cpu_info cpus[SC_MAX_CPUS];
	/* Cpus the kernel knows (/sys/devices/system/cpu/possible) that are not online. */
	bool offline[SC_MAX_CPUS];
};

/*
 * Read the topology (hwloc) and this process's affinity: the calling
 * thread's mask, so load it before pinning threads. Returns 0 or -errno.
 */
int sc_topology_load(struct sc_topology *t);

/*
 * Load a topology that is not this machine's, to check a plan for another
 * host: source is the path of an hwloc XML file (`lstopo --of xml`) or,
 * if no such file exists, an hwloc synthetic description ("pack:2 core:4
 * pu:2"; `man hwloc-synthetic`). Every cpu of it is online and allowed and
 * none isolated (set the flags in t to model a kernel command line).
 * NULL loads this machine, as sc_topology_load. Returns 0, -EINVAL for a
 * description hwloc refuses, or -errno.
 */
int sc_topology_load_from(struct sc_topology *t, const char *source);

/* The entry for OS cpu number cpu, or NULL if there is none (or it is offline). */
const struct sc_cpu_info *sc_topology_cpu(const struct sc_topology *t, int cpu);

/* The other online cpus on cpu's physical core (its SMT siblings), as a cpu list ("3,67"), "" if none. */
void sc_topology_siblings(const struct sc_topology *t, int cpu, char *buf, size_t len);

/*
 * Choose a sidecore cpu and a guest cpu for a two-party run (benchmarks, the
 * demo): two allowed cpus on different physical cores if there are, else
 * SMT siblings, else -ENODEV (one cpu only). Prefers isolated cpus and the
 * same NUMA node. Returns 0.
 */
int sc_cpuset_pick_pair(const struct sc_topology *t, int *sidecore, int *guest);

/*
 * Pin the calling thread to cpu. Returns 0, -EINVAL if cpu is not one this
 * process may run on, or -errno.
 */
int sc_cpu_pin_self(int cpu);

/* Memory on the NUMA node of cpu (libnuma); falls back to any node. Free with sc_numa_free. */
void *sc_numa_alloc_on_cpu(int cpu, size_t size);
void sc_numa_free(void *p, size_t size);

/*
 * One line describing the machine: cpu model, cpus, cores, nodes, and
 * whether we are a guest. Returns its length (snprintf's, so >= len means
 * it was cut) or -EINVAL for an empty buffer.
 */
int sc_machine_describe(char *buf, size_t len);

#endif
