/* SPDX-License-Identifier: MIT */
/* Private to cpuset/: the kernel's cpu-list format, exposed for its tests. */
#ifndef SC_CPUSET_CPULIST_H
#define SC_CPUSET_CPULIST_H

#include <stdbool.h>

/* Parse "0-2,5" into set[0..nset); cpus ≥ nset are ignored. 0 or -EINVAL. */
int sc_cpulist_parse(const char *s, bool *set, int nset);

#endif
