/* SPDX-License-Identifier: MIT */
/*
 * Driver side of the split virtqueue (virtio 1.2 §2.7). Freestanding: no
 * libc, no system calls; compiled for the host and for the microvm guest.
 */
#include "driver/driver.h"

#include "common/barrier.h"
#include "common/compiler.h"

#define DRV_EINVAL 22   /* <errno.h> is not freestanding */
#define DRV_ENOSPC 28
#define DRV_EIO    5

static uint64_t avail_off(uint16_t size)
{
	return SC_ALIGN_UP(vring_desc_bytes(size), (uint64_t)SC_CACHE_LINE);
}

static uint64_t used_off(uint16_t size)
{
	/* +2 for used_event; the used ring starts on its own line so the two sides never share one. */
	return SC_ALIGN_UP(avail_off(size) + vring_avail_bytes(size) + 2, (uint64_t)SC_CACHE_LINE);
}

uint64_t sc_drv_vq_ring_bytes(uint16_t size)
{
	return SC_ALIGN_UP(used_off(size) + vring_used_bytes(size) + 2, (uint64_t)SC_CACHE_LINE);
}

int sc_drv_vq_init(struct sc_drv_vq *vq, void *mem, uint64_t mem_gpa, uint16_t size,
		   uint64_t features)
{
	if (!SC_IS_POW2(size) || size > VIRTQ_MAX_SIZE || (mem_gpa & (SC_CACHE_LINE - 1)) ||
	    ((uintptr_t)mem & (SC_CACHE_LINE - 1)))
		return -DRV_EINVAL;

	uint8_t *p = mem;
	uint64_t bytes = sc_drv_vq_ring_bytes(size);
	for (uint64_t i = 0; i < bytes; i++)
		p[i] = 0;

	*vq = (struct sc_drv_vq){
		.desc = (struct vring_desc *)p,
		.avail = (struct vring_avail *)(p + avail_off(size)),
		.used = (struct vring_used *)(p + used_off(size)),
		.desc_gpa = mem_gpa,
		.avail_gpa = mem_gpa + avail_off(size),
		.used_gpa = mem_gpa + used_off(size),
		.size = size,
		.mask = (uint16_t)(size - 1),
		.num_free = size,
		.event_idx = features & (1ull << VIRTIO_F_EVENT_IDX),
		.indirect = features & (1ull << VIRTIO_F_INDIRECT_DESC),
	};
	for (uint16_t i = 0; i + 1 < size; i++)
		vq->desc[i].next = (uint16_t)(i + 1);
	return 0;
}

/*
 * Write a descriptor, skipping fields that already hold the value: a driver
 * that reuses its buffers then leaves the line shared with the device's
 * cache instead of pulling it back (one cache miss less per request).
 */
static inline void desc_set(struct vring_desc *d, uint64_t addr, uint32_t len,
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

static inline void avail_put(struct sc_drv_vq *vq, uint16_t head)
{
	uint16_t *slot = &vq->avail->ring[vq->avail_idx & vq->mask];
	if (*slot != head)
		*slot = head;
	vq->avail_idx++;
}

int sc_drv_vq_add(struct sc_drv_vq *vq, const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	unsigned n = out + in;

	if (n == 0 || n > vq->size)
		return -DRV_EINVAL;
	if (n > vq->num_free)
		return -DRV_ENOSPC;

	uint16_t head = vq->free_head, i = head, last = head;
	for (unsigned k = 0; k < n; k++) {
		struct vring_desc *d = &vq->desc[i];
		uint16_t flags = (uint16_t)((k < n - 1 ? VIRTQ_DESC_F_NEXT : 0) |
					    (k >= out ? VIRTQ_DESC_F_WRITE : 0));
		/* The free list is linked through next; a chain keeps those links. */
		desc_set(d, segs[k].addr, segs[k].len, flags, d->next);
		last = i;
		i = d->next;
	}
	vq->free_head = vq->desc[last].next;
	vq->num_free = (uint16_t)(vq->num_free - n);
	avail_put(vq, head);
	return head;
}

int sc_drv_vq_add_indirect(struct sc_drv_vq *vq, struct vring_desc *table, uint64_t table_gpa,
			   const struct sc_drv_seg *segs, unsigned out, unsigned in)
{
	unsigned n = out + in;

	if (!vq->indirect || n == 0 || n > VIRTQ_MAX_SIZE)
		return -DRV_EINVAL;
	if (vq->num_free == 0)
		return -DRV_ENOSPC;
	for (unsigned k = 0; k < n; k++)
		desc_set(&table[k], segs[k].addr, segs[k].len,
			 (uint16_t)((k < n - 1 ? VIRTQ_DESC_F_NEXT : 0) | (k >= out ? VIRTQ_DESC_F_WRITE : 0)),
			 (uint16_t)(k + 1));

	uint16_t head = vq->free_head;
	struct vring_desc *d = &vq->desc[head];
	vq->free_head = d->next;
	vq->num_free--;
	desc_set(d, table_gpa, (uint32_t)(n * sizeof(struct vring_desc)), VIRTQ_DESC_F_INDIRECT, d->next);
	avail_put(vq, head);
	return head;
}

void sc_drv_vq_publish(struct sc_drv_vq *vq)
{
	/* Pairs with the device's acquire load of avail->idx: descriptors and ring entries first. */
	sc_store_release(&vq->avail->idx, vq->avail_idx);
}

bool sc_drv_vq_kick_needed(struct sc_drv_vq *vq)
{
	uint16_t old = vq->kicked_idx, new_idx = vq->avail_idx;
	bool kick;

	/*
	 * Order the avail->idx store before reading what the device asked for;
	 * pairs with the full barrier in the device's notify_enable (re-arm,
	 * then re-check). Either it sees our entry or we see its re-arm.
	 */
	sc_smp_mb();
	if (vq->event_idx)
		kick = vring_need_event(sc_load_once(vring_avail_event(vq->used, vq->size)), new_idx, old);
	else
		kick = !(sc_load_once(&vq->used->flags) & VIRTQ_USED_F_NO_NOTIFY);
	vq->kicked_idx = new_idx;
	if (kick)
		vq->kicks++;
	return kick;
}

bool sc_drv_vq_has_used(struct sc_drv_vq *vq)
{
	return sc_load_acquire(&vq->used->idx) != vq->last_used;
}

int sc_drv_vq_get_used(struct sc_drv_vq *vq, uint16_t *head, uint32_t *len)
{
	/* Pairs with the device's release store of used->idx: the entry is complete. */
	if (sc_load_acquire(&vq->used->idx) == vq->last_used)
		return 0;

	struct vring_used_elem *e = &vq->used->ring[vq->last_used & vq->mask];
	uint32_t id = sc_load_once(&e->id);
	*len = sc_load_once(&e->len);
	if (id >= vq->size)
		return -DRV_EIO;   /* a broken device; not ours to repair */
	vq->last_used++;

	/* Return the chain to the free list: walk to its end, splice it in front. */
	uint16_t last = (uint16_t)id, n = 1;
	while ((vq->desc[last].flags & VIRTQ_DESC_F_NEXT) && n < vq->size) {
		last = vq->desc[last].next;
		n++;
	}
	if (vq->desc[last].next != vq->free_head)
		vq->desc[last].next = vq->free_head;
	vq->free_head = (uint16_t)id;
	vq->num_free = (uint16_t)(vq->num_free + n);
	*head = (uint16_t)id;
	return 1;
}

void sc_drv_vq_interrupts_disable(struct sc_drv_vq *vq)
{
	/* With EVENT_IDX the flag is ignored by the device (§2.7.10); setting it costs nothing. */
	if (!(vq->avail->flags & VIRTQ_AVAIL_F_NO_INTERRUPT))
		sc_store_once(&vq->avail->flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool sc_drv_vq_interrupts_enable(struct sc_drv_vq *vq)
{
	if (vq->event_idx)
		sc_store_once(vring_used_event(vq->avail, vq->size), vq->last_used);
	sc_store_once(&vq->avail->flags, 0);
	/* Pairs with the device's barrier between its used->idx store and reading our request. */
	sc_smp_mb();
	return sc_drv_vq_has_used(vq);
}
