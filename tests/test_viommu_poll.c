/* SPDX-License-Identifier: MIT */
/*
 * Unmap safety across sidecores. A DMA device polls on one sidecore (cpu
 * A) and writes through a translated IOVA each round, slowly (as a real
 * transfer takes time); the virtio-iommu queue is served on another
 * sidecore (cpu B); this thread is the guest, mapping and unmapping the
 * buffer through the request queue.
 *   strict:     once an UNMAP is answered, the device never writes again.
 *   optimistic: the UNMAP is answered at once; writes stop within the
 *               window; an identical MAP inside the window is a reuse.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/barrier.h"
#include "common/tsc.h"
#include "cpuset/cpuset.h"
#include "polling/polling.h"
#include "harness.h"
#include "viommu/viommu.h"

#define QSIZE 16
#define GPA   0x100000ull
#define MEM   (4ull << 20)
#define EP    1u
#define DOM   1u
#define IOVA  0x40000000ull
#define RW    (SC_VIRTIO_IOMMU_MAP_F_READ | SC_VIRTIO_IOMMU_MAP_F_WRITE)
#define TIMEOUT_NS 2000000000ull

static struct t_guest g;
static struct sc_viommu *v;
static struct sc_viommu_config vcfg;
static struct sc_viommu_dev iommu;
static struct sc_drv_vq rq, eq;
static struct sc_poller *pa, *pb;
static int cpu_a = -1, cpu_b = -1;
static uint64_t buf_gpa;
static uint64_t *buf;

/*
 * The DMA device: translate, "transfer" for a while, then write a sequence
 * number. Gated, the transfer lasts until the guest thread releases it, so
 * the test decides that an UNMAP arrives while the device holds the
 * translation.
 */
struct dma_dev {
	struct sc_viommu_tc tc;
	struct sc_pollq inner;
	uint64_t seq;
	uint64_t transfer_cycles;
	bool gated;
	bool holding;     /* set by the device: it has a translation in hand */
	bool release;     /* set by the guest thread: finish the transfer */
};
static struct dma_dev dd;

static int dma_poll(struct sc_pollq *q, unsigned budget)
{
	struct dma_dev *d = q->ctx;
	struct iovec iov;

	if (sc_viommu_translate(&d->tc, IOVA + 64, sizeof(uint64_t), SC_PERM_WRITE, &iov, 1) != 1)
		return 0;
	uint64_t until = sc_rdtsc() + d->transfer_cycles;
	while (sc_rdtsc() < until)
		sc_cpu_relax();
	if (d->gated) {
		sc_store_release(&d->holding, true);
		/* Bounded: the test releases within seconds or has failed already. */
		uint64_t give_up = sc_rdtsc() + sc_ns_to_cycles(TIMEOUT_NS);
		while (!sc_load_acquire(&d->release) && sc_rdtsc() < give_up)
			sc_cpu_relax();
	}
	sc_store_once((uint64_t *)iov.iov_base, ++d->seq);
	sc_store_release(&d->holding, false);
	return 1;
}

static bool dma_notify_enable(struct sc_pollq *q) { return false; }
static void dma_notify_disable(struct sc_pollq *q) { }

static const struct sc_pollq_ops dma_ops = {
	.poll = dma_poll, .notify_enable = dma_notify_enable, .notify_disable = dma_notify_disable,
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The guest thread shares the virtio-iommu sidecore's cpu: it waits by
 * sleeping, so that sidecore runs meanwhile (spinning would starve it and
 * hide what the test looks for).
 */
static void guest_wait(void)
{
	struct timespec ts = { 0, 20000 };
	nanosleep(&ts, NULL);
}

static void start(enum sc_viommu_teardown mode, bool gated)
{
	uint64_t rg, eg;
	struct sc_vq_config rc, ec;

	struct sc_topology *t = calloc(1, sizeof(*t));
	cr_assert_eq(sc_topology_load(t), 0);
	int pick = sc_cpuset_pick_pair(t, &cpu_a, &cpu_b);
	free(t);
	if (pick < 0)
		cr_skip_test("needs two cpus: one sidecore for the device, one for the virtio-iommu queue");

	/* The guest shares the virtio-iommu's cpu; the device's sidecore keeps its own. */
	cr_assert_eq(sc_cpu_pin_self(cpu_b), 0);
	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	sc_viommu_config_default(&vcfg, &g.mem);
	vcfg.teardown = mode;
	cr_assert_eq(sc_viommu_create(&vcfg, &v), 0);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP), 0);
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(QSIZE), 4096, &rg));
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(QSIZE), 4096, &eg));
	cr_assert_eq(t_ring_init(&g, &rq, rg, QSIZE, 0), 0);
	cr_assert_eq(t_ring_init(&g, &eq, eg, QSIZE, 0), 0);
	t_vq_config(&g, &rq, 0, &rc);
	t_vq_config(&g, &eq, 0, &ec);
	cr_assert_eq(sc_viommu_dev_init(&iommu, v, SC_VIOMMU_FEATURES, &rc, &ec), 0);
	buf = t_alloc(&g, 4096, 4096, &buf_gpa);
	cr_assert_not_null(buf);

	memset(&dd, 0, sizeof(dd));
	cr_assert_eq(sc_viommu_tc_init(v, &dd.tc, EP), 0);
	dd.transfer_cycles = sc_ns_to_cycles(5000);   /* 5 µs per "transfer" */
	dd.gated = gated;
	dd.inner = (struct sc_pollq){ .ops = &dma_ops, .ctx = &dd, .kick_fd = -1, .name = "dma" };

	/* No kick fds: both sidecores poll without sleeping for the test's few seconds. */
	cr_assert_eq(t_poller_start(cpu_b, 0, "sc-viommu", &iommu.pq, &pb), 0);
	cr_assert_eq(t_poller_start(cpu_a, 0, "sc-dma", sc_viommu_tc_wrap(&dd.tc, &dd.inner), &pa), 0);
}

static void teardown(void)
{
	if (pa)
		sc_poller_destroy(pa);
	if (pb)
		sc_poller_destroy(pb);
	pa = pb = NULL;
	if (v) {
		sc_viommu_tc_fini(&dd.tc);
		sc_viommu_dev_fini(&iommu);
		sc_viommu_destroy(v);
		v = NULL;
		t_guest_fini(&g);
	}
}

TestSuite(viommu_poll, .fini = teardown, .timeout = 60);

/* One request to the polled virtio-iommu; waits (bounded) for its answer. */
static uint8_t iommu_req(const void *body, uint32_t out)
{
	static uint64_t slot_gpa;
	static uint8_t *slot;
	uint16_t head;
	uint32_t len;

	if (!slot)
		cr_assert_not_null(slot = t_alloc(&g, 256, 64, &slot_gpa));
	memcpy(slot, body, out);
	slot[out] = 0xee;
	struct sc_drv_seg s[2] = { { slot_gpa, out }, { slot_gpa + out, 4 } };
	cr_assert_geq(sc_drv_vq_add(&rq, s, 1, 1), 0);
	sc_drv_vq_publish(&rq);
	uint64_t deadline = now_ns() + TIMEOUT_NS;
	while (sc_drv_vq_get_used(&rq, &head, &len) == 0) {
		cr_assert_lt(now_ns(), deadline, "virtio-iommu answered within 2 s");
		guest_wait();
	}
	return slot[out];
}

static uint8_t map(void)
{
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = DOM, .virt_start = IOVA,
					  .virt_end = IOVA + 4095, .phys_start = buf_gpa, .flags = RW };
	return iommu_req(&m, offsetof(struct sc_virtio_iommu_req_map, tail));
}

static uint8_t unmap(void)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = DOM,
					    .virt_start = IOVA, .virt_end = IOVA + 4095 };
	return iommu_req(&u, offsetof(struct sc_virtio_iommu_req_unmap, tail));
}

static void attach(void)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = DOM, .endpoint = EP };
	cr_assert_eq(iommu_req(&a, offsetof(struct sc_virtio_iommu_req_attach, tail)), SC_VIRTIO_IOMMU_S_OK);
}

/* Wait (bounded) until the device has written through the mapping. */
static void wait_for_dma(void)
{
	uint64_t deadline = now_ns() + TIMEOUT_NS;
	while (sc_load_once(&buf[8]) == 0) {
		cr_assert_lt(now_ns(), deadline, "the device wrote within 2 s");
		guest_wait();
	}
}

/*
 * Optimistic teardown bounds use by the window plus the device's round in
 * flight: once that round has ended (its quiescent counter moved on), the
 * guest reuses the memory and no write may land there.
 */
static void expect_no_dma_after_teardown(int round)
{
	uint64_t qs = sc_load_acquire(&dd.tc.slot->qs);
	uint64_t until = now_ns() + TIMEOUT_NS;
	while ((qs & 1) && sc_load_acquire(&dd.tc.slot->qs) == qs) {
		cr_assert_lt(now_ns(), until, "round %d: the device's round ended within 2 s", round);
		guest_wait();
	}
	sc_store_once(&buf[8], 0);
	until = now_ns() + 200000;
	while (now_ns() < until)
		guest_wait();
	cr_assert_eq(sc_load_once(&buf[8]), 0, "round %d: the device wrote after the teardown", round);
}

/* UNMAP and an identical MAP published together (served in one round, well inside the window). */
static void reuse_batch(void)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = DOM,
					    .virt_start = IOVA, .virt_end = IOVA + 4095 };
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = DOM, .virt_start = IOVA,
					  .virt_end = IOVA + 4095, .phys_start = buf_gpa, .flags = RW };
	uint64_t gpa;
	uint8_t *b = t_alloc(&g, 128, 64, &gpa);
	uint32_t uo = offsetof(struct sc_virtio_iommu_req_unmap, tail), mo = offsetof(struct sc_virtio_iommu_req_map, tail);
	uint16_t head;
	uint32_t len;
	cr_assert_not_null(b);
	memcpy(b, &u, uo);
	memcpy(b + 64, &m, mo);
	b[uo] = b[64 + mo] = 0xee;
	struct sc_drv_seg s1[2] = { { gpa, uo }, { gpa + uo, 4 } }, s2[2] = { { gpa + 64, mo }, { gpa + 64 + mo, 4 } };
	cr_assert_geq(sc_drv_vq_add(&rq, s1, 1, 1), 0);
	cr_assert_geq(sc_drv_vq_add(&rq, s2, 1, 1), 0);
	sc_drv_vq_publish(&rq);
	uint64_t deadline = now_ns() + TIMEOUT_NS;
	for (int n = 0; n < 2;) {
		cr_assert_lt(now_ns(), deadline, "virtio-iommu answered within 2 s");
		n += sc_drv_vq_get_used(&rq, &head, &len);
		guest_wait();
	}
	cr_assert_eq(b[uo], SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(b[64 + mo], SC_VIRTIO_IOMMU_S_OK);
}

/* Post an UNMAP without waiting for its answer; returns where the status lands. */
static uint8_t *post_unmap(void)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = DOM,
					    .virt_start = IOVA, .virt_end = IOVA + 4095 };
	uint32_t out = offsetof(struct sc_virtio_iommu_req_unmap, tail);
	uint64_t gpa;
	uint8_t *b = t_alloc(&g, 64, 64, &gpa);
	cr_assert_not_null(b);
	memcpy(b, &u, out);
	b[out] = 0xee;
	struct sc_drv_seg s[2] = { { gpa, out }, { gpa + out, 4 } };
	cr_assert_geq(sc_drv_vq_add(&rq, s, 1, 1), 0);
	sc_drv_vq_publish(&rq);
	return b + out;
}

Test(viommu_poll, strict_unmap_answered_only_when_no_device_can_use_it)
{
	uint16_t head;
	uint32_t len;
	start(SC_VIOMMU_STRICT, true);
	attach();
	for (int i = 0; i < 20; i++) {
		sc_store_release(&dd.release, false);
		cr_assert_eq(map(), SC_VIRTIO_IOMMU_S_OK);
		uint64_t deadline = now_ns() + TIMEOUT_NS;
		while (!sc_load_acquire(&dd.holding)) {
			cr_assert_lt(now_ns(), deadline, "round %d: the device translated within 2 s", i);
			guest_wait();
		}

		/* The device (cpu A) holds the translation; the UNMAP goes to the other sidecore (cpu B). */
		uint8_t *status = post_unmap();
		uint64_t until = now_ns() + 5000000;   /* 5 ms: many rounds of the virtio-iommu sidecore */
		while (now_ns() < until) {
			cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 0,
				     "round %d: UNMAP answered while a device still held the translation", i);
			guest_wait();
		}
		uint64_t seq = sc_load_once(&dd.seq);
		sc_store_release(&dd.release, true);
		deadline = now_ns() + TIMEOUT_NS;
		while (sc_drv_vq_get_used(&rq, &head, &len) == 0) {
			cr_assert_lt(now_ns(), deadline, "round %d: UNMAP answered within 2 s of the release", i);
			guest_wait();
		}
		/* Checked at once (no sleep): the device's write must already be there. */
		cr_assert_eq(*status, SC_VIRTIO_IOMMU_S_OK);

		/* The guest reuses its memory; no device write may land there any more. */
		cr_assert_gt(sc_load_once(&dd.seq), seq, "the held transfer finished first");
		sc_store_once(&buf[8], 0);
		until = now_ns() + 200000;
		while (now_ns() < until)
			guest_wait();
		cr_assert_eq(sc_load_once(&buf[8]), 0, "round %d: the device wrote after the UNMAP was answered", i);
		cr_assert(!sc_load_acquire(&dd.holding), "round %d: the device translated an unmapped IOVA", i);
	}
	cr_assert_eq(iommu.stats.deferred, 20, "every answer was held for a grace period");
}

Test(viommu_poll, optimistic_unmap_answered_at_once_torn_down_within_the_window)
{
	start(SC_VIOMMU_OPTIMISTIC, false);
	attach();
	uint64_t window = vcfg.window_ns, worst = 0;
	for (int i = 0; i < 20; i++) {
		sc_store_once(&buf[8], 0);
		cr_assert_eq(map(), SC_VIRTIO_IOMMU_S_OK);
		wait_for_dma();
		uint64_t t0 = now_ns();
		struct sc_viommu_stats st0, st1;
		sc_viommu_get_stats(v, &st0);
		cr_assert_eq(unmap(), SC_VIRTIO_IOMMU_S_OK);
		cr_assert_eq(iommu.stats.deferred, 0, "never held");
		/*
		 * Torn down after the window, as soon as the virtio-iommu sidecore
		 * runs: the bound allows for this shared 2-cpu machine's scheduling
		 * (the sidecore shares its cpu with this thread here).
		 */
		for (sc_viommu_get_stats(v, &st1); st1.torn_down == st0.torn_down; sc_viommu_get_stats(v, &st1)) {
			cr_assert_lt(now_ns(), t0 + window + 500000000ull, "round %d: torn down within the window + 500 ms", i);
			guest_wait();
		}
		uint64_t took = now_ns() - t0;
		cr_assert_geq(took, window, "round %d: not before the window (%lu ns)", i, took);
		worst = took > worst ? took : worst;
		expect_no_dma_after_teardown(i);
	}
	fprintf(stderr, "optimistic teardown: window %lu ns, slowest teardown seen %lu ns\n", window, worst);
	/* A remap of the same range and permission inside the window reuses the mapping. */
	cr_assert_eq(map(), SC_VIRTIO_IOMMU_S_OK);
	reuse_batch();
	struct sc_viommu_stats st;
	sc_viommu_get_stats(v, &st);
	cr_assert_geq(st.reused, 1);
	cr_assert_geq(st.torn_down, 20);
}
