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
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "common/fetch.h"

const struct sc_stat_name sc_vq_stat_names[] = {
#define STAT(n) { #n, offsetof(struct sc_vq_stats, n) }
	STAT(requests),
	STAT(kicks_avoided),
	STAT(notify_enables),
	STAT(interrupts),
	STAT(interrupts_suppressed),
	STAT(oversized),
	STAT(faulted),
	STAT(broken),
	STAT(resubmitted),
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

	/* The request that broke the queue is thrown away: its re-reads (a loop walked to its bound) do not count. */
	SC_FETCH_FORGET();
	/*
	 * The first caller wins (a queue breaks once, from whichever thread);
	 * later errors follow from the first and keep its reason.
	 */
	if (__atomic_exchange_n(&vq->break_claimed, true, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	vsnprintf(vq->broken_reason, sizeof(vq->broken_reason), fmt, ap);
	va_end(ap);
	vq->broken_err = err;
	/* Pairs with the acquire in sc_vq_broken: reason and errno first. */
	__atomic_store_n(&vq->broken, true, __ATOMIC_RELEASE);
	__atomic_store_n(&vq->stats.broken, 1, __ATOMIC_RELAXED);
	fprintf(stderr, "sidecore: %s: queue broken: %s\n", vq->name ? vq->name : "unnamed queue",
		vq->broken_reason);
	/* The VMM learns it here (vhost-user vring err fd); a full counter means it knows already. */
	if (vq->err_fd >= 0)
		(void)eventfd_write(vq->err_fd, 1);
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
	if (n == -EAGAIN) {
		*err = -EAGAIN;   /* a vIOMMU miss: reported by the hook, not the guest's fault */
		return NULL;
	}
	if (n != 1) {
		sc_vq_set_broken(vq, -EFAULT, "%s ring [0x%llx, +%llu) is not in guest memory%s",
				 what, (unsigned long long)addr, (unsigned long long)len,
				 n == -ENOBUFS ? " as one contiguous mapping" : "");
		*err = -EFAULT;
		return NULL;
	}
	/*
	 * The ring's fields are accessed atomically, so the host address must
	 * be aligned too: a region whose guest address is not page-aligned
	 * (the front end chooses it) moves an aligned ring off alignment.
	 */
	if ((uintptr_t)iov.iov_base & (align - 1)) {
		sc_vq_set_broken(vq, -EINVAL, "%s ring 0x%llx: host address not %u-byte aligned (region starts unaligned)",
				 what, (unsigned long long)addr, align);
		*err = -EINVAL;
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
	vq->err_fd = cfg->err_fd;
	vq->name = cfg->name;
	vq->epochs = cfg->epochs;

	if (!SC_IS_POW2(cfg->size) || cfg->size > SC_VIRTQ_MAX_SIZE) {
		sc_vq_set_broken(vq, -EINVAL,
				 "queue size %u is not a power of two in 1..%u (virtio 1.2 §2.7)",
				 cfg->size, SC_VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	vq->size = cfg->size;
	vq->mask = (uint16_t)(cfg->size - 1);
	vq->event_idx = cfg->features & (1ull << SC_VIRTIO_F_EVENT_IDX);
	vq->indirect = cfg->features & (1ull << SC_VIRTIO_F_INDIRECT_DESC);

	err = sc_vq_remap_rings(vq, cfg->desc_addr, cfg->avail_addr, cfg->used_addr);
	if (err < 0)
		return err;

	/* Resume where the previous owner stopped (vhost-user SET_VRING_BASE). */
	vq->last_avail = cfg->last_avail;
	vq->used_idx = sc_load_once(&vq->used->idx);
	vq->used_published = vq->used_idx;
	vq->used_signalled = vq->used_idx;
	vq->notify_on = true;
	if (cfg->inflight) {
		err = inflight_init(vq, cfg->inflight);
		if (err < 0) {
			sc_vq_fini(vq);   /* callers do not fini a queue whose init failed */
			return err;
		}
	}
	if (cfg->epochs) {
		vq->head_epoch = calloc(vq->size, 1);
		if (!vq->head_epoch) {
			sc_vq_fini(vq);
			sc_vq_set_broken(vq, -ENOMEM, "no memory for epoch accounting");
			return -ENOMEM;
		}
	}
	vq->avail_seen = vq->last_avail;
	return 0;
}

/* Also sc_vq_init's: all three rings, or none (the old pointers stay). */
int sc_vq_remap_rings(struct sc_vq *vq, uint64_t desc_addr, uint64_t avail_addr, uint64_t used_addr)
{
	int err = 0;
	struct sc_vring_desc *desc;
	struct sc_vring_avail *avail;
	struct sc_vring_used *used;

	/* The byte counts include the event index after avail and used: mapped always, used only with EVENT_IDX. */
	desc = map_ring(vq, "descriptor", desc_addr, sc_vring_desc_bytes(vq->size), SC_VRING_DESC_ALIGN,
			SC_PERM_READ, &err);
	if (!desc)
		return err;
	avail = map_ring(vq, "available", avail_addr, sc_vring_avail_bytes(vq->size), SC_VRING_AVAIL_ALIGN,
			 SC_PERM_READ, &err);
	if (!avail)
		return err;
	used = map_ring(vq, "used", used_addr, sc_vring_used_bytes(vq->size), SC_VRING_USED_ALIGN, SC_PERM_RW, &err);
	if (!used)
		return err;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	return 0;
}

/* A head the old back end left in flight, with its pop order (copied once out of the region). */
struct replay {
	uint64_t counter;
	uint16_t head;
};

static int cmp_replay(const void *a, const void *b)
{
	uint64_t x = ((const struct replay *)a)->counter, y = ((const struct replay *)b)->counter;
	return x < y ? -1 : x > y;
}

/* Beyond any real pop count (2^63 pops take centuries); also keeps ++counter from wrapping. */
#define INFLIGHT_COUNTER_MAX (1ull << 63)

static int inflight_refuse(struct sc_vq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int inflight_refuse(struct sc_vq *vq, const char *fmt, ...)
{
	char why[96];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	sc_vq_set_broken(vq, -EBADMSG, "inflight region: %s", why);
	return -EBADMSG;
}

/*
 * Check each head the region says is in flight against the rings (see
 * sc_vq_init). used is used->idx, next the avail slot where the ring will
 * resume (used + n), avail the driver's avail->idx. seen and mark are
 * scratch of a queue's size. Linear in the queue size.
 */
static int inflight_check_heads(struct sc_vq *vq, const struct replay *r, uint32_t n,
				uint16_t used, uint16_t next, uint16_t avail, uint32_t *seen,
				uint8_t *mark)
{
	uint32_t consumed_visible = vq->size - (uint16_t)(avail - next);

	for (uint32_t i = 0; i < n; i++)
		mark[r[i].head] = 1;
	/* seen[h]: how far below next the driver last offered h, among consumed slots still in the ring (0: not there). */
	for (uint32_t k = 1; k <= consumed_visible; k++) {
		uint16_t h = sc_load_once(&vq->avail->ring[(uint16_t)(next - k) & vq->mask]);
		if (h < vq->size && !seen[h])
			seen[h] = k;
	}
	for (uint32_t i = 0; i < n; i++)
		if (!seen[r[i].head])
			return inflight_refuse(vq, "head %u in flight was never offered (not in avail slots %u..%u)",
					       r[i].head, (uint16_t)(next - consumed_visible), (uint16_t)(next - 1));
	/* Offered again after it was consumed: the driver had it back, so it is not in flight. */
	for (uint16_t slot = next; slot != avail; slot++) {
		uint16_t h = sc_load_once(&vq->avail->ring[slot & vq->mask]);
		if (h < vq->size && mark[h])
			return inflight_refuse(vq, "head %u in flight is offered again at avail slot %u", h, slot);
	}
	/*
	 * Completed after its last offer: used slot u at or after avail slot s
	 * means the pop at s was answered (a re-offer comes after the
	 * completion it follows, so after u). Distances are from next:
	 * used slot used - k lies n + k below it.
	 */
	for (uint32_t k = 1; k <= vq->size; k++) {
		uint32_t h = sc_load_once(&vq->used->ring[(uint16_t)(used - k) & vq->mask].id);
		if (h < vq->size && mark[h] && n + k <= seen[h])
			return inflight_refuse(vq, "head %u in flight was completed (used slot %u)",
					       h, (uint16_t)(used - k));
	}
	return 0;
}

/*
 * Take over an inflight region: a fresh one is laid out; one a previous
 * back end left is reconciled with the used ring and its unfinished
 * requests queued to be served again. The region comes from the front end
 * (it keeps it across our restarts), so it is input like the rings: each
 * field read once, every claim checked against the rings.
 */
static int inflight_init(struct sc_vq *vq, struct sc_vq_inflight *in)
{
	uint16_t used = vq->used_idx, version, desc_num, recorded;
	struct replay *r = NULL;
	uint32_t *seen = NULL, n = 0;
	uint8_t *mark = NULL;
	int ret = 0;

	vq->batch = calloc(vq->size, sizeof(*vq->batch));
	vq->resubmit = calloc(vq->size, sizeof(*vq->resubmit));
	if (!vq->batch || !vq->resubmit) {
		sc_vq_fini(vq);
		sc_vq_set_broken(vq, -ENOMEM, "no memory for inflight tracking");
		return -ENOMEM;
	}
	vq->inflight = in;
	version = sc_load_once(&in->version);
	desc_num = sc_load_once(&in->desc_num);
	if (version == 0) {
		/* Fresh (GET_INFLIGHT_FD hands out zeroes): lay it out; SET_VRING_BASE stands. */
		memset(in->desc, 0, vq->size * sizeof(in->desc[0]));
		in->desc_num = (uint16_t)vq->size;
		in->used_idx = used;
		sc_store_release(&in->version, 1);
		return 0;
	}
	if (version != 1)
		return inflight_refuse(vq, "version %u, expected 0 (fresh) or 1", version);
	/* The front end resets the area with the device; a size change without that is a lie. */
	if (desc_num != vq->size)
		return inflight_refuse(vq, "laid out for %u entries, the queue has %u", desc_num, vq->size);

	/* A batch published as used but not yet cleared when the old back end died. */
	recorded = sc_load_once(&in->used_idx);
	if ((uint16_t)(used - recorded) > vq->size)
		return inflight_refuse(vq, "used index %u is more than a queue ahead of the recorded %u",
				       used, recorded);
	for (uint16_t i = recorded; i != used; i++) {
		uint32_t head = sc_load_once(&vq->used->ring[i & vq->mask].id);
		if (head >= vq->size)
			return inflight_refuse(vq, "used slot %u holds head %u, out of range", i, head);
		sc_store_once(&in->desc[head].inflight, 0);
	}
	sc_store_release(&in->used_idx, used);

	r = calloc(vq->size, sizeof(*r));
	seen = calloc(vq->size, sizeof(*seen));
	mark = calloc(vq->size, sizeof(*mark));
	if (!r || !seen || !mark) {
		sc_vq_set_broken(vq, -ENOMEM, "no memory for inflight tracking");
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t h = 0; h < vq->size; h++) {
		uint8_t flag = sc_load_once(&in->desc[h].inflight);
		if (!flag)
			continue;
		uint64_t counter = sc_load_once(&in->desc[h].counter);
		if (flag != 1 || counter == 0 || counter >= INFLIGHT_COUNTER_MAX) {
			ret = inflight_refuse(vq, "head %u has flag %u, counter %llu", h, flag,
					      (unsigned long long)counter);
			goto out;
		}
		r[n++] = (struct replay){ .counter = counter, .head = (uint16_t)h };
	}
	qsort(r, n, sizeof(*r), cmp_replay);
	for (uint32_t i = 1; i < n; i++) {
		if (r[i].counter == r[i - 1].counter) {
			ret = inflight_refuse(vq, "heads %u and %u share counter %llu", r[i - 1].head,
					      r[i].head, (unsigned long long)r[i].counter);
			goto out;
		}
	}
	/* Acquire pairs with the driver's release of avail->idx: the entries below it are written. */
	uint16_t avail = sc_load_acquire(&vq->avail->idx), offered = (uint16_t)(avail - used);
	if (offered > vq->size || n > offered) {
		ret = inflight_refuse(vq, "%u heads in flight, but the driver has %u offered and not used (avail %u, used %u)",
				      n, offered, avail, used);
		goto out;
	}
	/*
	 * Everything popped is either used (used_idx) or in flight: that is
	 * where the avail ring resumes, whatever base the VMM restored (QEMU
	 * falls back to the used index when the back end died).
	 */
	uint16_t next = (uint16_t)(used + n);
	ret = inflight_check_heads(vq, r, n, used, next, avail, seen, mark);
	if (ret < 0)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		vq->resubmit[i] = r[i].head;
	vq->nresubmit = n;
	vq->inflight_counter = n ? r[n - 1].counter : 0;
	vq->last_avail = next;
out:
	free(r);
	free(seen);
	free(mark);
	return ret;
}

void sc_vq_fini(struct sc_vq *vq)
{
	free(vq->batch);
	free(vq->resubmit);
	free(vq->head_epoch);
	vq->head_epoch = NULL;
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
	return !__atomic_load_n(&vq->broken, __ATOMIC_RELAXED) &&
	       sc_load_once(&vq->avail->idx) != vq->last_avail;
}

/* One descriptor, fetched once (kind: SC_FETCH_DESC or SC_FETCH_INDIRECT, for fuzz builds). */
static inline void desc_fetch(struct sc_vring_desc *d, const struct sc_vring_desc *src, enum sc_fetch_kind kind)
{
	SC_FETCH(kind, src, sizeof(*src));
	d->addr = sc_load_once(&src->addr);
	d->len = sc_load_once(&src->len);
	d->flags = sc_load_once(&src->flags);
	d->next = sc_load_once(&src->next);
}

/* Switch the walk to the indirect table d describes (§2.7.5.3). */
static int indirect_enter(struct sc_vq *vq, const struct sc_vring_desc *d,
			  const struct sc_vring_desc **table, uint32_t *table_size)
{
	struct iovec iov;

	if (sc_unlikely(!vq->indirect)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect descriptor without SC_VIRTIO_F_INDIRECT_DESC");
		return -EBADMSG;
	}
	if (sc_unlikely(d->flags & SC_VIRTQ_DESC_F_NEXT)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect descriptor with NEXT set (§2.7.5.3.1)");
		return -EBADMSG;
	}
	/* A table is a whole number of descriptors, at least one, and no longer than a queue. */
	if (sc_unlikely(d->len == 0 || d->len % sizeof(struct sc_vring_desc) ||
			d->len / sizeof(struct sc_vring_desc) > SC_VIRTQ_MAX_SIZE)) {
		sc_vq_set_broken(vq, -EBADMSG, "indirect table length %u is not a multiple of 16 in 16..%u",
				 d->len, SC_VIRTQ_MAX_SIZE * 16);
		return -EBADMSG;
	}
	int n = (d->addr & (SC_VRING_DESC_ALIGN - 1)) ? -EINVAL : xlate(vq, d->addr, d->len, SC_PERM_READ, &iov, 1);
	if (sc_unlikely(n == -EAGAIN))
		return -EAGAIN;   /* a vIOMMU miss, reported by the hook */
	/* Aligned as a guest address and as a host one (the descriptors are read atomically). */
	if (sc_unlikely(n != 1 || (uintptr_t)iov.iov_base & (SC_VRING_DESC_ALIGN - 1))) {
		sc_vq_set_broken(vq, -EFAULT, "indirect table at 0x%llx (+%u) is not aligned contiguous guest memory",
				 (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	*table = iov.iov_base;
	*table_size = d->len / sizeof(struct sc_vring_desc);
	return 0;
}

/*
 * Check a buffer of a chain that no longer fits elem->iov: translated for
 * its errors only (the device will not touch it). A buffer that itself
 * spans more host segments than the scratch holds is only "more
 * segments", which is what the caller already knows.
 */
static __attribute__((cold, noinline)) int check_buffer(struct sc_vq *vq, const struct sc_vring_desc *d,
							 unsigned perm)
{
	struct iovec scratch[8];
	int ret = xlate(vq, d->addr, d->len, perm, scratch, SC_ARRAY_SIZE(scratch));

	return ret == -ENOBUFS ? 0 : ret;
}

/*
 * Does this translation error fail the one request rather than the queue?
 * Through a hook (a vIOMMU) a data buffer that has no mapping or lacks the
 * permission is the IOMMU refusing that DMA: the device completes the
 * request with an error and a fault event says why (virtio 1.2 §5.13.6.9).
 * Without an IOMMU, an address outside guest memory is a broken ring, as
 * is any ring address (desc, avail, used, indirect table) whatever the hook.
 */
static inline bool buffer_fault(const struct sc_vq *vq, int err)
{
	return vq->xlate.mem == NULL && (err == -EFAULT || err == -EPERM);
}

/*
 * A valid chain the device gets only where its status goes, the last byte
 * of the writable part (contract in vqueue.h, struct sc_vq_elem): one with
 * more segments than elem->iov_max (oversized), or one a data buffer of
 * which faulted in the IOMMU (faulted). wlast is the chain's last writable
 * descriptor. Returns 1, or -EAGAIN if that byte is an IOTLB miss (the
 * chain comes again).
 */
static __attribute__((cold, noinline)) int elem_status_only(struct sc_vq *vq, struct sc_vq_elem *elem,
							    const struct sc_vring_desc *wlast, bool faulted)
{
	struct iovec status = { 0 };

	if (wlast) {
		/* Oversized: checked during the walk, so the byte maps. Faulted: it may fault too, then there is none. */
		int n = xlate(vq, wlast->addr + wlast->len - 1, 1, SC_PERM_WRITE, &status, 1);
		if (n == -EAGAIN)
			return -EAGAIN;
		if (n != 1)
			status.iov_len = 0;
	}
	elem->out_num = 0;
	elem->out_len = 0;
	elem->in_num = 0;
	elem->in_len = 0;
	if (faulted) {
		elem->faulted = true;
		vq->stats.faulted++;
	} else {
		elem->oversized = true;
		vq->stats.oversized++;
	}
	if (status.iov_len && elem->iov_max) {
		elem->iov[0] = status;
		elem->in_num = 1;
		elem->in_len = 1;
	}
	return 1;
}

/*
 * Walk the chain at head into elem, checking everything. 1, or the ring's
 * -errno. Two copies of one walk: the hot one (cold false) gives up with
 * WALK_OVERSIZED when the iovec fills, or WALK_FAULTED when the IOMMU
 * refuses a data buffer, touching no state; the cold one walks the chain
 * again from the head (nothing from the first walk is used, so each field
 * is still fetched once per walk that counts), checks all of its structure,
 * and hands the device only the status byte. A faulted chain's buffers are
 * not translated again (the request fails anyway, and the fault was
 * reported once); an oversized one's are, for their errors.
 */
#define WALK_OVERSIZED 2
#define WALK_FAULTED 3

static inline __attribute__((always_inline)) int walk(struct sc_vq *vq, uint16_t head,
							struct sc_vq_elem *elem, const bool cold, bool faulted)
{
	const struct sc_vring_desc *table = vq->desc;
	uint32_t table_size = vq->size, steps = 0;
	uint64_t out_len = 0, in_len = 0;
	unsigned nseg = 0, in_num = 0;
	bool in_indirect = false, oversized = faulted, have_wlast = false;
	struct sc_vring_desc d, wlast = { 0 };
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
		desc_fetch(&d, &table[idx], in_indirect ? SC_FETCH_INDIRECT : SC_FETCH_DESC);

		if (d.flags & SC_VIRTQ_DESC_F_INDIRECT) {
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
		if (d.flags & SC_VIRTQ_DESC_F_WRITE) {
			perm = SC_PERM_WRITE;
			in_len += d.len;
		} else {
			/* §2.7.4.2: device-readable descriptors come before device-writable ones. */
			if (sc_unlikely(in_num || have_wlast)) {
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

		if (!(cold && oversized)) {
			ret = xlate(vq, d.addr, d.len, perm, &elem->iov[nseg], elem->iov_max - nseg);
			if (sc_likely(ret >= 0)) {
				nseg += (unsigned)ret;
				if (perm == SC_PERM_WRITE)
					in_num += (unsigned)ret;
			} else if (ret == -ENOBUFS) {
				/* Not the guest's fault: the cold walk checks the whole chain, then it completes with an error. */
				if (!cold)
					return WALK_OVERSIZED;
				oversized = true;
			}
		}
		if (cold && oversized)
			ret = faulted ? 0 : check_buffer(vq, &d, perm);
		if (sc_unlikely(ret < 0)) {
			if (ret == -EAGAIN)
				return -EAGAIN;   /* a vIOMMU miss: nothing consumed, the chain comes again */
			if (!buffer_fault(vq, ret)) {
				sc_vq_set_broken(vq, ret, "chain %u: buffer [0x%llx, +%u) is not %s guest memory",
						 head, (unsigned long long)d.addr, d.len,
						 ret == -EPERM ? "accessible" : "in");
				return vq->broken_err;
			}
			if (!cold)
				return WALK_FAULTED;
			faulted = oversized = true;
		}
		/* The cold walk keeps the last writable descriptor: its last byte is the status. */
		if (cold && perm == SC_PERM_WRITE && d.len) {
			wlast = d;
			have_wlast = true;
		}

		if (!(d.flags & SC_VIRTQ_DESC_F_NEXT))
			break;
		idx = d.next;
	}

	if (cold && oversized) {
		ret = elem_status_only(vq, elem, have_wlast ? &wlast : NULL, faulted);
		if (ret < 0)
			return ret;
	} else {
		elem->out_num = (uint16_t)(nseg - in_num);
		elem->in_num = (uint16_t)in_num;
		elem->out_len = (uint32_t)out_len;
		elem->in_len = (uint32_t)in_len;
	}
	elem->head = head;
	vq->stats.requests++;
	return 1;
}

static __attribute__((cold, noinline)) int walk_cold(struct sc_vq *vq, uint16_t head,
						     struct sc_vq_elem *elem, bool faulted)
{
	/* A second walk whose results replace the first's: its reads start afresh. */
	SC_FETCH_FORGET();
	return walk(vq, head, elem, true, faulted);
}

static int walk_chain(struct sc_vq *vq, uint16_t head, struct sc_vq_elem *elem)
{
	int ret;

	elem->oversized = false;
	elem->faulted = false;
	ret = walk(vq, head, elem, false, false);

	return sc_unlikely(ret >= WALK_OVERSIZED) ? walk_cold(vq, head, elem, ret == WALK_FAULTED) : ret;
}

/*
 * The epoch a request about to be popped counts in, read before its chain
 * is translated. Acquire, paired with the release in sc_viommu_epochs_flip:
 * a request that counts in the new epoch translates after the removal
 * that came before the flip, so only the old epoch's requests can hold
 * the removed translation, and an invalidation waits for them alone (one
 * grace period for the rounds, not two).
 */
static uint8_t epoch_now(const struct sc_vq *vq)
{
	return vq->epochs ? __atomic_load_n(&vq->epochs->cur, __ATOMIC_ACQUIRE) & 1 : 0;
}

/* Count a popped request in epoch b (from epoch_now). */
static void epoch_count(struct sc_vq *vq, uint16_t head, uint8_t b)
{
	vq->head_epoch[head & vq->mask] = b;
	__atomic_fetch_add(&vq->epochs->count[b], 1, __ATOMIC_RELAXED);
}

int sc_vq_pop(struct sc_vq *vq, struct sc_vq_elem *elem)
{
	uint16_t head;
	int ret;

	SC_FETCH_BEGIN();   /* fuzz builds: the previous request read nothing twice; a new one starts */
	if (sc_unlikely(__atomic_load_n(&vq->broken, __ATOMIC_RELAXED)))
		return vq->broken_err;
	/* Requests a previous back end started and never finished come first, in their order. */
	const uint8_t epoch = epoch_now(vq);
	if (sc_unlikely(vq->resubmit_pos < vq->nresubmit)) {
		ret = walk_chain(vq, vq->resubmit[vq->resubmit_pos], elem);
		if (ret == -EAGAIN)
			return ret;
		vq->resubmit_pos++;
		vq->stats.resubmitted++;
		if (ret > 0 && vq->epochs)
			epoch_count(vq, elem->head, epoch);
		return ret;
	}
	if (vq->last_avail == vq->avail_seen) {
		ret = avail_refresh(vq);
		if (ret <= 0)
			return ret;
	}

	SC_FETCH(SC_FETCH_AVAIL, &vq->avail->ring[vq->last_avail & vq->mask], sizeof(head));
	head = sc_load_once(&vq->avail->ring[vq->last_avail & vq->mask]);
	/*
	 * The next head's line (a new one every 32 slots), fetched while this
	 * chain is walked; only the line, no value is read early.
	 */
	if ((uint16_t)(vq->avail_seen - vq->last_avail) > 1)
		sc_prefetch(&vq->avail->ring[(uint16_t)(vq->last_avail + 1) & vq->mask]);
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
	if (vq->epochs)
		epoch_count(vq, head, epoch);
	return 1;
}

void sc_vq_push(struct sc_vq *vq, uint16_t head, uint32_t len)
{
	struct sc_vring_used_elem *e = &vq->used->ring[vq->used_idx & vq->mask];

	SC_FETCH_CHECK();   /* fuzz builds: the request is done; it read no guest bytes twice */
	/* Not yet visible: the driver reads entries only below used->idx. */
	sc_store_once(&e->id, head);
	sc_store_once(&e->len, len);
	if (vq->inflight)
		vq->batch[(uint16_t)(vq->used_idx - vq->used_published) & vq->mask] = head;
	vq->used_idx++;
	/* The device is done with the buffers: paired with the acquire in the invalidation's drain wait. */
	if (vq->epochs)
		__atomic_fetch_sub(&vq->epochs->count[vq->head_epoch[head & vq->mask]], 1, __ATOMIC_RELEASE);
}

/* Does the driver want an interrupt for entries [old, new)? §2.7.7, §2.7.10. */
static bool driver_wants_interrupt(struct sc_vq *vq, uint16_t old, uint16_t new_idx)
{
	if (vq->event_idx)
		return sc_vring_need_event(sc_load_once(sc_vring_used_event(vq->avail, vq->size)),
					new_idx, old);
	return !(sc_load_once(&vq->avail->flags) & SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
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
		sc_store_once(&vq->used->flags, SC_VIRTQ_USED_F_NO_NOTIFY);
}

bool sc_vq_notify_enable(struct sc_vq *vq)
{
	if (__atomic_load_n(&vq->broken, __ATOMIC_RELAXED))
		return false;
	if (!vq->notify_on) {
		vq->notify_on = true;
		vq->stats.notify_enables++;
		if (vq->event_idx) {
			/*
			 * The driver reads avail_event on every publish: stored only
			 * if it changes, so a re-arm with nothing served since (a
			 * wake-up for a command) leaves the line shared. What the
			 * guest may have written there only decides whether we store.
			 */
			uint16_t *ev = sc_vring_avail_event(vq->used, vq->size);
			if (sc_load_once(ev) != vq->last_avail)
				sc_store_once(ev, vq->last_avail);
		} else
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
	/* Where the copy starts in the segments: fuzz builds key request reads by it (common/fetch.h). */
	const size_t start __attribute__((unused)) = off;
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
		if (!to_iov)
			SC_FETCH(SC_FETCH_REQ, start + done, chunk);
		memcpy(to_iov ? seg : mem, to_iov ? mem : seg, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t sc_iov_copy_from_any(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	return iov_copy(iov, n, off, buf, len, false);
}

size_t sc_iov_copy_to(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len)
{
	return iov_copy(iov, n, off, (void *)buf, len, true);
}
