/* SPDX-License-Identifier: MIT */
#include "runtime/grants.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sc_grants_node node;

/* ---- treaps: split and merge keep a tree ordered by key and a heap by priority ---- */

/* Every key of x is below every key of y. Depth is O(log n) expected: so is the recursion. */
static node *merge(node *x, node *y)
{
	if (!x)
		return y;
	if (!y)
		return x;
	if (x->prio > y->prio) {
		x->r = merge(x->r, y);
		return x;
	}
	y->l = merge(x, y->l);
	return y;
}

/* t into the keys below key (*lo) and the rest (*hi). */
static void split(node *t, uint64_t key, node **lo, node **hi)
{
	if (!t) {
		*lo = *hi = NULL;
	} else if (t->key < key) {
		split(t->r, key, &t->r, hi);
		*lo = t;
	} else {
		split(t->l, key, lo, &t->l);
		*hi = t;
	}
}

/* The node with the greatest key not above key, or NULL. */
static node *floor_of(node *t, uint64_t key)
{
	node *best = NULL;

	while (t) {
		if (t->key <= key) {
			best = t;
			t = t->r;
		} else {
			t = t->l;
		}
	}
	return best;
}

/* Unlink the node with the greatest (or least) key, as a lone node: its one child takes its place. */
static node *take_max(node **t)
{
	while (*t && (*t)->r)
		t = &(*t)->r;
	node *m = *t;
	if (m) {
		*t = m->l;
		m->l = NULL;
	}
	return m;
}

static node *take_min(node **t)
{
	while (*t && (*t)->l)
		t = &(*t)->l;
	node *m = *t;
	if (m) {
		*t = m->r;
		m->r = NULL;
	}
	return m;
}

/* fn on the nodes with keys in [lo, hi), in key order. */
static void walk(const node *t, uint64_t lo, uint64_t hi, void (*fn)(const node *n, void *arg), void *arg)
{
	if (!t)
		return;
	if (t->key > lo)
		walk(t->l, lo, hi, fn, arg);
	if (t->key >= lo && t->key < hi)
		fn(t, arg);
	if (t->key < hi)
		walk(t->r, lo, hi, fn, arg);
}

/* Spares kept for reuse beyond this go back to malloc: 65,536 grants dropped leave no 10 MB behind. */
#define SPARE_MAX 1024

static void spare_put(struct sc_grants *G, node *n)
{
	if (G->nspare >= SPARE_MAX) {
		free(n);   /* a reservation made before stays: nspare does not drop */
		return;
	}
	n->l = G->spare;
	G->spare = n;
	G->nspare++;
}

/* Every node of t to the spares. */
static void spare_all(struct sc_grants *G, node *t)
{
	if (!t)
		return;
	spare_all(G, t->l);
	spare_all(G, t->r);
	spare_put(G, t);
}

/* Have at least want spare nodes. 0 or -ENOMEM. */
static int spare_reserve(struct sc_grants *G, uint64_t want)
{
	while (G->nspare < want) {
		node *n = malloc(sizeof(*n));
		if (!n)
			return -ENOMEM;
		spare_put(G, n);
	}
	return 0;
}

/* A spare (reserved before: this cannot fail) as a lone node. */
static node *node_take(struct sc_grants *G, uint64_t key, uint64_t a, uint64_t b)
{
	node *n = G->spare;

	G->spare = n->l;
	G->nspare--;
	/* xorshift32: priorities need only be independent of the keys. */
	G->seed ^= G->seed << 13;
	G->seed ^= G->seed >> 17;
	G->seed ^= G->seed << 5;
	*n = (node){ .key = key, .a = a, .b = b, .prio = G->seed };
	return n;
}

void sc_grants_init(struct sc_grants *G, const char *who)
{
	memset(G, 0, sizeof(*G));
	G->who = who;
	G->seed = 0x9e3779b9u;
}

void sc_grants_clear(struct sc_grants *G)
{
	spare_all(G, G->grants.root);
	spare_all(G, G->live.root);
	spare_all(G, G->pending.root);
	spare_all(G, G->sealed.root);
	G->grants = G->live = G->pending = G->sealed = (struct sc_grants_tree){ NULL, 0 };
}

void sc_grants_fini(struct sc_grants *G)
{
	sc_grants_clear(G);
	while (G->spare) {
		node *n = G->spare;
		G->spare = n->l;
		free(n);
	}
	free(G->old);
	free(G->scratch);
	sc_grants_init(G, G->who);
}

/* Room for want segments in *arr (doubling). 0 or -ENOMEM. */
static int room(struct sc_cover_seg **arr, uint32_t *cap, uint64_t want)
{
	if (want <= *cap)
		return 0;
	uint64_t ncap = *cap ? *cap : 64;
	while (ncap < want)
		ncap *= 2;
	if (ncap > UINT32_MAX)
		return -ENOMEM;
	struct sc_cover_seg *a = realloc(*arr, ncap * sizeof(*a));
	if (!a)
		return -ENOMEM;
	*arr = a;
	*cap = (uint32_t)ncap;
	return 0;
}

/* ---- a cover: disjoint segments with counts ---- */

enum cover_op { COVER_ADD, COVER_SUB, COVER_CLEAR };

static uint64_t cover_count(enum cover_op op, uint64_t count)
{
	switch (op) {
	case COVER_ADD:
		return count + 1;
	case COVER_SUB:
		return count ? count - 1 : 0;
	default:
		return 0;
	}
}

/* Append [start, end) with count to the window, merged with the last piece where it continues it. */
static void emit(struct sc_cover_seg *w, uint32_t *m, uint64_t start, uint64_t end, uint64_t count)
{
	if (start >= end || !count)
		return;
	if (*m && w[*m - 1].end == start && w[*m - 1].count == count) {
		w[*m - 1].end = end;
		return;
	}
	w[(*m)++] = (struct sc_cover_seg){ start, end, count };
}

struct collect {
	struct sc_grants *G;
	uint32_t k;
	int err;
};

static void collect_one(const node *n, void *arg)
{
	struct collect *c = arg;
	if (c->err || (c->err = room(&c->G->old, &c->G->old_cap, (uint64_t)c->k + 1)) < 0)
		return;
	c->G->old[c->k++] = (struct sc_cover_seg){ n->key, n->a, n->b };
}

/*
 * Apply op to the counts over [a, b): take out the segments that start in
 * it, with one neighbour on each side (the one before may reach into it;
 * both may merge with what changes), rebuild them, and put the pieces back.
 * 0 (with a spare node left) or -ENOMEM (the cover unchanged).
 */
static int cover_apply(struct sc_grants *G, struct sc_grants_tree *c, uint64_t a, uint64_t b, enum cover_op op)
{
	node *lo, *mid, *hi, *before, *after;
	struct collect col = { G, 0, 0 };

	if (a >= b)
		return 0;
	split(c->root, a, &lo, &mid);
	split(mid, b, &mid, &hi);
	before = take_max(&lo);
	after = take_min(&hi);
	if (before)
		collect_one(before, &col);
	walk(mid, 0, UINT64_MAX, collect_one, &col);
	if (after)
		collect_one(after, &col);

	/*
	 * Each old segment gives at most 3 pieces and a gap before it; one more
	 * gap after the last. One spare more stays for the caller (a grant's node).
	 */
	uint32_t m = 0;
	if (col.err || room(&G->scratch, &G->scratch_cap, 4ull * col.k + 1) < 0 ||
	    spare_reserve(G, 4ull * col.k + 2) < 0) {
		c->root = merge(merge(merge(lo, before), mid), merge(after, hi));
		return -ENOMEM;
	}
	struct sc_cover_seg *w = G->scratch;
	uint64_t pos = a;   /* [a, pos) of the range is rebuilt */
	for (uint32_t k = 0; k < col.k; k++) {
		const struct sc_cover_seg s = G->old[k];
		if (s.start < a)
			emit(w, &m, s.start, s.end < a ? s.end : a, s.count);
		uint64_t ge = s.start < b ? s.start : b;
		if (pos < ge) {
			emit(w, &m, pos, ge, cover_count(op, 0));
			pos = ge;
		}
		uint64_t is = s.start > a ? s.start : a, ie = s.end < b ? s.end : b;
		if (is < ie) {
			emit(w, &m, is, ie, cover_count(op, s.count));
			pos = ie;
		}
		if (s.end > b)
			emit(w, &m, s.start > b ? s.start : b, s.end, s.count);
	}
	if (pos < b)
		emit(w, &m, pos, b, cover_count(op, 0));

	/* Nothing can fail from here on. */
	if (before)
		spare_put(G, before);
	if (after)
		spare_put(G, after);
	spare_all(G, mid);
	mid = NULL;
	for (uint32_t k = 0; k < m; k++)
		mid = merge(mid, node_take(G, w[k].start, w[k].end, w[k].count));
	c->root = merge(merge(lo, mid), hi);
	c->n = c->n - col.k + m;
	return 0;
}

struct gaps {
	uint64_t pos;   /* [a, pos) is covered or told already */
	sc_grants_range_fn *fn;
	void *arg;
};

static void gap_before(const node *n, void *arg)
{
	struct gaps *g = arg;
	if (n->key > g->pos)
		g->fn(g->arg, g->pos, n->key);
	if (n->a > g->pos)
		g->pos = n->a;
}

/* fn on each piece of [a, b) no segment of c covers, in order. */
static void cover_gaps(const struct sc_grants_tree *c, uint64_t a, uint64_t b, sc_grants_range_fn *fn, void *arg)
{
	struct gaps g = { a, fn, arg };
	const node *f = floor_of(c->root, a);

	if (f && f->key < a && f->a > a)
		g.pos = f->a;   /* the segment before a reaches into the range */
	if (g.pos < b)
		walk(c->root, a, b, gap_before, &g);
	if (g.pos < b)
		fn(arg, g.pos, b);
}

/* ---- grants ---- */

static uint64_t grant_end(const node *g)
{
	return g->b + (g->a - g->key + 1);
}

static void say_nomem(const struct sc_grants *G, uint64_t gpa, uint64_t end)
{
	fprintf(stderr, "sidecore: %s: no memory to note guest 0x%llx (+0x%llx) for unmapping; it stays mapped until "
		"its region goes\n", G->who, (unsigned long long)gpa, (unsigned long long)(end - gpa));
}

bool sc_grants_has(const struct sc_grants *G, uint64_t iova, uint64_t last, uint64_t gpa)
{
	const node *n = floor_of(G->grants.root, iova);
	return n && n->key == iova && n->a == last && n->b == gpa;
}

int sc_grants_add(struct sc_grants *G, uint64_t iova, uint64_t last, uint64_t gpa)
{
	node *lo, *hi;
	uint64_t end = gpa + (last - iova + 1);

	if (cover_apply(G, &G->live, gpa, end, COVER_ADD) < 0)   /* it leaves the spare node_take needs */
		return -ENOMEM;
	split(G->grants.root, iova, &lo, &hi);
	G->grants.root = merge(merge(lo, node_take(G, iova, last, gpa)), hi);
	G->grants.n++;
	return 0;
}

void sc_grants_pend(struct sc_grants *G, uint64_t gpa, uint64_t end)
{
	if (cover_apply(G, &G->pending, gpa, end, COVER_ADD) < 0)
		say_nomem(G, gpa, end);
}

/* A grant goes: its guest range from live to pending. */
static void grant_drop(struct sc_grants *G, node *g)
{
	uint64_t gpa = g->b, end = grant_end(g);

	/* Pending first: should that fail, the range stays covered, so it stays mapped either way. */
	if (cover_apply(G, &G->pending, gpa, end, COVER_ADD) < 0 || cover_apply(G, &G->live, gpa, end, COVER_SUB) < 0)
		say_nomem(G, gpa, end);
	G->grants.n--;
}

static void drop_all(struct sc_grants *G, node *t, uint32_t *n)
{
	if (!t)
		return;
	drop_all(G, t->l, n);
	drop_all(G, t->r, n);
	grant_drop(G, t);
	spare_put(G, t);
	(*n)++;
}

uint32_t sc_grants_drop_iova(struct sc_grants *G, uint64_t iova, uint64_t last)
{
	node *lo, *mid, *hi = NULL;
	uint32_t n = 0;

	split(G->grants.root, iova, &lo, &mid);
	/* The grant that starts below iova may reach into it (grants are disjoint: only that one). */
	node *before = take_max(&lo);
	if (before && before->a >= iova) {
		grant_drop(G, before);
		spare_put(G, before);
		n++;
	} else if (before) {
		lo = merge(lo, before);
	}
	if (last != UINT64_MAX)
		split(mid, last + 1, &mid, &hi);
	drop_all(G, mid, &n);
	G->grants.root = merge(lo, hi);
	return n;
}

/* The gaps of a gap in the next cover: what none of the covers so far holds. */
struct gaps_in {
	const struct sc_grants_tree *cover;
	sc_grants_range_fn *fn;
	void *arg;
};

static void gaps_of(void *arg, uint64_t gpa, uint64_t end)
{
	const struct gaps_in *g = arg;
	cover_gaps(g->cover, gpa, end, g->fn, g->arg);
}

void sc_grants_uncovered_each(const struct sc_grants *G, uint64_t gpa, uint64_t end, bool pending,
			      sc_grants_range_fn *fn, void *arg)
{
	struct gaps_in sealed = { &G->sealed, fn, arg }, pend = { &G->pending, gaps_of, &sealed };

	if (pending)
		cover_gaps(&G->live, gpa, end, gaps_of, &pend);
	else
		cover_gaps(&G->live, gpa, end, fn, arg);
}

struct flush {
	const struct sc_grants *G;
	uint64_t start, end;
	sc_grants_range_fn *fn;
	void *arg;
};

/* Segments that touch differ in count only: one range to unmap. */
static void flush_one(const node *n, void *arg)
{
	struct flush *f = arg;

	if (f->end && n->key == f->end) {
		f->end = n->a;
		return;
	}
	if (f->end)
		cover_gaps(&f->G->live, f->start, f->end, f->fn, f->arg);
	f->start = n->key;
	f->end = n->a;
}

/* fn on what of cover no grant covers, then forget cover. */
static void flush_cover(struct sc_grants *G, struct sc_grants_tree *cover, sc_grants_range_fn *fn, void *arg)
{
	struct flush f = { G, 0, 0, fn, arg };

	walk(cover->root, 0, UINT64_MAX, flush_one, &f);
	if (f.end)
		cover_gaps(&G->live, f.start, f.end, fn, arg);
	spare_all(G, cover->root);
	*cover = (struct sc_grants_tree){ NULL, 0 };
}

void sc_grants_flush(struct sc_grants *G, sc_grants_range_fn *fn, void *arg)
{
	struct gaps_in not_pending = { &G->pending, fn, arg };

	/* What pending holds too is left to its own flush: each piece is told once. */
	flush_cover(G, &G->sealed, gaps_of, &not_pending);
	flush_cover(G, &G->pending, fn, arg);
}

bool sc_grants_pending(const struct sc_grants *G)
{
	return G->pending.root != NULL;
}

int sc_grants_seal(struct sc_grants *G)
{
	if (G->sealed.root)
		return -EBUSY;
	G->sealed = G->pending;
	G->pending = (struct sc_grants_tree){ NULL, 0 };
	return 0;
}

void sc_grants_flush_sealed(struct sc_grants *G, sc_grants_range_fn *fn, void *arg)
{
	flush_cover(G, &G->sealed, fn, arg);
}

/* t without the grants into [gpa, gpa + size), each told to gone() on its way out. */
static node *drop_in_region(struct sc_grants *G, node *t, uint64_t gpa, uint64_t size,
			    void (*gone)(void *arg, uint64_t iova, uint64_t last), void *arg)
{
	if (!t)
		return NULL;
	node *l = drop_in_region(G, t->l, gpa, size, gone, arg);
	node *r = drop_in_region(G, t->r, gpa, size, gone, arg);
	if (t->b - gpa < size) {
		gone(arg, t->key, t->a);
		spare_put(G, t);
		G->grants.n--;
		return merge(l, r);
	}
	t->l = l;
	t->r = r;
	return t;
}

void sc_grants_drop_region(struct sc_grants *G, uint64_t gpa, uint64_t size,
			   void (*gone)(void *arg, uint64_t iova, uint64_t last), void *arg)
{
	G->grants.root = drop_in_region(G, G->grants.root, gpa, size, gone, arg);
	/* A grant lies inside one region (sc_mem_grant): the region's guest range is all of theirs. */
	if (cover_apply(G, &G->live, gpa, gpa + size, COVER_CLEAR) < 0 ||
	    cover_apply(G, &G->pending, gpa, gpa + size, COVER_CLEAR) < 0 ||
	    cover_apply(G, &G->sealed, gpa, gpa + size, COVER_CLEAR) < 0)
		say_nomem(G, gpa, gpa + size);
}
