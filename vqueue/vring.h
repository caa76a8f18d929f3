/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue layout, virtio 1.2 §2.7. Shared by the device side
 * (vqueue), the driver library and the microvm guest; freestanding.
 *
 * All fields are little-endian; sidecore runs on little-endian hosts only
 * (x86_64), which the build checks.
 */
#ifndef SC_VQUEUE_VRING_H
#define SC_VQUEUE_VRING_H

#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sidecore assumes a little-endian host (virtio 1.x rings are little-endian)"
#endif

/* Feature bits the ring layer knows (virtio 1.2 §6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED   34

/* §2.7.5 descriptor flags */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

/* §2.7.6: driver -> device: "don't interrupt me" */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
/* §2.7.8: device -> driver: "don't kick me" */
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Largest queue size the split ring allows (§2.7: Queue Size ≤ 32768). */
#define VIRTQ_MAX_SIZE 32768

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];        /* [size], then uint16_t used_event */
};

struct vring_used_elem {
	uint32_t id;            /* 32 bits for padding; only a 16-bit head is valid */
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[]; /* [size], then uint16_t avail_event */
};

/* §2.7 alignment requirements of the three parts. */
#define VRING_DESC_ALIGN  16
#define VRING_AVAIL_ALIGN 2
#define VRING_USED_ALIGN  4

static inline uint64_t vring_desc_bytes(uint32_t size)  { return 16ull * size; }
static inline uint64_t vring_avail_bytes(uint32_t size) { return 6ull + 2ull * size; }
static inline uint64_t vring_used_bytes(uint32_t size)  { return 6ull + 8ull * size; }

/* used_event lives after the avail ring, avail_event after the used ring (§2.7.10). */
static inline uint16_t *vring_used_event(struct vring_avail *a, uint32_t size)
{
	return &a->ring[size];
}

static inline uint16_t *vring_avail_event(struct vring_used *u, uint32_t size)
{
	return (uint16_t *)&u->ring[size];
}

/*
 * §2.7.10: true if moving an index from old to new_idx crossed event, i.e.
 * the other side asked to be notified at 'event'. All arithmetic mod 2^16.
 */
static inline int vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

#endif
