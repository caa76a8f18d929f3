/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the virtio-iommu request queue (viommu/device.c, virtio 1.2
 * §5.13) and the translations its mappings give.
 *
 * Each input creates a vIOMMU over the guest memory image with small,
 * fuzzed caps (domains, mappings, endpoints, ranges, teardown mode), lays
 * out the request and event queues and their requests with chunks
 * (fuzz.h), and runs rounds of sc_viommu_dev_poll. Each round also
 * translates a fuzzed IOVA range for endpoint 1 through a translation
 * context, as a device queue behind the IOMMU would (a miss is a fault
 * the event queue reports); the chunks between rounds are the guest's
 * writes.
 *
 * Header: u8 log2 request queue size (mod 8), u8 log2 event queue size
 * (mod 8), u8 flags (bits 0-5: which of the offered features are
 * negotiated, 6 optimistic teardown, 7 config.bypass), u16 desc, avail,
 * used offsets of the request queue, then of the event queue, u8 max
 * domains (mod 8, +1), u8 max mappings (mod 32, +1), u8 endpoints (mod 4),
 * u8 rounds (mod 16), u8 budget (mod 64). Then chunks, and rounds; each
 * round starts with u64 iova, u16 len, u8 perm for the translation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/compiler.h"
#include "tests/fuzz/fuzz.h"
#include "viommu/viommu.h"
#include "spec/sc_virtio_iommu.h"

static uint8_t image[FZ_IMAGE] __attribute__((aligned(4096)));
static uint8_t ro[FZ_RO] __attribute__((aligned(4096)));

static const unsigned feature_bits[] = {
	SC_VIRTIO_IOMMU_F_INPUT_RANGE, SC_VIRTIO_IOMMU_F_DOMAIN_RANGE, SC_VIRTIO_IOMMU_F_MAP_UNMAP,
	SC_VIRTIO_IOMMU_F_BYPASS, SC_VIRTIO_IOMMU_F_PROBE, SC_VIRTIO_IOMMU_F_BYPASS_CONFIG,
};

static struct sc_vq_config ring_config(struct fz *f, struct sc_mem *mem, uint32_t size, const char *name)
{
	uint16_t desc = fz_u16(f), avail = fz_u16(f), used = fz_u16(f);
	return (struct sc_vq_config){
		.size = size, .desc_addr = FZ_GPA + desc, .avail_addr = FZ_GPA + avail,
		.used_addr = FZ_GPA + used, .features = 1ull << SC_VIRTIO_F_VERSION_1,
		.xlate = sc_mem_xlate(mem), .call_fd = -1, .kick_fd = -1, .err_fd = -1, .name = name,
	};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct sc_mem mem;
	struct sc_viommu_config vc;
	struct sc_viommu *v;
	struct sc_viommu_dev d;
	struct sc_viommu_tc tc;
	bool have_tc = false;

	memset(image, 0, sizeof(image));
	memset(ro, 0, sizeof(ro));
	fz_mem(&mem, image, ro);

	uint32_t req_size = 1u << (fz_u8(&f) % 8), evt_size = 1u << (fz_u8(&f) % 8);
	uint8_t flags = fz_u8(&f);
	uint64_t features = 1ull << SC_VIRTIO_F_VERSION_1;
	for (unsigned i = 0; i < SC_ARRAY_SIZE(feature_bits); i++)
		if (flags & (1u << i))
			features |= 1ull << feature_bits[i];
	struct sc_vq_config req = ring_config(&f, &mem, req_size, "fuzz viommu req");
	struct sc_vq_config evt = ring_config(&f, &mem, evt_size, "fuzz viommu evt");
	sc_viommu_config_default(&vc, &mem);
	vc.max_domains = fz_u8(&f) % 8 + 1;
	vc.max_mappings = fz_u8(&f) % 32 + 1;
	unsigned endpoints = fz_u8(&f) % 4;
	vc.teardown = flags & 64 ? SC_VIOMMU_OPTIMISTIC : SC_VIOMMU_STRICT;
	vc.bypass = flags & 128;
	vc.window_ns = 0;   /* optimistic teardown due at once: no timing in the outcome */
	unsigned rounds = fz_u8(&f) % 16 + 1, budget = fz_u8(&f) % 64 + 1;
	fz_chunks(&f, image, NULL, 0);

	if (sc_viommu_create(&vc, &v) < 0)
		goto out_mem;
	for (unsigned i = 1; i <= endpoints; i++)
		fz_check(sc_viommu_endpoint_add(v, i) == 0);
	if (endpoints && sc_viommu_tc_init(v, &tc, 1) == 0)
		have_tc = true;
	if (sc_viommu_dev_init(&d, v, features, &req, &evt) < 0)
		goto out_v;
	for (unsigned r = 0; r < rounds; r++) {
		uint64_t iova = fz_u64(&f);
		uint16_t len = fz_u16(&f);
		unsigned perm = fz_u8(&f) % 3 + 1;
		if (have_tc) {
			struct iovec iov[4];
			sc_viommu_tc_enter(&tc);
			int n = sc_viommu_translate(&tc, iova, len, perm, iov, SC_ARRAY_SIZE(iov));
			for (int i = 0; i < n; i++) {
				const uint8_t *b = iov[i].iov_base;
				fz_check((b >= image && b + iov[i].iov_len <= image + FZ_IMAGE) ||
					 (b >= ro && b + iov[i].iov_len <= ro + FZ_RO && !(perm & SC_PERM_WRITE)));
			}
			sc_viommu_tc_exit(&tc);
		}
		int ret = sc_viommu_dev_poll(&d, budget);
		if (ret < 0)
			fz_check(sc_vq_broken(&d.req));
		if (!fz_chunks(&f, image, NULL, 0) && !f.n)
			break;
	}
	sc_viommu_dev_fini(&d);
out_v:
	if (have_tc)
		sc_viommu_tc_fini(&tc);
	sc_viommu_destroy(v);
out_mem:
	sc_mem_fini(&mem);
	return 0;
}
