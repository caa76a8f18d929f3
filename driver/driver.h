/* SPDX-License-Identifier: MIT */
/*
 * driver: the driver ("guest") side of a split virtqueue.
 *
 * Tests and benchmarks use it as the guest on a host thread; the microvm
 * guest compiles the same source freestanding (no libc: only compiler
 * headers and common/barrier.h). It never makes a system call: it says when
 * a kick is needed and the caller does it (eventfd write on a host, port
 * write in a guest).
 *
 * Memory: the caller gives one block for the rings, addressed by the driver
 * through a pointer and by the device through a guest address; gpa_of()
 * turns any pointer into that block's address space (identity in the
 * microvm guest).
 */
#ifndef SC_DRIVER_H
#define SC_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/sc_vring.h"

/* One buffer of a request, as a guest address. */
struct sc_drv_seg {
	uint64_t addr;
	uint32_t len;
};

struct sc_drv_vq {
	struct sc_vring_desc *desc;
	struct sc_vring_avail *avail;
	struct sc_vring_used *used;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size;
	uint16_t mask;
	uint16_t free_head;     /* first free descriptor; free ones are linked by next */
	uint16_t num_free;
	uint16_t avail_idx;     /* shadow of avail->idx */
	uint16_t kicked_idx;    /* avail->idx when the device was last considered for a kick */
	uint16_t last_used;     /* next used slot to reap */
	bool event_idx;
	bool indirect;
	uint64_t kicks;         /* kicks the device asked for (caller did them) */
};

/* Bytes of ring memory a queue of size entries needs (64-byte aligned parts). */
uint64_t sc_drv_vq_ring_bytes(uint16_t size);

/*
 * Lay out and zero a ring of size entries (a power of two ≤ 32768) in mem
 * (sc_drv_vq_ring_bytes(size) bytes), whose guest address is mem_gpa; both
 * mem and mem_gpa 64-byte aligned. features: the
 * negotiated bits (EVENT_IDX, INDIRECT_DESC are honoured). The avail and
 * used rings start on their own cache lines so the two sides never share
 * one. Returns 0 or -22 (EINVAL) for a bad size or alignment.
 */
int sc_drv_vq_init(struct sc_drv_vq *vq, void *mem, uint64_t mem_gpa, uint16_t size,
		   uint64_t features);

/*
 * Queue a request: out device-readable segments then in device-writable
 * ones, as a direct chain. Not visible to the device until publish.
 * A descriptor whose content is unchanged is not rewritten, so a driver
 * that reuses buffers does not pull the descriptor's cache line away from
 * the device. Returns the head (≥ 0) or -28 (ENOSPC) if descriptors run out,
 * -22 (EINVAL) for an empty request or one of more segments than the queue
 * size (it could never fit).
 */
int sc_drv_vq_add(struct sc_drv_vq *vq, const struct sc_drv_seg *segs,
		  unsigned out, unsigned in);

/*
 * Queue a request through an indirect table at table (guest address
 * table_gpa, room for out + in descriptors). Uses one ring descriptor.
 * Returns the head, -28 (ENOSPC) if no ring descriptor is free, or -22
 * (EINVAL) if INDIRECT_DESC was not negotiated or the table would be empty
 * or longer than 32768 entries.
 */
int sc_drv_vq_add_indirect(struct sc_drv_vq *vq, struct sc_vring_desc *table,
			   uint64_t table_gpa, const struct sc_drv_seg *segs,
			   unsigned out, unsigned in);

/* Make everything added so far visible to the device (one release store). */
void sc_drv_vq_publish(struct sc_drv_vq *vq);

/*
 * After publish: true if the device asked to be notified (NO_NOTIFY clear,
 * or avail_event crossed). Counts the kick; the caller then does it.
 */
bool sc_drv_vq_kick_needed(struct sc_drv_vq *vq);

/*
 * Reap one completion: returns 1 and sets *head and *len, or 0 if none.
 * The chain's descriptors return to the free list. Returns -5 (EIO), and
 * keeps returning it, if the device completed a head outside the table.
 * With EVENT_IDX and interrupts on, also asks for an interrupt at the next
 * completion (used_event); to wait for one, call interrupts_enable first.
 */
int sc_drv_vq_get_used(struct sc_drv_vq *vq, uint16_t *head, uint32_t *len);

/* True if the device has completions we have not reaped. */
bool sc_drv_vq_has_used(struct sc_drv_vq *vq);

/* Ask the device not to interrupt (we poll the used ring). */
void sc_drv_vq_interrupts_disable(struct sc_drv_vq *vq);

/*
 * Ask the device to interrupt on the next completion; true if completions
 * are already waiting (then reap instead of waiting for the interrupt).
 */
bool sc_drv_vq_interrupts_enable(struct sc_drv_vq *vq);

#endif
