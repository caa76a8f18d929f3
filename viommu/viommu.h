/* SPDX-License-Identifier: MIT */
/*
 * viommu: IOVA translation on the sidecore (the vIOMMU).
 *
 * A struct sc_viommu is one VM's IOMMU: endpoints (devices, by the id the
 * VMM gave them) attach to domains; a domain maps IOVA ranges to guest
 * physical ranges with read/write permission. Devices translate through a
 * struct sc_viommu_tc (one per queue: a small translation cache and the
 * queue's quiescent-state slot), whose sc_xlate hook vqueue calls.
 *
 * Threads. One "writer" changes domains and mappings: the sidecore that
 * serves the virtio-iommu request queue (or, with no such queue, the
 * control thread). Any number of device sidecores translate at the same
 * time without a lock: a domain's sorted mapping table is read under a
 * sequence count (retry on a concurrent change), and whatever the writer
 * removes (a mapping, a domain) is unreachable from a device only after
 * every translation context that was inside a poll round when it was
 * removed has left it (a quiescent-state grace period, no lock on the
 * hot path). In strict mode an UNMAP completes to the guest only then; in
 * optimistic mode it completes at once and the mapping lives on for a
 * bounded window, ready to be reused by an identical MAP.
 *
 * Errors: 0 or a negative errno; guest requests get the virtio-iommu
 * status the spec names (sc_viommu_map & co. return them as -errno and the
 * device turns them into statuses, see viommu/device.c).
 */
#ifndef SC_VIOMMU_H
#define SC_VIOMMU_H

#include <stdbool.h>
#include <stdint.h>

#include "guestmem/guestmem.h"
#include "polling/polling.h"
#include "spec/sc_virtio_iommu.h"
#include "vqueue/vqueue.h"

/* Translation contexts (device queues) one VM's IOMMU can serve at once. */
#define SC_VIOMMU_MAX_TC 64
/* Entries of a context's translation cache (direct-mapped by IOVA page). */
#define SC_VIOMMU_TC_WAYS 4
/* Faults a context can hold until the eventq takes them. */
#define SC_VIOMMU_FAULT_RING 16
/* IOVA ranges a context can pin (a split ring's three parts). */
#define SC_VIOMMU_MAX_PINS 3

enum sc_viommu_teardown {
	SC_VIOMMU_STRICT,      /* UNMAP completes once no device can use the mapping */
	SC_VIOMMU_OPTIMISTIC,  /* UNMAP completes at once; torn down within window_ns */
};

struct sc_viommu_config {
	struct sc_mem *mem;          /* guest memory: GPA -> host (required) */
	uint32_t max_domains;        /* domains alive at once (default 256) */
	uint32_t max_mappings;       /* mappings per domain (default 65536) */
	uint32_t max_endpoints;      /* endpoints sc_viommu_endpoint_add may declare (default 64) */
	uint64_t page_size_mask;     /* §5.13.4; default every power of two ≥ 4 KiB */
	uint64_t input_start, input_end;   /* IOVA range, inclusive (default all 64 bits) */
	uint32_t domain_start, domain_end; /* domain ids, inclusive (default 0..UINT32_MAX) */
	bool bypass;                 /* unattached endpoints bypass translation (config.bypass) */
	enum sc_viommu_teardown teardown;
	uint64_t window_ns;          /* optimistic teardown window (default 2 ms) */
	uint64_t msi_start, msi_end; /* reserved MSI doorbell range PROBE reports (default x86 0xfee00000..0xfeefffff) */
	/*
	 * Optional (default NULL): told of each dying mapping sc_viommu_tick
	 * tears down as its window ends, on the writer's thread, before the
	 * tick returns; it must not call into the viommu. Only expiries are
	 * told: what the writer removes itself it knows already.
	 */
	void (*expired)(void *arg, uint32_t domain, uint64_t iova, uint64_t last, uint64_t gpa);
	void *expired_arg;
};

/* Fill cfg with the defaults above for guest memory mem. */
void sc_viommu_config_default(struct sc_viommu_config *cfg, struct sc_mem *mem);

/* A fault as the eventq reports it (§5.13.6.9). */
struct sc_viommu_fault {
	uint8_t reason;      /* SC_VIRTIO_IOMMU_FAULT_R_* */
	uint32_t flags;      /* SC_VIRTIO_IOMMU_FAULT_F_* */
	uint32_t endpoint;
	uint64_t address;
};

/* Counters (uint64_t only), written by the writer; read with sc_viommu_get_stats. */
struct sc_viommu_stats {
	uint64_t maps, unmaps, attaches, detaches;
	uint64_t reused;          /* optimistic: an identical MAP revived a dying mapping */
	uint64_t torn_down;       /* optimistic: dying mappings removed after their window */
	uint64_t grace_periods;   /* completed */
	uint64_t faults_dropped;  /* lost: a context's fault ring or the eventq was full */
};

struct sc_viommu_domain;
struct sc_viommu;

/* Per-context state the writer reads; owned by the viommu (never freed under it). */
struct sc_viommu_slot {
	uint64_t qs;              /* odd while the context is inside a poll round */
	bool used;
	bool revoked;             /* set by the writer: a pinned range lost its mapping */
	uint32_t ep;              /* endpoint index */
	uint32_t npins;           /* published (release) after pins[] */
	struct { uint64_t iova, last; } pins[SC_VIOMMU_MAX_PINS];
	struct sc_vq_epochs epochs;   /* requests in flight per epoch (sc_vq_config.epochs) */
	uint32_t fault_head;      /* written by the context (producer) */
	uint32_t fault_tail;      /* written by the writer (consumer) */
	uint64_t faults_dropped;  /* written by the context */
	struct sc_viommu_fault faults[SC_VIOMMU_FAULT_RING];
} __attribute__((aligned(64)));

/* One cached mapping. */
struct sc_viommu_tce {
	uint64_t iova, last;      /* inclusive range */
	uint64_t gpa;             /* of iova */
	uint64_t gen;             /* sc_viommu gen it was valid at; 0 = empty */
	unsigned perm;
};

/*
 * A translation context: one device queue's view of one endpoint. Used by
 * that queue's sidecore only (after init).
 */
struct sc_viommu_tc {
	struct sc_viommu *v;
	struct sc_viommu_slot *slot;
	uint32_t ep;              /* index of the endpoint */
	struct sc_viommu_tce cache[SC_VIOMMU_TC_WAYS];
	uint64_t hits, misses, faults;
	bool revoke_reported;
	/* the wrapper pollq (sc_viommu_tc_wrap) */
	struct sc_pollq pq;
	struct sc_pollq *inner;
	/* IOTLB mode (sc_viommu_tc_iotlb): misses go to the front end */
	bool iotlb;
	bool rings_lost;          /* the rings' translation was invalidated: remap before use */
	bool miss_pending, miss_sent;
	unsigned miss_perm;
	uint64_t miss_iova;       /* page of the pending miss */
	uint64_t miss_since_ns, miss_timeout_ns;
	int (*miss_fn)(void *ctx, uint64_t iova, unsigned perm);
	void *miss_ctx;
	struct sc_vq *vq;
	uint64_t misses_sent;
};

/*
 * Create a VM's IOMMU. Returns 0 and *out, -EINVAL for a bad config (no
 * memory table, a page_size_mask without 4 KiB or larger pages, an empty
 * range, max_mappings above 2^24), -ENOMEM. Control thread.
 */
int sc_viommu_create(const struct sc_viommu_config *cfg, struct sc_viommu **out);

/* Free everything. No context may be in use. Control thread. */
void sc_viommu_destroy(struct sc_viommu *v);

/*
 * Declare endpoint id (the VMM's device id). Returns 0, -EEXIST, or
 * -ENOSPC past max_endpoints. Control thread, before the guest runs.
 */
int sc_viommu_endpoint_add(struct sc_viommu *v, uint32_t id);

/*
 * Set up tc for endpoint id. Returns 0, -ENOENT for an unknown endpoint,
 * -ENOSPC if SC_VIOMMU_MAX_TC contexts exist. Control thread.
 */
int sc_viommu_tc_init(struct sc_viommu *v, struct sc_viommu_tc *tc, uint32_t endpoint);

/* Release tc's slot. Its queue must be detached from its poller. Control thread. */
void sc_viommu_tc_fini(struct sc_viommu_tc *tc);

/* The hook to put in sc_vq_config.xlate for tc's queue. */
struct sc_xlate sc_viommu_tc_xlate(struct sc_viommu_tc *tc);

/*
 * The translate function (sc_xlate_fn) with ctx = tc: IOVA -> GPA through
 * the endpoint's domain (or identity in bypass), then GPA -> host through
 * guest memory, split at mapping and region boundaries. Returns the
 * segment count; -EFAULT if a byte has no mapping (or the range wraps),
 * -EPERM if a mapping lacks perm, -ENOBUFS for more than iov_max segments.
 * A miss or a permission fault also queues a fault for the eventq.
 * tc's sidecore, between sc_viommu_tc_enter and sc_viommu_tc_exit. That
 * includes sc_vq_init, which translates the rings on the control thread:
 * bracket it too (before the queue is attached, the control thread is the
 * context's only user), or a concurrent DETACH could free the domain
 * under it.
 */
int sc_viommu_translate(void *tc, uint64_t iova, uint64_t len, unsigned perm,
			struct iovec *iov, unsigned iov_max);

/*
 * Bracket a poll round of tc's queue: enter before the first translation,
 * exit after the last use of what was translated (the device's DMA for
 * this round is done). A removal completes only after every context that
 * was inside a round has exited it. One full barrier per enter; no lock.
 * tc's sidecore only.
 */
void sc_viommu_tc_enter(struct sc_viommu_tc *tc);
void sc_viommu_tc_exit(struct sc_viommu_tc *tc);

/*
 * Pin the rings of the queue cfg describes (after sc_vq_init succeeded,
 * before the queue is attached). vqueue translates ring addresses once
 * and keeps the host pointers, so a translation cache cannot be dropped
 * for them: instead, when a pinned range loses its mapping (UNMAP,
 * teardown, DETACH, or the endpoint moving to another domain) the context
 * is revoked and its wrapped pollq fails from its next round on (-EFAULT:
 * the poller stops polling it, and a fault event names the ring). A strict
 * UNMAP is answered only after that round boundary, as for any mapping.
 * Returns 0, or -EINVAL for a ring size that is not a power of two.
 * Control thread.
 */
int sc_viommu_tc_pin_rings(struct sc_viommu_tc *tc, const struct sc_vq_config *cfg);

/* True once a pinned range of tc lost its mapping. Any thread. */
bool sc_viommu_tc_revoked(const struct sc_viommu_tc *tc);

/*
 * Wrap the device queue inner (e.g. &nullblk->pq) so that each of its poll
 * rounds is bracketed by enter/exit, and a revoked context stops (see
 * sc_viommu_tc_pin_rings); attach the returned pollq to the poller instead
 * of inner. This is the one call devices need: polling/ itself needs no
 * change. A device that lets DMA run past its poll round (io_uring) sets
 * its queue's sc_vq_config.epochs to &tc->slot->epochs: a strict removal
 * (sc_viommu_dev) then waits for its requests in flight, not only for
 * its rounds.
 */
struct sc_pollq *sc_viommu_tc_wrap(struct sc_viommu_tc *tc, struct sc_pollq *inner);

/*
 * IOTLB mode (vhost-user's IOMMU support: the front end is the IOMMU and
 * fills the table on demand). A translation that finds no mapping does not
 * fault: it reports a miss through fn(ctx, page, perm) (once per page
 * until it is answered or times out; fn returns 0 when the miss went out,
 * or -errno to be called again next time) and returns -EAGAIN, which
 * sc_vq_pop passes up without consuming the chain. Call after
 * sc_viommu_tc_init, on the control thread; the endpoint must be
 * attached to a (non-bypass) domain. fn runs on whichever thread
 * translates: the control thread while it checks rings, then the sidecore.
 */
void sc_viommu_tc_iotlb(struct sc_viommu_tc *tc, int (*fn)(void *ctx, uint64_t iova, unsigned perm),
			void *ctx, uint64_t timeout_ns);

/*
 * sc_viommu_tc_wrap for a queue in IOTLB mode whose vqueue is vq (its
 * rings pinned with sc_viommu_tc_pin_rings, its sc_vq_config.epochs
 * &tc->slot->epochs). Differences: a pinned ring whose mapping is
 * invalidated is translated again at its next round (missing, if need be)
 * instead of failing the queue; a miss (-EAGAIN) is a round without work,
 * not an error; guest notifications are re-armed and silenced inside a
 * bracketed round too (they write the rings); and a miss the front end
 * leaves unanswered for timeout_ns breaks the queue (-ETIMEDOUT, with the
 * IOVA in its reason). io_uring devices may use it: invalidations wait for
 * the requests themselves (sc_viommu_epochs_flip), not only the rounds.
 */
struct sc_pollq *sc_viommu_tc_wrap_iotlb(struct sc_viommu_tc *tc, struct sc_pollq *inner, struct sc_vq *vq);

/* ---- the writer's side (the request queue's sidecore, or the control thread) ---- */

/*
 * Attach endpoint id to domain (created on first attach); bypass: the
 * domain is a bypass domain (identity, ATTACH_F_BYPASS). An endpoint
 * attached elsewhere moves. Returns 0, -ENOENT (unknown endpoint), -ERANGE
 * (domain outside domain_range), -EINVAL (bypass flag differs from the
 * existing domain's), -ENOMEM (max_domains reached). *removed is set if
 * translations went away (the caller must then wait for a grace period to
 * report completion in strict mode).
 */
int sc_viommu_attach(struct sc_viommu *v, uint32_t domain, uint32_t endpoint, bool bypass,
		     bool *removed);

/* Detach endpoint from domain. -ENOENT (unknown endpoint or domain), -EINVAL (not attached there). */
int sc_viommu_detach(struct sc_viommu *v, uint32_t domain, uint32_t endpoint, bool *removed);

/*
 * Map [iova, last] to gpa with perm (SC_PERM_*) in domain. Returns 0,
 * -ENOENT (no domain), -ERANGE (outside input_range, or not aligned to the
 * page granule), -EINVAL (last < iova, gpa range wraps, bypass domain),
 * -EEXIST (overlaps a mapping), -ENOMEM (max_mappings reached). In
 * optimistic mode an identical dying mapping is revived instead.
 */
int sc_viommu_map(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		  uint64_t gpa, unsigned perm);

/*
 * Remove every mapping inside [iova, last] of domain. Returns 0, -ENOENT
 * (no domain), -EINVAL (last < iova), -ERANGE (the range would split a
 * mapping: nothing is removed). *removed as for attach (in optimistic mode
 * the mappings only start dying: *removed stays false).
 */
int sc_viommu_unmap(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		    bool *removed);

/*
 * IOTLB UPDATE: map [iova, last] to gpa with perm in domain, replacing any
 * mapping it overlaps (an identical one stays as it is, and an identical
 * dying one lives again). Errors as sc_viommu_map (-ENOMEM: max_mappings
 * reached); *removed as for unmap, set only if a live mapping was replaced
 * (a dying one was given up by the guest already).
 */
int sc_viommu_update(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last,
		     uint64_t gpa, unsigned perm, bool *removed);

/*
 * IOTLB INVALIDATE: remove every mapping of domain that overlaps [iova,
 * last], whole (a device IOTLB drops entries, it does not split them).
 * Returns 0, -ENOENT (no domain), -EINVAL (last < iova). *removed as for
 * unmap: in optimistic mode the mappings only start dying (torn down by
 * sc_viommu_tick after window_ns, revived by an identical UPDATE).
 */
int sc_viommu_invalidate(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last, bool *removed);

/*
 * sc_viommu_invalidate as in strict mode whatever the teardown: every
 * mapping of domain that overlaps [iova, last], dying or not, goes now
 * (the memory behind it is leaving). Returns as sc_viommu_invalidate;
 * *removed is set if a live mapping went.
 */
int sc_viommu_remove(struct sc_viommu *v, uint32_t domain, uint64_t iova, uint64_t last, bool *removed);

/*
 * Requests translated before a removal can outlive its grace period (a
 * device whose I/O runs past its round). Completing an invalidation for
 * them takes: sc_viommu_epochs_flip after the removal (a request reads
 * its epoch before it translates: one that counts in the new epoch sees
 * the removal), a grace period (no round still uses the old translation
 * outside a request, e.g. a ring), then every context's
 * sc_viommu_tc_drained (the old epoch's requests are pushed). Writer.
 */
void sc_viommu_epochs_flip(struct sc_viommu *v);

/* Has every context's queue pushed the requests it counted before the last flip? Writer. */
bool sc_viommu_epochs_drained(const struct sc_viommu *v);

/* Has every request tc's queue counted before the last flip been pushed? Writer. */
bool sc_viommu_tc_drained(const struct sc_viommu_tc *tc);

/*
 * Start a grace period now (if none runs) and return its ticket: the
 * removals made so far are unreachable once sc_viommu_grace_done(ticket).
 */
uint64_t sc_viommu_grace_start(struct sc_viommu *v);

/* Has the grace period of ticket ended? Never blocks; advances the state. */
bool sc_viommu_grace_done(struct sc_viommu *v, uint64_t ticket);

/*
 * Housekeeping the writer calls each round: end grace periods, free what
 * they protected, tear down dying mappings whose window ended (now_ns from
 * CLOCK_MONOTONIC). Returns true while dying mappings or a grace period
 * remain (the writer must not sleep then, or the window would stretch).
 */
bool sc_viommu_tick(struct sc_viommu *v, uint64_t now_ns);

/* Take one queued fault (any context's). Returns true and *f, or false. Writer. */
bool sc_viommu_fault_pop(struct sc_viommu *v, struct sc_viommu_fault *f);

/* Mappings domain holds now (dying ones included), or -ENOENT. Writer. */
int sc_viommu_domain_mappings(struct sc_viommu *v, uint32_t domain);

/* A copy of the counters, from any thread (each read tear-free, not all at one instant). */
void sc_viommu_get_stats(struct sc_viommu *v, struct sc_viommu_stats *st);

/* The config the IOMMU was created with (defaults applied). */
const struct sc_viommu_config *sc_viommu_get_config(const struct sc_viommu *v);

/* ---- the virtio-iommu device (virtio 1.2 §5.13) ---- */

/* Features the device offers. */
#define SC_VIOMMU_FEATURES ((1ull << SC_VIRTIO_IOMMU_F_INPUT_RANGE) | (1ull << SC_VIRTIO_IOMMU_F_DOMAIN_RANGE) | \
			    (1ull << SC_VIRTIO_IOMMU_F_MAP_UNMAP) | (1ull << SC_VIRTIO_IOMMU_F_BYPASS) | \
			    (1ull << SC_VIRTIO_IOMMU_F_PROBE) | (1ull << SC_VIRTIO_IOMMU_F_BYPASS_CONFIG) | \
			    (1ull << SC_VIRTIO_F_VERSION_1))

/* PROBE buffer bytes the device asks for (config.probe_size). */
#define SC_VIOMMU_PROBE_SIZE 64

/* Pending completions (strict UNMAP/DETACH) the device can hold: its queue size at most. */
struct sc_viommu_pending {
	uint16_t head;
	uint32_t len;
	uint64_t removal;         /* its number among the strict removals (sc_viommu_dev.removals) */
};

struct sc_viommu_dev_stats {
	uint64_t requests, bad_requests, unsupported;
	uint64_t deferred;        /* completions held for a grace period */
	uint64_t events;          /* faults written to the eventq */
	uint64_t events_dropped;  /* faults with no eventq buffer */
};

struct sc_viommu_dev {
	struct sc_viommu *v;
	struct sc_vq req, evt;
	struct sc_pollq pq;       /* attach this to the poller: serves both queues */
	uint64_t features;        /* negotiated */
	struct sc_viommu_pending *pending;
	uint32_t npending, pending_cap;
	/*
	 * Strict removals, numbered; a held answer goes once its removal is
	 * safe: an epoch flip after it, that flip's grace period, and the old
	 * epoch's requests pushed (sc_viommu_epochs_flip). One flip at a time.
	 */
	uint64_t removals, safe;  /* made; safe up to */
	uint64_t flip_covers;     /* removals the flip in progress covers */
	uint64_t flip_ticket;
	bool flipping;
	struct sc_viommu_dev_stats stats;
};

/* The config space the driver reads. */
void sc_viommu_dev_config(const struct sc_viommu *v, struct sc_virtio_iommu_config *cfg);

/*
 * Set up the device on its request queue (req) and event queue (evt)
 * rings, features negotiated (a subset of SC_VIOMMU_FEATURES, checked
 * against SC_VIOMMU_FEATURES). The pollq's kick fd is the request queue's.
 * Returns 0, -EINVAL (features not offered), -ENOMEM, or sc_vq_init's
 * error. Control thread.
 */
int sc_viommu_dev_init(struct sc_viommu_dev *d, struct sc_viommu *v, uint64_t features,
		       const struct sc_vq_config *req, const struct sc_vq_config *evt);

void sc_viommu_dev_fini(struct sc_viommu_dev *d);

/*
 * Serve up to budget requests, complete held ones whose grace period
 * ended, deliver queued faults, tear down expired mappings. Returns the
 * work done, or the request queue's -errno once it is broken. The
 * viommu's writer: one sidecore.
 */
int sc_viommu_dev_poll(struct sc_viommu_dev *d, unsigned budget);

#endif
