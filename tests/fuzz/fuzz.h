/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets: a reader over the fuzz input (reads past the
 * end give zeroes, so every input is a valid program) and a guest memory
 * image laid out as hostile bytes say.
 *
 * Guest memory (FZ_IMAGE bytes at FZ_GPA) is two adjacent regions, so a
 * buffer may cross from one to the other, plus a read-only page at
 * FZ_RO_GPA. The input writes into it with chunks:
 *   u8 target (0: the image, 1: the second buffer, e.g. an inflight
 *   region; anything else ends the list), u16 offset, u8 len, len bytes.
 */
#ifndef SC_TESTS_FUZZ_H
#define SC_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestmem/guestmem.h"

#define FZ_GPA    0x10000ull
#define FZ_IMAGE  (64u << 10)
#define FZ_RO_GPA 0x100000ull
#define FZ_RO     4096u

/* A property the target checks beyond the sanitizers; on in every build (assert is not, with NDEBUG). */
#define fz_check(c)                                                                        \
	do {                                                                               \
		if (!(c)) {                                                                \
			fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                           \
		}                                                                          \
	} while (0)

struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	return (uint16_t)(fz_u8(f) | fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	return fz_u16(f) | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	return fz_u32(f) | (uint64_t)fz_u32(f) << 32;
}

/* Copy up to len bytes of input into dst (zeroes past the end). */
static inline void fz_bytes(struct fz *f, void *dst, size_t len)
{
	size_t k = len < f->n ? len : f->n;
	memcpy(dst, f->p, k);
	memset((uint8_t *)dst + k, 0, len - k);
	f->p += k;
	f->n -= k;
}

/* Apply chunks until a chunk of another target or the end. buf2 may be NULL. Returns chunks applied. */
static inline unsigned fz_chunks(struct fz *f, uint8_t *image, uint8_t *buf2, size_t buf2_len)
{
	unsigned n = 0;

	while (f->n) {
		uint8_t target = fz_u8(f);
		if (target > 1)
			break;
		uint16_t off = fz_u16(f);
		uint8_t len = fz_u8(f);
		uint8_t tmp[256];
		fz_bytes(f, tmp, len);
		uint8_t *dst = target ? buf2 : image;
		size_t cap = target ? buf2_len : FZ_IMAGE;
		if (dst && off < cap)
			memcpy(dst + off, tmp, len < cap - off ? len : cap - off);
		n++;
	}
	return n;
}

/* The guest memory table over image (FZ_IMAGE bytes) and ro (FZ_RO bytes). */
static inline void fz_mem(struct sc_mem *m, uint8_t *image, uint8_t *ro)
{
	sc_mem_init(m);
	sc_mem_add_hva(m, FZ_GPA, FZ_IMAGE / 2, image, SC_PERM_RW);
	sc_mem_add_hva(m, FZ_GPA + FZ_IMAGE / 2, FZ_IMAGE / 2, image + FZ_IMAGE / 2, SC_PERM_RW);
	sc_mem_add_hva(m, FZ_RO_GPA, FZ_RO, ro, SC_PERM_READ);
}

/* The libFuzzer entry point every target defines (also called by replay.c). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
