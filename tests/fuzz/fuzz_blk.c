/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: virtio-blk requests (devices/blk.c) on a memory-backed disk.
 *
 * The disk is a 256 KiB file on tmpfs (/dev/shm), opened once; each input
 * sets up one queue over it, lays out the rings and requests in the guest
 * memory image with chunks (fuzz.h), and runs rounds of
 * sc_blk_queue_poll, the chunks between rounds being the guest's writes;
 * then sc_blk_queue_fini finishes what is under way.
 *
 * Header: u8 log2 size (mod 9: 1..256 entries), u8 flags (bit 0
 * INDIRECT_DESC, 1 EVENT_IDX, 2 read-only disk), u16 desc, avail, used
 * offsets in the image, u16 capacity in sectors (at most the file's 512),
 * u32 size_max (mod 1 MiB, 0 means 512), u8 seg_max (mod 126, +1),
 * u8 rounds (mod 16), u8 budget (mod 64). Then chunks, and rounds.
 *
 * Checks beyond the sanitizers: what the queue reports as done is
 * consistent (a used entry per request taken, none for a broken ring).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/devices.h"
#include "tests/fuzz/fuzz.h"

#define DISK_BYTES (256u << 10)

static uint8_t image[FZ_IMAGE] __attribute__((aligned(4096)));
static uint8_t ro[FZ_RO] __attribute__((aligned(4096)));
static struct sc_blk_backend be;
static bool disk_ready;

static void disk_open(void)
{
	char path[64], err[256];
	snprintf(path, sizeof(path), "/dev/shm/sidecore-fuzz-blk-%d", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f || ftruncate(fileno(f), DISK_BYTES) < 0) {
		fprintf(stderr, "fuzz_blk: cannot create %s on tmpfs\n", path);
		abort();
	}
	fclose(f);
	int ret = sc_blk_backend_open(&be, path, false, false, "fuzz", err, sizeof(err));
	unlink(path);   /* the fd keeps it; nothing is left behind */
	if (ret < 0) {
		fprintf(stderr, "fuzz_blk: %s\n", err);
		abort();
	}
	fz_check(be.memory_backed);
	disk_ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct sc_mem mem;
	struct sc_blk_queue q;

	if (!disk_ready)
		disk_open();
	memset(image, 0, sizeof(image));
	memset(ro, 0, sizeof(ro));
	fz_mem(&mem, image, ro);

	uint32_t qsize = 1u << (fz_u8(&f) % 9);
	uint8_t flags = fz_u8(&f);
	uint16_t desc = fz_u16(&f), avail = fz_u16(&f), used = fz_u16(&f);
	be.capacity = fz_u16(&f) % (DISK_BYTES / 512 + 1);
	be.size_max = fz_u32(&f) % (1u << 20);
	if (!be.size_max)
		be.size_max = 512;
	be.seg_max = fz_u8(&f) % SC_BLK_SEG_MAX + 1;
	be.read_only = flags & 4;
	unsigned rounds = fz_u8(&f) % 16 + 1, budget = fz_u8(&f) % 64 + 1;
	fz_chunks(&f, image, NULL, 0);

	struct sc_vq_config cfg = {
		.size = qsize, .desc_addr = FZ_GPA + desc, .avail_addr = FZ_GPA + avail,
		.used_addr = FZ_GPA + used,
		.features = (flags & 1 ? 1ull << SC_VIRTIO_F_INDIRECT_DESC : 0) |
			    (flags & 2 ? 1ull << SC_VIRTIO_F_EVENT_IDX : 0) | (1ull << SC_VIRTIO_F_VERSION_1),
		.xlate = sc_mem_xlate(&mem), .call_fd = -1, .kick_fd = -1, .err_fd = -1, .name = "fuzz blk",
	};
	if (sc_blk_queue_init(&q, &be, &cfg, "fuzz blk") < 0)
		goto out;
	for (unsigned r = 0; r < rounds; r++) {
		int ret = sc_blk_queue_poll(&q, budget);
		if (ret < 0)
			fz_check(sc_vq_broken(&q.vq) && sc_blk_queue_poll(&q, budget) == ret);
		if (!fz_chunks(&f, image, NULL, 0) && !f.n)
			break;
	}
	sc_blk_queue_fini(&q);
out:
	sc_mem_fini(&mem);
	return 0;
}
