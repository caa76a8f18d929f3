/* SPDX-License-Identifier: MIT */
/*
 * The virtio-iommu device on real rings (driver/ library as the guest):
 * each request type, and each bad request with the status the spec names.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/tsc.h"
#include "harness.h"
#include "viommu/viommu.h"

#define QSIZE 16
#define GPA   0x100000ull
#define MEM   (4ull << 20)
#define EP    5u
#define PG    4096ull
#define ALL_FEATURES SC_VIOMMU_FEATURES

static struct t_guest g;
static struct sc_drv_vq rq, eq;
static struct sc_viommu *v;
static struct sc_viommu_config vcfg;
static struct sc_viommu_dev dev;
static struct sc_viommu_tc tc;

static void start(uint64_t features)
{
	uint64_t rgpa, egpa;
	struct sc_vq_config rc, ec;

	cr_assert_eq(sc_viommu_create(&vcfg, &v), 0);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP), 0);
	cr_assert_eq(sc_viommu_tc_init(v, &tc, EP), 0);
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(QSIZE), 4096, &rgpa));
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(QSIZE), 4096, &egpa));
	cr_assert_eq(t_ring_init(&g, &rq, rgpa, QSIZE, 0), 0);
	cr_assert_eq(t_ring_init(&g, &eq, egpa, QSIZE, 0), 0);
	t_vq_config(&g, &rq, 0, &rc);
	t_vq_config(&g, &eq, 0, &ec);
	cr_assert_eq(sc_viommu_dev_init(&dev, v, features, &rc, &ec), 0);
}

static void setup(void)
{
	cr_assert_eq(t_guest_init(&g, GPA, MEM), 0);
	sc_viommu_config_default(&vcfg, &g.mem);
	vcfg.domain_end = 1000;
	start(ALL_FEATURES);
}

static void stop(void)
{
	sc_viommu_dev_fini(&dev);
	sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
}

static void teardown(void)
{
	stop();
	t_guest_fini(&g);
}

TestSuite(viommu_dev, .init = setup, .fini = teardown, .timeout = 30);

static void restart(uint64_t features)
{
	stop();
	start(features);
}

/* A request in guest memory: readable bytes, then writable ones. */
struct req {
	uint8_t *buf;
	uint64_t gpa;
	uint32_t out, in;
};

static struct req new_req(const void *body, uint32_t out, uint32_t in)
{
	struct req r = { .out = out, .in = in };
	r.buf = t_alloc(&g, out + in, 8, &r.gpa);
	cr_assert_not_null(r.buf);
	memcpy(r.buf, body, out);
	memset(r.buf + out, 0xee, in);
	return r;
}

static int post(const struct req *r)
{
	struct sc_drv_seg s[2] = { { r->gpa, r->out }, { r->gpa + r->out, r->in } };
	unsigned nout = r->out ? 1 : 0;
	int h = sc_drv_vq_add(&rq, r->out ? s : s + 1, nout, r->in ? 1 : 0);
	cr_assert_geq(h, 0);
	sc_drv_vq_publish(&rq);
	return h;
}

/* Post, serve, reap; returns the status byte (the last writable byte group), *len the used length. */
static uint8_t run_len(const void *body, uint32_t out, uint32_t in, uint32_t *len)
{
	struct req r = new_req(body, out, in);
	uint16_t head;
	int h = post(&r);
	cr_assert_geq(sc_viommu_dev_poll(&dev, 32), 1, "%s", dev.req.broken_reason);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, len), 1, "answered");
	cr_assert_eq(head, h);
	cr_assert(!sc_vq_broken(&dev.req), "a bad request fails alone: %s", dev.req.broken_reason);
	return in >= 4 ? r.buf[out + in - 4] : 0xee;
}

static uint8_t run(const void *body, uint32_t out, uint32_t in)
{
	uint32_t len;
	uint8_t st = run_len(body, out, in, &len);
	cr_assert_eq(len, in >= 4 ? 4 : 0);
	return st;
}

#define TAIL 4u
#define OUT(type) ((uint32_t)offsetof(type, tail))

static uint8_t attach_flags(uint32_t dom, uint32_t ep, uint32_t flags)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = dom,
					     .endpoint = ep, .flags = flags };
	return run(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL);
}

static uint8_t attach(uint32_t dom, uint32_t ep) { return attach_flags(dom, ep, 0); }

static uint8_t detach(uint32_t dom, uint32_t ep)
{
	struct sc_virtio_iommu_req_detach a = { .head.type = SC_VIRTIO_IOMMU_T_DETACH, .domain = dom, .endpoint = ep };
	return run(&a, OUT(struct sc_virtio_iommu_req_detach), TAIL);
}

static uint8_t map(uint32_t dom, uint64_t start, uint64_t end, uint64_t phys, uint32_t flags)
{
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = dom, .virt_start = start,
					  .virt_end = end, .phys_start = phys, .flags = flags };
	return run(&m, OUT(struct sc_virtio_iommu_req_map), TAIL);
}

static uint8_t unmap(uint32_t dom, uint64_t start, uint64_t end)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = dom,
					    .virt_start = start, .virt_end = end };
	return run(&u, OUT(struct sc_virtio_iommu_req_unmap), TAIL);
}

#define RW (SC_VIRTIO_IOMMU_MAP_F_READ | SC_VIRTIO_IOMMU_MAP_F_WRITE)

Test(viommu_dev, config_space)
{
	struct sc_virtio_iommu_config c;
	sc_viommu_dev_config(v, &c);
	cr_assert_eq(c.page_size_mask, ~0xfffull);
	cr_assert_eq(c.input_range.start, 0);
	cr_assert_eq(c.input_range.end, UINT64_MAX);
	cr_assert_eq(c.domain_range.end, 1000);
	cr_assert_eq(c.probe_size, SC_VIOMMU_PROBE_SIZE);
	cr_assert_eq(c.bypass, 0);
}

Test(viommu_dev, features_not_offered_are_refused)
{
	struct sc_viommu_dev d2;
	struct sc_vq_config rc;
	t_vq_config(&g, &rq, 0, &rc);
	cr_assert_eq(sc_viommu_dev_init(&d2, v, 1ull << SC_VIRTIO_IOMMU_F_MMIO, &rc, &rc), -EINVAL);
}

Test(viommu_dev, attach_map_translate_unmap_detach)
{
	struct iovec iov[2];
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x80000000, 0x80000fff, GPA + 0x3000, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(sc_viommu_translate(&tc, 0x80000010, 16, SC_PERM_WRITE, iov, 2), 1);
	cr_assert_eq(iov[0].iov_base, g.base + 0x3010);
	cr_assert_eq(unmap(1, 0x80000000, 0x80000fff), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(sc_viommu_translate(&tc, 0x80000010, 16, SC_PERM_WRITE, iov, 2), -EFAULT);
	cr_assert_eq(detach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(dev.stats.bad_requests, 0);
}

Test(viommu_dev, request_split_over_descriptors)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	struct req r = new_req(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL);
	struct sc_drv_seg s[3] = { { r.gpa, 4 }, { r.gpa + 4, r.out - 4 }, { r.gpa + r.out, TAIL } };
	uint16_t head;
	uint32_t len;
	cr_assert_geq(sc_drv_vq_add(&rq, s, 2, 1), 0);
	sc_drv_vq_publish(&rq);
	cr_assert_eq(sc_viommu_dev_poll(&dev, 32), 1);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1);
	cr_assert_eq(r.buf[r.out], SC_VIRTIO_IOMMU_S_OK);
}

Test(viommu_dev, probe_reports_the_msi_doorbell)
{
	struct sc_virtio_iommu_req_probe p = { .head.type = SC_VIRTIO_IOMMU_T_PROBE, .endpoint = EP };
	struct req r = new_req(&p, sizeof(p), SC_VIOMMU_PROBE_SIZE + TAIL);
	uint16_t head;
	uint32_t len;
	post(&r);
	cr_assert_eq(sc_viommu_dev_poll(&dev, 32), 1);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1);
	cr_assert_eq(len, SC_VIOMMU_PROBE_SIZE + TAIL);
	struct sc_virtio_iommu_probe_resv_mem m;
	memcpy(&m, r.buf + sizeof(p), sizeof(m));
	cr_assert_eq(m.head.type, SC_VIRTIO_IOMMU_PROBE_T_RESV_MEM);
	cr_assert_eq(m.head.length, 20);
	cr_assert_eq(m.subtype, SC_VIRTIO_IOMMU_RESV_MEM_T_MSI);
	cr_assert_eq(m.start, 0xfee00000ull);
	cr_assert_eq(m.end, 0xfeefffffull);
	struct sc_virtio_iommu_probe_property end;
	memcpy(&end, r.buf + sizeof(p) + sizeof(m), sizeof(end));
	cr_assert_eq(end.type, SC_VIRTIO_IOMMU_PROBE_T_NONE, "the list ends");
	cr_assert_eq(r.buf[sizeof(p) + SC_VIOMMU_PROBE_SIZE], SC_VIRTIO_IOMMU_S_OK);
}

/* ---- attacks ---- */

Test(viommu_dev, unknown_type_is_unsupported)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = 0x42 };
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL), SC_VIRTIO_IOMMU_S_UNSUPP);
	a.head.type = 0;
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL), SC_VIRTIO_IOMMU_S_UNSUPP);
	cr_assert_eq(dev.stats.unsupported, 2);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK, "the queue goes on");
}

Test(viommu_dev, map_without_map_unmap_feature_is_unsupported)
{
	restart(1ull << SC_VIRTIO_F_VERSION_1);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0, PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_UNSUPP);
	cr_assert_eq(unmap(1, 0, PG - 1), SC_VIRTIO_IOMMU_S_UNSUPP);
	struct sc_virtio_iommu_req_probe p = { .head.type = SC_VIRTIO_IOMMU_T_PROBE, .endpoint = EP };
	cr_assert_eq(run(&p, sizeof(p), SC_VIOMMU_PROBE_SIZE + TAIL), SC_VIRTIO_IOMMU_S_UNSUPP, "nor PROBE without its feature");
}

Test(viommu_dev, request_shorter_than_its_head)
{
	uint8_t b[2] = { SC_VIRTIO_IOMMU_T_ATTACH, 0 };
	cr_assert_eq(run(b, 2, TAIL), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(run(b, 0, TAIL), SC_VIRTIO_IOMMU_S_INVAL, "no readable part at all");
}

Test(viommu_dev, request_shorter_than_its_type)
{
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = 1, .virt_end = PG - 1,
					  .flags = RW };
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(run(&m, OUT(struct sc_virtio_iommu_req_map) - 4, TAIL), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 0, "nothing mapped");
}

Test(viommu_dev, request_longer_than_its_type)
{
	uint8_t b[64] = { 0 };
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	memcpy(b, &a, OUT(struct sc_virtio_iommu_req_attach));
	cr_assert_eq(run(b, sizeof(b), TAIL), SC_VIRTIO_IOMMU_S_INVAL);
}

Test(viommu_dev, writable_part_of_the_wrong_size)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), 12), SC_VIRTIO_IOMMU_S_INVAL,
		     "status in the last 4 bytes");
	struct sc_virtio_iommu_req_probe p = { .head.type = SC_VIRTIO_IOMMU_T_PROBE, .endpoint = EP };
	cr_assert_eq(run(&p, sizeof(p), TAIL), SC_VIRTIO_IOMMU_S_INVAL, "PROBE without room for properties");
}

Test(viommu_dev, no_room_for_the_tail)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), 2), 0xee, "nothing written");
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), 0), 0xee, "no writable part at all");
	cr_assert_eq(dev.stats.bad_requests, 2);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
}

Test(viommu_dev, attach_with_reserved_bytes_set)
{
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	a.reserved[2] = 1;
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), -ENOENT, "not attached");
}

Test(viommu_dev, attach_with_unknown_flags)
{
	cr_assert_eq(attach_flags(1, EP, 0x80), SC_VIRTIO_IOMMU_S_INVAL);
	restart(ALL_FEATURES & ~(1ull << SC_VIRTIO_IOMMU_F_BYPASS_CONFIG));
	cr_assert_eq(attach_flags(1, EP, SC_VIRTIO_IOMMU_ATTACH_F_BYPASS), SC_VIRTIO_IOMMU_S_INVAL,
		     "ATTACH_F_BYPASS needs BYPASS_CONFIG");
}

Test(viommu_dev, attach_bypass_domain)
{
	struct iovec iov[1];
	cr_assert_eq(attach_flags(9, EP, SC_VIRTIO_IOMMU_ATTACH_F_BYPASS), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(sc_viommu_translate(&tc, GPA + 64, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(iov[0].iov_base, g.base + 64);
	cr_assert_eq(map(9, 0, PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_INVAL, "no mappings in a bypass domain");
}

Test(viommu_dev, attach_unknown_endpoint)
{
	cr_assert_eq(attach(1, EP + 1), SC_VIRTIO_IOMMU_S_NOENT);
}

Test(viommu_dev, attach_domain_outside_domain_range)
{
	cr_assert_eq(attach(1001, EP), SC_VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(attach(UINT32_MAX, EP), SC_VIRTIO_IOMMU_S_RANGE);
}

Test(viommu_dev, attach_beyond_the_domain_cap)
{
	stop();
	vcfg.max_domains = 1;
	start(ALL_FEATURES);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP + 1), 0);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(attach(2, EP + 1), SC_VIRTIO_IOMMU_S_NOMEM);
}

Test(viommu_dev, detach_unknown_domain_or_endpoint)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(detach(2, EP), SC_VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(detach(1, EP + 7), SC_VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(sc_viommu_endpoint_add(v, EP + 1), 0);
	cr_assert_eq(attach(2, EP + 1), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(detach(2, EP), SC_VIRTIO_IOMMU_S_INVAL, "attached elsewhere");
}

Test(viommu_dev, detach_with_reserved_bytes_set)
{
	struct sc_virtio_iommu_req_detach a = { .head.type = SC_VIRTIO_IOMMU_T_DETACH, .domain = 1, .endpoint = EP };
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	a.reserved[7] = 1;
	cr_assert_eq(run(&a, OUT(struct sc_virtio_iommu_req_detach), TAIL), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 0, "still attached");
}

Test(viommu_dev, map_unknown_domain)
{
	cr_assert_eq(map(1, 0, PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_NOENT);
}

Test(viommu_dev, map_overlapping)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10000, 0x11fff, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x11000, 0x12fff, GPA, RW), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 1);
}

Test(viommu_dev, map_range_that_wraps)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x20000, 0x1ffff, GPA, RW), SC_VIRTIO_IOMMU_S_INVAL, "end before start");
	cr_assert_eq(map(1, 0, UINT64_MAX, UINT64_MAX - 0xfff, RW), SC_VIRTIO_IOMMU_S_INVAL, "physical end wraps");
	cr_assert_eq(map(1, 0, UINT64_MAX - 0xfff + 0x10, 0, RW), SC_VIRTIO_IOMMU_S_RANGE, "end + 1 misaligned");
}

Test(viommu_dev, map_misaligned)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10010, 0x10fff, GPA, RW), SC_VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(map(1, 0x10000, 0x10fff, GPA + 1, RW), SC_VIRTIO_IOMMU_S_RANGE);
}

Test(viommu_dev, map_outside_input_range)
{
	stop();
	vcfg.input_end = 0xffffffffull;
	start(ALL_FEATURES);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0xfffff000ull, 0x100000fffull, GPA, RW), SC_VIRTIO_IOMMU_S_RANGE);
}

Test(viommu_dev, map_with_unknown_or_mmio_flags)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0, PG - 1, GPA, 0x100), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(map(1, 0, PG - 1, GPA, SC_VIRTIO_IOMMU_MAP_F_MMIO), SC_VIRTIO_IOMMU_S_INVAL, "MMIO was not negotiated");
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 0);
}

Test(viommu_dev, map_beyond_the_mapping_cap)
{
	stop();
	vcfg.max_mappings = 2;
	start(ALL_FEATURES);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0, PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, PG, 2 * PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 2 * PG, 3 * PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_NOMEM);
}

Test(viommu_dev, unmap_that_would_split)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10000, 0x13fff, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(unmap(1, 0x10000, 0x10fff), SC_VIRTIO_IOMMU_S_RANGE);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 1);
	cr_assert_eq(unmap(1, 0x0, 0x1ffff), SC_VIRTIO_IOMMU_S_OK, "a range around it removes it");
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 0);
}

Test(viommu_dev, unmap_unknown_domain_and_reversed_range)
{
	cr_assert_eq(unmap(1, 0, PG - 1), SC_VIRTIO_IOMMU_S_NOENT);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(unmap(1, PG, 0), SC_VIRTIO_IOMMU_S_INVAL);
}

Test(viommu_dev, unmap_with_reserved_bytes_set)
{
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = 1, .virt_end = PG - 1 };
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0, PG - 1, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	u.reserved[0] = 9;
	cr_assert_eq(run(&u, OUT(struct sc_virtio_iommu_req_unmap), TAIL), SC_VIRTIO_IOMMU_S_INVAL);
	cr_assert_eq(sc_viommu_domain_mappings(v, 1), 1);
}

Test(viommu_dev, probe_unknown_endpoint)
{
	struct sc_virtio_iommu_req_probe p = { .head.type = SC_VIRTIO_IOMMU_T_PROBE, .endpoint = 77 };
	cr_assert_eq(run(&p, sizeof(p), SC_VIOMMU_PROBE_SIZE + TAIL), SC_VIRTIO_IOMMU_S_NOENT);
}

Test(viommu_dev, probe_with_reserved_bytes_set)
{
	struct sc_virtio_iommu_req_probe p = { .head.type = SC_VIRTIO_IOMMU_T_PROBE, .endpoint = EP };
	p.reserved[63] = 1;
	cr_assert_eq(run(&p, sizeof(p), SC_VIOMMU_PROBE_SIZE + TAIL), SC_VIRTIO_IOMMU_S_INVAL);
}

/* ---- faults on the eventq ---- */

static uint64_t post_event_buffer(void)
{
	uint64_t gpa;
	void *p = t_alloc(&g, sizeof(struct sc_virtio_iommu_fault), 8, &gpa);
	cr_assert_not_null(p);
	memset(p, 0xee, sizeof(struct sc_virtio_iommu_fault));
	struct sc_drv_seg s = { gpa, sizeof(struct sc_virtio_iommu_fault) };
	cr_assert_geq(sc_drv_vq_add(&eq, &s, 0, 1), 0);
	sc_drv_vq_publish(&eq);
	return gpa;
}

Test(viommu_dev, fault_is_delivered_on_the_eventq)
{
	struct iovec iov[1];
	uint64_t gpa = post_event_buffer();
	uint16_t head;
	uint32_t len;
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10000, 0x10fff, GPA, SC_VIRTIO_IOMMU_MAP_F_READ), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(sc_viommu_translate(&tc, 0x10020, 8, SC_PERM_WRITE, iov, 1), -EPERM);
	sc_viommu_dev_poll(&dev, 32);
	cr_assert_eq(sc_drv_vq_get_used(&eq, &head, &len), 1, "an event");
	cr_assert_eq(len, sizeof(struct sc_virtio_iommu_fault));
	struct sc_virtio_iommu_fault f;
	memcpy(&f, t_ptr(&g, gpa, sizeof(f)), sizeof(f));
	cr_assert_eq(f.reason, SC_VIRTIO_IOMMU_FAULT_R_MAPPING);
	cr_assert_eq(f.flags, SC_VIRTIO_IOMMU_FAULT_F_WRITE | SC_VIRTIO_IOMMU_FAULT_F_ADDRESS);
	cr_assert_eq(f.endpoint, EP);
	cr_assert_eq(f.address, 0x10020);
	cr_assert_eq(dev.stats.events, 1);
}

Test(viommu_dev, full_eventq_drops_and_counts_never_blocks)
{
	struct iovec iov[1];
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(sc_viommu_translate(&tc, 0x10000, 8, SC_PERM_READ, iov, 1), -EFAULT);
	cr_assert_eq(sc_viommu_translate(&tc, 0x20000, 8, SC_PERM_READ, iov, 1), -EFAULT);
	sc_viommu_dev_poll(&dev, 32);   /* no eventq buffer at all */
	cr_assert_eq(dev.stats.events_dropped, 2);
	cr_assert_eq(attach(2, EP), SC_VIRTIO_IOMMU_S_OK, "requests go on");
	/* More faults than a context's ring holds, before the device polls: the rest are counted. */
	for (int i = 0; i < SC_VIOMMU_FAULT_RING + 5; i++)
		sc_viommu_translate(&tc, 0x30000, 8, SC_PERM_READ, iov, 1);
	struct sc_viommu_stats st;
	sc_viommu_get_stats(v, &st);
	cr_assert_eq(st.faults_dropped, 5);
}

Test(viommu_dev, eventq_buffer_too_small)
{
	struct iovec iov[1];
	uint64_t gpa;
	uint16_t head;
	uint32_t len;
	cr_assert_not_null(t_alloc(&g, 8, 8, &gpa));
	struct sc_drv_seg s = { gpa, 8 };
	cr_assert_geq(sc_drv_vq_add(&eq, &s, 0, 1), 0);
	sc_drv_vq_publish(&eq);
	cr_assert_eq(sc_viommu_translate(&tc, 0x10000, 8, SC_PERM_READ, iov, 1), -EFAULT);
	sc_viommu_dev_poll(&dev, 32);
	cr_assert_eq(sc_drv_vq_get_used(&eq, &head, &len), 1, "returned");
	cr_assert_eq(len, 0, "with nothing written");
	cr_assert_eq(dev.stats.events_dropped, 1);
	cr_assert(!sc_vq_broken(&dev.evt));
}

/* ---- strict UNMAP: held until no context can use the mapping, without holding up the queue ---- */

Test(viommu_dev, strict_unmap_waits_for_a_context_in_a_round)
{
	struct iovec iov[1];
	uint16_t head;
	uint32_t len;
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10000, 0x10fff, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	sc_viommu_tc_enter(&tc);
	cr_assert_eq(sc_viommu_translate(&tc, 0x10000, 8, SC_PERM_READ, iov, 1), 1);

	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = 1,
					    .virt_start = 0x10000, .virt_end = 0x10fff };
	struct req r = new_req(&u, OUT(struct sc_virtio_iommu_req_unmap), TAIL);
	int uh = post(&r);
	sc_viommu_dev_poll(&dev, 32);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 0, "held: the context may still use it");
	cr_assert_eq(dev.npending, 1);

	/* A later request is not held up behind it. */
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = 1, .virt_start = 0x20000,
					  .virt_end = 0x20fff, .phys_start = GPA, .flags = RW };
	struct req r2 = new_req(&m, OUT(struct sc_virtio_iommu_req_map), TAIL);
	int mh = post(&r2);
	sc_viommu_dev_poll(&dev, 32);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1);
	cr_assert_eq(head, mh);
	cr_assert_eq(r2.buf[r2.out], SC_VIRTIO_IOMMU_S_OK);

	sc_viommu_tc_exit(&tc);
	sc_viommu_dev_poll(&dev, 32);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1, "answered once the round ended");
	cr_assert_eq(head, uh);
	cr_assert_eq(r.buf[r.out], SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(dev.stats.deferred, 1);
}

Test(viommu_dev, optimistic_unmap_answers_at_once)
{
	struct iovec iov[1];
	uint16_t head;
	uint32_t len;
	stop();
	vcfg.teardown = SC_VIOMMU_OPTIMISTIC;
	start(ALL_FEATURES);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	cr_assert_eq(map(1, 0x10000, 0x10fff, GPA, RW), SC_VIRTIO_IOMMU_S_OK);
	sc_viommu_tc_enter(&tc);
	cr_assert_eq(sc_viommu_translate(&tc, 0x10000, 8, SC_PERM_READ, iov, 1), 1);
	cr_assert_eq(unmap(1, 0x10000, 0x10fff), SC_VIRTIO_IOMMU_S_OK, "answered in the same poll");
	cr_assert_eq(map(1, 0x10000, 0x10fff, GPA, RW), SC_VIRTIO_IOMMU_S_OK, "and remapped at once");
	sc_viommu_tc_exit(&tc);
	struct sc_viommu_stats st;
	sc_viommu_get_stats(v, &st);
	cr_assert_eq(st.reused, 1);
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 0);
}

Test(viommu_dev, held_head_posted_again_breaks_only_the_requestq)
{
	/* A context stays in its round, so every answer that removes translations is held. */
	sc_viommu_tc_enter(&tc);
	struct sc_virtio_iommu_req_attach a = { .head.type = SC_VIRTIO_IOMMU_T_ATTACH, .domain = 1, .endpoint = EP };
	struct req r = new_req(&a, OUT(struct sc_virtio_iommu_req_attach), TAIL);
	int h = post(&r);
	cr_assert_eq(sc_viommu_dev_poll(&dev, 32), 1);   /* first attach: nothing removed, answered */
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&rq, &head, &len), 1);
	/* A hostile driver re-posts the same head: each time the endpoint moves domain, and the answer is held. */
	int ret = 0;
	for (int i = 0; i <= QSIZE && ret >= 0; i++) {
		struct sc_virtio_iommu_req_attach *body = (void *)r.buf;
		body->domain = 2 + (uint32_t)(i & 1);
		rq.avail->ring[rq.avail->idx % QSIZE] = (uint16_t)h;
		__atomic_store_n(&rq.avail->idx, (uint16_t)(rq.avail->idx + 1), __ATOMIC_RELEASE);
		ret = sc_viommu_dev_poll(&dev, 32);
	}
	cr_assert_eq(ret, -EPROTO, "more held answers than the queue has heads");
	cr_assert(sc_vq_broken(&dev.req));
	cr_assert(strstr(dev.req.broken_reason, "reused"), "%s", dev.req.broken_reason);
	cr_assert_eq(dev.npending, QSIZE, "the held list never overflows");
	sc_viommu_tc_exit(&tc);
	struct iovec iov[1];
	cr_assert_eq(sc_viommu_translate(&tc, 0x10000, 8, SC_PERM_READ, iov, 1), -EFAULT, "translation still works (and faults)");
}

/* Cycles the device spends on one MAP and one UNMAP (served by dev_poll, no ring wait), for the report. */
static double map_unmap_cycles(void)
{
	struct sc_virtio_iommu_req_map m = { .head.type = SC_VIRTIO_IOMMU_T_MAP, .domain = 1, .virt_start = 0x10000,
					  .virt_end = 0x10fff, .phys_start = GPA, .flags = RW };
	struct sc_virtio_iommu_req_unmap u = { .head.type = SC_VIRTIO_IOMMU_T_UNMAP, .domain = 1,
					    .virt_start = 0x10000, .virt_end = 0x10fff };
	struct req rm = new_req(&m, OUT(struct sc_virtio_iommu_req_map), TAIL);
	struct req ru = new_req(&u, OUT(struct sc_virtio_iommu_req_unmap), TAIL);
	struct sc_drv_seg sm[2] = { { rm.gpa, rm.out }, { rm.gpa + rm.out, TAIL } };
	struct sc_drv_seg su[2] = { { ru.gpa, ru.out }, { ru.gpa + ru.out, TAIL } };
	uint64_t best = UINT64_MAX;
	uint16_t head;
	uint32_t len;

	for (int i = 0; i < 2000; i++) {
		cr_assert_geq(sc_drv_vq_add(&rq, sm, 1, 1), 0);
		cr_assert_geq(sc_drv_vq_add(&rq, su, 1, 1), 0);
		sc_drv_vq_publish(&rq);
		uint64_t t = sc_rdtsc();
		int n = sc_viommu_dev_poll(&dev, 32);
		t = sc_rdtscp() - t;
		cr_assert_geq(n, 2, "iteration %d: %s", i, dev.req.broken_reason);
		cr_assert_eq(rm.buf[rm.out], SC_VIRTIO_IOMMU_S_OK);
		cr_assert_eq(ru.buf[ru.out], SC_VIRTIO_IOMMU_S_OK);
		while (sc_drv_vq_get_used(&rq, &head, &len) == 1)
			;
		best = t < best ? t : best;
	}
	return (double)best;
}

Test(viommu_dev, map_unmap_cycles)
{
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	double strict = map_unmap_cycles();
	stop();
	vcfg.teardown = SC_VIOMMU_OPTIMISTIC;
	start(ALL_FEATURES);
	cr_assert_eq(attach(1, EP), SC_VIRTIO_IOMMU_S_OK);
	double optimistic = map_unmap_cycles();
	fprintf(stderr, "virtio-iommu MAP+UNMAP served in one poll (best of 2000): strict %.0f cycles, optimistic %.0f cycles\n",
		strict, optimistic);
}
