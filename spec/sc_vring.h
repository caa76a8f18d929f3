/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue layout, virtio 1.2 §2.7, with SC_/sc_ names that cannot
 * clash with <linux/virtio_ring.h>. Shared by the device side
 * (vqueue), the driver library and the microvm guest; freestanding.
 *
 * All fields are little-endian; sidecore runs on little-endian hosts only
 * (x86_64), which the build checks.
 */
#ifndef SC_SPEC_SC_VRING_H
#define SC_SPEC_SC_VRING_H

#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sidecore assumes a little-endian host (virtio 1.x rings are little-endian)"
#endif

#include "spec/sc_virtio.h"

/* §2.7.5 descriptor flags */
#define SC_VIRTQ_DESC_F_NEXT     1
#define SC_VIRTQ_DESC_F_WRITE    2
#define SC_VIRTQ_DESC_F_INDIRECT 4

/* §2.7.6: driver -> device: "don't interrupt me" */
#define SC_VIRTQ_AVAIL_F_NO_INTERRUPT 1
/* §2.7.8: device -> driver: "don't kick me" */
#define SC_VIRTQ_USED_F_NO_NOTIFY 1

/* Largest queue size the split ring allows (§2.7: Queue Size ≤ 32768). */
#define SC_VIRTQ_MAX_SIZE 32768

struct sc_vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct sc_vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];        /* [size], then uint16_t used_event */
};

struct sc_vring_used_elem {
	uint32_t id;            /* 32 bits for padding; only a 16-bit head is valid */
	uint32_t len;
};

struct sc_vring_used {
	uint16_t flags;
	uint16_t idx;
	struct sc_vring_used_elem ring[]; /* [size], then uint16_t avail_event */
};

/* §2.7 alignment requirements of the three parts. */
#define SC_VRING_DESC_ALIGN  16
#define SC_VRING_AVAIL_ALIGN 2
#define SC_VRING_USED_ALIGN  4

static inline uint64_t sc_vring_desc_bytes(uint32_t size)  { return 16ull * size; }
static inline uint64_t sc_vring_avail_bytes(uint32_t size) { return 6ull + 2ull * size; }
static inline uint64_t sc_vring_used_bytes(uint32_t size)  { return 6ull + 8ull * size; }

/* used_event lives after the avail ring, avail_event after the used ring (§2.7.10). */
static inline uint16_t *sc_vring_used_event(struct sc_vring_avail *a, uint32_t size)
{
	return &a->ring[size];
}

static inline uint16_t *sc_vring_avail_event(struct sc_vring_used *u, uint32_t size)
{
	return (uint16_t *)&u->ring[size];
}

/*
 * §2.7.10: true if moving an index from old to new_idx crossed event, i.e.
 * the other side asked to be notified at 'event'. All arithmetic mod 2^16.
 */
static inline int sc_vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

#endif
