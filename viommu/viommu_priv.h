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

/*
 * A domain's mappings are sorted chunks of SC_VIOMMU_CHUNK entries (5 KiB)
 * under a sorted top level: a change moves at most a chunk or two and a few
 * top-level references, never the whole table. Every chunk but a lone one
 * is at least a quarter full (thin ones merge), which bounds the chunks a
 * domain at its cap can need (domain_new reserves them).
 */
#define SC_VIOMMU_CHUNK 128

/* A chunk in use, in the top level (sorted by first). */
struct sc_viommu_chunk_ref {
	uint64_t first;           /* iova of its first mapping: the top level's search key */
	uint32_t chunk;           /* index into the pool */
	uint32_t n;               /* mappings in it, 1..SC_VIOMMU_CHUNK */
};

struct sc_viommu_domain {
	uint32_t id;
	bool bypass;
	uint32_t nendpoints;
	uint32_t seq;             /* odd while the writer changes the table */
	uint32_t n;               /* mappings in all */
	uint32_t ndying;
	uint32_t ntop;            /* chunks in use: entries of top */
	/* Fixed at creation, read by readers as they are: */
	uint32_t npool;           /* chunks reserved: the size of top, free and pool */
	struct sc_viommu_chunk_ref *top;   /* sorted, disjoint chunks */
	struct sc_viommu_map *pool;        /* npool chunks; never moved until the domain is freed */
	/* The writer's only: */
	uint32_t *free;           /* chunks given back, reused last-out (their pages are backed) */
	uint32_t nfree;
	uint32_t nfresh;          /* chunks [nfresh, npool) never used yet */
	void *mem;                /* top, free and pool in one reservation, backed as touched */
	size_t mem_bytes;
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
