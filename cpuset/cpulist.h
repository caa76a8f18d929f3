/* SPDX-License-Identifier: MIT */
/* Private to cpuset/: the kernel's cpu-list format, exposed for its tests. */
#ifndef SC_CPUSET_CPULIST_H
#define SC_CPUSET_CPULIST_H

#include <stdbool.h>

/* Parse "0-2,5" into set[0..nset); cpus ≥ nset are ignored. 0 or -EINVAL. */
int sc_cpulist_parse(const char *s, bool *set, int nset);

/*
 * The isolation a kernel command line asks for: isolcpus= (with or
 * without its flags: "isolcpus=nohz,domain,2-3"), nohz_full= and
 * rcu_nocbs= ("all" or an empty rcu_nocbs= means every cpu). Sets the
 * cpus named in each array of n; ignores everything else.
 */
void sc_cmdline_isolation(const char *cmdline, bool *isolcpus, bool *nohz_full, bool *rcu_nocbs, int n);

#endif
