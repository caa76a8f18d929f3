/* SPDX-License-Identifier: MIT */
/*
 * The virtio-iommu device (virtio 1.2 §5.13) on a sidecore: a request queue
 * and an event queue, served by one pollq. Every request is copied out of
 * the guest once, checked against the table row for its type (sizes,
 * feature), and only the copy is used. A request that removes translations
 * in strict mode is answered only once no device can use them, neither in
 * a poll round nor in a request still in flight (an epoch flip, a grace
 * period, the old epoch drained), without holding up the queue: it waits
 * in the pending list while later requests go on.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "viommu/viommu_priv.h"

/* Segments one request may have; a longer chain breaks the queue (-ENOBUFS). */
#define REQ_IOV_MAX 8
#define TAIL_BYTES ((uint32_t)sizeof(struct sc_virtio_iommu_req_tail))

/* A request's readable part, copied out of the guest (the largest type fits). */
union req_copy {
	struct sc_virtio_iommu_req_head head;
	struct sc_virtio_iommu_req_attach attach;
	struct sc_virtio_iommu_req_detach detach;
	struct sc_virtio_iommu_req_map map;
	struct sc_virtio_iommu_req_unmap unmap;
	struct sc_virtio_iommu_req_probe probe;
};

/* What a handler decided: the status, and whether the answer waits for a grace period. */
struct req_result {
	uint8_t status;
	bool removed;
};

typedef struct req_result (*req_fn)(struct sc_viommu_dev *d, const union req_copy *r,
				    const struct sc_vq_elem *e);

/* The message table is the handler table: one row per request type. */
struct req_row {
	uint32_t out_bytes;       /* readable bytes the type has, exactly */
	uint32_t feature;         /* SC_VIRTIO_IOMMU_F_* it needs, or UINT32_MAX */
	req_fn fn;
};

static uint8_t status_of(int err)
{
	switch (err) {
	case 0:       return SC_VIRTIO_IOMMU_S_OK;
	case -ENOENT: return SC_VIRTIO_IOMMU_S_NOENT;
	case -ERANGE: return SC_VIRTIO_IOMMU_S_RANGE;
	case -ENOMEM: return SC_VIRTIO_IOMMU_S_NOMEM;
	case -EEXIST:
	case -EINVAL: return SC_VIRTIO_IOMMU_S_INVAL;
	default:      return SC_VIRTIO_IOMMU_S_DEVERR;
	}
}

static bool zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool negotiated(const struct sc_viommu_dev *d, unsigned bit)
{
	return d->features & (1ull << bit);
}

static struct req_result do_attach(struct sc_viommu_dev *d, const union req_copy *r,
				   const struct sc_vq_elem *e)
{
	const struct sc_virtio_iommu_req_attach *a = &r->attach;
	uint32_t known = negotiated(d, SC_VIRTIO_IOMMU_F_BYPASS_CONFIG) ? SC_VIRTIO_IOMMU_ATTACH_F_BYPASS : 0;
	struct req_result res = { 0 };

	/* §5.13.6.3: reserved fields and unknown flags are refused, nothing attached. */
	if (!zero(a->reserved, sizeof(a->reserved)) || (a->flags & ~known)) {
		res.status = SC_VIRTIO_IOMMU_S_INVAL;
		return res;
	}
	res.status = status_of(sc_viommu_attach(d->v, a->domain, a->endpoint,
						a->flags & SC_VIRTIO_IOMMU_ATTACH_F_BYPASS, &res.removed));
	return res;
}

static struct req_result do_detach(struct sc_viommu_dev *d, const union req_copy *r,
				   const struct sc_vq_elem *e)
{
	const struct sc_virtio_iommu_req_detach *a = &r->detach;
	struct req_result res = { 0 };

	if (!zero(a->reserved, sizeof(a->reserved))) {
		res.status = SC_VIRTIO_IOMMU_S_INVAL;
		return res;
	}
	res.status = status_of(sc_viommu_detach(d->v, a->domain, a->endpoint, &res.removed));
	return res;
}

static struct req_result do_map(struct sc_viommu_dev *d, const union req_copy *r,
				const struct sc_vq_elem *e)
{
	const struct sc_virtio_iommu_req_map *m = &r->map;
	struct req_result res = { 0 };
	unsigned perm = ((m->flags & SC_VIRTIO_IOMMU_MAP_F_READ) ? SC_PERM_READ : 0) |
			((m->flags & SC_VIRTIO_IOMMU_MAP_F_WRITE) ? SC_PERM_WRITE : 0);

	/* §5.13.6.5: unknown flags, and MMIO without SC_VIRTIO_IOMMU_F_MMIO (never offered), are invalid. */
	if (m->flags & ~(SC_VIRTIO_IOMMU_MAP_F_READ | SC_VIRTIO_IOMMU_MAP_F_WRITE)) {
		res.status = SC_VIRTIO_IOMMU_S_INVAL;
		return res;
	}
	res.status = status_of(sc_viommu_map(d->v, m->domain, m->virt_start, m->virt_end,
					     m->phys_start, perm));
	return res;
}

static struct req_result do_unmap(struct sc_viommu_dev *d, const union req_copy *r,
				  const struct sc_vq_elem *e)
{
	const struct sc_virtio_iommu_req_unmap *u = &r->unmap;
	struct req_result res = { 0 };

	if (!zero(u->reserved, sizeof(u->reserved))) {
		res.status = SC_VIRTIO_IOMMU_S_INVAL;
		return res;
	}
	res.status = status_of(sc_viommu_unmap(d->v, u->domain, u->virt_start, u->virt_end,
					       &res.removed));
	return res;
}

static struct req_result do_probe(struct sc_viommu_dev *d, const union req_copy *r,
				  const struct sc_vq_elem *e)
{
	const struct sc_virtio_iommu_req_probe *p = &r->probe;
	const struct sc_viommu_config *cfg = &d->v->cfg;
	struct req_result res = { 0 };
	uint8_t props[SC_VIOMMU_PROBE_SIZE] = { 0 };

	if (!zero(p->reserved, sizeof(p->reserved))) {
		res.status = SC_VIRTIO_IOMMU_S_INVAL;
		return res;
	}
	bool known = false;
	for (uint32_t i = 0; i < d->v->neps && !known; i++)
		known = d->v->eps[i].id == p->endpoint;
	if (!known) {
		res.status = SC_VIRTIO_IOMMU_S_NOENT;
		return res;
	}
	/* §5.13.6.8.2: the MSI doorbell is reserved; the rest of the buffer stays zero (PROBE_T_NONE ends the list). */
	struct sc_virtio_iommu_probe_resv_mem msi = {
		.head = { .type = SC_VIRTIO_IOMMU_PROBE_T_RESV_MEM,
			  .length = sizeof(msi) - sizeof(msi.head) },
		.subtype = SC_VIRTIO_IOMMU_RESV_MEM_T_MSI,
		.start = cfg->msi_start,
		.end = cfg->msi_end,
	};
	memcpy(props, &msi, sizeof(msi));
	sc_iov_copy_to(e->iov + e->out_num, e->in_num, 0, props, sizeof(props));
	return res;
}

static const struct req_row req_table[] = {
	[SC_VIRTIO_IOMMU_T_ATTACH] = { offsetof(struct sc_virtio_iommu_req_attach, tail), UINT32_MAX, do_attach },
	[SC_VIRTIO_IOMMU_T_DETACH] = { offsetof(struct sc_virtio_iommu_req_detach, tail), UINT32_MAX, do_detach },
	[SC_VIRTIO_IOMMU_T_MAP]    = { offsetof(struct sc_virtio_iommu_req_map, tail), SC_VIRTIO_IOMMU_F_MAP_UNMAP, do_map },
	[SC_VIRTIO_IOMMU_T_UNMAP]  = { offsetof(struct sc_virtio_iommu_req_unmap, tail), SC_VIRTIO_IOMMU_F_MAP_UNMAP, do_unmap },
	[SC_VIRTIO_IOMMU_T_PROBE]  = { sizeof(struct sc_virtio_iommu_req_probe), SC_VIRTIO_IOMMU_F_PROBE, do_probe },
};

/* Writable bytes a request of type has: its properties (PROBE) and the tail. */
static uint32_t in_bytes(uint8_t type)
{
	return type == SC_VIRTIO_IOMMU_T_PROBE ? SC_VIOMMU_PROBE_SIZE + TAIL_BYTES : TAIL_BYTES;
}

/* How a served request is completed: now, or once strict removal number `removal` is safe. */
struct served {
	uint32_t len;
	bool held;
	uint64_t removal;
};

static struct served serve(struct sc_viommu_dev *d, const struct sc_vq_elem *e)
{
	union req_copy r;
	struct req_result res = { .status = SC_VIRTIO_IOMMU_S_INVAL };
	const struct req_row *row = NULL;
	struct served out = { .len = TAIL_BYTES };

	d->stats.requests++;
	/* The tail is the last 4 writable bytes; without them there is nowhere to answer. */
	if (e->in_len < TAIL_BYTES) {
		d->stats.bad_requests++;
		out.len = 0;
		return out;
	}
	if (e->out_len >= sizeof(r.head)) {
		memset(&r, 0, sizeof(r));
		/* Copy, then check, then use: the guest may rewrite its request while we look. */
		sc_iov_copy_from(e->iov, e->out_num, 0, &r,
				 e->out_len < sizeof(r) ? e->out_len : sizeof(r));
		sc_barrier();
		if (r.head.type < SC_ARRAY_SIZE(req_table) && req_table[r.head.type].fn)
			row = &req_table[r.head.type];
	}
	if (e->out_len < sizeof(r.head)) {
		d->stats.bad_requests++;
	} else if (!row || (row->feature != UINT32_MAX && !negotiated(d, row->feature))) {
		/* §5.13.6: an unknown type, or one whose feature was not negotiated. */
		d->stats.unsupported++;
		res.status = SC_VIRTIO_IOMMU_S_UNSUPP;
	} else if (e->out_len != row->out_bytes || e->in_len != in_bytes(r.head.type)) {
		d->stats.bad_requests++;
	} else {
		res = row->fn(d, &r, e);
		if (res.status != SC_VIRTIO_IOMMU_S_OK)
			d->stats.bad_requests++;
		else if (r.head.type == SC_VIRTIO_IOMMU_T_PROBE)
			out.len = e->in_len;   /* the properties and the tail */
	}

	struct sc_virtio_iommu_req_tail tail = { .status = res.status };
	sc_iov_copy_to(e->iov + e->out_num, e->in_num, e->in_len - TAIL_BYTES, &tail, sizeof(tail));
	if (res.removed && d->v->cfg.teardown == SC_VIOMMU_STRICT) {
		/* Strict: the guest may reuse the memory once it sees this answer, so it waits until no device can reach it. */
		out.held = true;
		out.removal = ++d->removals;
		d->stats.deferred++;
	}
	return out;
}

/*
 * Move the strict removals on: a flip whose grace period ended and whose
 * old epoch drained makes what it covers safe; then, if removals wait, a
 * new flip covers them all. Never waits: a round looks again.
 */
static void removals_advance(struct sc_viommu_dev *d)
{
	for (;;) {
		if (d->flipping) {
			if (!sc_viommu_grace_done(d->v, d->flip_ticket) || !sc_viommu_epochs_drained(d->v))
				return;
			d->flipping = false;
			d->safe = d->flip_covers;
		}
		if (d->safe == d->removals)
			return;
		/* The removals were made on this thread before the flip: it covers them all. */
		sc_viommu_epochs_flip(d->v);
		d->flip_covers = d->removals;
		d->flip_ticket = sc_viommu_grace_start(d->v);
		d->flipping = true;   /* with nothing in a round or in flight, safe at the next pass */
	}
}

/* Complete held answers whose removal is safe (in order: removals only grow). */
static unsigned complete_held(struct sc_viommu_dev *d)
{
	unsigned k = 0;

	if (d->npending)
		removals_advance(d);
	while (k < d->npending && d->pending[k].removal <= d->safe) {
		sc_vq_push(&d->req, d->pending[k].head, d->pending[k].len);
		k++;
	}
	if (k) {
		memmove(d->pending, d->pending + k, (d->npending - k) * sizeof(*d->pending));
		d->npending -= k;
	}
	return k;
}

/* Write queued faults into eventq buffers; with none free, the fault is counted and dropped. */
static unsigned deliver_faults(struct sc_viommu_dev *d, unsigned budget)
{
	struct iovec iov[REQ_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = REQ_IOV_MAX };
	struct sc_viommu_fault f;
	unsigned n = 0;

	while (n < budget && sc_viommu_fault_pop(d->v, &f)) {
		n++;
		int ret = sc_vq_pop(&d->evt, &e);
		if (ret <= 0) {
			d->stats.events_dropped++;   /* empty or broken eventq: never wait for the guest */
			continue;
		}
		if (e.in_len < sizeof(struct sc_virtio_iommu_fault)) {
			d->stats.events_dropped++;
			sc_vq_push(&d->evt, e.head, 0);
			continue;
		}
		struct sc_virtio_iommu_fault ev = {
			.reason = f.reason, .flags = f.flags, .endpoint = f.endpoint, .address = f.address,
		};
		sc_iov_copy_to(e.iov + e.out_num, e.in_num, 0, &ev, sizeof(ev));
		sc_vq_push(&d->evt, e.head, sizeof(ev));
		d->stats.events++;
	}
	return n;
}

int sc_viommu_dev_poll(struct sc_viommu_dev *d, unsigned budget)
{
	struct iovec iov[REQ_IOV_MAX];
	struct sc_vq_elem e = { .iov = iov, .iov_max = REQ_IOV_MAX };
	unsigned served = 0, done = 0;
	int ret = 0;

	while (served < budget) {
		ret = sc_vq_pop(&d->req, &e);
		if (ret <= 0)
			break;
		served++;
		struct served s = serve(d, &e);
		if (!s.held) {
			sc_vq_push(&d->req, e.head, s.len);
			done++;
			continue;
		}
		/* Each held head is one the driver gave us; more than the queue holds means it reused a head. */
		if (d->npending == d->pending_cap) {
			sc_vq_set_broken(&d->req, -EPROTO, "virtio-iommu requestq: more than %u requests in flight (a head was reused)",
					 d->pending_cap);
			ret = -EPROTO;
			break;
		}
		d->pending[d->npending++] = (struct sc_viommu_pending){ .head = e.head, .len = s.len,
									 .removal = s.removal };
	}
	unsigned held_done = complete_held(d);
	if (done + held_done)
		sc_vq_flush(&d->req);
	if (deliver_faults(d, budget))
		sc_vq_flush(&d->evt);
	/* Teardown and grace periods move on every round; the clock is read only while they wait. */
	if (d->v->ndying || d->v->grace_active || d->v->nretire)
		sc_viommu_tick(d->v, sc_viommu_now_ns());
	return ret < 0 ? ret : (int)(served + held_done);
}

static int pq_poll(struct sc_pollq *q, unsigned budget)
{
	return sc_viommu_dev_poll(q->ctx, budget);
}

static bool pq_notify_enable(struct sc_pollq *q)
{
	struct sc_viommu_dev *d = q->ctx;
	bool work = sc_vq_notify_enable(&d->req);

	/* Held answers and dying mappings need rounds: sleeping would stretch the window. */
	return work || d->npending || sc_viommu_tick(d->v, sc_viommu_now_ns());
}

static void pq_notify_disable(struct sc_pollq *q)
{
	sc_vq_notify_disable(&((struct sc_viommu_dev *)q->ctx)->req);
}

static const struct sc_pollq_ops viommu_pollq_ops = {
	.poll = pq_poll,
	.notify_enable = pq_notify_enable,
	.notify_disable = pq_notify_disable,
};

void sc_viommu_dev_config(const struct sc_viommu *v, struct sc_virtio_iommu_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->page_size_mask = v->cfg.page_size_mask;
	cfg->input_range.start = v->cfg.input_start;
	cfg->input_range.end = v->cfg.input_end;
	cfg->domain_range.start = v->cfg.domain_start;
	cfg->domain_range.end = v->cfg.domain_end;
	cfg->probe_size = SC_VIOMMU_PROBE_SIZE;
	cfg->bypass = v->cfg.bypass;
}

int sc_viommu_dev_init(struct sc_viommu_dev *d, struct sc_viommu *v, uint64_t features,
		       const struct sc_vq_config *req, const struct sc_vq_config *evt)
{
	int ret;

	memset(d, 0, sizeof(*d));
	if (features & ~SC_VIOMMU_FEATURES)
		return -EINVAL;
	d->v = v;
	d->features = features;
	ret = sc_vq_init(&d->req, req);
	if (ret < 0)
		return ret;
	ret = sc_vq_init(&d->evt, evt);
	if (ret < 0)
		goto err_req;
	d->pending_cap = req->size;
	d->pending = calloc(d->pending_cap, sizeof(*d->pending));
	if (!d->pending) {
		ret = -ENOMEM;
		goto err_evt;
	}
	/* §5.13.6.2: config.bypass rules with BYPASS_CONFIG, else the legacy BYPASS feature does. */
	bool bypass = negotiated(d, SC_VIRTIO_IOMMU_F_BYPASS_CONFIG) ? v->cfg.bypass
							       : negotiated(d, SC_VIRTIO_IOMMU_F_BYPASS);
	sc_store_release(&v->bypass, bypass);
	d->pq = (struct sc_pollq){ .ops = &viommu_pollq_ops, .ctx = d, .kick_fd = req->kick_fd,
				   .name = "virtio-iommu" };
	return 0;

err_evt:
	sc_vq_fini(&d->evt);
err_req:
	sc_vq_fini(&d->req);
	return ret;
}

void sc_viommu_dev_fini(struct sc_viommu_dev *d)
{
	free(d->pending);
	d->pending = NULL;
	sc_vq_fini(&d->evt);
	sc_vq_fini(&d->req);
}
