/* SPDX-License-Identifier: MIT */
/*
 * ring_helpers: shared setup for tests that run a driver ring (driver/) in
 * guest memory against a device-side queue (vqueue/).
 *
 *   struct rh_guest g;
 *   uint64_t ring_gpa, buf_gpa;
 *   rh_guest_init(&g, 0x100000, 4 << 20);              // memfd guest memory
 *   rh_alloc(&g, sc_drv_vq_ring_bytes(16), 4096, &ring_gpa);
 *   rh_ring_init(&g, &dvq, ring_gpa, 16, features);   // driver side
 *   rh_vq_config(&g, &dvq, features, &cfg);           // device side: sc_vq_init(&vq, &cfg)
 *   uint8_t *buf = rh_alloc(&g, 4096, 16, &buf_gpa);  // request buffers
 *   ...
 *   rh_guest_fini(&g);
 *
 * Functions return errors rather than asserting, so they suit any test
 * framework; tests assert on the results.
 */
#ifndef SC_TESTS_RING_HELPERS_H
#define SC_TESTS_RING_HELPERS_H

#include <stdint.h>

#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "vqueue/vqueue.h"

/* One guest memory region, read-write for the device, and a bump allocator in it. */
struct rh_guest {
	struct sc_mem mem;   /* the table to translate through (sc_mem_xlate(&g->mem)) */
	uint64_t gpa;        /* first guest address of the region */
	uint64_t size;       /* its bytes */
	uint8_t *base;       /* host address of gpa */
	uint64_t next;       /* first guest address rh_alloc has not handed out */
};

/*
 * Create size bytes of memfd guest memory at guest address gpa (both
 * page-aligned), zero-filled. The allocator starts at gpa. Returns 0 or a
 * negative errno (from sc_mem_memfd_create or sc_mem_add_fd).
 */
int rh_guest_init(struct rh_guest *g, uint64_t gpa, uint64_t size);

/* Unmap and close the guest memory. Pointers into it are dead afterwards. */
void rh_guest_fini(struct rh_guest *g);

/* Host address of guest address gpa, or NULL if [gpa, gpa + len) is not all inside the region. */
void *rh_ptr(const struct rh_guest *g, uint64_t gpa, uint64_t len);

/*
 * Hand out len bytes aligned to align (a power of two), never reused; the
 * memory is still zero unless something wrote there. Returns the host
 * address and sets *gpa, or returns NULL if the region is full.
 */
void *rh_alloc(struct rh_guest *g, uint64_t len, uint64_t align, uint64_t *gpa);

/*
 * Lay out a driver ring of size entries at guest address gpa (64-aligned,
 * sc_drv_vq_ring_bytes(size) bytes inside the region, e.g. from rh_alloc).
 * features: the negotiated bits, as for sc_drv_vq_init. Returns 0, -EFAULT
 * if the ring is not inside the region, or sc_drv_vq_init's error.
 */
int rh_ring_init(struct rh_guest *g, struct sc_drv_vq *dvq, uint64_t gpa, uint16_t size,
		 uint64_t features);

/*
 * The device-side config for the ring dvq: its size and three addresses,
 * features, translation through g's table, last_avail 0, no call, kick or err
 * fd (-1). Tests change fields afterwards as they need.
 */
void rh_vq_config(struct rh_guest *g, const struct sc_drv_vq *dvq, uint64_t features,
		  struct sc_vq_config *cfg);

#endif
