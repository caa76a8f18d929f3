/* SPDX-License-Identifier: MIT */
/* viommu core: domains, mappings, translation, the cache, caps, grace periods, optimistic teardown. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/tsc.h"
#include "harness.h"
#include "viommu/viommu.h"

#define GPA  0x100000ull
#define MEM  (4ull << 20)
#define EP   7u
#define DOM  3u
#define PG   4096ull

static struct t_guest g;
static struct sc_viommu *v;
static struct sc_viommu_tc tc;
static struct sc_viommu_config cfg;

static void make(void)
{
	cr_assert_eq(sc_viommu_create(&cfg, &v), 0);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP), 0);
	cr_assert_eq(sc_viommu_tc_init(v, &tc, EP), 0);
}

static void setup(void)
{
	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	sc_viommu_config_default(&cfg, &g.mem);
	make();
}

static void teardown(void)
{
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	t_guest_fini(&g);
}

TestSuite(viommu, .init = setup, .fini = teardown, .timeout = 30);

static void attach(uint32_t dom)
{
	bool removed;
	cr_assert_eq(sc_viommu_attach(v, dom, EP, false, &removed), 0);
}

static int xl(uint64_t iova, uint64_t len, unsigned perm, struct iovec *iov, unsigned n)
{
	return sc_viommu_translate(&tc, iova, len, perm, iov, n);
}

static void expect_fault(uint8_t reason, uint32_t flags, uint64_t addr)
{
	struct sc_viommu_fault f;
	cr_assert(sc_viommu_fault_pop(v, &f), "a fault is queued");
	cr_assert_eq(f.reason, reason);
	cr_assert_eq(f.flags, flags | SC_VIRTIO_IOMMU_FAULT_F_ADDRESS);
	cr_assert_eq(f.endpoint, EP);
	cr_assert_eq(f.address, addr);
	cr_assert(!sc_viommu_fault_pop(v, &f), "one fault only");
}

Test(viommu, map_then_translate)
{
	struct iovec iov[4];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x40000000, 0x40000000 + 2 * PG - 1, GPA + PG, SC_PERM_RW), 0);
	cr_assert_eq(xl(0x40000010, 100, SC_PERM_READ, iov, 4), 1);
	cr_assert_eq(iov[0].iov_base, g.base + PG + 0x10);
	cr_assert_eq(iov[0].iov_len, 100);
	cr_assert_eq(xl(0x40000010, 100, SC_PERM_WRITE, iov, 4), 1, "second time from the cache");
	cr_assert_eq(tc.hits, 1);
	cr_assert_eq(tc.misses, 1);
	cr_assert_eq(xl(0x40000000, 0, SC_PERM_READ, iov, 4), 0, "length 0 maps nothing");
}

Test(viommu, translate_splits_at_mapping_boundaries)
{
	struct iovec iov[4];
	attach(DOM);
	/* Two adjacent IOVA pages to far-apart GPAs. */
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA + 8 * PG, SC_PERM_READ), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x11000, 0x11fff, GPA + 2 * PG, SC_PERM_READ), 0);
	cr_assert_eq(xl(0x10f00, 0x200, SC_PERM_READ, iov, 4), 2);
	cr_assert_eq(iov[0].iov_base, g.base + 8 * PG + 0xf00);
	cr_assert_eq(iov[0].iov_len, 0x100);
	cr_assert_eq(iov[1].iov_base, g.base + 2 * PG);
	cr_assert_eq(iov[1].iov_len, 0x100);
	cr_assert_eq(xl(0x10f00, 0x200, SC_PERM_READ, iov, 1), -ENOBUFS, "two segments, room for one");
}

Test(viommu, miss_is_efault_and_a_fault_event)
{
	struct iovec iov[4];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(xl(0x20000, 8, SC_PERM_READ, iov, 4), -EFAULT);
	expect_fault(SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_READ, 0x20000);
	/* Runs off the end of a mapping into nothing: the whole request fails. */
	cr_assert_eq(xl(0x10ff0, 0x20, SC_PERM_WRITE, iov, 4), -EFAULT);
	expect_fault(SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_WRITE, 0x11000);
	cr_assert_eq(tc.faults, 2);
}

Test(viommu, write_to_read_only_is_eperm_and_a_fault_event)
{
	struct iovec iov[4];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_READ), 0);
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 4), 1);
	cr_assert_eq(xl(0x10008, 8, SC_PERM_WRITE, iov, 4), -EPERM, "cached, still checked");
	expect_fault(SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_WRITE, 0x10008);
}

Test(viommu, wrapping_range_is_efault)
{
	struct iovec iov[4];
	attach(DOM);
	cr_assert_eq(xl(UINT64_MAX - 4, 16, SC_PERM_READ, iov, 4), -EFAULT);
	expect_fault(SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_READ, UINT64_MAX - 4);
}

Test(viommu, mapping_outside_guest_memory_is_efault)
{
	struct iovec iov[4];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA + MEM, SC_PERM_RW), 0);
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 4), -EFAULT);
}

Test(viommu, unattached_endpoint_is_blocked_without_bypass)
{
	struct iovec iov[4];
	cr_assert_eq(xl(GPA, 8, SC_PERM_READ, iov, 4), -EFAULT);
	expect_fault(SC_VIRTIO_IOMMU_FAULT_R_DOMAIN, SC_VIRTIO_IOMMU_FAULT_F_READ, GPA);
}

Test(viommu, unattached_endpoint_bypasses_when_configured)
{
	struct iovec iov[4];
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.bypass = true;
	make();
	cr_assert_eq(xl(GPA + 16, 8, SC_PERM_WRITE, iov, 4), 1);
	cr_assert_eq(iov[0].iov_base, g.base + 16);
	attach(DOM);
	cr_assert_eq(xl(GPA + 16, 8, SC_PERM_WRITE, iov, 4), -EFAULT, "attached: translated, and nothing is mapped");
}

Test(viommu, bypass_domain_is_identity)
{
	struct iovec iov[4];
	bool removed;
	cr_assert_eq(sc_viommu_attach(v, DOM, EP, true, &removed), 0);
	cr_assert_eq(xl(GPA + 16, 8, SC_PERM_WRITE, iov, 4), 1);
	cr_assert_eq(iov[0].iov_base, g.base + 16);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), -EINVAL, "no mappings in a bypass domain");
	cr_assert_eq(sc_viommu_attach(v, DOM, EP, false, &removed), -EINVAL, "bypass flag must match the domain");
}

Test(viommu, unknown_endpoint)
{
	bool removed;
	struct sc_viommu_tc t2;
	cr_assert_eq(sc_viommu_attach(v, DOM, 99, false, &removed), -ENOENT);
	cr_assert_eq(sc_viommu_detach(v, DOM, 99, &removed), -ENOENT);
	cr_assert_eq(sc_viommu_tc_init(v, &t2, 99), -ENOENT);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP), -EEXIST);
}

Test(viommu, unknown_domain)
{
	bool removed;
	cr_assert_eq(sc_viommu_map(v, 42, 0, PG - 1, GPA, SC_PERM_RW), -ENOENT);
	cr_assert_eq(sc_viommu_unmap(v, 42, 0, PG - 1, &removed), -ENOENT);
	cr_assert_eq(sc_viommu_detach(v, 42, EP, &removed), -ENOENT);
	cr_assert_eq(sc_viommu_domain_mappings(v, 42), -ENOENT);
}

Test(viommu, detach_from_the_wrong_domain)
{
	bool removed;
	attach(DOM);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP + 1), 0);
	cr_assert_eq(sc_viommu_attach(v, DOM + 1, EP + 1, false, &removed), 0);
	cr_assert_eq(sc_viommu_detach(v, DOM + 1, EP, &removed), -EINVAL);
	cr_assert(!removed);
}

Test(viommu, bad_map_arguments)
{
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x2000, 0x1fff, GPA, SC_PERM_RW), -EINVAL, "end before start");
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1000, 0x1fff, UINT64_MAX - 0xfff + 1, SC_PERM_RW), -EINVAL, "gpa range wraps");
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1800, 0x1fff, GPA, SC_PERM_RW), -ERANGE, "start not page aligned");
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1000, 0x1ffe, GPA, SC_PERM_RW), -ERANGE, "end + 1 not page aligned");
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1000, 0x1fff, GPA + 8, SC_PERM_RW), -ERANGE, "gpa not page aligned");
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1000, 0x1fff, GPA, 8), -EINVAL, "unknown permission bit");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 0, "nothing was mapped");
}

Test(viommu, map_outside_input_range)
{
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.input_start = 0x100000;
	cfg.input_end = 0x1fffff;
	make();
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0xff000, 0x100fff, GPA, SC_PERM_RW), -ERANGE);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1ff000, 0x200fff, GPA, SC_PERM_RW), -ERANGE);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x1ff000, 0x1fffff, GPA, SC_PERM_RW), 0);
}

Test(viommu, overlapping_map_changes_nothing)
{
	struct iovec iov[1];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x13fff, GPA, SC_PERM_READ), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x13000, 0x14fff, GPA + 0x10000, SC_PERM_RW), -EEXIST);
	cr_assert_eq(sc_viommu_map(v, DOM, 0xf000, 0x10fff, GPA + 0x10000, SC_PERM_RW), -EEXIST);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x11000, 0x11fff, GPA + 0x10000, SC_PERM_RW), -EEXIST, "inside");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 1);
	cr_assert_eq(xl(0x13000, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(iov[0].iov_base, g.base + 0x3000, "the first mapping still rules");
}

Test(viommu, unmap_removes_whole_mappings_inside_the_range)
{
	bool removed;
	struct iovec iov[1];
	attach(DOM);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(sc_viommu_map(v, DOM, 0x10000 + i * PG, 0x10fff + i * PG, GPA + i * PG, SC_PERM_RW), 0);
	cr_assert_eq(xl(0x11000, 8, SC_PERM_READ, iov, 1), 1, "cached");
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x11000, 0x12fff, &removed), 0);
	cr_assert(removed);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 2);
	cr_assert_eq(xl(0x11000, 8, SC_PERM_READ, iov, 1), -EFAULT, "the cached translation died with the mapping");
	cr_assert_eq(xl(0x13000, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x50000, 0x5ffff, &removed), 0, "nothing mapped there: not an error");
	cr_assert(!removed);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0, UINT64_MAX, &removed), 0, "everything");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 0);
}

Test(viommu, unmap_that_would_split_a_mapping_removes_nothing)
{
	bool removed;
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x13fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x20000, 0x20fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x11000, 0x11fff, &removed), -ERANGE, "middle");
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x12000, 0x20fff, &removed), -ERANGE, "tail of one, all of the next");
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x20000, 0x1ffff, &removed), -EINVAL, "end before start");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 2);
}

Test(viommu, cap_on_mappings_per_domain)
{
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.max_mappings = 4;
	make();
	attach(DOM);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(sc_viommu_map(v, DOM, i * PG, i * PG + PG - 1, GPA, SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 8 * PG, 9 * PG - 1, GPA, SC_PERM_RW), -ENOMEM);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 4);
}

Test(viommu, cap_on_domains)
{
	bool removed;
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.max_domains = 2;
	make();
	for (uint32_t e = 1; e <= 3; e++)
		cr_assert_eq(sc_viommu_endpoint_add(v, 100 + e), 0);
	cr_assert_eq(sc_viommu_attach(v, 1, 101, false, &removed), 0);
	cr_assert_eq(sc_viommu_attach(v, 2, 102, false, &removed), 0);
	cr_assert_eq(sc_viommu_attach(v, 3, 103, false, &removed), -ENOMEM);
	cr_assert_eq(sc_viommu_attach(v, 2, 103, false, &removed), 0, "an existing domain still takes endpoints");
	/* Attach/detach loops: a freed domain counts until its grace period ends (here at once: nobody is in a round). */
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(sc_viommu_detach(v, 1, 101, &removed), 0);
		cr_assert_eq(sc_viommu_attach(v, 1, 101, false, &removed), 0, "round %d", i);
	}
}

Test(viommu, cap_on_endpoints_and_contexts)
{
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.max_endpoints = 1;
	make();
	cr_assert_eq(sc_viommu_endpoint_add(v, EP + 1), -ENOSPC);
	static struct sc_viommu_tc many[SC_VIOMMU_MAX_TC];
	int ok = 0;
	for (int i = 0; i < SC_VIOMMU_MAX_TC; i++)
		ok += sc_viommu_tc_init(v, &many[i], EP) == 0;
	cr_assert_eq(ok, SC_VIOMMU_MAX_TC - 1, "one slot was taken by the fixture");
	for (int i = 0; i < ok; i++)
		sc_viommu_tc_fini(&many[i]);
}

Test(viommu, bad_config)
{
	struct sc_viommu *w;
	struct sc_viommu_config c = cfg;
	c.mem = NULL;
	cr_assert_eq(sc_viommu_create(&c, &w), -EINVAL);
	c = cfg;
	c.page_size_mask = 0x800;
	cr_assert_eq(sc_viommu_create(&c, &w), -EINVAL, "pages below 4 KiB");
	c = cfg;
	c.input_end = 0;
	c.input_start = 1;
	cr_assert_eq(sc_viommu_create(&c, &w), -EINVAL);
}

Test(viommu, attach_elsewhere_moves_the_endpoint)
{
	bool removed;
	struct iovec iov[1];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(sc_viommu_attach(v, DOM + 1, EP, false, &removed), 0);
	cr_assert(removed);
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 1), -EFAULT, "the new domain maps nothing; the cache forgot");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), -ENOENT, "the old domain went with its last endpoint");
}

Test(viommu, grace_waits_for_a_context_inside_a_round)
{
	bool removed;
	struct iovec iov[1];
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	sc_viommu_tc_enter(&tc);
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x10fff, &removed), 0);
	uint64_t t = sc_viommu_grace_start(v);
	cr_assert(!sc_viommu_grace_done(v, t), "the context may still use what it translated");
	cr_assert(!sc_viommu_grace_done(v, t));
	sc_viommu_tc_exit(&tc);
	cr_assert(sc_viommu_grace_done(v, t));
	/* An idle context holds nothing up. */
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x10fff, &removed), 0);
	cr_assert(sc_viommu_grace_done(v, sc_viommu_grace_start(v)));
}

Test(viommu, removal_during_a_grace_period_takes_the_next)
{
	bool removed;
	attach(DOM);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x20000, 0x20fff, GPA, SC_PERM_RW), 0);
	sc_viommu_tc_enter(&tc);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x10fff, &removed), 0);
	uint64_t t1 = sc_viommu_grace_start(v);
	sc_viommu_tc_exit(&tc);
	sc_viommu_tc_enter(&tc);   /* a new round began before the first grace period was checked */
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x20000, 0x20fff, &removed), 0);
	uint64_t t2 = sc_viommu_grace_start(v);
	cr_assert_gt(t2, t1);
	cr_assert(sc_viommu_grace_done(v, t1), "the first only waited for the old round");
	cr_assert(!sc_viommu_grace_done(v, t2), "the second waits for the round now running");
	sc_viommu_tc_exit(&tc);
	cr_assert(sc_viommu_grace_done(v, t2));
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void optimistic(void)
{
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
	cfg.teardown = SC_VIOMMU_OPTIMISTIC;
	cfg.window_ns = 50 * 1000 * 1000;   /* 50 ms: long enough that the test controls time */
	make();
	attach(DOM);
}

Test(viommu, optimistic_unmap_completes_at_once_and_tears_down_after_the_window)
{
	bool removed;
	struct iovec iov[1];
	struct sc_viommu_stats st;
	optimistic();
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), 0);
	uint64_t t0 = now_ns();
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x10fff, &removed), 0);
	cr_assert(!removed, "nothing to wait for");
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 1), 1, "still translating inside the window");
	cr_assert(sc_viommu_tick(v, t0), "dying mappings keep the writer awake");
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 1);
	sc_viommu_tick(v, t0 + cfg.window_ns + 1000000);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 0, "torn down after the window");
	cr_assert_eq(xl(0x10000, 8, SC_PERM_READ, iov, 1), -EFAULT, "and gone from the cache");
	sc_viommu_get_stats(v, &st);
	cr_assert_eq(st.torn_down, 1);
	cr_assert(!sc_viommu_tick(v, now_ns()), "nothing left to do");
}

Test(viommu, optimistic_remap_of_the_same_range_reuses_the_mapping)
{
	bool removed;
	struct sc_viommu_stats st;
	optimistic();
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x11fff, GPA, SC_PERM_READ), 0);
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x11fff, &removed), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x11fff, GPA, SC_PERM_READ), 0);
	sc_viommu_get_stats(v, &st);
	cr_assert_eq(st.reused, 1);
	sc_viommu_tick(v, now_ns() + 10 * cfg.window_ns);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 1, "revived: not torn down");
	/* A different permission or target is a new mapping: the dying one goes first. */
	cr_assert_eq(sc_viommu_unmap(v, DOM, 0x10000, 0x11fff, &removed), 0);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x11fff, GPA, SC_PERM_RW), 0);
	sc_viommu_get_stats(v, &st);
	cr_assert_eq(st.reused, 1);
	cr_assert_eq(st.torn_down, 1);
	cr_assert_eq(sc_viommu_domain_mappings(v, DOM), 1);
	cr_assert_eq(sc_viommu_map(v, DOM, 0x10000, 0x10fff, GPA, SC_PERM_RW), -EEXIST, "a live mapping is not replaced");
}

/* Cycles per translation (median of runs), for the figures in the report. */
static double cycles_per(uint64_t (*fn)(unsigned, unsigned), unsigned n, unsigned iters)
{
	uint64_t best = UINT64_MAX;
	for (int r = 0; r < 5; r++) {
		uint64_t c = fn(n, iters);
		if (c < best)
			best = c;
	}
	return (double)best / iters;
}

static uint64_t run_hit(unsigned n, unsigned iters)
{
	struct iovec iov[2];
	volatile uint64_t sink = 0;
	uint64_t t = sc_rdtsc();
	for (unsigned i = 0; i < iters; i++) {
		sink += (uint64_t)xl(0x100000000ull + (uint64_t)(n / 2) * PG + (i & 63), 64, SC_PERM_READ, iov, 2);
	}
	return sc_rdtscp() - t;
}

static uint64_t run_miss(unsigned n, unsigned iters)
{
	struct iovec iov[2];
	volatile uint64_t sink = 0;
	uint64_t t = sc_rdtsc();
	for (unsigned i = 0; i < iters; i++) {
		/* A pseudo-random mapping each time; the generation bump below makes every lookup miss. */
		uint64_t k = ((uint64_t)i * 2654435761u) % n;
		tc.cache[(k) & (SC_VIOMMU_TC_WAYS - 1)].gen = 0;
		tc.cache[(k + 1) & (SC_VIOMMU_TC_WAYS - 1)].gen = 0;
		sink += (uint64_t)xl(0x100000000ull + k * 2 * PG + 8, 64, SC_PERM_READ, iov, 2);
	}
	return sc_rdtscp() - t;
}

Test(viommu, lookup_cycles)
{
	static const unsigned sizes[] = { 1, 64, 4096 };
	attach(DOM);
	unsigned have = 0;
	for (unsigned s = 0; s < 3; s++) {
		/* Every other IOVA page mapped, so neighbours are not merged. */
		for (; have < sizes[s]; have++)
			cr_assert_eq(sc_viommu_map(v, DOM, 0x100000000ull + have * 2 * PG,
						   0x100000000ull + have * 2 * PG + PG - 1,
						   GPA + (have % 256) * PG, SC_PERM_RW), 0);
		double hit = cycles_per(run_hit, sizes[s], 200000);
		double miss = cycles_per(run_miss, sizes[s], 200000);
		fprintf(stderr, "viommu lookup, %4u mappings: cache hit %.1f cycles, miss (binary search) %.1f cycles\n",
			sizes[s], hit, miss);
		cr_assert_lt(hit, 5000.0, "sanity");
	}
}
