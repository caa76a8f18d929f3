/* SPDX-License-Identifier: MIT */
/*
 * Device side of the split virtqueue, virtio 1.2 §2.7.
 *
 * Reading guest memory: every field the guest may change is fetched once
 * with sc_load_once into a local, checked, then used (no double fetch; a
 * plain memcpy would let the compiler re-read the source).
 */
#include "vqueue/vqueue.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"

const struct sc_stat_name sc_vq_stat_names[] = {
#define STAT(n) { #n, offsetof(struct sc_vq_stats, n) }
	STAT(requests),
	STAT(kicks_avoided),
	STAT(notify_enables),
	STAT(interrupts),
	STAT(interrupts_suppressed),
#undef STAT
};
const unsigned sc_vq_stat_count = SC_ARRAY_SIZE(sc_vq_stat_names);

/* Through the table inline when there is no IOMMU, else through the hook. */
static inline int xlate(const struct sc_vq *vq, uint64_t addr, uint64_t len, unsigned perm,
			struct iovec *iov, unsigned iov_max)
{
	if (sc_likely(vq->xlate.mem != NULL))
		return sc_mem_map(vq->xlate.mem, addr, len, perm, iov, iov_max);
	return vq->xlate.map(vq->xlate.ctx, addr, len, perm, iov, iov_max);
}

void sc_vq_set_broken(struct sc_vq *vq, int err, const char *fmt, ...)
{
	va_list ap;

	if (vq->broken)
		return;   /* keep the first reason: later errors follow from it */
	va_start(ap, fmt);
	vsnprintf(vq->broken_reason, sizeof(vq->broken_reason), fmt, ap);
	va_end(ap);
	vq->broken_err = err;
	vq->broken = true;
}

/* Map a ring completely and contiguously, or fail: a ring is all or nothing. */
static void *map_ring(struct sc_vq *vq, const char *what, uint64_t addr, uint64_t len,
		      unsigned align, unsigned perm, int *err)
{
	struct iovec iov;
	int n;

	if (addr & (align - 1)) {
		sc_vq_set_broken(vq, -EINVAL, "%s ring address 0x%llx is not %u-byte aligned",
				 what, (unsigned long long)addr, align);
		*err = -EINVAL;
		return NULL;
	}
	n = xlate(vq, addr, len, perm, &iov, 1);
	if (n != 1) {
		sc_vq_set_broken(vq, -EFAULT, "%s ring [0x%llx, +%llu) is not in guest memory%s",
				 what, (unsigned long long)addr, (unsigned long long)len,
				 n == -ENOBUFS ? " as one contiguous mapping" : "");
		*err = -EFAULT;
		return NULL;
	}
	return iov.iov_base;
}

static int inflight_init(struct sc_vq *vq, struct sc_vq_inflight *in);

int sc_vq_init(struct sc_vq *vq, const struct sc_vq_config *cfg)
{
	int err = 0;

	memset(vq, 0, sizeof(*vq));
	vq->xlate = cfg->xlate;
	vq->call_fd = cfg->call_fd;
	vq->kick_fd = cfg->kick_fd;

	if (!SC_IS_POW2(cfg->size) || cfg->size > VIRTQ_MAX_SIZE) {
		sc_vq_set_broken(vq, -EINVAL,
				 "queue size %u is not a power of two in 1..%u (virtio 1.2 §2.7)",
				 cfg->size, VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	vq->size = cfg->size;
	vq->mask = (uint16_t)(cfg->size - 1);
	vq->event_idx = cfg->features & (1ull << VIRTIO_F_EVENT_IDX);
	vq->indirect = cfg->features & (1ull << VIRTIO_F_INDIRECT_DESC);

	/* The byte counts include the event index after avail and used: mapped always, used only with EVENT_IDX. */
	vq->desc = map_ring(vq, "descriptor", cfg->desc_addr, vring_desc_bytes(vq->size),
			    VRING_DESC_ALIGN, SC_PERM_READ, &err);
	if (!vq->desc)
		return err;
	vq->avail = map_ring(vq, "available", cfg->avail_addr, vring_avail_bytes(vq->size),
			     VRING_AVAIL_ALIGN, SC_PERM_READ, &err);
	if (!vq->avail)
		return err;
	vq->used = map_ring(vq, "used", cfg->used_addr, vring_used_bytes(vq->size),
			    VRING_USED_ALIGN, SC_PERM_RW, &err);
	if (!vq->used)
		return err;

	/* Resume where the previous owner stopped (vhost-user SET_VRING_BASE). */
	vq->last_avail = cfg->last_avail;
	vq->used_idx = sc_load_once(&vq->used->idx);
	vq->used_published = vq->used_idx;
	vq->used_signalled = vq->used_idx;
	vq->notify_on = true;
	if (cfg->inflight) {
		err = inflight_init(vq, cfg->inflight);
		if (err < 0)
			return err;
	}
	vq->avail_seen = vq->last_avail;
	return 0;
}

static int cmp_counter(const void *a, const void *b, void *arg)
{
	const struct sc_vq_inflight *in = arg;
	uint64_t x = in->desc[*(const uint16_t *)a].counter, y = in->desc[*(const uint16_t *)b].counter;
	return x < y ? -1 : x > y;
}

/*
 * Take over an inflight region: a fresh one is laid out; one a previous
 * back end left is reconciled with the used ring and its unfinished
 * requests queued to be served again. Only the back end writes this
 * region, but it is read back after a crash, so every index is checked.
 */
static int inflight_init(struct sc_vq *vq, struct sc_vq_inflight *in)
{
	uint16_t used = vq->used_idx;

	vq->batch = calloc(vq->size, sizeof(*vq->batch));
	vq->resubmit = calloc(vq->size, sizeof(*vq->resubmit));
	if (!vq->batch || !vq->resubmit) {
		sc_vq_fini(vq);
		sc_vq_set_broken(vq, -ENOMEM, "no memory for inflight tracking");
		return -ENOMEM;
	}
	vq->inflight = in;
	if (in->version != 1 || in->desc_num != vq->size) {
		/* Fresh (or laid out for another size): start clean; SET_VRING_BASE stands. */
		memset(in->desc, 0, vq->size * sizeof(in->desc[0]));
		in->version = 1;
		in->desc_num = (uint16_t)vq->size;
		in->used_idx = used;
		return 0;
	}
	/* A batch published as used but not yet cleared when the old back end died. */
	for (uint16_t i = in->used_idx; i != used; i++) {
		uint32_t head = sc_load_once(&vq->used->ring[i & vq->mask].id);
		if (head < vq->size)
			in->desc[head].inflight = 0;
		if ((uint16_t)(i - in->used_idx) >= vq->size)
			break;   /* more than a queue's worth: the region is not from this ring */
	}
	in->used_idx = used;
	for (uint32_t h = 0; h < vq->size; h++) {
		if (!in->desc[h].inflight)
			continue;
		vq->resubmit[vq->nresubmit++] = (uint16_t)h;
		if (in->desc[h].counter > vq->inflight_counter)
			vq->inflight_counter = in->desc[h].counter;
	}
	qsort_r(vq->resubmit, vq->nresubmit, sizeof(*vq->resubmit), cmp_counter, in);
	/*
	 * Everything popped is either used (used_idx) or in flight: that is
	 * where the avail ring resumes, whatever base the VMM restored (QEMU
	 * falls back to the used index when the back end died).
	 */
	vq->last_avail = (uint16_t)(used + vq->nresubmit);
	return 0;
}

void sc_vq_fini(struct sc_vq *vq)
{
	free(vq->batch);
	free(vq->resubmit);
	vq->batch = vq->resubmit = NULL;
	vq->nresubmit = vq->resubmit_pos = 0;
	vq->inflight = NULL;
}

/*
 * Load avail->idx and check it. The acquire pairs with the driver's release
 * store of avail->idx (driver publish): ring entries and descriptors written
 * before it are visible after it.
 */
static int avail_refresh(struct sc_vq *vq)
{
	uint16_t idx = sc_load_acquire(&vq->avail->idx);
	uint16_t pending = (uint16_t)(idx - vq->last_avail);

	if (sc_unlikely(pending > vq->size)) {
		sc_vq_set_broken(vq, -ERANGE,
				 "avail idx %u is %u entries ahead of %u, more than the queue size %u",
				 idx, pending, vq->last_avail, vq->size);
		return -ERANGE;
	}
	if (idx != vq->avail_seen && !vq->notify_on)
		vq->stats.kicks_avoided++;
	vq->avail_seen = idx;
	return pending;
}

bool sc_vq_has_work(struct sc_vq *vq)
{
	return !vq->broken && sc_load_once(&vq->avail->idx) != vq->last_avail;
}

/* One descriptor, fetched once. */
static inline void desc_fetch(struct vring_desc *d, const struct vring_desc *src)
{
	d->addr = sc_load_once(&src->addr);
	d->len = sc_load_once(&src->len);
	d->flags = sc_load_once(&src->flags);
	d->next = sc_load_once(&src->next);
}

/* Switch the walk to the indirect table d describes (§2.7.5.3). */
static int indirect_enter(struct sc_vq *vq, const struct vring_desc *d,
			  const struct vring_desc **table, uint32_t *table_size)
{
	struct iovec iov;

	if (sc_unlikely(!vq->indirect)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
		return -EBADMSG;
	}
	if (sc_unlikely(d->flags & VIRTQ_DESC_F_NEXT)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect descriptor with NEXT set (§2.7.5.3.1)");
		return -EBADMSG;
	}
	/* A table is a whole number of descriptors, at least one, and no longer than a queue. */
	if (sc_unlikely(d->len == 0 || d->len % sizeof(struct vring_desc) ||
			d->len / sizeof(struct vring_desc) > VIRTQ_MAX_SIZE)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect table length %u is not a multiple of 16 in 16..%u",
				 d->len, VIRTQ_MAX_SIZE * 16);
		return -EBADMSG;
	}
	if (sc_unlikely(d->addr & (VRING_DESC_ALIGN - 1) ||
			xlate(vq, d->addr, d->len, SC_PERM_READ, &iov, 1) != 1)) {
		sc_vq_set_broken(vq, -EFAULT, "indirect table at 0x%llx (+%u) is not aligned contiguous guest memory",
				 (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	*table = iov.iov_base;
	*table_size = d->len / sizeof(struct vring_desc);
	return 0;
}

/* Walk the chain at head into elem, checking everything. 1, or the ring's -errno. */
static int walk_chain(struct sc_vq *vq, uint16_t head, struct sc_vq_elem *elem)
{
	const struct vring_desc *table = vq->desc;
	uint32_t table_size = vq->size, steps = 0;
	uint64_t out_len = 0, in_len = 0;
	unsigned nseg = 0, in_num = 0;
	bool in_indirect = false;
	struct vring_desc d;
	uint16_t idx = head;
	int ret;

	for (;;) {
		if (sc_unlikely(idx >= table_size)) {
			sc_vq_set_broken(vq, -EINVAL, "%sdescriptor index %u out of range (table of %u) in chain %u",
					 in_indirect ? "indirect " : "", idx, table_size, head);
			return -EINVAL;
		}
		/* No valid chain visits a table entry twice: more steps than entries is a loop. */
		if (sc_unlikely(++steps > table_size)) {
			sc_vq_set_broken(vq, -ELOOP, "%schain %u loops (more than %u descriptors)",
					 in_indirect ? "indirect " : "", head, table_size);
			return -ELOOP;
		}
		desc_fetch(&d, &table[idx]);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (sc_unlikely(in_indirect)) {
				sc_vq_set_broken(vq, -EMLINK, "indirect table inside an indirect table in chain %u", head);
				return -EMLINK;
			}
			ret = indirect_enter(vq, &d, &table, &table_size);
			if (ret < 0)
				return ret;
			in_indirect = true;
			steps = 0;
			idx = 0;
			continue;
		}

		unsigned perm;
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			perm = SC_PERM_WRITE;
			in_len += d.len;
		} else {
			/* §2.7.4.2: device-readable descriptors come before device-writable ones. */
			if (sc_unlikely(in_num)) {
				sc_vq_set_broken(vq, -EPROTO, "readable descriptor after a writable one in chain %u", head);
				return -EPROTO;
			}
			perm = SC_PERM_READ;
			out_len += d.len;
		}
		/* Each addend < 2^32 and at most 2^15 * 2^15 of them: the u64 sums cannot wrap. */
		if (sc_unlikely(out_len + in_len > UINT32_MAX)) {
			sc_vq_set_broken(vq, -EOVERFLOW, "chain %u is longer than 4 GiB", head);
			return -EOVERFLOW;
		}

		ret = xlate(vq, d.addr, d.len, perm, &elem->iov[nseg], elem->iov_max - nseg);
		if (sc_unlikely(ret < 0)) {
			if (ret == -ENOBUFS)
				sc_vq_set_broken(vq, -ENOBUFS, "chain %u needs more than %u segments",
						 head, elem->iov_max);
			else
				sc_vq_set_broken(vq, ret, "chain %u: buffer [0x%llx, +%u) is not %s guest memory",
						 head, (unsigned long long)d.addr, d.len,
						 ret == -EPERM ? "accessible" : "in");
			return vq->broken_err;
		}
		nseg += (unsigned)ret;
		if (perm == SC_PERM_WRITE)
			in_num += (unsigned)ret;

		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		idx = d.next;
	}

	elem->head = head;
	elem->out_num = (uint16_t)(nseg - in_num);
	elem->in_num = (uint16_t)in_num;
	elem->out_len = (uint32_t)out_len;
	elem->in_len = (uint32_t)in_len;
	vq->stats.requests++;
	return 1;
}

int sc_vq_pop(struct sc_vq *vq, struct sc_vq_elem *elem)
{
	uint16_t head;
	int ret;

	if (sc_unlikely(vq->broken))
		return vq->broken_err;
	/* Requests a previous back end started and never finished come first, in their order. */
	if (sc_unlikely(vq->resubmit_pos < vq->nresubmit))
		return walk_chain(vq, vq->resubmit[vq->resubmit_pos++], elem);
	if (vq->last_avail == vq->avail_seen) {
		ret = avail_refresh(vq);
		if (ret <= 0)
			return ret;
	}

	head = sc_load_once(&vq->avail->ring[vq->last_avail & vq->mask]);
	ret = walk_chain(vq, head, elem);   /* checks head < size first */
	if (ret < 0)
		return ret;
	vq->last_avail++;
	if (vq->inflight) {
		/* Recorded before we act on it: a crash from here on re-serves it. */
		struct sc_vq_inflight_desc *d = &vq->inflight->desc[head];
		d->counter = ++vq->inflight_counter;
		sc_store_release(&d->inflight, 1);
	}
	return 1;
}

void sc_vq_push(struct sc_vq *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &vq->used->ring[vq->used_idx & vq->mask];

	/* Not yet visible: the driver reads entries only below used->idx. */
	sc_store_once(&e->id, head);
	sc_store_once(&e->len, len);
	if (vq->inflight)
		vq->batch[(uint16_t)(vq->used_idx - vq->used_published) & vq->mask] = head;
	vq->used_idx++;
}

/* Does the driver want an interrupt for entries [old, new)? §2.7.7, §2.7.10. */
static bool driver_wants_interrupt(struct sc_vq *vq, uint16_t old, uint16_t new_idx)
{
	if (vq->event_idx)
		return vring_need_event(sc_load_once(vring_used_event(vq->avail, vq->size)),
					new_idx, old);
	return !(sc_load_once(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool sc_vq_flush(struct sc_vq *vq)
{
	uint16_t old = vq->used_signalled, new_idx = vq->used_idx;

	if (new_idx == vq->used_published)
		return false;
	/* Pairs with the driver's acquire load of used->idx: entries first, then the index. */
	sc_store_release(&vq->used->idx, new_idx);
	if (vq->inflight) {
		/*
		 * The batch is now the guest's: clear it from the inflight region,
		 * then record how far we got. A crash between the two is repaired
		 * at the next init from the used ring itself.
		 */
		uint16_t n = (uint16_t)(new_idx - vq->used_published);
		for (uint16_t i = 0; i < n; i++)
			sc_store_once(&vq->inflight->desc[vq->batch[i]].inflight, 0);
		sc_store_release(&vq->inflight->used_idx, new_idx);
	}
	vq->used_published = new_idx;

	if (vq->call_fd < 0)
		return false;
	/*
	 * Order the used->idx store before the load of used_event / flags; pairs
	 * with the full barrier in the driver's interrupts_enable (§2.7.10).
	 * Without it both sides could miss each other's update and the driver
	 * would wait for an interrupt that never comes.
	 */
	sc_smp_mb();
	vq->used_signalled = new_idx;
	if (!driver_wants_interrupt(vq, old, new_idx)) {
		vq->stats.interrupts_suppressed++;
		return false;
	}
	static const uint64_t one = 1;
	/* An eventfd write fails only if the counter would overflow: the interrupt is pending anyway. */
	if (write(vq->call_fd, &one, sizeof(one)) == sizeof(one))
		vq->stats.interrupts++;
	return true;
}

void sc_vq_notify_disable(struct sc_vq *vq)
{
	if (!vq->notify_on)
		return;
	vq->notify_on = false;
	/* With EVENT_IDX a stale avail_event already stops kicks (§2.7.10); without it, say so. */
	if (!vq->event_idx)
		sc_store_once(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY);
}

bool sc_vq_notify_enable(struct sc_vq *vq)
{
	if (vq->broken)
		return false;
	if (!vq->notify_on) {
		vq->notify_on = true;
		vq->stats.notify_enables++;
		if (vq->event_idx)
			sc_store_once(vring_avail_event(vq->used, vq->size), vq->last_avail);
		else
			sc_store_once(&vq->used->flags, 0);
	}
	/*
	 * Order the re-arm store before the re-check load; pairs with the
	 * driver's full barrier between its avail->idx store and its read of
	 * used->flags / avail_event (kick_needed). Either we see its new entry,
	 * or it sees our re-arm and kicks.
	 */
	sc_smp_mb();
	return sc_load_once(&vq->avail->idx) != vq->last_avail;
}

/* Copy between buf and the segments from offset off, in the direction 'to_iov' says. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len,
		       bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		char *seg = (char *)iov[i].iov_base + off, *mem = (char *)buf + done;
		memcpy(to_iov ? seg : mem, to_iov ? mem : seg, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t sc_iov_copy_from(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	return iov_copy(iov, n, off, buf, len, false);
}

size_t sc_iov_copy_to(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
	return iov_copy(iov, n, off, (void *)buf, len, true);
}
