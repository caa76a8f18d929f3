/* SPDX-License-Identifier: MIT */
/*
 * vu_server: the back end of one vhost-user socket (QEMU's
 * docs/interop/vhost-user.rst). It listens, takes one front end at a time,
 * keeps the device's state (features, guest memory, vrings), and runs a
 * vring on a sidecore whenever it is fully described (size, addresses,
 * kick fd, enabled when protocol features are on) and its rings lie in
 * mapped memory; every message re-evaluates that. GET_VRING_BASE, a reset,
 * a new memory table or inflight area and a disconnect first stop the
 * vrings they concern: the device detaches each from its sidecore and waits
 * until the sidecore let go.
 *
 * The front end is untrusted: a message must arrive whole, and a reply be
 * read, within the control timeout, or the connection is dropped; its fds
 * must be eventfds and sealed memfds (or files) of the size they claim. A
 * connection that has started no ring within the timeout gives way to a
 * newer one. Nothing a front end does blocks another server.
 *
 * Threads: each server has its own control thread (sc_vu_server_start);
 * the device's ops run on it. A thread per device rather than one event
 * loop for all: stopping a ring waits for the sidecore and for the
 * device's in-flight I/O, and that wait must cost only this device. Every
 * wait on the peer has a deadline and wakes at once on
 * sc_vu_server_destroy (called from another thread).
 */
#ifndef SC_RUNTIME_VU_SERVER_H
#define SC_RUNTIME_VU_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "spec/sc_vhost_user.h"
#include "vqueue/vqueue.h"

struct sc_viommu_tc;

#define SC_VU_MAX_VRINGS 64
#define SC_VU_CONTROL_TIMEOUT_MS 5000   /* default control timeout ([sidecore] control_timeout_ms) */
#define SC_VU_F_PROTOCOL_FEATURES 30   /* VHOST_USER_F_PROTOCOL_FEATURES */
/*
 * SC_VIRTIO_F_ACCESS_PLATFORM: always offered. Once the front end sets it,
 * ring and buffer addresses are IOVAs, translated through the IOTLB the
 * front end fills (IOTLB_MSG UPDATE, on our MISS over the back-end channel).
 */
#define SC_VU_F_ACCESS_PLATFORM 33
#define SC_VU_IOTLB_MAX 65536          /* IOTLB entries per device, and the most the ops may allow */
#define SC_VU_IOTLB_MISS_MS 3000       /* a miss unanswered this long breaks its queue */

/* What a device behind the socket provides. Called on the control thread. */
struct sc_vu_device_ops {
	uint64_t features;         /* virtio feature bits offered */
	unsigned num_queues;
	/* GET_QUEUE_NUM's answer; 0 means num_queues. virtio-net answers its queue pairs, as QEMU expects. */
	unsigned queue_num;
	uint32_t max_queue_size;   /* largest SET_VRING_NUM accepted; 0 means 32768 */
	/* Copy len bytes of config space from offset into buf. 0 or -errno. */
	int (*get_config)(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len);
	/*
	 * Serve vring idx described by cfg (create the queue, attach it). 0 or
	 * -errno. With an IOMMU (ACCESS_PLATFORM negotiated) tc is the queue's
	 * translation context, already in cfg->xlate and cfg->epochs: attach
	 * sc_viommu_tc_wrap_iotlb(tc, pollq, vq) instead of the queue's pollq.
	 * Without, tc is NULL.
	 */
	int (*queue_start)(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc);
	/* Stop serving idx: detach, finish in-flight requests; return where the ring is. */
	uint16_t (*queue_stop)(void *ctx, unsigned idx);
	/* Has started vring idx been broken by its guest? GET_STATUS then adds NEEDS_RESET. NULL: never. */
	bool (*queue_broken)(void *ctx, unsigned idx);
	uint32_t iotlb_max;        /* IOTLB entries the front end may install, ≤ SC_VU_IOTLB_MAX; 0 means that */
	uint32_t iotlb_miss_ms;    /* how long a miss may go unanswered; 0 means SC_VU_IOTLB_MISS_MS */
	/*
	 * 0: strict teardown (an INVALIDATE is acknowledged once no sidecore
	 * can use the entry). N: optimistic, acknowledged at once, and the
	 * entry still translates for at most N ms (a lazy guest's contract).
	 */
	uint32_t iotlb_window_ms;
	/*
	 * Isolation: the memory table's regions are not mapped into this
	 * process; each IOTLB UPDATE maps the pages it grants, and a page
	 * stays mapped while any entry grants it, live or dying. Strict: it
	 * is unmapped before the INVALIDATE that ends its last grant is
	 * acknowledged. Optimistic: the INVALIDATE is acknowledged at once,
	 * the grant ends when the dying entry goes (its window ends, or an
	 * UPDATE replaces it), and the page is unmapped after the grace period
	 * that follows, with no ack waiting. A front end that does not
	 * negotiate ACCESS_PLATFORM gets no ring started (one line says why).
	 */
	bool iotlb_isolation;
};

struct sc_vu_server;

/*
 * Listen on a unix socket at path (replacing a stale socket file). Returns 0,
 * or a negative errno with one line in err naming the path and what to do.
 */
int sc_vu_server_create(const char *path, const struct sc_vu_device_ops *ops, void *ctx,
			struct sc_vu_server **out, char *err, size_t errlen);

/*
 * Set the control timeout (ms; ≤ 0 means the default, 5000): how long a
 * message may take to arrive once begun, a reply to be read, and a
 * connection to start a ring before a newer connection may replace it.
 * Call before sc_vu_server_start.
 */
void sc_vu_server_set_timeout(struct sc_vu_server *s, int timeout_ms);

/*
 * Serve the socket on a control thread of its own until
 * sc_vu_server_destroy. Returns 0 or a negative errno (pthread_create).
 */
int sc_vu_server_start(struct sc_vu_server *s);

/*
 * Stop the control thread (wherever it waits, at once), stop every vring,
 * close the connection, remove the socket file.
 */
void sc_vu_server_destroy(struct sc_vu_server *s);

/* How many vrings are being served now (any thread). */
unsigned sc_vu_server_started(const struct sc_vu_server *s);

/*
 * What the front end did with the device's IOTLB (ACCESS_PLATFORM), since
 * the server was created: counters that only grow, but entries. Any thread.
 */
struct sc_vu_iotlb_stats {
	uint64_t updates;       /* UPDATEs taken */
	uint64_t invalidates;   /* INVALIDATEs taken */
	uint64_t refused;       /* IOTLB messages refused (each also said in one line) */
	uint64_t misses;        /* MISSes sent over the back-end channel */
	uint64_t flushes;       /* waits for the sidecores before a removal was acknowledged (strict teardown) */
	uint64_t acks;          /* IOTLB messages answered (REPLY_ACK) */
	/*
	 * Their total time, in ns, from the control thread's wakeup (or its
	 * read of the message, for one that came after the last answer) to
	 * the answer going out: what the device adds to a front end's wait
	 * for an ack (the rest is the front end's and the scheduler's).
	 */
	uint64_t ack_ns;
	uint64_t entries;       /* mappings the IOTLB holds now */
};
void sc_vu_server_iotlb_stats(const struct sc_vu_server *s, struct sc_vu_iotlb_stats *st);

/*
 * Internal, for the fuzz target (tests/fuzz/fuzz_vu.c): serve one message
 * on the calling thread, as the control thread would. If the server has no
 * connection, fd (a connected stream socket) becomes it and is the
 * server's from then on: closed when the connection is dropped. Reads one
 * message from the connection (it should be readable), handles it and
 * sends its reply. Returns false once the connection is gone (the peer
 * closed it, or the message was refused). Only on a server never started
 * (sc_vu_server_start), which it returns false for at once.
 */
bool sc_vu_server_handle_one(struct sc_vu_server *s, int fd);

#endif
