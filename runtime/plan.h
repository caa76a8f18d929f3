/* SPDX-License-Identifier: MIT */
/*
 * plan: where sidecored's work runs. It joins the config (which cpus are
 * sidecores and which belong to guests, which device wants which sidecore)
 * with the machine's topology (cpuset/: cores, SMT siblings, NUMA nodes,
 * isolation) and says which queue runs on which sidecore, where io_uring's
 * workers go, and what is unwise about the plan.
 *
 * Queues are placed in file order on the least loaded of the sidecores the
 * device may use (its `sidecore = ...`, or all), ties going to one on the
 * device's NUMA node, then to the first listed: balanced by queue count.
 *
 * Every finding is one line, "PATH:LINE: error|warning: what; what to do",
 * naming the key it is about. Errors make the plan unusable; warnings say
 * the plan runs but costs something.
 */
#ifndef SC_RUNTIME_PLAN_H
#define SC_RUNTIME_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cpuset/cpuset.h"
#include "runtime/config.h"

/*
 * Requests one sidecore round may serve (queues × budget) before a warning:
 * one poll of a queue waits for all the others, so a round this long makes
 * a queue's latency the sum of every other queue's burst.
 */
#define SC_PLAN_ROUND_MAX 1024

struct sc_plan {
	int sidecores[SC_CONFIG_MAX_CPUS];  /* the sidecore cpus, resolved (cpus = auto chooses them) */
	int nsidecores;
	unsigned load[SC_CONFIG_MAX_CPUS];  /* queues on sidecores[i] */
	/* queue q of device d runs on sidecores[queue_sidecore[d][q]] */
	uint8_t queue_sidecore[SC_CONFIG_MAX_DEVICES][SC_CONFIG_MAX_DEVICE_CPUS];
	int dev_numa[SC_CONFIG_MAX_DEVICES];   /* the device's NUMA node, -1 if unknown */
	bool iowq[SC_MAX_CPUS];             /* the io-wq cpus, when iowq_set */
	bool iowq_set;                      /* false: io-wq workers are left where the kernel puts them */
	uint64_t idle_spin_ns;              /* for sc_poller_config, from the idle policy */
	int errors, warnings;
};

/*
 * Resolve cfg on topology t into *plan and check it, printing each finding
 * as one line to out (NULL: none). local says t is this machine: then the
 * cpus must be ones this process may use, and a device's NUMA node is read
 * from its backing's block device in sysfs unless numa_node gives it.
 * Returns 0 if the plan has no error (warnings allowed), -EINVAL if it has
 * (plan->errors of them, each printed).
 */
int sc_plan_build(struct sc_plan *plan, const struct sc_config *cfg, const struct sc_topology *t, bool local,
		  FILE *out);

/*
 * Print the plan as a table, a row per cpu of t (cpu, role, package, node,
 * core, SMT siblings, io-wq, queues), then the idle policy, io-wq and
 * stats socket lines. After a failed build it shows what was resolved.
 */
void sc_plan_print(const struct sc_plan *plan, const struct sc_config *cfg, const struct sc_topology *t, FILE *out);

/*
 * The NUMA node of the block device under path (the device itself, or the
 * one holding the file), from /sys/dev/block; -1 if there is none (tmpfs,
 * a virtual disk without one, a single-node machine reporting -1).
 */
int sc_plan_backing_numa(const char *path);

#endif
