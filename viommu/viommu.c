/* SPDX-License-Identifier: MIT */
/*
 * viommu core: domains, mappings, translation, grace periods.
 *
 * A domain's mappings are disjoint inclusive ranges, sorted, in chunks of
 * SC_VIOMMU_CHUNK under a small sorted top level (viommu_priv.h): a MAP or
 * UNMAP moves at most a chunk and a few top-level references, so a guest
 * that keeps its domain full cannot make each request move megabytes on the
 * sidecore that serves it. The chunks come from a pool reserved at the cap
 * as a lazily backed anonymous mapping that never moves: a reader that races
 * the writer may read stale entries but never outside the pool, and the
 * sequence count makes it retry. Binary search was measured against the
 * cache (tests/test_viommu.c, lookup_cycles): the per-queue cache answers
 * the common case; tests/test_viommu_maps.c times a change.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "viommu/viommu_priv.h"

void sc_viommu_config_default(struct sc_viommu_config *cfg, struct sc_mem *mem)
{
	*cfg = (struct sc_viommu_config){
		.mem = mem,
		.max_domains = 256,
		.max_mappings = 65536,
		.max_endpoints = 64,
		.page_size_mask = ~0xfffull,
		.input_start = 0,
		.input_end = UINT64_MAX,
		.domain_start = 0,
		.domain_end = UINT32_MAX,
		.bypass = false,
		.teardown = SC_VIOMMU_STRICT,
		.window_ns = 2000000,
		/* x86's MSI doorbell window: DMA there is an interrupt, never memory (§5.13.6.8.2). */
		.msi_start = 0xfee00000ull,
		.msi_end = 0xfeefffffull,
	};
}

int sc_viommu_create(const struct sc_viommu_config *cfg, struct sc_viommu **out)
{
	struct sc_viommu *v;

	/* The granule is the smallest page size; we translate in 4 KiB pages or larger. */
	if (!cfg->mem || !cfg->max_domains || !cfg->max_mappings || !cfg->max_endpoints ||
	    !(cfg->page_size_mask & ~0xfffull) || (cfg->page_size_mask & 0xfffull) ||
	    cfg->input_end < cfg->input_start || cfg->domain_end < cfg->domain_start ||
	    cfg->max_mappings > (1u << 24))
		return -EINVAL;
	v = aligned_alloc(64, SC_ALIGN_UP(sizeof(*v), 64ul));
	if (!v)
		return -ENOMEM;
	memset(v, 0, sizeof(*v));
	v->cfg = *cfg;
	v->granule = cfg->page_size_mask & -cfg->page_size_mask;
	v->bypass = cfg->bypass;
	v->gen = 1;   /* 0 marks an empty cache entry */
	v->eps = calloc(cfg->max_endpoints, sizeof(*v->eps));
	v->domains = calloc(cfg->max_domains, sizeof(*v->domains));
	v->retire = calloc(cfg->max_domains, sizeof(*v->retire));
	if (!v->eps || !v->domains || !v->retire) {
		sc_viommu_destroy(v);
		return -ENOMEM;
	}
	*out = v;
	return 0;
}

static void domain_free(struct sc_viommu_domain *d)
{
	if (!d)
		return;
	if (d->mem)
		munmap(d->mem, d->mem_bytes);
	free(d);
}

/* Free the retired domains whose grace period has ended (FIFO: tickets only grow). */
static void retire_reap(struct sc_viommu *v)
{
	uint32_t k = 0;

	while (k < v->nretire && v->retire[k].ticket <= v->grace_completed)
		domain_free(v->retire[k++].d);
	if (k) {
		memmove(v->retire, v->retire + k, (v->nretire - k) * sizeof(*v->retire));
		v->nretire -= k;
	}
}

void sc_viommu_destroy(struct sc_viommu *v)
{
	if (!v)
		return;
	if (v->domains)
		for (uint32_t i = 0; i < v->cfg.max_domains; i++)
			domain_free(v->domains[i]);
	if (v->retire)
		for (uint32_t i = 0; i < v->nretire; i++)
			domain_free(v->retire[i].d);
	free(v->retire);
	free(v->domains);
	free(v->eps);
	free(v);
}

const struct sc_viommu_config *sc_viommu_get_config(const struct sc_viommu *v)
{
	return &v->cfg;
}

void sc_viommu_get_stats(struct sc_viommu *v, struct sc_viommu_stats *st)
{
	const uint64_t *src = (const uint64_t *)&v->stats;
	uint64_t *dst = (uint64_t *)st;

	_Static_assert(sizeof(*st) % sizeof(uint64_t) == 0, "counters only");
	/* Written by the writer's thread: one tear-free load each. */
	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = sc_load_once(&src[i]);
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++)
		st->faults_dropped += sc_load_once(&v->slots[i].faults_dropped);
}

static struct sc_viommu_ep *ep_find(struct sc_viommu *v, uint32_t id)
{
	for (uint32_t i = 0; i < v->neps; i++)
		if (v->eps[i].id == id)
			return &v->eps[i];
	return NULL;
}

int sc_viommu_endpoint_add(struct sc_viommu *v, uint32_t id)
{
	if (ep_find(v, id))
		return -EEXIST;
	if (v->neps == v->cfg.max_endpoints)
		return -ENOSPC;
	v->eps[v->neps++] = (struct sc_viommu_ep){ .id = id };
	return 0;
}

/* ---- translation contexts (readers) ---- */

int sc_viommu_tc_init(struct sc_viommu *v, struct sc_viommu_tc *tc, uint32_t endpoint)
{
	struct sc_viommu_ep *ep = ep_find(v, endpoint);

	if (!ep)
		return -ENOENT;
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		struct sc_viommu_slot *s = &v->slots[i];
		if (s->used)
			continue;
		memset(tc, 0, sizeof(*tc));
		tc->v = v;
		tc->slot = s;
		tc->ep = (uint32_t)(ep - v->eps);
		s->ep = tc->ep;
		s->revoked = false;
		s->npins = 0;
		s->epochs = (struct sc_vq_epochs){ 0 };
		/* Quiescent (even) and empty before the writer may look at it. */
		sc_store_release(&s->used, true);
		return 0;
	}
	return -ENOSPC;
}

void sc_viommu_tc_fini(struct sc_viommu_tc *tc)
{
	if (!tc->slot)
		return;
	/* A context is let go outside a round: its counter is even, so no grace period waits on it. */
	sc_store_release(&tc->slot->used, false);
	tc->slot = NULL;
}

int sc_viommu_tc_pin_rings(struct sc_viommu_tc *tc, const struct sc_vq_config *cfg)
{
	struct sc_viommu_slot *s = tc->slot;
	const uint64_t at[SC_VIOMMU_MAX_PINS] = { cfg->desc_addr, cfg->avail_addr, cfg->used_addr };
	const uint64_t len[SC_VIOMMU_MAX_PINS] = { sc_vring_desc_bytes(cfg->size), sc_vring_avail_bytes(cfg->size),
						   sc_vring_used_bytes(cfg->size) };

	if (!SC_IS_POW2(cfg->size) || cfg->size > SC_VIRTQ_MAX_SIZE)
		return -EINVAL;
	for (unsigned i = 0; i < SC_VIOMMU_MAX_PINS; i++) {
		s->pins[i].iova = at[i];
		/* sc_vq_init mapped it, so it does not wrap; saturate anyway rather than trust that. */
		s->pins[i].last = at[i] + len[i] - 1 < at[i] ? UINT64_MAX : at[i] + len[i] - 1;
	}
	/* The writer reads pins[] only after this: paired with the acquire in revoke_range. */
	sc_store_release(&s->npins, SC_VIOMMU_MAX_PINS);
	return 0;
}

bool sc_viommu_tc_revoked(const struct sc_viommu_tc *tc)
{
	return sc_load_acquire(&tc->slot->revoked);
}

struct sc_xlate sc_viommu_tc_xlate(struct sc_viommu_tc *tc)
{
	return (struct sc_xlate){ .map = sc_viommu_translate, .ctx = tc, .mem = NULL };
}

void sc_viommu_tc_enter(struct sc_viommu_tc *tc)
{
	struct sc_viommu_slot *s = tc->slot;

	sc_store_once(&s->qs, s->qs + 1);   /* odd: in a round */
	/*
	 * Store-load order: the writer must see us in a round, or we must see
	 * its removal (gen, mapping array). Paired with the full barrier in
	 * grace_begin between the writer's removal and its read of qs.
	 */
	sc_smp_mb();
}

void sc_viommu_tc_exit(struct sc_viommu_tc *tc)
{
	struct sc_viommu_slot *s = tc->slot;

	/* Everything this round read (and the DMA it did) happens before: paired with the acquire in grace_passed. */
	sc_store_release(&s->qs, s->qs + 1);
}

static void fault_record(struct sc_viommu_tc *tc, uint8_t reason, unsigned perm, uint64_t addr);

static int wrap_poll(struct sc_pollq *q, unsigned budget)
{
	struct sc_viommu_tc *tc = q->ctx;
	int ret;

	sc_viommu_tc_enter(tc);
	/*
	 * Read after enter's full barrier: either we see the revocation, or the
	 * writer saw us in this round and waits for its end (the Dekker pair
	 * of enter and grace_begin).
	 */
	if (sc_unlikely(sc_load_acquire(&tc->slot->revoked))) {
		if (!tc->revoke_reported) {
			tc->revoke_reported = true;
			fault_record(tc, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, SC_PERM_READ, tc->slot->pins[0].iova);
		}
		ret = -EFAULT;
	} else {
		ret = tc->inner->ops->poll(tc->inner, budget);
	}
	sc_viommu_tc_exit(tc);
	return ret;
}

static bool wrap_notify_enable(struct sc_pollq *q)
{
	struct sc_viommu_tc *tc = q->ctx;
	return tc->inner->ops->notify_enable(tc->inner);
}

static void wrap_notify_disable(struct sc_pollq *q)
{
	struct sc_viommu_tc *tc = q->ctx;
	tc->inner->ops->notify_disable(tc->inner);
}

static const struct sc_pollq_ops wrap_ops = {
	.poll = wrap_poll,
	.notify_enable = wrap_notify_enable,
	.notify_disable = wrap_notify_disable,
};

struct sc_pollq *sc_viommu_tc_wrap(struct sc_viommu_tc *tc, struct sc_pollq *inner)
{
	tc->inner = inner;
	tc->pq = (struct sc_pollq){ .ops = &wrap_ops, .ctx = tc, .kick_fd = inner->kick_fd,
				    .name = inner->name };
	return &tc->pq;
}

void sc_viommu_tc_iotlb(struct sc_viommu_tc *tc, int (*fn)(void *ctx, uint64_t iova, unsigned perm),
			void *ctx, uint64_t timeout_ns)
{
	tc->iotlb = true;
	tc->miss_fn = fn;
	tc->miss_ctx = ctx;
	tc->miss_timeout_ns = timeout_ns;
}

/* Was a ring's translation invalidated? Then its pointers go until they are translated again. */
static bool iotlb_rings_ok(struct sc_viommu_tc *tc)
{
	/* Exchange, not a load and a store: a revocation between the two would be lost. */
	if (sc_unlikely(__atomic_exchange_n(&tc->slot->revoked, false, __ATOMIC_ACQ_REL)))
		tc->rings_lost = true;
	if (sc_likely(!tc->rings_lost))
		return true;
	const struct sc_viommu_slot *s = tc->slot;
	int r = sc_vq_remap_rings(tc->vq, s->pins[0].iova, s->pins[1].iova, s->pins[2].iova);
	if (r == 0)
		tc->rings_lost = false;
	return r == 0;
}

static int iotlb_poll_once(struct sc_viommu_tc *tc, unsigned budget)
{
	int ret = 0;

	sc_viommu_tc_enter(tc);
	/* After enter's full barrier: we see the revocation, or the writer waits for this round. */
	if (iotlb_rings_ok(tc)) {
		ret = tc->inner->ops->poll(tc->inner, budget);
		if (ret == -EAGAIN)
			ret = 0;   /* a miss: the chain waits for its UPDATE, the sidecore goes on */
	} else if (sc_vq_broken(tc->vq)) {
		ret = tc->vq->broken_err;
	}
	if (sc_unlikely(tc->miss_pending) && ret >= 0 &&
	    sc_viommu_now_ns() - tc->miss_since_ns > tc->miss_timeout_ns) {
		sc_vq_set_broken(tc->vq, -ETIMEDOUT,
				 "IOTLB miss at iova 0x%llx (%s) not answered in %llu ms; the front end's vIOMMU has no mapping there",
				 (unsigned long long)tc->miss_iova, tc->miss_perm & SC_PERM_WRITE ? "write" : "read",
				 (unsigned long long)(tc->miss_timeout_ns / 1000000));
		ret = -ETIMEDOUT;
	}
	sc_viommu_tc_exit(tc);
	return ret;
}

/*
 * Requests per bracketed round in IOTLB mode. An invalidation's grace
 * period waits for the round in progress: a whole round of 32 memory-disk
 * reads held an ack 12-70 us, rounds of 8 hold it about 3 us (measured in
 * sidecore-bench vhost-blk --iommu); a round costs one full barrier.
 */
#define IOTLB_ROUND 8

static int iotlb_poll(struct sc_pollq *q, unsigned budget)
{
	struct sc_viommu_tc *tc = q->ctx;
	int done = 0;

	while (budget) {
		unsigned b = budget < IOTLB_ROUND ? budget : IOTLB_ROUND;
		int ret = iotlb_poll_once(tc, b);
		if (ret < 0)
			return done ? done : ret;
		done += ret;
		budget -= b;
		if ((unsigned)ret < b)
			break;   /* the queue ran dry (or waits on a miss): the round is over */
	}
	return done;
}

/* Notifications write the rings: inside a round, and only through valid pointers. */
static bool iotlb_notify_enable(struct sc_pollq *q)
{
	struct sc_viommu_tc *tc = q->ctx;
	bool work = true;   /* rings to remap or a miss pending: keep polling */

	sc_viommu_tc_enter(tc);
	if (iotlb_rings_ok(tc) && !tc->miss_pending)
		work = tc->inner->ops->notify_enable(tc->inner);
	sc_viommu_tc_exit(tc);
	return work;
}

static void iotlb_notify_disable(struct sc_pollq *q)
{
	struct sc_viommu_tc *tc = q->ctx;

	sc_viommu_tc_enter(tc);
	if (iotlb_rings_ok(tc))
		tc->inner->ops->notify_disable(tc->inner);
	sc_viommu_tc_exit(tc);
}

static void wrap_fault(struct sc_pollq *q, const char *reason)
{
	struct sc_viommu_tc *tc = q->ctx;
	if (tc->inner->ops->fault)
		tc->inner->ops->fault(tc->inner, reason);
}

static const struct sc_pollq_ops iotlb_ops = {
	.poll = iotlb_poll,
	.notify_enable = iotlb_notify_enable,
	.notify_disable = iotlb_notify_disable,
	.fault = wrap_fault,
};

struct sc_pollq *sc_viommu_tc_wrap_iotlb(struct sc_viommu_tc *tc, struct sc_pollq *inner, struct sc_vq *vq)
{
	tc->inner = inner;
	tc->vq = vq;
	tc->pq = (struct sc_pollq){ .ops = &iotlb_ops, .ctx = tc, .kick_fd = inner->kick_fd, .name = inner->name };
	return &tc->pq;
}

void sc_viommu_epochs_flip(struct sc_viommu *v)
{
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		struct sc_viommu_slot *s = &v->slots[i];
		/* After the removal: paired with the acquire in sc_vq_pop's epoch_now. */
		if (sc_load_once(&s->used))
			sc_store_release(&s->epochs.cur, s->epochs.cur ^ 1);
	}
}

bool sc_viommu_epochs_drained(const struct sc_viommu *v)
{
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		const struct sc_viommu_slot *s = &v->slots[i];
		/* Paired with the release decrement in sc_vq_push, as in sc_viommu_tc_drained. */
		if (sc_load_once(&s->used) && __atomic_load_n(&s->epochs.count[s->epochs.cur ^ 1], __ATOMIC_ACQUIRE))
			return false;
	}
	return true;
}

bool sc_viommu_tc_drained(const struct sc_viommu_tc *tc)
{
	const struct sc_viommu_slot *s = tc->slot;
	/* Paired with the release decrement in sc_vq_push: the device's DMA for those requests is done. */
	return !s || __atomic_load_n(&s->epochs.count[s->epochs.cur ^ 1], __ATOMIC_ACQUIRE) == 0;
}

/* Queue a fault for the eventq; a full ring counts it as dropped (never blocks). */
static void fault_record(struct sc_viommu_tc *tc, uint8_t reason, unsigned perm, uint64_t addr)
{
	struct sc_viommu_slot *s = tc->slot;
	uint32_t head = s->fault_head;

	tc->faults++;
	/* Paired with the release store of fault_tail in sc_viommu_fault_pop: the slot is free to reuse. */
	if (head - sc_load_acquire(&s->fault_tail) >= SC_VIOMMU_FAULT_RING) {
		sc_store_once(&s->faults_dropped, s->faults_dropped + 1);
		return;
	}
	s->faults[head % SC_VIOMMU_FAULT_RING] = (struct sc_viommu_fault){
		.reason = reason,
		.flags = ((perm & SC_PERM_READ) ? SC_VIRTIO_IOMMU_FAULT_F_READ : 0) |
			 ((perm & SC_PERM_WRITE) ? SC_VIRTIO_IOMMU_FAULT_F_WRITE : 0) |
			 SC_VIRTIO_IOMMU_FAULT_F_ADDRESS,
		.endpoint = tc->v->eps[tc->ep].id,
		.address = addr,
	};
	/* The entry is written before it is published: paired with the acquire in sc_viommu_fault_pop. */
	sc_store_release(&s->fault_head, head + 1);
}

bool sc_viommu_fault_pop(struct sc_viommu *v, struct sc_viommu_fault *f)
{
	for (unsigned n = 0; n < SC_VIOMMU_MAX_TC; n++) {
		/* Round-robin over contexts so one faulting queue cannot hide another's faults. */
		struct sc_viommu_slot *s = &v->slots[v->fault_rr];
		v->fault_rr = (v->fault_rr + 1) % SC_VIOMMU_MAX_TC;
		if (!sc_load_acquire(&s->used))
			continue;
		uint32_t tail = s->fault_tail;
		if (sc_load_acquire(&s->fault_head) == tail)
			continue;
		*f = s->faults[tail % SC_VIOMMU_FAULT_RING];
		sc_store_release(&s->fault_tail, tail + 1);
		return true;
	}
	return false;
}

/*
 * The mapping of domain d that contains iova, copied under the sequence
 * count. Returns true and *out, or false on a miss.
 */
static bool domain_lookup(const struct sc_viommu_domain *d, uint64_t iova, struct sc_viommu_map *out)
{
	for (;;) {
		/* Paired with the release store that ends the writer's change (seq_end). */
		uint32_t seq = sc_load_acquire(&d->seq);
		if (sc_unlikely(seq & 1)) {
			sc_cpu_relax();
			continue;
		}
		/*
		 * A count or chunk index read while the writer moves them may be
		 * torn: each is clamped, so every load stays inside top and the
		 * pool, and the re-check of seq below throws such an answer away.
		 */
		uint32_t lo = 0, hi = sc_load_once(&d->ntop);
		bool found = false;

		hi = hi < d->npool ? hi : d->npool;
		/* The last chunk whose first mapping starts at or below iova... */
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (sc_load_once(&d->top[mid].first) <= iova)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo > 0) {
			const struct sc_viommu_chunk_ref *r = &d->top[lo - 1];
			uint32_t c = sc_load_once(&r->chunk), n = sc_load_once(&r->n);
			const struct sc_viommu_map *maps = d->pool + (size_t)(c < d->npool ? c : 0) * SC_VIOMMU_CHUNK;

			/* ...and in it, the last mapping that does. */
			lo = 0;
			hi = n < SC_VIOMMU_CHUNK ? n : SC_VIOMMU_CHUNK;
			while (lo < hi) {
				uint32_t mid = lo + (hi - lo) / 2;
				if (sc_load_once(&maps[mid].iova) <= iova)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo > 0) {
				const struct sc_viommu_map *m = &maps[lo - 1];
				out->iova = sc_load_once(&m->iova);
				out->last = sc_load_once(&m->last);
				out->gpa = sc_load_once(&m->gpa);
				out->perm = sc_load_once(&m->perm);
				found = iova <= out->last;
			}
		}
		/* The copies above are done before we re-read seq (seqlock read side). */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (sc_load_once(&d->seq) == seq)
			return found;
	}
}

/*
 * IOTLB mode: ask the front end for the page of iova, once per page while
 * it is pending (a chain retried every round must not flood the channel).
 */
static __attribute__((cold, noinline)) int iotlb_miss(struct sc_viommu_tc *tc, uint64_t iova, unsigned perm)
{
	uint64_t page = iova & ~0xfffull;

	if (!tc->miss_pending || tc->miss_iova != page || (tc->miss_perm & perm) != perm) {
		tc->miss_pending = true;
		tc->miss_sent = false;
		tc->miss_iova = page;
		tc->miss_perm = perm;
		tc->miss_since_ns = sc_viommu_now_ns();
	}
	if (!tc->miss_sent && tc->miss_fn(tc->miss_ctx, page, tc->miss_perm) == 0) {
		tc->miss_sent = true;
		tc->misses_sent++;
	}
	return -EAGAIN;
}

int sc_viommu_translate(void *ctx, uint64_t iova, uint64_t len, unsigned perm,
			struct iovec *iov, unsigned iov_max)
{
	struct sc_viommu_tc *tc = ctx;
	struct sc_viommu *v = tc->v;
	uint64_t last;
	unsigned n = 0;

	if (len == 0)
		return 0;
	/* Load gen before the domain: a removal after this load invalidates what we cache. */
	uint64_t gen = sc_load_acquire(&v->gen);
	struct sc_viommu_domain *d = sc_load_acquire(&v->eps[tc->ep].domain);

	if (__builtin_add_overflow(iova, len - 1, &last)) {
		fault_record(tc, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, perm, iova);
		return -EFAULT;
	}
	if (!d || d->bypass) {
		if (d || sc_load_once(&v->bypass))
			return sc_mem_translate_iov(v->cfg.mem, iova, len, perm, iov, iov_max);
		/* §5.13.6.2: an unattached endpoint without bypass may not DMA at all. */
		fault_record(tc, SC_VIRTIO_IOMMU_FAULT_R_DOMAIN, perm, iova);
		return -EFAULT;
	}

	while (len > 0) {
		struct sc_viommu_tce *e = &tc->cache[(iova >> 12) & (SC_VIOMMU_TC_WAYS - 1)];
		struct sc_viommu_map m;

		if (sc_likely(e->gen == gen && iova - e->iova <= e->last - e->iova)) {
			tc->hits++;
			m = (struct sc_viommu_map){ .iova = e->iova, .last = e->last, .gpa = e->gpa,
						    .perm = e->perm };
		} else {
			tc->misses++;
			if (!domain_lookup(d, iova, &m)) {
				if (tc->iotlb)
					return iotlb_miss(tc, iova, perm);
				fault_record(tc, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, perm, iova);
				return -EFAULT;
			}
			/* The answer to the pending miss came: its clock stops. */
			if (sc_unlikely(tc->miss_pending) && tc->miss_iova - m.iova <= m.last - m.iova)
				tc->miss_pending = false;
			*e = (struct sc_viommu_tce){ .iova = m.iova, .last = m.last, .gpa = m.gpa,
						     .gen = gen, .perm = m.perm };
		}
		if (sc_unlikely((m.perm & perm) != perm)) {
			fault_record(tc, SC_VIRTIO_IOMMU_FAULT_R_MAPPING, perm, iova);
			return -EPERM;
		}
		/* Bytes up to the mapping's end or the request's, written so nothing overflows. */
		uint64_t chunk = m.last - iova < len - 1 ? m.last - iova + 1 : len;
		/* A full iovec may still take a chunk that continues its last segment (a ring over two pages). */
		struct iovec spill, *at = n < iov_max ? iov + n : &spill;
		int r = sc_mem_translate_iov(v->cfg.mem, m.gpa + (iova - m.iova), chunk, perm, at,
					     n < iov_max ? iov_max - n : 1);
		if (r < 0)
			return r;
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == at->iov_base) {
			iov[n - 1].iov_len += at->iov_len;
			if (--r > 0)
				memmove(at, at + 1, (size_t)r * sizeof(*at));
		} else if (at == &spill) {
			return -ENOBUFS;
		}
		n += (unsigned)r;
		iova += chunk;   /* cannot wrap: iova + len - 1 did not */
		len -= chunk;
	}
	return (int)n;
}

/* ---- grace periods ---- */

static bool grace_passed(struct sc_viommu *v)
{
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		uint64_t snap = v->snap[i];
		/* Even: it was between rounds. Changed: it has ended that round. Paired with the release in tc_exit. */
		if ((snap & 1) && sc_load_acquire(&v->slots[i].qs) == snap)
			return false;
	}
	return true;
}

static void grace_begin(struct sc_viommu *v)
{
	/*
	 * The removals (mapping array, gen, endpoint's domain) are stored before
	 * we read any context's counter: paired with the full barrier in
	 * sc_viommu_tc_enter.
	 */
	sc_smp_mb();
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++)
		v->snap[i] = sc_load_once(&v->slots[i].used) ? sc_load_acquire(&v->slots[i].qs) : 0;
	v->grace_active = true;
	v->grace_started++;
}

/* Move grace periods on; never waits. */
static void grace_advance(struct sc_viommu *v)
{
	if (v->grace_active && grace_passed(v)) {
		v->grace_active = false;
		v->grace_completed = v->grace_started;
		v->stats.grace_periods++;
	}
	if (!v->grace_active && v->grace_wanted > v->grace_completed) {
		grace_begin(v);
		if (grace_passed(v)) {
			v->grace_active = false;
			v->grace_completed = v->grace_started;
			v->stats.grace_periods++;
		}
	}
	retire_reap(v);
}

uint64_t sc_viommu_grace_start(struct sc_viommu *v)
{
	/* A running grace period began before the latest removal: it takes the next one. */
	uint64_t ticket = v->grace_started + 1;

	if (ticket > v->grace_wanted)
		v->grace_wanted = ticket;
	grace_advance(v);
	return ticket;
}

bool sc_viommu_grace_done(struct sc_viommu *v, uint64_t ticket)
{
	grace_advance(v);
	return v->grace_completed >= ticket;
}

/* ---- domains and mappings (the writer) ---- */

static void seq_begin(struct sc_viommu_domain *d)
{
	sc_store_once(&d->seq, d->seq + 1);
	/* Readers that see a changed entry also see the odd count: paired with the acquire fence in domain_lookup. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void seq_end(struct sc_viommu_domain *d)
{
	/* Paired with the acquire load of seq at the start of domain_lookup. */
	sc_store_release(&d->seq, d->seq + 1);
}

static void gen_bump(struct sc_viommu *v)
{
	sc_store_release(&v->gen, v->gen + 1);
}

/* Revoke every context of an endpoint in domain d that pins something in [iova, last]. */
static void revoke_range(struct sc_viommu *v, const struct sc_viommu_domain *d, uint64_t iova, uint64_t last)
{
	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		struct sc_viommu_slot *s = &v->slots[i];
		uint32_t n = sc_load_once(&s->used) ? sc_load_acquire(&s->npins) : 0;
		if (!n || v->eps[s->ep].domain != d)
			continue;
		for (uint32_t k = 0; k < n; k++)
			if (s->pins[k].iova <= last && iova <= s->pins[k].last) {
				/* Before the grace period that covers this removal begins: see wrap_poll. */
				sc_store_release(&s->revoked, true);
				break;
			}
	}
}

/* Revoke every context of endpoint ep that pins rings: its domain is going away. */
static void revoke_endpoint(struct sc_viommu *v, const struct sc_viommu_ep *ep)
{
	uint32_t idx = (uint32_t)(ep - v->eps);

	for (unsigned i = 0; i < SC_VIOMMU_MAX_TC; i++) {
		struct sc_viommu_slot *s = &v->slots[i];
		if (sc_load_once(&s->used) && s->ep == idx && sc_load_acquire(&s->npins))
			sc_store_release(&s->revoked, true);
	}
}

static struct sc_viommu_domain *domain_find(struct sc_viommu *v, uint32_t id, uint32_t *slot)
{
	for (uint32_t i = 0; i < v->cfg.max_domains; i++) {
		struct sc_viommu_domain *d = v->domains[i];
		if (d && d->id == id) {
			if (slot)
				*slot = i;
			return d;
		}
	}
	return NULL;
}

static int domain_new(struct sc_viommu *v, uint32_t id, bool bypass, struct sc_viommu_domain **out)
{
	uint32_t free_slot = UINT32_MAX;

	/* Domains waiting to be freed count too: attach/detach loops cannot outrun the grace periods. */
	if (v->ndomains + v->nretire >= v->cfg.max_domains)
		return -ENOMEM;
	for (uint32_t i = 0; i < v->cfg.max_domains && free_slot == UINT32_MAX; i++)
		if (!v->domains[i])
			free_slot = i;
	struct sc_viommu_domain *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->id = id;
	d->bypass = bypass;
	if (!bypass) {
		/*
		 * Reserved, never moved: backed page by page as chunks are first
		 * used. Chunks at least a quarter full hold max_mappings in
		 * 4 * max_mappings / SC_VIOMMU_CHUNK; the split of a full chunk
		 * below the cap needs at most two more.
		 */
		d->npool = (uint32_t)((4ull * v->cfg.max_mappings + SC_VIOMMU_CHUNK - 1) / SC_VIOMMU_CHUNK + 2);
		size_t top_bytes = SC_ALIGN_UP((size_t)d->npool * sizeof(*d->top), 64ul);
		size_t free_bytes = SC_ALIGN_UP((size_t)d->npool * sizeof(*d->free), 64ul);
		d->mem_bytes = top_bytes + free_bytes + (size_t)d->npool * SC_VIOMMU_CHUNK * sizeof(*d->pool);
		d->mem = mmap(NULL, d->mem_bytes, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (d->mem == MAP_FAILED) {
			free(d);
			return -ENOMEM;
		}
		d->top = d->mem;
		d->free = (uint32_t *)((char *)d->mem + top_bytes);
		d->pool = (struct sc_viommu_map *)((char *)d->mem + top_bytes + free_bytes);
	}
	v->domains[free_slot] = d;
	v->ndomains++;
	*out = d;
	return 0;
}

/* Drop the domain in slot once no endpoint uses it; freed after a grace period. */
static void domain_release(struct sc_viommu *v, struct sc_viommu_domain *d)
{
	uint32_t slot;

	if (d->nendpoints || !domain_find(v, d->id, &slot))
		return;
	v->domains[slot] = NULL;
	v->ndomains--;
	v->ndying -= d->ndying;
	/* The ticket first: starting a grace period may free retired domains and move the FIFO. */
	uint64_t ticket = sc_viommu_grace_start(v);
	v->retire[v->nretire++] = (struct sc_viommu_retire){ .d = d, .ticket = ticket };
	retire_reap(v);   /* with no sidecore inside a round, that grace period has ended already */
}

int sc_viommu_attach(struct sc_viommu *v, uint32_t domain, uint32_t endpoint, bool bypass,
		     bool *removed)
{
	struct sc_viommu_ep *ep = ep_find(v, endpoint);
	struct sc_viommu_domain *d, *old;
	int ret;

	*removed = false;
	if (!ep)
		return -ENOENT;
	if (domain < v->cfg.domain_start || domain > v->cfg.domain_end)
		return -ERANGE;
	d = domain_find(v, domain, NULL);
	if (d && d->bypass != bypass)
		return -EINVAL;
	old = ep->domain;
	if (d && old == d)
		return 0;   /* already there */
	if (!d) {
		ret = domain_new(v, domain, bypass, &d);
		if (ret < 0)
			return ret;
	}
	if (old && !old->bypass)
		revoke_endpoint(v, ep);
	d->nendpoints++;
	sc_store_release(&ep->domain, d);
	v->stats.attaches++;
	if (old) {
		/* §5.13.6.3: attaching elsewhere detaches first; the old translations go. */
		old->nendpoints--;
		gen_bump(v);
		domain_release(v, old);
		*removed = true;
	}
	return 0;
}

int sc_viommu_detach(struct sc_viommu *v, uint32_t domain, uint32_t endpoint, bool *removed)
{
	struct sc_viommu_ep *ep = ep_find(v, endpoint);
	struct sc_viommu_domain *d;

	*removed = false;
	if (!ep)
		return -ENOENT;
	d = domain_find(v, domain, NULL);
	if (!d)
		return -ENOENT;
	if (ep->domain != d)
		return -EINVAL;
	if (!d->bypass)
		revoke_endpoint(v, ep);
	sc_store_release(&ep->domain, NULL);
	d->nendpoints--;
	gen_bump(v);
	domain_release(v, d);
	v->stats.detaches++;
	*removed = true;
	return 0;
}

/*
 * ---- a domain's table: chunks under a sorted top level ----
 *
 * The writer's side, under the sequence count when it changes anything.
 * Every chunk in top holds 1..SC_VIOMMU_CHUNK mappings, and at least a
 * quarter of that unless it is alone (what bounds the pool); top[t].first
 * is the iova of chunk t's first mapping (the readers' search key).
 */

/* A place in the table: mapping k of chunk top[t]; t == ntop is past the last. */
struct maps_pos {
	uint32_t t, k;
};

static struct sc_viommu_map *chunk_maps(const struct sc_viommu_domain *d, uint32_t chunk)
{
	return d->pool + (size_t)chunk * SC_VIOMMU_CHUNK;
}

/* The mapping at p, or NULL past the last one. */
static struct sc_viommu_map *maps_at(const struct sc_viommu_domain *d, struct maps_pos p)
{
	return p.t < d->ntop ? &chunk_maps(d, d->top[p.t].chunk)[p.k] : NULL;
}

/* The place after p (p is not past the last). */
static struct maps_pos maps_next(const struct sc_viommu_domain *d, struct maps_pos p)
{
	if (++p.k == d->top[p.t].n)
		p = (struct maps_pos){ p.t + 1, 0 };
	return p;
}

/* The first mapping whose last ≥ iova (the first that may overlap [iova, ...]). */
static struct maps_pos maps_reaching(const struct sc_viommu_domain *d, uint64_t iova)
{
	uint32_t lo = 0, hi = d->ntop;

	/* The first chunk whose last mapping reaches iova... */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct sc_viommu_chunk_ref *r = &d->top[mid];
		if (chunk_maps(d, r->chunk)[r->n - 1].last < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == d->ntop)
		return (struct maps_pos){ lo, 0 };
	/* ...and in it, the first mapping that does. */
	const struct sc_viommu_map *maps = chunk_maps(d, d->top[lo].chunk);
	uint32_t k = 0, end = d->top[lo].n;
	while (k < end) {
		uint32_t mid = k + (end - k) / 2;
		if (maps[mid].last < iova)
			k = mid + 1;
		else
			end = mid;
	}
	return (struct maps_pos){ lo, k };
}

/* The mappings that overlap a range, in order. */
struct maps_span {
	struct maps_pos at;       /* the first */
	uint32_t k;               /* how many */
	bool live;                /* one of them is not dying */
	struct sc_viommu_map *first, *last;
};

static struct maps_span maps_overlapping(const struct sc_viommu_domain *d, uint64_t iova, uint64_t last)
{
	struct maps_span s = { .at = maps_reaching(d, iova) };
	struct sc_viommu_map *m;

	for (struct maps_pos p = s.at; (m = maps_at(d, p)) && m->iova <= last; p = maps_next(d, p)) {
		if (!s.k++)
			s.first = m;
		s.last = m;
		s.live |= !m->dying;
	}
	return s;
}

/* A free chunk (given back ones first: their pages are backed), or UINT32_MAX. */
static uint32_t chunk_alloc(struct sc_viommu_domain *d)
{
	if (d->nfree)
		return d->free[--d->nfree];
	return d->nfresh < d->npool ? d->nfresh++ : UINT32_MAX;
}

static void chunk_free(struct sc_viommu_domain *d, uint32_t chunk)
{
	d->free[d->nfree++] = chunk;
}

/* Chunks top[t, t + k) leave the table, back to the free list. */
static void top_remove(struct sc_viommu_domain *d, uint32_t t, uint32_t k)
{
	for (uint32_t j = t; j < t + k; j++)
		chunk_free(d, d->top[j].chunk);
	memmove(&d->top[t], &d->top[t + k], (d->ntop - t - k) * sizeof(d->top[0]));
	sc_store_once(&d->ntop, d->ntop - k);
}

/* Chunk top[l + 1] joins the end of top[l] (they fit in one). */
static void chunks_merge(struct sc_viommu_domain *d, uint32_t l)
{
	struct sc_viommu_chunk_ref *a = &d->top[l], *b = &d->top[l + 1];

	memcpy(chunk_maps(d, a->chunk) + a->n, chunk_maps(d, b->chunk), b->n * sizeof(struct sc_viommu_map));
	a->n += b->n;
	top_remove(d, l + 1, 1);
}

/* Chunks top[l] and top[l + 1] (more than one chunk's worth) share their mappings half and half. */
static void chunks_even(struct sc_viommu_domain *d, uint32_t l)
{
	struct sc_viommu_chunk_ref *a = &d->top[l], *b = &d->top[l + 1];
	struct sc_viommu_map *ma = chunk_maps(d, a->chunk), *mb = chunk_maps(d, b->chunk);
	uint32_t half = (a->n + b->n) / 2;

	if (a->n < half) {
		uint32_t k = half - a->n;
		memcpy(ma + a->n, mb, k * sizeof(*ma));
		memmove(mb, mb + k, (b->n - k) * sizeof(*mb));
		b->n -= k;
	} else {
		uint32_t k = a->n - half;
		memmove(mb + k, mb, b->n * sizeof(*mb));
		memcpy(mb, ma + half, k * sizeof(*mb));
		b->n += k;
	}
	a->n = half;
	b->first = mb[0].iova;
}

/*
 * Chunks top[from..to] lost mappings: each one under a quarter full (and not
 * alone) merges with a neighbour that has room, or else shares a
 * neighbour's mappings (then both are at least half full).
 */
static void maps_settle(struct sc_viommu_domain *d, uint32_t from, uint32_t to)
{
	for (uint32_t t = from; t < d->ntop && t <= to;) {
		uint32_t n = d->top[t].n;
		if (d->ntop == 1 || n >= SC_VIOMMU_CHUNK / 4)
			t++;   /* a merge leaves t in place: what is there now is looked at again */
		else if (t + 1 < d->ntop && n + d->top[t + 1].n <= SC_VIOMMU_CHUNK)
			chunks_merge(d, t);
		else if (t > 0 && d->top[t - 1].n + n <= SC_VIOMMU_CHUNK)
			chunks_merge(d, t - 1);
		else
			chunks_even(d, t + 1 < d->ntop ? t : t - 1);
	}
}

/*
 * Insert m before p (sequence count held by the caller). Returns 0, or
 * -ENOMEM if no chunk is left, which the pool's size rules out below the cap.
 */
static int maps_insert(struct sc_viommu_domain *d, struct maps_pos p, const struct sc_viommu_map *m)
{
	const uint32_t half = SC_VIOMMU_CHUNK / 2;

	if (!d->ntop) {
		uint32_t c = chunk_alloc(d);
		if (c == UINT32_MAX)
			return -ENOMEM;
		d->top[0] = (struct sc_viommu_chunk_ref){ .chunk = c };
		sc_store_once(&d->ntop, 1);
	} else if (p.t == d->ntop) {
		p = (struct maps_pos){ d->ntop - 1, d->top[d->ntop - 1].n };   /* at the end of the last chunk */
	}
	if (d->top[p.t].n == SC_VIOMMU_CHUNK) {
		/* Full: its upper half moves to a new chunk after it. */
		uint32_t c = chunk_alloc(d);
		if (c == UINT32_MAX)
			return -ENOMEM;
		struct sc_viommu_map *upper = chunk_maps(d, c);
		memcpy(upper, chunk_maps(d, d->top[p.t].chunk) + half, half * sizeof(*upper));
		memmove(&d->top[p.t + 2], &d->top[p.t + 1], (d->ntop - p.t - 1) * sizeof(d->top[0]));
		d->top[p.t + 1] = (struct sc_viommu_chunk_ref){ .first = upper[0].iova, .chunk = c, .n = half };
		d->top[p.t].n = half;
		sc_store_once(&d->ntop, d->ntop + 1);
		if (p.k > half)
			p = (struct maps_pos){ p.t + 1, p.k - half };
	}
	struct sc_viommu_chunk_ref *r = &d->top[p.t];
	struct sc_viommu_map *maps = chunk_maps(d, r->chunk);
	memmove(maps + p.k + 1, maps + p.k, (r->n - p.k) * sizeof(*maps));
	maps[p.k] = *m;
	r->n++;
	if (p.k == 0)
		r->first = m->iova;
	d->n++;
	return 0;
}

/* Remove the k mappings from p on (sequence count held by the caller). */
static void maps_remove(struct sc_viommu *v, struct sc_viommu_domain *d, struct maps_pos p, uint32_t k)
{
	struct maps_pos q = p;

	for (uint32_t j = 0; j < k; j++, q = maps_next(d, q)) {
		const struct sc_viommu_map *m = maps_at(d, q);
		revoke_range(v, d, m->iova, m->last);
		if (m->dying) {
			d->ndying--;
			v->ndying--;
		}
	}
	d->n -= k;
	/* q is just past them. */
	struct sc_viommu_chunk_ref *a = &d->top[p.t];
	struct sc_viommu_map *maps = chunk_maps(d, a->chunk);
	if (q.t == p.t) {
		/* Inside one chunk, which keeps a mapping after them. */
		memmove(maps + p.k, maps + p.k + k, (a->n - p.k - k) * sizeof(*maps));
		a->n -= k;
		if (p.k == 0)
			a->first = maps[0].iova;
	} else {
		/* The first chunk keeps its head, the last its tail; the chunks between go whole. */
		uint32_t from = p.k ? p.t + 1 : p.t;
		a->n = p.k;
		if (q.k) {
			struct sc_viommu_chunk_ref *b = &d->top[q.t];
			maps = chunk_maps(d, b->chunk);
			memmove(maps, maps + q.k, (b->n - q.k) * sizeof(*maps));
			b->n -= q.k;
			b->first = maps[0].iova;
		}
		top_remove(d, from, q.t - from);
	}
	maps_settle(d, p.t, p.t + 1);
}

/* The checks of a new mapping (sc_viommu_map's errors). */
static int map_check(const struct sc_viommu *v, const struct sc_viommu_domain *d, uint64_t iova, uint64_t last,
		     uint64_t gpa, unsigned perm)
{
	uint64_t gmask = v->granule - 1, gpa_last;

	if (!d)
		return -ENOENT;
	if (last < iova || __builtin_add_overflow(gpa, last - iova, &gpa_last) || d->bypass ||
	    (perm & ~SC_PERM_RW))
		return -EINVAL;
	/* §5.13.6.5: start, end + 1 and phys_start aligned to the granule; inside input_range. */
	if ((iova & gmask) || ((last + 1) & gmask) || (gpa & gmask) ||
	    iova < v->cfg.input_start || last > v->cfg.input_end)
		return -ERANGE;
	return 0;
}

int sc_viommu_map(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		  uint64_t gpa, unsigned perm)
{
	struct sc_viommu_domain *d = domain_find(v, domain, NULL);
	int ret = map_check(v, d, iova, last, gpa, perm);

	if (ret < 0)
		return ret;

	struct maps_span s = maps_overlapping(d, iova, last);
	if (s.k) {
		struct sc_viommu_map *m = s.first;
		/* Optimistic reuse: the very mapping the guest just unmapped comes back for free. */
		if (s.k == 1 && m->dying && m->iova == iova && m->last == last && m->gpa == gpa &&
		    m->perm == perm) {
			m->dying = false;
			d->ndying--;
			v->ndying--;
			v->stats.reused++;
			v->stats.maps++;
			return 0;
		}
		if (s.live)
			return -EEXIST;   /* §5.13.6.5: overlapping a live mapping changes nothing */
		/* Only dying mappings in the way: they go now (the guest unmapped them already). */
		seq_begin(d);
		maps_remove(v, d, s.at, s.k);
		seq_end(d);
		gen_bump(v);
		v->stats.torn_down += s.k;
	}
	if (d->n == v->cfg.max_mappings)
		return -ENOMEM;

	seq_begin(d);
	ret = maps_insert(d, maps_reaching(d, iova),
			  &(struct sc_viommu_map){ .iova = iova, .last = last, .gpa = gpa, .perm = perm });
	seq_end(d);
	if (ret < 0)
		return ret;
	v->stats.maps++;
	return 0;
}

/* Optimistic teardown: every live mapping overlapping [iova, last] starts dying, whole, for window_ns. */
static void start_dying(struct sc_viommu *v, struct sc_viommu_domain *d, uint64_t iova, uint64_t last)
{
	uint64_t deadline = sc_viommu_now_ns() + v->cfg.window_ns;
	struct sc_viommu_map *m;

	for (struct maps_pos p = maps_reaching(d, iova); (m = maps_at(d, p)) && m->iova <= last; p = maps_next(d, p)) {
		if (m->dying)
			continue;
		if (!v->ndying || deadline < v->next_deadline)
			v->next_deadline = deadline;
		m->dying = true;
		m->deadline = deadline;
		d->ndying++;
		v->ndying++;
	}
}

int sc_viommu_unmap(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		    bool *removed)
{
	struct sc_viommu_domain *d = domain_find(v, domain, NULL);

	*removed = false;
	if (!d)
		return -ENOENT;
	if (last < iova)
		return -EINVAL;
	v->stats.unmaps++;
	if (d->bypass)
		return 0;

	struct maps_span s = maps_overlapping(d, iova, last);
	if (!s.k)
		return 0;   /* §5.13.6.6: nothing mapped there is not an error */
	/* §5.13.6.6: a range that would split a mapping removes nothing. */
	if (s.first->iova < iova || s.last->last > last)
		return -ERANGE;

	if (v->cfg.teardown == SC_VIOMMU_OPTIMISTIC) {
		start_dying(v, d, iova, last);
		return 0;
	}
	seq_begin(d);
	maps_remove(v, d, s.at, s.k);
	seq_end(d);
	gen_bump(v);
	*removed = true;
	return 0;
}

/*
 * Remove every mapping of d that overlaps [iova, last], whole. True if a
 * live one went (a dying one the guest gave up already: nothing waits on it).
 */
static bool remove_overlapping(struct sc_viommu *v, struct sc_viommu_domain *d, uint64_t iova, uint64_t last)
{
	struct maps_span s = maps_overlapping(d, iova, last);

	if (!s.k)
		return false;
	seq_begin(d);
	maps_remove(v, d, s.at, s.k);
	seq_end(d);
	gen_bump(v);
	return s.live;
}

/* Invalidate [iova, last] of domain: lazily (optimistic teardown, unless now) or at once. */
static int invalidate(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last, bool now, bool *removed)
{
	struct sc_viommu_domain *d = domain_find(v, domain, NULL);

	*removed = false;
	if (!d)
		return -ENOENT;
	if (last < iova)
		return -EINVAL;
	v->stats.unmaps++;
	if (!now && v->cfg.teardown == SC_VIOMMU_OPTIMISTIC)
		start_dying(v, d, iova, last);
	else
		*removed = remove_overlapping(v, d, iova, last);
	return 0;
}

int sc_viommu_invalidate(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last, bool *removed)
{
	return invalidate(v, domain, iova, last, false, removed);
}

int sc_viommu_remove(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last, bool *removed)
{
	return invalidate(v, domain, iova, last, true, removed);
}

int sc_viommu_update(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		     uint64_t gpa, unsigned perm, bool *removed)
{
	struct sc_viommu_domain *d = domain_find(v, domain, NULL);
	int ret = map_check(v, d, iova, last, gpa, perm);

	*removed = false;
	if (ret < 0)
		return ret;
	const struct sc_viommu_map *m = maps_at(d, maps_reaching(d, iova));
	if (m && m->iova == iova && m->last == last && m->gpa == gpa && m->perm == perm) {
		/* QEMU answers a miss for a page it already sent (two queues missed it): nothing changes. */
		if (!m->dying)
			return 0;
		/* Optimistic: the entry the front end just invalidated comes back as it was (sc_viommu_map revives it). */
		return sc_viommu_map(v, domain, iova, last, gpa, perm);
	}
	*removed = remove_overlapping(v, d, iova, last);
	return sc_viommu_map(v, domain, iova, last, gpa, perm);
}

int sc_viommu_domain_mappings(struct sc_viommu *v, uint32_t domain)
{
	struct sc_viommu_domain *d = domain_find(v, domain, NULL);
	return d ? (int)d->n : -ENOENT;
}

/* Remove the dying mappings of d whose window ended. Returns how many. */
static uint32_t domain_expire(struct sc_viommu *v, struct sc_viommu_domain *d, uint64_t now)
{
	uint32_t w = 0, gone = 0;
	struct sc_viommu_map *m;
	bool due = false;

	for (struct maps_pos p = { 0, 0 }; !due && (m = maps_at(d, p)); p = maps_next(d, p))
		due = m->dying && m->deadline <= now;
	if (!due)
		return 0;
	seq_begin(d);
	/* Each chunk keeps its live mappings in order; emptied chunks leave, thin ones settle. */
	for (uint32_t t = 0; t < d->ntop; t++) {
		struct sc_viommu_chunk_ref *r = &d->top[t];
		struct sc_viommu_map *maps = chunk_maps(d, r->chunk);
		uint32_t k = 0;
		for (uint32_t j = 0; j < r->n; j++) {
			if (maps[j].dying && maps[j].deadline <= now) {
				revoke_range(v, d, maps[j].iova, maps[j].last);
				if (v->cfg.expired)
					v->cfg.expired(v->cfg.expired_arg, d->id, maps[j].iova, maps[j].last, maps[j].gpa);
				gone++;
				continue;
			}
			if (k != j)
				maps[k] = maps[j];
			k++;
		}
		r->n = k;
		if (!k) {
			chunk_free(d, r->chunk);
			continue;
		}
		r->first = maps[0].iova;
		d->top[w++] = *r;
	}
	sc_store_once(&d->ntop, w);
	maps_settle(d, 0, UINT32_MAX);
	d->n -= gone;
	seq_end(d);
	d->ndying -= gone;
	v->ndying -= gone;
	return gone;
}

bool sc_viommu_tick(struct sc_viommu *v, uint64_t now_ns)
{
	/* Scan only when the earliest window has ended: a tick is one compare otherwise. */
	if (v->ndying && now_ns >= v->next_deadline) {
		uint32_t gone = 0;
		uint64_t next = UINT64_MAX;
		for (uint32_t i = 0; i < v->cfg.max_domains; i++) {
			struct sc_viommu_domain *d = v->domains[i];
			if (!d || !d->ndying)
				continue;
			gone += domain_expire(v, d, now_ns);
			const struct sc_viommu_map *m;
			for (struct maps_pos p = { 0, 0 }; (m = maps_at(d, p)); p = maps_next(d, p))
				if (m->dying && m->deadline < next)
					next = m->deadline;
		}
		v->next_deadline = next;
		if (gone) {
			gen_bump(v);
			v->stats.torn_down += gone;
		}
	}
	grace_advance(v);
	return v->ndying || v->grace_active || v->nretire;
}
