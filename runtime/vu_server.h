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

#include "vqueue/vqueue.h"

#define SC_VU_MAX_VRINGS 64
#define SC_VU_CONTROL_TIMEOUT_MS 5000   /* default control timeout ([sidecore] control_timeout_ms) */
#define SC_VU_F_PROTOCOL_FEATURES 30   /* VHOST_USER_F_PROTOCOL_FEATURES */

/* Protocol feature bits the server implements. */
#define VHOST_USER_PROTOCOL_F_MQ                  0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK           3
#define VHOST_USER_PROTOCOL_F_CONFIG              9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD      12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE        13
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VHOST_USER_PROTOCOL_F_STATUS              16

/* What a device behind the socket provides. Called on the control thread. */
struct sc_vu_device_ops {
	uint64_t features;         /* virtio feature bits offered */
	unsigned num_queues;
	uint32_t max_queue_size;   /* largest SET_VRING_NUM accepted; 0 means 32768 */
	/* Copy len bytes of config space from offset into buf. 0 or -errno. */
	int (*get_config)(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len);
	/* Serve vring idx described by cfg (create the queue, attach it). 0 or -errno. */
	int (*queue_start)(void *ctx, unsigned idx, const struct sc_vq_config *cfg);
	/* Stop serving idx: detach, finish in-flight requests; return where the ring is. */
	uint16_t (*queue_stop)(void *ctx, unsigned idx);
	/* Has started vring idx been broken by its guest? GET_STATUS then adds NEEDS_RESET. NULL: never. */
	bool (*queue_broken)(void *ctx, unsigned idx);
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
