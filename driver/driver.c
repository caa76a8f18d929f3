/* SPDX-License-Identifier: MIT */
/*
 * Driver side of the split virtqueue (virtio 1.2 §2.7).
 *
 * Freestanding: compiled for the host and, with -ffreestanding -nostdlib,
 * into the microvm guest. So no libc at all (not even memset), no system
 * calls, and errno values spelled out.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "driver/driver.h"
#include "spec/sc_vring.h"

/* <errno.h> is not freestanding. */
#define DRV_EIO    5    /* EIO: the device completed a head that is not ours */
#define DRV_EINVAL 22   /* EINVAL */
#define DRV_ENOSPC 28   /* ENOSPC */

/*
 * Layout: desc table at 0, then the avail ring (with used_event) on its own
 * cache line, then the used ring (with avail_event) on its own line. The
 * driver writes desc and avail, the device writes used: a line is never
 * written by both sides, so neither side's stores invalidate the other's
 * reads of unrelated fields.
 */
static uint64_t avail_off(uint16_t size)
{
	return SC_ALIGN_UP(sc_vring_desc_bytes(size), (uint64_t)SC_CACHE_LINE);
}

static uint64_t used_off(uint16_t size)
{
	/* sc_vring_avail_bytes counts used_event. */
	return SC_ALIGN_UP(avail_off(size) + sc_vring_avail_bytes(size), (uint64_t)SC_CACHE_LINE);
}

uint64_t sc_drv_vq_ring_bytes(uint16_t size)
{
	/* sc_vring_used_bytes counts avail_event; round up so the block ends on a line too. */
	return SC_ALIGN_UP(used_off(size) + sc_vring_used_bytes(size), (uint64_t)SC_CACHE_LINE);
}

int sc_drv_vq_init(struct sc_drv_vq *vq, void *mem, uint64_t mem_gpa, uint16_t size,
		   uint64_t features)
{
	if (!SC_IS_POW2(size) || size > SC_VIRTQ_MAX_SIZE ||
	    (mem_gpa & (SC_CACHE_LINE - 1)) || ((uintptr_t)mem & (SC_CACHE_LINE - 1)))
		return -DRV_EINVAL;

	/* Zero everything; the block is whole 64-bit words (ring_bytes is 64-aligned). */
	uint64_t *w = mem;
	uint64_t words = sc_drv_vq_ring_bytes(size) / sizeof(*w);
	for (uint64_t i = 0; i < words; i++) {
		w[i] = 0;
		/* Keeps gcc from turning the loop into a memset call, which freestanding code lacks. */
		sc_barrier();
	}

	uint8_t *p = mem;
	vq->desc = (struct sc_vring_desc *)p;
	vq->avail = (struct sc_vring_avail *)(p + avail_off(size));
	vq->used = (struct sc_vring_used *)(p + used_off(size));
	vq->desc_gpa = mem_gpa;
	vq->avail_gpa = mem_gpa + avail_off(size);
	vq->used_gpa = mem_gpa + used_off(size);
	vq->size = size;
	vq->mask = (uint16_t)(size - 1);
	vq->free_head = 0;
	vq->num_free = size;
	vq->avail_idx = 0;
	vq->kicked_idx = 0;
	vq->last_used = 0;
	vq->event_idx = (features >> SC_VIRTIO_F_EVENT_IDX) & 1;
	vq->indirect = (features >> SC_VIRTIO_F_INDIRECT_DESC) & 1;
	vq->kicks = 0;

	/* Free list: every descriptor, linked by next (the last one's next is unused). */
	for (uint32_t i = 0; i + 1 < size; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	return 0;
}

/*
 * Write a descriptor, but only the fields whose value changes. A driver that
 * reuses its buffers (the common case: one request in flight reuses the same
 * head, see get_used) then only reads the line, which the device also holds:
 * the line stays shared in both caches instead of bouncing to the driver and
 * back, one cache miss less per request on the device's side.
 */
static inline void desc_set(struct sc_vring_desc *d, uint64_t addr, uint32_t len,
			    uint16_t flags, uint16_t next)
{
	if (d->addr != addr)
		d->addr = addr;
	if (d->len != len)
		d->len = len;
	if (d->flags != flags)
		d->flags = flags;
	if (d->next != next)
		d->next = next;
}

/* §2.7.5: NEXT on all but the last, WRITE on the device-writable (in) part. */
static inline uint16_t seg_flags(unsigned k, unsigned out, unsigned n)
{
	return (uint16_t)((k + 1 < n ? SC_VIRTQ_DESC_F_NEXT : 0) | (k >= out ? SC_VIRTQ_DESC_F_WRITE : 0));
}

/* Put head in the next avail slot (same skip-if-unchanged rule); visible at publish. */
static inline void avail_put(struct sc_drv_vq *vq, uint16_t head)
{
	uint16_t *slot = &vq->avail->ring[vq->avail_idx & vq->mask];

	if (*slot != head)
		*slot = head;
	vq->avail_idx++;
}

int sc_drv_vq_add(struct sc_drv_vq *vq, const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	/* Checked separately so out + in cannot wrap; more than size can never fit. */
	if (out > vq->size || in > vq->size || out + in == 0 || out + in > vq->size)
		return -DRV_EINVAL;
	unsigned n = out + in;
	if (n > vq->num_free)
		return -DRV_ENOSPC;

	/*
	 * Take the first n free descriptors. The chain keeps the free list's
	 * next links as its own, so reusing a chain rewrites no next field.
	 */
	uint16_t head = vq->free_head, i = head;
	for (unsigned k = 0; k < n; k++) {
		struct sc_vring_desc *d = &vq->desc[i];
		desc_set(d, segs[k].addr, segs[k].len, seg_flags(k, out, n), d->next);
		i = d->next;   /* after the last one: the new free head */
	}
	vq->free_head = i;
	vq->num_free = (uint16_t)(vq->num_free - n);
	avail_put(vq, head);
	return head;
}

int sc_drv_vq_add_indirect(struct sc_drv_vq *vq, struct sc_vring_desc *table, uint64_t table_gpa,
			   const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	/* A table longer than the largest queue is refused by devices (vqueue's bound too). */
	if (!vq->indirect || out > SC_VIRTQ_MAX_SIZE || in > SC_VIRTQ_MAX_SIZE ||
	    out + in == 0 || out + in > SC_VIRTQ_MAX_SIZE)
		return -DRV_EINVAL;
	unsigned n = out + in;
	if (vq->num_free == 0)
		return -DRV_ENOSPC;

	for (unsigned k = 0; k < n; k++)
		desc_set(&table[k], segs[k].addr, segs[k].len, seg_flags(k, out, n), (uint16_t)(k + 1));

	uint16_t head = vq->free_head;
	struct sc_vring_desc *d = &vq->desc[head];
	vq->free_head = d->next;
	vq->num_free--;
	/* INDIRECT without NEXT: get_used frees exactly this one descriptor. */
	desc_set(d, table_gpa, (uint32_t)(n * sizeof(struct sc_vring_desc)), SC_VIRTQ_DESC_F_INDIRECT,
		 d->next);
	avail_put(vq, head);
	return head;
}

void sc_drv_vq_publish(struct sc_drv_vq *vq)
{
	/*
	 * Descriptors and avail ring entries before the index (§2.7.13).
	 * Pairs with the device's acquire load of avail->idx in pop.
	 */
	sc_store_release(&vq->avail->idx, vq->avail_idx);
}

bool sc_drv_vq_kick_needed(struct sc_drv_vq *vq)
{
	uint16_t old = vq->kicked_idx, new_idx = vq->avail_idx;
	bool kick;

	/*
	 * Order the avail->idx store before the load of what the device asked
	 * for (store-load: needs the full barrier). Pairs with the barrier in the
	 * device's notify_enable between re-arming and re-checking avail->idx:
	 * either it sees our new entries or we see its re-arm (§2.7.13.4).
	 */
	sc_smp_mb();
	if (vq->event_idx)
		kick = sc_vring_need_event(sc_load_once(sc_vring_avail_event(vq->used, vq->size)),
					new_idx, old);
	else
		kick = !(sc_load_once(&vq->used->flags) & SC_VIRTQ_USED_F_NO_NOTIFY);
	vq->kicked_idx = new_idx;
	if (kick)
		vq->kicks++;
	return kick;
}

bool sc_drv_vq_has_used(struct sc_drv_vq *vq)
{
	/* Pairs with the device's release store of used->idx in flush. */
	return sc_load_acquire(&vq->used->idx) != vq->last_used;
}

/* Interrupts are on unless interrupts_disable set NO_INTERRUPT; only we write avail->flags. */
static inline bool interrupts_on(const struct sc_drv_vq *vq)
{
	return !(vq->avail->flags & SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
}

int sc_drv_vq_get_used(struct sc_drv_vq *vq, uint16_t *head, uint32_t *len)
{
	/* Pairs with the device's release store of used->idx: the entry below is complete. */
	if (sc_load_acquire(&vq->used->idx) == vq->last_used)
		return 0;

	/* The device writes this entry: read each field once. */
	struct sc_vring_used_elem *e = &vq->used->ring[vq->last_used & vq->mask];
	uint32_t id = sc_load_once(&e->id);
	uint32_t used_len = sc_load_once(&e->len);
	if (id >= vq->size)
		return -DRV_EIO;   /* a buggy device; not ours to repair, but no wild write either */
	vq->last_used++;

	/*
	 * Return the chain to the front of the free list (LIFO): the next add
	 * of the same shape takes the very same descriptors, whose content is
	 * then often unchanged (see desc_set). The chain's flags and next are
	 * our own writes, so the walk trusts them; the count still bounds it.
	 */
	uint16_t last = (uint16_t)id;
	uint16_t n = 1;
	while ((vq->desc[last].flags & SC_VIRTQ_DESC_F_NEXT) && n < vq->size) {
		last = vq->desc[last].next;
		n++;
	}
	if (vq->desc[last].next != vq->free_head)
		vq->desc[last].next = vq->free_head;
	vq->free_head = (uint16_t)id;
	vq->num_free = (uint16_t)(vq->num_free + n);

	/*
	 * EVENT_IDX with interrupts on: ask for an interrupt at the next
	 * completion (§2.7.10). No barrier here: a caller about to wait for the
	 * interrupt calls interrupts_enable first, whose barrier and re-check
	 * close the race with a completion that landed meanwhile.
	 */
	if (vq->event_idx && interrupts_on(vq))
		sc_store_once(sc_vring_used_event(vq->avail, vq->size), vq->last_used);

	*head = (uint16_t)id;
	*len = used_len;
	return 1;
}

void sc_drv_vq_interrupts_disable(struct sc_drv_vq *vq)
{
	/*
	 * Without EVENT_IDX the device reads this flag (§2.7.7). With it the
	 * device ignores the flag and only used_event matters, which get_used
	 * stops advancing once the flag is set; at most one interrupt already
	 * asked for still comes. Written only if it changes (the line is shared).
	 */
	if (interrupts_on(vq))
		sc_store_once(&vq->avail->flags, SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool sc_drv_vq_interrupts_enable(struct sc_drv_vq *vq)
{
	if (vq->event_idx)
		sc_store_once(sc_vring_used_event(vq->avail, vq->size), vq->last_used);
	if (!interrupts_on(vq))
		sc_store_once(&vq->avail->flags, 0);
	/*
	 * Order those stores before the load of used->idx below. Pairs with the
	 * device's full barrier between its used->idx store and its read of
	 * used_event / flags in flush: either it sees our request for an
	 * interrupt, or we see its completion here.
	 */
	sc_smp_mb();
	return sc_drv_vq_has_used(vq);
}
