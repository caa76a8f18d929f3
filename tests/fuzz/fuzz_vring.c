/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: split-ring descriptor chains in a guest memory image.
 *
 * Input: a 12-byte header, then chunks (fuzz.h) that lay out the
 * descriptor table, avail and used rings, indirect tables and the inflight
 * region, then rounds separated by a chunk target of 2+: each round pops
 * up to budget chains, reads each chain's first 16 bytes as a device
 * would read a header, writes a status byte, pushes and flushes; the
 * chunks after it are the guest's writes before the next round.
 *
 * Header: u8 log2 size (mod 11: 1..1024 entries), u8 flags (bit 0
 * INDIRECT_DESC, 1 EVENT_IDX, 2 an inflight region, 3 iov_max of 4 instead
 * of 64, 4 notifications on when idle), u16 desc, avail, used offsets in
 * the image (so misaligned and out-of-range rings are reachable), u16
 * last_avail, u8 rounds (mod 16), u8 budget (mod 64).
 *
 * Checks beyond the sanitizers: a popped chain's segments lie inside
 * guest memory, with the writable ones in writable memory; a broken queue
 * stays broken with the same error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "vqueue/vqueue.h"

static uint8_t image[FZ_IMAGE] __attribute__((aligned(4096)));
static uint8_t ro[FZ_RO] __attribute__((aligned(4096)));
static uint8_t inflight[(1024 + 1) * 16 + 64] __attribute__((aligned(64)));

/* Every segment lies inside the region it came from, with its permission. */
static void check_segments(const struct sc_vq_elem *e)
{
	for (unsigned i = 0; i < (unsigned)e->out_num + e->in_num; i++) {
		const uint8_t *b = e->iov[i].iov_base;
		size_t len = e->iov[i].iov_len;
		bool in_image = b >= image && len <= FZ_IMAGE && b + len <= image + FZ_IMAGE;
		bool in_ro = b >= ro && len <= FZ_RO && b + len <= ro + FZ_RO;
		fz_check(in_image || (in_ro && i < e->out_num));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct sc_mem mem;
	struct sc_vq vq;
	struct iovec iov[64];

	memset(image, 0, sizeof(image));
	memset(ro, 0, sizeof(ro));
	memset(inflight, 0, sizeof(inflight));
	fz_mem(&mem, image, ro);

	uint32_t qsize = 1u << (fz_u8(&f) % 11);
	uint8_t flags = fz_u8(&f);
	uint16_t desc = fz_u16(&f), avail = fz_u16(&f), used = fz_u16(&f), last_avail = fz_u16(&f);
	unsigned rounds = fz_u8(&f) % 16 + 1, budget = fz_u8(&f) % 64 + 1;
	fz_chunks(&f, image, inflight, sc_vq_inflight_bytes(qsize));

	struct sc_vq_config cfg = {
		.size = qsize, .desc_addr = FZ_GPA + desc, .avail_addr = FZ_GPA + avail,
		.used_addr = FZ_GPA + used, .last_avail = last_avail,
		.features = (flags & 1 ? 1ull << SC_VIRTIO_F_INDIRECT_DESC : 0) |
			    (flags & 2 ? 1ull << SC_VIRTIO_F_EVENT_IDX : 0) | (1ull << SC_VIRTIO_F_VERSION_1),
		.xlate = sc_mem_xlate(&mem), .call_fd = -1, .kick_fd = -1, .err_fd = -1, .name = "fuzz vring",
		.inflight = flags & 4 ? (struct sc_vq_inflight *)inflight : NULL,
	};
	if (sc_vq_init(&vq, &cfg) < 0) {
		fz_check(sc_vq_broken(&vq));
		goto out;
	}
	struct sc_vq_elem e = { .iov = iov, .iov_max = flags & 8 ? 4 : 64 };
	for (unsigned r = 0; r < rounds; r++) {
		int ret = 0;
		for (unsigned k = 0; k < budget; k++) {
			ret = sc_vq_pop(&vq, &e);
			if (ret <= 0)
				break;
			check_segments(&e);
			uint8_t hdr[16], status = 0;
			sc_iov_copy_from(e.iov, e.out_num, 0, hdr, sizeof(hdr));
			if (e.in_num)
				sc_iov_copy_to(e.iov + e.out_num, e.in_num, e.in_len - 1, &status, 1);
			sc_vq_push(&vq, e.head, e.in_len);
		}
		if (ret < 0) {
			/* Broken stays broken, with the first error. */
			fz_check(sc_vq_broken(&vq) && sc_vq_pop(&vq, &e) == ret);
		}
		sc_vq_flush(&vq);
		if (flags & 16)
			(void)sc_vq_notify_enable(&vq);
		else
			sc_vq_notify_disable(&vq);
		(void)sc_vq_has_work(&vq);
		if (!fz_chunks(&f, image, NULL, 0) && !f.n)
			break;
	}
	sc_vq_fini(&vq);
out:
	sc_mem_fini(&mem);
	return 0;
}
