/* SPDX-License-Identifier: MIT */
/*
 * A domain's mapping table against a plain sorted array (the model): random
 * MAP, UNMAP, INVALIDATE and UPDATE with their error codes, every lookup
 * checked through sc_viommu_translate; the cap; optimistic teardown with
 * partial expiry; and the cost of one change at 1k, 16k and 64k mappings.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/barrier.h"
#include "harness.h"
#include "viommu/viommu.h"

#define GPA    0x100000ull
#define MEM    (4ull << 20)
#define GPAGES (MEM / PG)
#define EP     7u
#define DOM    3u
#define PG     4096ull
#define BASE   0x40000000ull   /* IOVA of page 0 */

static struct t_guest g;
static struct sc_viommu *v;
static struct sc_viommu_tc tc;
static struct sc_viommu_config cfg;

/* The model: a plain sorted array of what the domain should hold. */

struct ref_map {
	uint64_t iova, last, gpa;
	unsigned perm;
	bool dying;
	uint32_t epoch;           /* the mark after which it started dying */
};

static struct ref_map *ref;
static uint32_t nref, ref_cap;
static uint32_t epoch;        /* marks taken so far */

static void setup(void)
{
	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	sc_viommu_config_default(&cfg, &g.mem);
}

static void teardown(void)
{
	if (v) {
		sc_viommu_tc_fini(&tc);
		sc_viommu_destroy(v);
		v = NULL;
	}
	free(ref);
	ref = NULL;
	t_guest_fini(&g);
}

TestSuite(viommu_maps, .init = setup, .fini = teardown, .timeout = 120);

/* A viommu with one endpoint in domain DOM, max_mappings and teardown as given. */
static void start(uint32_t max_mappings, enum sc_viommu_teardown mode)
{
	bool removed;

	cfg.max_mappings = max_mappings;
	cfg.teardown = mode;
	cfg.window_ns = 3600ull * 1000000000ull;   /* only the test's ticks end a window */
	cr_assert_eq(sc_viommu_create(&cfg, &v), 0);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP), 0);
	cr_assert_eq(sc_viommu_tc_init(v, &tc, EP), 0);
	cr_assert_eq(sc_viommu_attach(v, DOM, EP, false, &removed), 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(uint64_t below)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % below;
}

/* ---- the model's requests ---- */

static void ref_init(uint32_t cap)
{
	free(ref);
	ref = calloc(cap + 1, sizeof(*ref));
	cr_assert(ref);
	nref = 0;
	ref_cap = cap;
}

/* First entry whose last ≥ iova. */
static uint32_t ref_reaching(uint64_t iova)
{
	uint32_t lo = 0, hi = nref;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ref[mid].last < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Entries overlapping [iova, last], from *first. */
static uint32_t ref_span(uint64_t iova, uint64_t last, uint32_t *first)
{
	uint32_t i = ref_reaching(iova), k = 0;
	while (i + k < nref && ref[i + k].iova <= last)
		k++;
	*first = i;
	return k;
}

static void ref_remove(uint32_t i, uint32_t k)
{
	memmove(&ref[i], &ref[i + k], (nref - i - k) * sizeof(*ref));
	nref -= k;
}

static int ref_map(uint64_t iova, uint64_t last, uint64_t gpa, unsigned perm)
{
	uint32_t i, k = ref_span(iova, last, &i);

	if (k) {
		struct ref_map *m = &ref[i];
		if (k == 1 && m->dying && m->iova == iova && m->last == last && m->gpa == gpa && m->perm == perm) {
			m->dying = false;
			return 0;
		}
		for (uint32_t j = i; j < i + k; j++)
			if (!ref[j].dying)
				return -EEXIST;
		ref_remove(i, k);
	}
	if (nref == ref_cap)
		return -ENOMEM;
	memmove(&ref[i + 1], &ref[i], (nref - i) * sizeof(*ref));
	ref[i] = (struct ref_map){ .iova = iova, .last = last, .gpa = gpa, .perm = perm };
	nref++;
	return 0;
}

static void ref_start_dying(uint32_t i, uint32_t k)
{
	for (uint32_t j = i; j < i + k; j++)
		if (!ref[j].dying) {
			ref[j].dying = true;
			ref[j].epoch = epoch;
		}
}

static int ref_unmap(uint64_t iova, uint64_t last, bool *removed)
{
	uint32_t i, k = ref_span(iova, last, &i);

	*removed = false;
	if (!k)
		return 0;
	if (ref[i].iova < iova || ref[i + k - 1].last > last)
		return -ERANGE;
	if (cfg.teardown == SC_VIOMMU_OPTIMISTIC) {
		ref_start_dying(i, k);
		return 0;
	}
	ref_remove(i, k);
	*removed = true;
	return 0;
}

static bool ref_remove_overlapping(uint64_t iova, uint64_t last)
{
	uint32_t i, k = ref_span(iova, last, &i);
	bool live = false;

	for (uint32_t j = i; j < i + k; j++)
		live |= !ref[j].dying;
	ref_remove(i, k);
	return live;
}

static void ref_invalidate(uint64_t iova, uint64_t last, bool *removed)
{
	uint32_t i, k = ref_span(iova, last, &i);

	*removed = false;
	if (cfg.teardown == SC_VIOMMU_OPTIMISTIC)
		ref_start_dying(i, k);
	else
		*removed = ref_remove_overlapping(iova, last);
}

static int ref_update(uint64_t iova, uint64_t last, uint64_t gpa, unsigned perm, bool *removed)
{
	uint32_t i = ref_reaching(iova);

	*removed = false;
	if (i < nref && ref[i].iova == iova && ref[i].last == last && ref[i].gpa == gpa && ref[i].perm == perm)
		return ref[i].dying ? ref_map(iova, last, gpa, perm) : 0;
	*removed = ref_remove_overlapping(iova, last);
	return ref_map(iova, last, gpa, perm);
}

/* Entries that started dying before mark `upto` are past their window. */
static uint32_t ref_expire(uint32_t upto)
{
	uint32_t w = 0, gone = 0;
	for (uint32_t r = 0; r < nref; r++) {
		if (ref[r].dying && ref[r].epoch < upto) {
			gone++;
			continue;
		}
		ref[w++] = ref[r];
	}
	nref = w;
	return gone;
}

/* ---- checks ---- */

/* The byte at iova translates as the model says: gpa, read, write. */
static void check_at(uint64_t iova)
{
	struct iovec iov[1];
	uint32_t i = ref_reaching(iova);
	int r = sc_viommu_translate(&tc, iova, 1, SC_PERM_READ, iov, 1);

	if (i == nref || ref[i].iova > iova) {
		cr_assert_eq(r, -EFAULT, "iova 0x%llx: nothing mapped, got %d", (unsigned long long)iova, r);
		return;
	}
	cr_assert_eq(r, 1, "iova 0x%llx: mapped [0x%llx, 0x%llx], got %d", (unsigned long long)iova,
		     (unsigned long long)ref[i].iova, (unsigned long long)ref[i].last, r);
	cr_assert_eq((uint8_t *)iov[0].iov_base, g.base + (ref[i].gpa - GPA) + (iova - ref[i].iova),
		     "iova 0x%llx: wrong gpa", (unsigned long long)iova);
	r = sc_viommu_translate(&tc, iova, 1, SC_PERM_WRITE, iov, 1);
	cr_assert_eq(r, (ref[i].perm & SC_PERM_WRITE) ? 1 : -EPERM, "iova 0x%llx: write", (unsigned long long)iova);
}

/* Around [iova, last]: both ends, one byte either side. */
static void check_range(uint64_t iova, uint64_t last)
{
	check_at(iova);
	check_at(last);
	if (iova)
		check_at(iova - 1);
	check_at(last + 1);
}

static void check_all(void)
{
	struct sc_viommu_fault f;

	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), (int)nref);
	for (uint32_t i = 0; i < nref; i++)
		check_range(ref[i].iova, ref[i].last);
	while (sc_viommu_fault_pop(v, &f))
		;
}

static uint64_t page_iova(uint64_t page)
{
	return BASE + page * PG;
}

/* A mapping's target: inside guest memory, len pages long. */
static uint64_t rnd_gpa(uint64_t pages)
{
	return GPA + rnd(GPAGES - pages + 1) * PG;
}

/* ---- the random walk ---- */

/*
 * ops random requests over `space` pages; the table is kept near max by
 * mapping more often when it is short. Every result is compared with the
 * model's, and the lookups around each request with the model's.
 */
static void random_walk(uint32_t max, uint64_t space, unsigned ops)
{
	bool optimistic = cfg.teardown == SC_VIOMMU_OPTIMISTIC;
	uint64_t *marks = calloc(ops + 1, sizeof(*marks));
	unsigned counts[8] = { 0 }, enomem = 0, peak = 0;

	cr_assert(marks);
	ref_init(max);
	epoch = 0;
	/* Start full: one page each at random until the cap. */
	for (uint64_t tries = 0; nref < max && tries < 100ull * max; tries++) {
		uint64_t iova = page_iova(rnd(space)), gpa = rnd_gpa(1);
		cr_assert_eq(sc_viommu_map(v, DOM, iova, iova + PG - 1, gpa, SC_PERM_RW),
			     ref_map(iova, iova + PG - 1, gpa, SC_PERM_RW));
	}
	check_all();
	cr_assert_eq(nref, max, "filled to the cap");
	/* One more on the first free page: the cap, not an overlap. */
	for (uint64_t page = 0, i; page < space; page++)
		if ((i = ref_reaching(page_iova(page))) == nref || ref[i].iova > page_iova(page)) {
			cr_assert_eq(sc_viommu_map(v, DOM, page_iova(page), page_iova(page) + PG - 1, GPA, SC_PERM_RW), -ENOMEM);
			break;
		}
	for (unsigned op = 0; op < ops; op++) {
		uint64_t page = rnd(space), pages = rnd(4) ? 1 : 2 + rnd(3), iova, last, gpa;
		unsigned perm = rnd(2) ? SC_PERM_RW : SC_PERM_READ, kind = (unsigned)rnd(100);
		bool removed = false, want_removed;
		int got, want;

		/* Map more while the table is short of its cap. */
		if (nref < max * 7 / 8 && kind >= 50 && rnd(4))
			kind = (unsigned)rnd(50);
		iova = page_iova(page);
		last = iova + pages * PG - 1;
		gpa = rnd_gpa(pages);
		if (kind < 50) {
			want = ref_map(iova, last, gpa, perm);
			got = sc_viommu_map(v, DOM, iova, last, gpa, perm);
			counts[0]++;
		} else if (kind < 62 && nref) {
			/* Exact fit: a run of up to 300 mappings (many chunks), unmapped whole. */
			uint32_t i = (uint32_t)rnd(nref), k = 1 + (uint32_t)rnd(rnd(16) ? 4 : 300);
			if (i + k > nref)
				k = nref - i;
			iova = ref[i].iova;
			last = ref[i + k - 1].last;
			want = ref_unmap(iova, last, &want_removed);
			got = sc_viommu_unmap(v, DOM, iova, last, &removed);
			cr_assert_eq(removed, want_removed);
			counts[1]++;
		} else if (kind < 72) {
			/* Any range: mostly splits a mapping (-ERANGE) or hits a gap. */
			last = iova + (1 + rnd(rnd(64) ? 8 : 2048)) * PG - 1;
			want = ref_unmap(iova, last, &want_removed);
			got = sc_viommu_unmap(v, DOM, iova, last, &removed);
			cr_assert_eq(removed, want_removed);
			counts[2]++;
		} else if (kind < 80) {
			/* IOTLB INVALIDATE: everything overlapping goes, whole; up to 2048 pages (many chunks). */
			last = iova + (1 + rnd(rnd(64) ? 16 : 2048)) * PG - 1;
			ref_invalidate(iova, last, &want_removed);
			want = 0;
			got = sc_viommu_invalidate(v, DOM, iova, last, &removed);
			cr_assert_eq(removed, want_removed);
			counts[3]++;
		} else if (kind < 90) {
			/* IOTLB UPDATE: half of them repeat an entry as it is (or was, if dying). */
			if (nref && rnd(2)) {
				const struct ref_map *m = &ref[rnd(nref)];
				iova = m->iova;
				last = m->last;
				gpa = m->gpa;
				perm = m->perm;
			}
			want = ref_update(iova, last, gpa, perm, &want_removed);
			got = sc_viommu_update(v, DOM, iova, last, gpa, perm, &removed);
			cr_assert_eq(removed, want_removed);
			counts[4]++;
		} else if (kind < 95) {
			/* Bad requests change nothing. */
			want = rnd(2) ? -ERANGE : -EINVAL;
			if (want == -ERANGE)
				got = sc_viommu_map(v, DOM, iova + 0x800, last, gpa, perm);
			else
				got = sc_viommu_map(v, DOM, iova, iova - 1, gpa, perm);
			counts[5]++;
		} else if (optimistic) {
			/* A mark, or the end of the windows of those that started dying before an earlier mark. */
			if (rnd(2)) {
				uint64_t t = now_ns();
				marks[epoch++] = t;
				while (now_ns() == t)
					;   /* later requests' deadlines are strictly after the mark */
			} else if (epoch) {
				uint32_t upto = 1 + (uint32_t)rnd(epoch);
				struct sc_viommu_stats before, after;
				sc_viommu_get_stats(v, &before);
				uint32_t gone = ref_expire(upto);
				sc_viommu_tick(v, marks[upto - 1] + cfg.window_ns);
				sc_viommu_get_stats(v, &after);
				cr_assert_eq(after.torn_down - before.torn_down, gone);
			}
			want = got = 0;
			counts[6]++;
		} else {
			want = got = 0;
		}
		cr_assert_eq(got, want, "op %u kind %u [0x%llx, 0x%llx]: got %d, the model %d", op, kind,
			     (unsigned long long)iova, (unsigned long long)last, got, want);
		enomem += got == -ENOMEM;
		peak = nref > peak ? nref : peak;
		check_range(iova, last);
		for (int k = 0; k < 4; k++)
			check_at(page_iova(rnd(space)) + rnd(PG));
		if (op % 1000 == 999)
			check_all();
	}
	check_all();
	cr_log_info("random walk: %u maps, %u exact unmaps, %u unmaps, %u invalidates, %u updates, %u bad, %u ticks; %u -ENOMEM, %u mappings at most, %u at the end",
		    counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], enomem, peak, nref);
	free(marks);
}

Test(viommu_maps, random_walk_strict_against_a_sorted_array)
{
	start(3000, SC_VIOMMU_STRICT);
	random_walk(3000, 6000, 30000);
}

Test(viommu_maps, random_walk_optimistic_against_a_sorted_array)
{
	start(3000, SC_VIOMMU_OPTIMISTIC);
	random_walk(3000, 6000, 30000);
	/* Every window ends: only live mappings stay. */
	sc_viommu_tick(v, now_ns() + 2 * cfg.window_ns);
	ref_expire(UINT32_MAX);
	check_all();
}

Test(viommu_maps, small_caps_fill_and_drain)
{
	static const uint32_t caps[] = { 1, 2, 31, 32, 33, 127, 128, 129, 255, 256, 257, 1000 };
	for (unsigned c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		if (v) {
			sc_viommu_tc_fini(&tc);
			sc_viommu_destroy(v);
		}
		start(caps[c], SC_VIOMMU_STRICT);
		random_walk(caps[c], 3 * caps[c] + 8, 2000);
	}
}

/* Pages 0..n-1 in random order. */
static uint32_t *shuffled(uint32_t n)
{
	uint32_t *p = malloc(n * sizeof(*p));
	cr_assert(p);
	for (uint32_t i = 0; i < n; i++)
		p[i] = i;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)rnd(i + 1), t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static uint64_t gpa_of(uint64_t page)
{
	return GPA + (page % GPAGES) * PG;
}

Test(viommu_maps, fill_to_the_cap_at_random_then_drain)
{
	const uint32_t max = 65536;
	uint32_t *order = shuffled(max);
	bool removed;

	start(max, SC_VIOMMU_STRICT);
	/* Every other page, so no two mappings touch. */
	for (uint32_t i = 0; i < max; i++) {
		uint64_t at = page_iova(2ull * order[i]);
		cr_assert_eq(sc_viommu_map(v, DOM, at, at + PG - 1, gpa_of(order[i]), SC_PERM_RW), 0, "mapping %u", i);
	}
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), (int)max);
	/* One more anywhere is -ENOMEM; one overlapping is still -EEXIST. */
	const uint64_t odd[] = { 1, max + 1, 2ull * max + 1 };
	for (unsigned k = 0; k < 3; k++) {
		uint64_t page = odd[k], at = page_iova(page);
		cr_assert_eq(sc_viommu_map(v, DOM, at, at + PG - 1, GPA, SC_PERM_RW), -ENOMEM, "page %llu",
			     (unsigned long long)page);
	}
	cr_assert_eq(sc_viommu_map(v, DOM, page_iova(0), page_iova(1) - 1, GPA, SC_PERM_RW), -EEXIST);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), (int)max);
	for (uint32_t p = 0; p < max; p++) {
		struct iovec iov[1];
		cr_assert_eq(sc_viommu_translate(&tc, page_iova(2ull * p) + 16, 8, SC_PERM_WRITE, iov, 1), 1);
		cr_assert_eq((uint8_t *)iov[0].iov_base, g.base + (gpa_of(p) - GPA) + 16);
	}
	/* Drain in another random order: single mappings, and now and then a range over many chunks. */
	free(order);
	order = shuffled(max);
	int left = (int)max;
	for (uint32_t i = 0; i < max; i++) {
		uint64_t from = 2ull * order[i], to = from;
		struct iovec iov[1];
		if (i % 4096 == 0)
			to = from + 2 * (1 + rnd(1000));   /* may take mappings already gone: nothing there is no error */
		int before = sc_viommu_domain_mappings(v, DOM);
		cr_assert_eq(sc_viommu_unmap(v, DOM, page_iova(from), page_iova(to) + PG - 1, &removed), 0);
		left = sc_viommu_domain_mappings(v, DOM);
		cr_assert_leq(left, before);
		cr_assert_eq(removed, left < before);
		cr_assert_eq(sc_viommu_translate(&tc, page_iova(from), 8, SC_PERM_READ, iov, 1), -EFAULT);
		cr_assert_eq(sc_viommu_translate(&tc, page_iova(to), 8, SC_PERM_READ, iov, 1), -EFAULT);
	}
	cr_assert_eq(left, 0);
	/* Drained: the cap is whole again. */
	for (uint32_t i = 0; i < max; i++) {
		uint64_t at = page_iova(2ull * i);
		cr_assert_eq(sc_viommu_map(v, DOM, at, at + PG - 1, gpa_of(i), SC_PERM_RW), 0, "mapping %u again", i);
	}
	cr_assert_eq(sc_viommu_map(v, DOM, page_iova(1), page_iova(2) - 1, GPA, SC_PERM_RW), -ENOMEM);
	free(order);
}

/*
 * Round after round, a table filled to the cap above its old mappings, then
 * its new ones thinned to one in 64: thin chunks must merge, or they pile up
 * until a MAP below the cap finds no chunk left.
 */
Test(viommu_maps, thinned_tables_still_reach_the_cap)
{
	const uint32_t max = 4096;
	uint64_t *pages = malloc(max * sizeof(*pages)), next = 0;
	uint32_t n = 0;
	bool removed;

	cr_assert(pages);
	start(max, SC_VIOMMU_STRICT);
	for (int round = 0; round < 8; round++) {
		/* Fill to the cap on fresh pages above all the others (pages[] stays sorted). */
		uint32_t kept = n;
		while (n < max) {
			pages[n] = next++;
			cr_assert_eq(sc_viommu_map(v, DOM, page_iova(pages[n]), page_iova(pages[n]) + PG - 1,
						   gpa_of(pages[n]), SC_PERM_RW), 0, "round %d, mapping %u of %u", round, n, max);
			n++;
		}
		cr_assert_eq(sc_viommu_map(v, DOM, page_iova(next), page_iova(next) + PG - 1, GPA, SC_PERM_RW), -ENOMEM);
		/* Of the new ones keep one in 64: each run between kept ones goes in one UNMAP. */
		uint32_t w = kept;
		for (uint32_t i = kept; i < n; i += 64) {
			uint32_t end = i + 64 < n ? i + 64 : n;
			pages[w++] = pages[i];
			if (i + 1 < end) {
				cr_assert_eq(sc_viommu_unmap(v, DOM, page_iova(pages[i + 1]), page_iova(pages[end - 1]) + PG - 1,
							     &removed), 0);
				cr_assert(removed);
			}
		}
		n = w;
		cr_assert_eq(sc_viommu_domain_mappings(v, DOM), (int)n);
		for (uint32_t i = 0; i < n; i++) {
			struct iovec iov[1];
			cr_assert_eq(sc_viommu_translate(&tc, page_iova(pages[i]) + 8, 1, SC_PERM_READ, iov, 1), 1);
			cr_assert_eq((uint8_t *)iov[0].iov_base, g.base + (gpa_of(pages[i]) - GPA) + 8);
		}
	}
	free(pages);
}

/* ---- readers during changes ---- */

#define GROUP 512   /* pages: one mapping that never goes, then 511 pages of churn */

struct reader {
	struct sc_viommu_tc tc;
	uint64_t space;           /* pages */
	bool stop;
	uint64_t lookups, found, wrong, lost;
};

/*
 * Page p always maps to gpa_of(p) (no mapping crosses a multiple of GPAGES),
 * so whatever a reader finds must say that; the first page of each group is
 * never unmapped, so a reader must always find it.
 */
static void *reader_run(void *arg)
{
	struct reader *r = arg;
	uint64_t x = 0x2545f4914f6cdd1dull;

	while (!sc_load_acquire(&r->stop)) {
		sc_viommu_tc_enter(&r->tc);
		for (int i = 0; i < 64; i++) {
			struct iovec iov[1];
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			uint64_t page = x % r->space;
			int ret = sc_viommu_translate(&r->tc, page_iova(page) + 8, 1, SC_PERM_READ, iov, 1);
			r->lookups++;
			if (ret == 1) {
				r->found++;
				r->wrong += (uint8_t *)iov[0].iov_base != g.base + (gpa_of(page) - GPA) + 8;
			} else {
				r->wrong += ret != -EFAULT;
				r->lost += page % GROUP == 0;
			}
		}
		sc_viommu_tc_exit(&r->tc);
	}
	return NULL;
}

Test(viommu_maps, readers_see_whole_mappings_while_chunks_split_and_merge)
{
	const uint32_t max = 8192;
	const uint64_t space = 64 * GROUP;
	struct reader r = { .space = space };
	struct sc_viommu_fault f;
	pthread_t th;
	bool removed;

	start(max, SC_VIOMMU_STRICT);
	for (uint64_t page = 0; page < space; page += GROUP)
		cr_assert_eq(sc_viommu_map(v, DOM, page_iova(page), page_iova(page) + PG - 1, gpa_of(page), SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_tc_init(v, &r.tc, EP), 0);
	cr_assert_eq(pthread_create(&th, NULL, reader_run, &r), 0);
	uint64_t until = now_ns() + 500000000ull, ops = 0;
	while (now_ns() < until || r.lookups < 100000) {
		for (int i = 0; i < 256; i++, ops++) {
			/* Inside one group, past its first page: ranges of up to 510 pages (several chunks). */
			uint64_t grp = rnd(space / GROUP) * GROUP, a = 1 + rnd(GROUP - 1), b = a + rnd(GROUP - a);
			uint64_t iova = page_iova(grp + a), last = page_iova(grp + (rnd(4) ? a + rnd(3) : b)) + PG - 1;
			if (last > page_iova(grp + GROUP) - 1)
				last = page_iova(grp + GROUP) - 1;
			switch (rnd(3)) {
			case 0:
				sc_viommu_map(v, DOM, iova, last, gpa_of(grp + a), SC_PERM_RW);
				break;
			case 1:
				sc_viommu_unmap(v, DOM, iova, page_iova(grp + b) + PG - 1, &removed);
				break;
			default:
				sc_viommu_invalidate(v, DOM, iova, rnd(8) ? last : page_iova(grp + b) + PG - 1, &removed);
				break;
			}
		}
		while (sc_viommu_fault_pop(v, &f))
			;
		sc_viommu_tick(v, now_ns());
	}
	sc_store_release(&r.stop, true);
	pthread_join(th, NULL);
	sc_viommu_tc_fini(&r.tc);
	cr_log_info("readers during changes: %llu changes, %llu lookups, %llu found", (unsigned long long)ops,
		    (unsigned long long)r.lookups, (unsigned long long)r.found);
	cr_assert_eq(r.wrong, 0, "%llu lookups found a wrong address", (unsigned long long)r.wrong);
	cr_assert_eq(r.lost, 0, "%llu lookups missed a mapping that never went", (unsigned long long)r.lost);
	cr_assert_gt(r.found, r.lookups / 64, "lookups found the churned mappings too");
}

/* ns per MAP of keys[0..m) in order, then per UNMAP of them in reverse. */
static void time_changes(const uint64_t *keys, uint32_t m, double *map_ns, double *unmap_ns)
{
	bool removed;
	uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < m; i++)
		cr_assert_eq(sc_viommu_map(v, DOM, keys[i], keys[i] + PG - 1, GPA, SC_PERM_RW), 0);
	uint64_t t1 = now_ns();
	for (uint32_t i = m; i-- > 0;)
		cr_assert_eq(sc_viommu_unmap(v, DOM, keys[i], keys[i] + PG - 1, &removed), 0);
	uint64_t t2 = now_ns();
	*map_ns = (double)(t1 - t0) / m;
	*unmap_ns = (double)(t2 - t1) / m;
}

/*
 * The cost of one change at n mappings: n mapped in order on even pages
 * above 2m, then m odd pages mapped and unmapped, at random positions and
 * then each at the front (a guest's worst case for one flat array).
 * Reported, not asserted (run under flock /work/wt/bench.lock for figures).
 */
Test(viommu_maps, change_cost)
{
	static const uint32_t sizes[] = { 1024, 16384, 65536 };
	const uint32_t m = 1024;
	uint64_t *keys = malloc(m * sizeof(*keys));
	double rnd_map, rnd_unmap, front_map, front_unmap;

	cr_assert(keys);
	for (unsigned s = 0; s < 3; s++) {
		uint32_t n = sizes[s];
		if (v) {
			sc_viommu_tc_fini(&tc);
			sc_viommu_destroy(v);
		}
		start(n + m, SC_VIOMMU_STRICT);
		for (uint32_t i = 0; i < n; i++)
			cr_assert_eq(sc_viommu_map(v, DOM, page_iova(2ull * (m + i)), page_iova(2ull * (m + i)) + PG - 1,
						   GPA, SC_PERM_RW), 0);
		/* m distinct odd pages among them: an odd stride walks all n. */
		for (uint32_t i = 0; i < m; i++)
			keys[i] = page_iova(2ull * (m + ((uint64_t)i * 40503u + 7) % n) + 1);
		time_changes(keys, m, &rnd_map, &rnd_unmap);
		/* Each below all the others: mapped descending, unmapped ascending. */
		for (uint32_t i = 0; i < m; i++)
			keys[i] = page_iova(2ull * (m - 1 - i) + 1);
		time_changes(keys, m, &front_map, &front_unmap);
		cr_assert_eq(sc_viommu_domain_mappings(v, DOM), (int)n);
		fprintf(stderr, "viommu maps, %5u mappings: map/unmap at a random position %.0f/%.0f ns, at the front %.0f/%.0f ns\n",
			n, rnd_map, rnd_unmap, front_map, front_unmap);
	}
	free(keys);
}
