/* SPDX-License-Identifier: MIT */
/*
 * Translated DMA end to end: nullblk queues with SC_VIRTIO_F_ACCESS_PLATFORM
 * whose driver-side addresses (rings, buffers) are IOVAs, translated
 * through the viommu (the virtio-iommu device serves the guest's
 * ATTACH/MAP/UNMAP on its own rings).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "devices/devices.h"
#include "harness.h"
#include "viommu/viommu.h"

#define QSIZE 16
#define GPA   0x100000ull
#define MEM   (8ull << 20)
#define PG    4096ull
#define FEAT  ((1ull << SC_VIRTIO_F_VERSION_1) | (1ull << SC_VIRTIO_F_ACCESS_PLATFORM) | (1ull << SC_VIRTIO_F_INDIRECT_DESC))
#define RW    (SC_VIRTIO_IOMMU_MAP_F_READ | SC_VIRTIO_IOMMU_MAP_F_WRITE)

static struct t_guest g;
static struct sc_viommu *v;
static struct sc_viommu_config vcfg;
static struct sc_viommu_dev iommu;
static struct sc_drv_vq rq, eq;

/* One protected block queue: endpoint ep, domain = ep, rings at IOVA base. */
struct pq {
	uint32_t ep;
	uint64_t iova;            /* IOVA of the ring (and, + 0x10000, of the buffers) */
	uint64_t ring_gpa, buf_gpa;
	uint8_t *ring, *buf;
	struct sc_drv_vq dvq;
	struct sc_viommu_tc tc;
	struct sc_nullblk blk;
};

static struct pq q1, q2;

/* Post a virtio-iommu request and serve one round; returns where its status byte will be. */
static uint8_t *iommu_post(const void *body, uint32_t out)
{
	uint64_t gpa;
	uint8_t *b = t_alloc(&g, out + 4, 8, &gpa);
	cr_assert_not_null(b);
	memcpy(b, body, out);
	b[out] = 0xee;
	struct sc_drv_seg s[2] = { { gpa, out }, { gpa + out, 4 } };
	cr_assert_geq(sc_drv_vq_add(&rq, s, 1, 1), 0);
	sc_drv_vq_publish(&rq);
	sc_viommu_dev_poll(&iommu, 32);
	return b + out;
}

static uint8_t iommu_req(const void *body, uint32_t out)
{
	uint16_t head;
	uint32_t len;
	uint8_t *status = iommu_post(body, out);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1);
	return *status;
}

static uint8_t attach(uint32_t dom, uint32_t ep)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = dom, .endpoint = ep };
	return iommu_req(&a, offsetof(struct sc_virtio_iommu_req_attach, tail));
}

static uint8_t map(uint32_t dom, uint64_t iova, uint64_t len, uint64_t gpa, uint32_t flags)
{
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = dom, .virt_start = iova,
					  .virt_end = iova + len - 1, .phys_start = gpa, .flags = flags };
	return iommu_req(&m, offsetof(struct sc_virtio_iommu_req_map, tail));
}

static uint8_t unmap(uint32_t dom, uint64_t iova, uint64_t len)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = dom,
					    .virt_start = iova, .virt_end = iova + len - 1 };
	return iommu_req(&u, offsetof(struct sc_virtio_iommu_req_unmap, tail));
}

/* Guest side of a protected queue: memory, domain, the ring and buffers mapped. */
static void pq_guest(struct pq *q, uint32_t ep, uint64_t iova)
{
	q->ep = ep;
	q->iova = iova;
	q->ring = t_alloc(&g, 0x10000, PG, &q->ring_gpa);
	q->buf = t_alloc(&g, 0x10000, PG, &q->buf_gpa);
	cr_assert(q->ring && q->buf);
	cr_assert_eq(sc_viommu_endpoint_add(v, ep), 0);
	cr_assert_eq(sc_viommu_tc_init(v, &q->tc, ep), 0);
	cr_assert_eq(attach(ep, ep), SC_VIRTIO_IOMMU_S_OK);
	/* The driver addresses its ring by IOVA. */
	cr_assert_eq(sc_drv_vq_init(&q->dvq, q->ring, iova, QSIZE, FEAT), 0);
}

static int pq_device(struct pq *q)
{
	struct sc_vq_config cfg = {
		.size = QSIZE, .desc_addr = q->dvq.desc_gpa, .avail_addr = q->dvq.avail_gpa,
		.used_addr = q->dvq.used_gpa, .features = FEAT, .xlate = sc_viommu_tc_xlate(&q->tc),
		.call_fd = -1, .err_fd = -1, .kick_fd = -1,
	};
	/* sc_vq_init translates the rings: inside a round, as the header asks. */
	sc_viommu_tc_enter(&q->tc);
	int ret = sc_nullblk_init(&q->blk, &cfg, 1024, "protected");
	sc_viommu_tc_exit(&q->tc);
	if (ret == 0)
		cr_assert_eq(sc_viommu_tc_pin_rings(&q->tc, &cfg), 0);
	return ret;
}

static void pq_setup(struct pq *q, uint32_t ep, uint64_t iova)
{
	pq_guest(q, ep, iova);
	cr_assert_eq(map(ep, iova, 0x10000, q->ring_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(ep, iova + 0x10000, 0x10000, q->buf_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(pq_device(q), 0, "%s", q->blk.vq.broken_reason);
}

static void setup(void)
{
	struct sc_vq_config rc, ec;

	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	sc_viommu_config_default(&vcfg, &g.mem);
	cr_assert_eq(sc_viommu_create(&vcfg, &v), 0);
	cr_assert_eq(t_ring(&g, &rq, QSIZE, 0, &rc), 0);
	cr_assert_eq(t_ring(&g, &eq, QSIZE, 0, &ec), 0);
	cr_assert_eq(sc_viommu_dev_init(&iommu, v, SC_VIOMMU_FEATURES, &rc, &ec), 0);
}

static void teardown(void)
{
	sc_viommu_tc_fini(&q1.tc);
	sc_viommu_tc_fini(&q2.tc);
	sc_viommu_dev_fini(&iommu);
	sc_viommu_destroy(v);
	t_guest_fini(&g);
}

TestSuite(viommu_dma, .init = setup, .fini = teardown, .timeout = 30);

/* Post a block request whose buffers are at IOVAs; serve it in one bracketed round. Returns the pop result (1, or the ring's -errno). */
static int blk_io(struct pq *q, uint32_t type, uint64_t hdr_iova, uint64_t data_iova, uint32_t data_len,
		  uint64_t status_iova)
{
	struct sc_drv_seg s[3] = { { hdr_iova, 16 }, { data_iova, data_len }, { status_iova, 1 } };
	bool out = type == SC_VIRTIO_BLK_T_OUT;
	cr_assert_geq(sc_drv_vq_add(&q->dvq, s, out ? 2 : 1, out ? 1 : 2), 0);
	sc_drv_vq_publish(&q->dvq);
	sc_viommu_tc_enter(&q->tc);
	int ret = sc_nullblk_poll(&q->blk, 32);
	sc_viommu_tc_exit(&q->tc);
	return ret;
}

/* Buffers of q in guest memory: header at +0, data at +0x1000, status at +0x3000 (IOVAs likewise from iova + 0x10000). */
static void put_hdr(struct pq *q, uint32_t type)
{
	struct sc_virtio_blk_outhdr h = { .type = type, .sector = 8 };
	memcpy(q->buf, &h, sizeof(h));
	q->buf[0x3000] = 0xee;
}

static uint64_t bi(struct pq *q, uint64_t off) { return q->iova + 0x10000 + off; }

static void expect_served(struct pq *q, uint8_t status)
{
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&q->dvq, &head, &len), 1, "completed");
	cr_assert_eq(q->buf[0x3000], status);
}

Test(viommu_dma, io_through_mapped_iovas)
{
	pq_setup(&q1, 1, 0x7f000000);
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x2000, bi(&q1, 0x3000)), 1,
		     "%s", q1.blk.vq.broken_reason);
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);
	put_hdr(&q1, SC_VIRTIO_BLK_T_OUT);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_OUT, bi(&q1, 0), bi(&q1, 0x1000), 0x2000, bi(&q1, 0x3000)), 1);
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q1.blk.stats.reads, 1);
	cr_assert_eq(q1.blk.stats.writes, 1);
	cr_assert_gt(q1.tc.hits, 0, "the cache served repeated pages");
}

Test(viommu_dma, data_buffer_spanning_two_mappings)
{
	pq_guest(&q1, 1, 0x7f000000);
	cr_assert_eq(map(1, q1.iova, 0x10000, q1.ring_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, bi(&q1, 0), 0x2000, q1.buf_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	/* The next IOVA page maps to a far GPA page: the buffer is two host segments. */
	cr_assert_eq(map(1, bi(&q1, 0x2000), 0x2000, q1.buf_gpa + 0x8000, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(pq_device(&q1), 0);
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	q1.buf[0x8000 + 0x1000] = 0xee;
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x2000, bi(&q1, 0x3000)), 1,
		     "%s", q1.blk.vq.broken_reason);
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&q1.dvq, &head, &len), 1);
	cr_assert_eq(q1.buf[0x8000 + 0x1000], SC_VIRTIO_BLK_S_OK, "status landed where IOVA +0x3000 maps");
}

static void expect_fault_event(uint64_t ev_gpa, uint8_t reason, uint32_t flags, uint32_t ep, uint64_t addr)
{
	uint16_t head;
	uint32_t len;
	sc_viommu_dev_poll(&iommu, 32);
	cr_assert_eq(sc_drv_vq_get_used(&eq, &head, &len), 1, "a fault event");
	struct sc_virtio_iommu_fault f;
	memcpy(&f, t_ptr(&g, ev_gpa, sizeof(f)), sizeof(f));
	cr_assert_eq(f.reason, reason);
	cr_assert_eq(f.flags, flags | SC_VIRTIO_IOMMU_FAULT_F_ADDRESS);
	cr_assert_eq(f.endpoint, ep);
	cr_assert_eq(f.address, addr);
}

static uint64_t event_buffer(void)
{
	uint64_t gpa;
	cr_assert_not_null(t_alloc(&g, 24, 8, &gpa));
	struct sc_drv_seg s = { gpa, 24 };
	cr_assert_geq(sc_drv_vq_add(&eq, &s, 0, 1), 0);
	sc_drv_vq_publish(&eq);
	return gpa;
}

/* The other protected queue still does I/O. */
static void other_queue_works(void)
{
	put_hdr(&q2, SC_VIRTIO_BLK_T_IN);
	cr_assert_eq(blk_io(&q2, SC_VIRTIO_BLK_T_IN, bi(&q2, 0), bi(&q2, 0x1000), 0x1000, bi(&q2, 0x3000)), 1,
		     "%s", q2.blk.vq.broken_reason);
	expect_served(&q2, SC_VIRTIO_BLK_S_OK);
}

/*
 * A data buffer the IOMMU refuses fails that one request (IOERR in its
 * status byte), a fault event names the address, and the queue goes on:
 * its next request and the other queue are served.
 */
Test(viommu_dma, unmapped_data_buffer_fails_only_that_request)
{
	pq_setup(&q1, 1, 0x7f000000);
	pq_setup(&q2, 2, 0x5f000000);
	uint64_t ev = event_buffer();
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	uint64_t bad = q1.iova + 0x40000;   /* never mapped */
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bad, 0x1000, bi(&q1, 0x3000)), 1,
		     "%s", q1.blk.vq.broken_reason);
	cr_assert(!sc_vq_broken(&q1.blk.vq), "%s", q1.blk.vq.broken_reason);
	expect_served(&q1, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(q1.blk.vq.stats.faulted, 1);
	cr_assert_eq(q1.blk.stats.reads, 0, "the device never saw the read");
	cr_assert_eq(q1.tc.faults, 1, "one fault, reported once");
	expect_fault_event(ev, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_WRITE, 1, bad);
	/* The next request of the same queue works. */
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x1000, bi(&q1, 0x3000)), 1);
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(q1.blk.stats.reads, 1);
	other_queue_works();
}

/* An unmapped buffer in the middle of an indirect table is a data buffer too. */
Test(viommu_dma, unmapped_data_buffer_in_an_indirect_table_fails_only_that_request)
{
	pq_setup(&q1, 1, 0x7f000000);
	uint64_t ev = event_buffer();
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	uint64_t bad = q1.iova + 0x40000;
	struct sc_drv_seg s[3] = { { bi(&q1, 0), 16 }, { bad, 0x1000 }, { bi(&q1, 0x3000), 1 } };
	/* The table lives in the mapped buffer area at +0x8000. */
	cr_assert_geq(sc_drv_vq_add_indirect(&q1.dvq, (struct sc_vring_desc *)(q1.buf + 0x8000), bi(&q1, 0x8000),
					     s, 1, 2), 0);
	sc_drv_vq_publish(&q1.dvq);
	sc_viommu_tc_enter(&q1.tc);
	cr_assert_eq(sc_nullblk_poll(&q1.blk, 32), 1, "%s", q1.blk.vq.broken_reason);
	sc_viommu_tc_exit(&q1.tc);
	expect_served(&q1, SC_VIRTIO_BLK_S_IOERR);
	expect_fault_event(ev, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_WRITE, 1, bad);
	cr_assert(!sc_vq_broken(&q1.blk.vq));
}

/* A read request (the device writes) into a read-only mapping: IOERR, nothing written, queue goes on. */
Test(viommu_dma, device_write_to_read_only_mapping_fails_only_that_request)
{
	pq_guest(&q1, 1, 0x7f000000);
	pq_setup(&q2, 2, 0x5f000000);
	cr_assert_eq(map(1, q1.iova, 0x10000, q1.ring_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	/* Header and data read-only; the status page writable, so the failure can be said. */
	cr_assert_eq(map(1, bi(&q1, 0), 0x3000, q1.buf_gpa, SC_VIRTIO_IOMMU_MAP_F_READ), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, bi(&q1, 0x3000), 0xd000, q1.buf_gpa + 0x3000, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(pq_device(&q1), 0);
	uint64_t ev = event_buffer();
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	memset(q1.buf + 0x1000, 0x5a, 0x1000);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x1000, bi(&q1, 0x3000)), 1,
		     "%s", q1.blk.vq.broken_reason);
	expect_served(&q1, SC_VIRTIO_BLK_S_IOERR);
	cr_assert_eq(q1.buf[0x1000], 0x5a, "nothing written through a read-only mapping");
	expect_fault_event(ev, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_WRITE, 1, bi(&q1, 0x1000));
	/* A write request (the device reads) through the same read-only data is allowed. */
	put_hdr(&q1, SC_VIRTIO_BLK_T_OUT);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_OUT, bi(&q1, 0), bi(&q1, 0x1000), 0x1000, bi(&q1, 0x3000)), 1);
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);
	cr_assert(!sc_vq_broken(&q1.blk.vq));
	other_queue_works();
}

Test(viommu_dma, unmapped_ring_fails_queue_setup)
{
	pq_setup(&q2, 2, 0x5f000000);
	pq_guest(&q1, 1, 0x7f000000);
	uint64_t ev = event_buffer();
	cr_assert_eq(pq_device(&q1), -EFAULT, "the ring's IOVA maps to nothing");
	cr_assert(sc_vq_broken(&q1.blk.vq));
	expect_fault_event(ev, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_READ, 1, q1.iova);
	other_queue_works();
}

Test(viommu_dma, unmap_then_io_faults)
{
	pq_setup(&q1, 1, 0x7f000000);
	pq_setup(&q2, 2, 0x5f000000);
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x1000, bi(&q1, 0x3000)), 1);
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(unmap(1, bi(&q1, 0), 0x10000), SC_VIRTIO_IOMMU_S_OK, "no context is in a round: answered at once");
	cr_assert(!sc_viommu_tc_revoked(&q1.tc), "buffers are not rings: the queue stays");
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	cr_assert_eq(blk_io(&q1, SC_VIRTIO_BLK_T_IN, bi(&q1, 0), bi(&q1, 0x1000), 0x1000, bi(&q1, 0x3000)), 1,
		     "%s", q1.blk.vq.broken_reason);
	/* The cached translation of the header is gone too, and so is the status byte's: nothing written. */
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&q1.dvq, &head, &len), 1);
	cr_assert_eq(len, 0);
	cr_assert_eq(q1.buf[0x3000], 0xee);
	cr_assert_eq(q1.blk.vq.stats.faulted, 1);
	cr_assert(!sc_vq_broken(&q1.blk.vq));
	other_queue_works();
}

/* One round of q's queue through its wrapper, as a poller would run it. */
static int wrapped_round(struct pq *q)
{
	struct sc_pollq *w = sc_viommu_tc_wrap(&q->tc, &q->blk.pq);
	return w->ops->poll(w, 32);
}

Test(viommu_dma, unmapping_a_live_ring_stops_its_queue)
{
	pq_setup(&q1, 1, 0x7f000000);
	pq_setup(&q2, 2, 0x5f000000);
	uint64_t ev = event_buffer();
	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	struct sc_drv_seg s[3] = { { bi(&q1, 0), 16 }, { bi(&q1, 0x1000), 512 }, { bi(&q1, 0x3000), 1 } };
	cr_assert_geq(sc_drv_vq_add(&q1.dvq, s, 1, 2), 0);
	sc_drv_vq_publish(&q1.dvq);
	cr_assert_eq(wrapped_round(&q1), 1, "served while the ring is mapped");
	expect_served(&q1, SC_VIRTIO_BLK_S_OK);

	/* The guest unmaps the ring under a running queue: vqueue keeps host pointers, so the queue must stop. */
	cr_assert_eq(unmap(1, q1.iova, 0x10000), SC_VIRTIO_IOMMU_S_OK);
	cr_assert(sc_viommu_tc_revoked(&q1.tc));
	cr_assert_geq(sc_drv_vq_add(&q1.dvq, s, 1, 2), 0);
	sc_drv_vq_publish(&q1.dvq);
	cr_assert_eq(wrapped_round(&q1), -EFAULT, "the poller stops it");
	cr_assert_eq(wrapped_round(&q1), -EFAULT, "and it stays stopped");
	cr_assert_eq(q1.blk.stats.reads, 1, "the request after the UNMAP was never served");
	expect_fault_event(ev, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_VIRTIO_IOMMU_FAULT_F_READ, 1, q1.iova);
	cr_assert(!sc_viommu_tc_revoked(&q2.tc));
	other_queue_works();
}

Test(viommu_dma, detaching_the_endpoint_stops_its_queue)
{
	pq_setup(&q1, 1, 0x7f000000);
	pq_setup(&q2, 2, 0x5f000000);
	struct sc_virtio_iommu_req_detach d = { .head.type = SC_VIRTIO_IOMMU_T_DETACH, .domain = 1, .endpoint = 1 };
	cr_assert_eq(iommu_req(&d, offsetof(struct sc_virtio_iommu_req_detach, tail)), SC_VIRTIO_IOMMU_S_OK);
	cr_assert(sc_viommu_tc_revoked(&q1.tc));
	cr_assert_eq(wrapped_round(&q1), -EFAULT);
	other_queue_works();
}

Test(viommu_dma, optimistic_teardown_of_a_ring_stops_its_queue_after_the_window)
{
	sc_viommu_dev_fini(&iommu);
	sc_viommu_destroy(v);
	vcfg.teardown = SC_VIOMMU_OPTIMISTIC;
	cr_assert_eq(sc_viommu_create(&vcfg, &v), 0);
	struct sc_vq_config rc, ec;
	t_vq_config(&g, &rq, 0, &rc);
	t_vq_config(&g, &eq, 0, &ec);
	rc.last_avail = rq.avail_idx;   /* the same rings, resumed */
	ec.last_avail = eq.avail_idx;
	cr_assert_eq(sc_viommu_dev_init(&iommu, v, SC_VIOMMU_FEATURES, &rc, &ec), 0);
	pq_setup(&q1, 1, 0x7f000000);
	cr_assert_eq(unmap(1, q1.iova, 0x10000), SC_VIRTIO_IOMMU_S_OK);
	cr_assert(!sc_viommu_tc_revoked(&q1.tc), "inside the window the ring still works");
	cr_assert_eq(wrapped_round(&q1), 0);
	sc_viommu_tick(v, UINT64_MAX);   /* long after the window */
	cr_assert(sc_viommu_tc_revoked(&q1.tc));
	cr_assert_eq(wrapped_round(&q1), -EFAULT);
}

static int64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Strict UNMAP of a buffer while a request on it is still in flight (an
 * io_uring disk holding its completion 200 ms, the queue counting its
 * requests per epoch): the UNMAP is answered only after that request
 * completed, and the virtio-iommu queue serves other requests meanwhile.
 */
Test(viommu_dma, strict_unmap_is_answered_only_after_a_request_in_flight_on_it_completed)
{
	struct sc_blk_backend be;
	struct sc_blk_queue bq;
	char err[256], file[] = "/dev/shm/sidecore-vdma-XXXXXX";
	int fd = mkstemp(file);
	if (fd < 0)
		cr_skip_test("cannot create a file in /dev/shm here");
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	cr_assert_eq(sc_blk_backend_open(&be, file, false, false, "vdma", err, sizeof(err)), 0, "%s", err);
	unlink(file);
	sc_blk_backend_unmap(&be);   /* through io_uring: the transfer itself outlives the round */
	be.delay_ns = 200 * 1000000ull;

	pq_guest(&q1, 1, 0x7f000000);
	cr_assert_eq(map(1, q1.iova, 0x10000, q1.ring_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, bi(&q1, 0), 0x10000, q1.buf_gpa, RW), SC_VIRTIO_IOMMU_S_OK);
	struct sc_vq_config cfg = {
		.size = QSIZE, .desc_addr = q1.dvq.desc_gpa, .avail_addr = q1.dvq.avail_gpa,
		.used_addr = q1.dvq.used_gpa, .features = FEAT, .xlate = sc_viommu_tc_xlate(&q1.tc),
		.epochs = &q1.tc.slot->epochs, .call_fd = -1, .err_fd = -1, .kick_fd = -1,
	};
	sc_viommu_tc_enter(&q1.tc);
	int ret = sc_blk_queue_init(&bq, &be, &cfg, "protected-io");
	sc_viommu_tc_exit(&q1.tc);
	cr_assert_eq(ret, 0);
	cr_assert_eq(sc_viommu_tc_pin_rings(&q1.tc, &cfg), 0);
	struct sc_pollq *w = sc_viommu_tc_wrap(&q1.tc, &bq.pq);

	put_hdr(&q1, SC_VIRTIO_BLK_T_IN);
	struct sc_drv_seg s[3] = { { bi(&q1, 0), 16 }, { bi(&q1, 0x1000), 0x1000 }, { bi(&q1, 0x3000), 1 } };
	cr_assert_geq(sc_drv_vq_add(&q1.dvq, s, 1, 2), 0);
	sc_drv_vq_publish(&q1.dvq);
	cr_assert_geq(w->ops->poll(w, 32), 1, "the read was popped");

	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = 1,
					    .virt_start = bi(&q1, 0), .virt_end = bi(&q1, 0x10000) - 1 };
	uint8_t *unmap_status = iommu_post(&u, offsetof(struct sc_virtio_iommu_req_unmap, tail));
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 0, "the UNMAP waits for the read in flight");
	/* Another request goes past the held one. */
	cr_assert_eq(map(1, 0x90000000, 0x1000, q1.buf_gpa, RW), SC_VIRTIO_IOMMU_S_OK);

	bool read_done = false;
	int64_t deadline = mono_ms() + 5000;
	for (;;) {
		cr_assert_lt(mono_ms(), deadline, "the read and the UNMAP completed within 5 s");
		w->ops->poll(w, 32);
		if (!read_done && sc_drv_vq_get_used(&q1.dvq, &head, &len) == 1) {
			read_done = true;
			cr_assert_eq(q1.buf[0x3000], SC_VIRTIO_BLK_S_OK);
		}
		sc_viommu_dev_poll(&iommu, 32);
		if (sc_drv_vq_get_used(&rq, &head, &len) == 1) {
			cr_assert(read_done, "the UNMAP was answered while the read on its buffer was in flight");
			break;
		}
		usleep(1000);
	}
	cr_assert_eq(*unmap_status, SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(iommu.stats.deferred, 1);
	sc_blk_queue_fini(&bq);
	sc_blk_backend_close(&be);
}
