/* SPDX-License-Identifier: MIT */
/*
 * Private to runtime/: what an isolated device's IOTLB grants
 * (vu_server.c, iommu_isolation). Each entry [iova, last] -> gpa grants the
 * guest pages behind it. A page stays mapped while any grant covers it; the
 * pages of a dropped grant wait ("pending") for the grace period of the
 * invalidation that dropped them, and are then unmapped where no grant
 * covers them any more. With optimistic teardown no ack waits for that
 * grace period: the pending ranges are sealed when one starts (the
 * drops after it wait for the next) and unmapped once it is over.
 *
 * Three ordered trees (treaps: a random priority per node keeps them
 * balanced whatever the order of the IOVAs, with no rebalancing code): the
 * grants by IOVA (disjoint: an UPDATE replaces what it overlaps), and two
 * maps of guest ranges as disjoint segments, each with how many ranges
 * cover it, neighbours of equal count merged (contiguous grants are one
 * segment): what the live grants cover, and what is pending (and sealed). An operation
 * costs O(log n) plus the segments it touches; nothing walks all 65,536
 * entries a guest may hold, and no order of them makes it quadratic.
 *
 * The control thread only.
 */
#ifndef SC_RUNTIME_GRANTS_H
#define SC_RUNTIME_GRANTS_H

#include <stdbool.h>
#include <stdint.h>

/* A grant (key iova, a last, b gpa), or a segment (key start, a end, b count). */
struct sc_grants_node {
	struct sc_grants_node *l, *r;
	uint64_t key, a, b;
	uint32_t prio;       /* a node's priority is above its children's */
};

struct sc_grants_tree {
	struct sc_grants_node *root;
	uint32_t n;
};

/* [start, end) of guest addresses that count ranges cover (count > 0). */
struct sc_cover_seg {
	uint64_t start, end, count;
};

struct sc_grants {
	const char *who;               /* for the one line when memory runs out (the socket path) */
	struct sc_grants_tree grants;  /* by iova, disjoint */
	struct sc_grants_tree live;    /* guest ranges the grants cover: segments with counts */
	struct sc_grants_tree pending; /* guest ranges dropped, to unmap after the grace period */
	struct sc_grants_tree sealed;  /* pending ranges a grace period that runs now covers */
	struct sc_grants_node *spare;  /* nodes to reuse (linked by l) */
	uint32_t nspare;
	uint32_t seed;                 /* of the priorities */
	struct sc_cover_seg *old, *scratch;   /* a window of segments being rebuilt */
	uint32_t old_cap, scratch_cap;
};

/* Called on a guest range [gpa, end). */
typedef void sc_grants_range_fn(void *arg, uint64_t gpa, uint64_t end);

/* Empty; who names the device in the line a failed allocation prints. */
void sc_grants_init(struct sc_grants *G, const char *who);

/* Free everything. */
void sc_grants_fini(struct sc_grants *G);

/* Forget every grant and pending range (the mappings went with their regions). */
void sc_grants_clear(struct sc_grants *G);

/* Is exactly [iova, last] -> gpa granted? */
bool sc_grants_has(const struct sc_grants *G, uint64_t iova, uint64_t last, uint64_t gpa);

/*
 * Note the grant [iova, last] -> gpa; no grant may overlap its IOVAs (drop
 * them first). Returns 0, or -ENOMEM with nothing noted.
 */
int sc_grants_add(struct sc_grants *G, uint64_t iova, uint64_t last, uint64_t gpa);

/*
 * Drop the grants that overlap iova [iova, last]; their guest ranges
 * become pending. Returns how many were dropped. Out of memory, a range
 * may stay noted as covered or not be noted as pending: its pages then stay
 * mapped until their region goes (one line says so).
 */
uint32_t sc_grants_drop_iova(struct sc_grants *G, uint64_t iova, uint64_t last);

/* Make guest [gpa, end) pending (mapped, for nothing the IOTLB holds now). */
void sc_grants_pend(struct sc_grants *G, uint64_t gpa, uint64_t end);

/*
 * Call fn on each piece of guest [gpa, end) that no grant covers, in
 * address order, nor (with pending) a pending or sealed range.
 */
void sc_grants_uncovered_each(const struct sc_grants *G, uint64_t gpa, uint64_t end, bool pending,
			      sc_grants_range_fn *fn, void *arg);

/*
 * After a grace period that started after every drop so far: call fn on
 * each piece of the pending and sealed ranges that no grant covers (to
 * unmap), merged where they touch, then forget them.
 */
void sc_grants_flush(struct sc_grants *G, sc_grants_range_fn *fn, void *arg);

/* Is anything pending (dropped, and not sealed yet)? */
bool sc_grants_pending(const struct sc_grants *G);

/*
 * A grace period starts: the pending ranges become sealed, to be flushed
 * by sc_grants_flush_sealed once it is over; what drops from now on is
 * pending again. Returns 0, or -EBUSY (nothing changed) while ranges
 * sealed before wait still: one grace period at a time.
 */
int sc_grants_seal(struct sc_grants *G);

/* After the grace period of sc_grants_seal: sc_grants_flush for the sealed ranges only. */
void sc_grants_flush_sealed(struct sc_grants *G, sc_grants_range_fn *fn, void *arg);

/*
 * A region [gpa, gpa + size) leaves: call gone(arg, iova, last) for each
 * grant into it and forget those grants, and the pending and sealed ranges there.
 */
void sc_grants_drop_region(struct sc_grants *G, uint64_t gpa, uint64_t size,
			   void (*gone)(void *arg, uint64_t iova, uint64_t last), void *arg);

#endif
