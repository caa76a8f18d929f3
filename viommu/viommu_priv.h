/* SPDX-License-Identifier: MIT */
/* viommu internals: shared by viommu.c and device.c only. Do not include elsewhere. */
#ifndef SC_VIOMMU_PRIV_H
#define SC_VIOMMU_PRIV_H

#include <time.h>

#include "viommu/viommu.h"

/* CLOCK_MONOTONIC in ns: the clock of optimistic deadlines and sc_viommu_tick. */
static inline uint64_t sc_viommu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One mapping: [iova, last] -> gpa. */
struct sc_viommu_map {
	uint64_t iova, last;      /* inclusive */
	uint64_t gpa;
	uint64_t deadline;        /* optimistic: torn down at this CLOCK_MONOTONIC ns */
	uint32_t perm;            /* SC_PERM_* */
	uint32_t dying;           /* unmapped by the guest, still translating (optimistic) */
};

struct sc_viommu_domain {
	uint32_t id;
	bool bypass;
	uint32_t nendpoints;
	uint32_t seq;             /* odd while the writer changes maps */
	uint32_t n;               /* entries in maps */
	uint32_t ndying;
	struct sc_viommu_map *maps;   /* sorted, disjoint; max_mappings entries reserved */
	size_t maps_bytes;
};

struct sc_viommu_ep {
	uint32_t id;
	struct sc_viommu_domain *domain;   /* written by the writer, read by contexts */
};

struct sc_viommu_retire {
	struct sc_viommu_domain *d;
	uint64_t ticket;          /* free after this grace period */
};

struct sc_viommu {
	struct sc_viommu_slot slots[SC_VIOMMU_MAX_TC];
	uint64_t gen;             /* bumped on every removal: cached entries of older gens are dead */
	bool bypass;              /* unattached endpoints bypass (config, or as negotiated) */
	struct sc_viommu_config cfg;
	uint64_t granule;         /* smallest page size */
	struct sc_viommu_ep *eps;
	uint32_t neps;
	struct sc_viommu_domain **domains;   /* max_domains slots */
	uint32_t ndomains;
	uint32_t ndying;
	uint64_t next_deadline;   /* earliest dying mapping's deadline (may be early) */
	/* grace periods: numbered; completed ≤ started ≤ wanted */
	uint64_t grace_started, grace_completed, grace_wanted;
	bool grace_active;
	uint64_t snap[SC_VIOMMU_MAX_TC];
	struct sc_viommu_retire *retire;     /* FIFO, max_domains entries */
	uint32_t nretire;
	unsigned fault_rr;
	struct sc_viommu_stats stats;
};

#endif
