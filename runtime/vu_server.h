/* SPDX-License-Identifier: MIT */
/*
 * vu_server: the back end of one vhost-user socket (QEMU's
 * docs/interop/vhost-user.rst). It listens, takes one front end at a time,
 * keeps the device's state (features, guest memory, vrings), and starts a
 * vring on a sidecore once it is fully described (size, addresses, kick fd,
 * and enabled when protocol features are on). GET_VRING_BASE, RESET_DEVICE,
 * a new memory table and a disconnect first stop the vring: the device
 * detaches it from its sidecore and waits until the sidecore let go.
 *
 * Threads: one control thread calls sc_vu_server_poll; the device's
 * queue_start/queue_stop run on it.
 */
#ifndef SC_RUNTIME_VU_SERVER_H
#define SC_RUNTIME_VU_SERVER_H

#include <stdint.h>

#include "vqueue/vqueue.h"

#define SC_VU_MAX_VRINGS 64
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
};

struct sc_vu_server;

/*
 * Listen on a unix socket at path (replacing a stale socket file). Returns 0,
 * or a negative errno with one line in err naming the path and what to do.
 */
int sc_vu_server_create(const char *path, const struct sc_vu_device_ops *ops, void *ctx,
			struct sc_vu_server **out, char *err, size_t errlen);

/* Stop every vring, close the connection, remove the socket file. */
void sc_vu_server_destroy(struct sc_vu_server *s);

/*
 * Wait up to timeout_ms for a connection or a message and handle it.
 * Returns 1 if something was handled, 0 on timeout, or a negative errno
 * for a failure of the server itself. A bad message or a front end that
 * misbehaves only drops that connection (said on stderr, one line).
 */
int sc_vu_server_poll(struct sc_vu_server *s, int timeout_ms);

/* The fds to wait on (listening socket, connection or -1), for a caller's own epoll. */
int sc_vu_server_listen_fd(const struct sc_vu_server *s);
int sc_vu_server_conn_fd(const struct sc_vu_server *s);

/* How many vrings are being served now. */
unsigned sc_vu_server_started(const struct sc_vu_server *s);

#endif
