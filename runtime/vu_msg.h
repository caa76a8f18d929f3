/* SPDX-License-Identifier: MIT */
/*
 * vhost-user messages as the back end sees them (the layout is in
 * spec/sc_vhost_user.h): reading one message with its file descriptors off
 * the socket, checked once at the edge, and sending one.
 *
 * Every message is hostile input. sc_vu_msg_recv returns a message only if
 * its size matches its type, it carries exactly the fds its type allows, its
 * vring index is in range, and its payload is self-consistent (memory
 * regions that do not overflow or overlap, a power-of-two queue size, a
 * config window inside the config space). Anything else is refused with its
 * own errno and one line saying why, and every fd that came with it is
 * closed.
 */
#ifndef SC_RUNTIME_VU_MSG_H
#define SC_RUNTIME_VU_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/sc_vhost_user.h"

/* The columns of the request table below. */
enum sc_vu_size_rule { SC_VU_SZ_EXACT, SC_VU_SZ_MEM_TABLE, SC_VU_SZ_CONFIG };
enum sc_vu_vring_rule { SC_VU_VRING_NONE, SC_VU_VRING_STATE, SC_VU_VRING_ADDR, SC_VU_VRING_FILE };
enum sc_vu_fd_kind {
	SC_VU_FD_NONE,       /* no fds */
	SC_VU_FD_EVENT,      /* an eventfd (kick, call, err) */
	SC_VU_FD_MEM,        /* memory to map: a regular file as large as the region, a memfd also sealed */
	SC_VU_FD_INFLIGHT,   /* the inflight area: checked as memory against mmap_offset + mmap_size */
	SC_VU_FD_IGNORED,    /* allowed and closed unused (REM_MEM_REG's copy of the region fd) */
	SC_VU_FD_SOCKET,     /* a stream socket: the back-end request channel */
};
enum sc_vu_rings {
	SC_VU_RINGS_KEEP,    /* rings run on; the state change is re-evaluated after the handler */
	SC_VU_RINGS_ONE,     /* the vring the message names stops first */
	SC_VU_RINGS_ALL,     /* every ring stops first: the message replaces what they map */
};

/*
 * One row per request this back end takes (DPDK's VHOST_MESSAGE_HANDLERS):
 * X(name, size rule, payload size for EXACT, fds min, fds max, which vring
 * field it names, what its fds must be, which rings stop before its
 * handler). vu_msg.c checks messages against the columns; vu_server.c
 * dispatches request NAME to its handler vu_NAME. A message NEED_REPLY
 * acks is answered after the handler; the rings are re-evaluated after
 * every message.
 */
#define SC_VU_REQUESTS(X)                                                   \
	X(GET_FEATURES, EXACT, 0, 0, 0, NONE, NONE, KEEP)                   \
	X(SET_FEATURES, EXACT, 8, 0, 0, NONE, NONE, KEEP)                   \
	X(SET_OWNER, EXACT, 0, 0, 0, NONE, NONE, KEEP)                      \
	X(RESET_OWNER, EXACT, 0, 0, 0, NONE, NONE, ALL)                     \
	X(SET_MEM_TABLE, MEM_TABLE, 0, 0, SC_VU_MAX_MEM_REGIONS, NONE, MEM, ALL) \
	X(SET_VRING_NUM, EXACT, 8, 0, 0, STATE, NONE, KEEP)                 \
	X(SET_VRING_ADDR, EXACT, sizeof(struct sc_vu_vring_addr), 0, 0, ADDR, NONE, KEEP) \
	X(SET_VRING_BASE, EXACT, 8, 0, 0, STATE, NONE, KEEP)                \
	X(GET_VRING_BASE, EXACT, 8, 0, 0, STATE, NONE, ONE)                 \
	X(SET_VRING_KICK, EXACT, 8, 0, 1, FILE, EVENT, ONE)                 \
	X(SET_VRING_CALL, EXACT, 8, 0, 1, FILE, EVENT, ONE)                 \
	X(SET_VRING_ERR, EXACT, 8, 0, 1, FILE, EVENT, ONE)                  \
	X(GET_PROTOCOL_FEATURES, EXACT, 0, 0, 0, NONE, NONE, KEEP)          \
	X(SET_PROTOCOL_FEATURES, EXACT, 8, 0, 0, NONE, NONE, KEEP)          \
	X(GET_QUEUE_NUM, EXACT, 0, 0, 0, NONE, NONE, KEEP)                  \
	X(SET_VRING_ENABLE, EXACT, 8, 0, 0, STATE, NONE, KEEP)              \
	X(SET_BACKEND_REQ_FD, EXACT, 0, 1, 1, NONE, SOCKET, KEEP)           \
	X(IOTLB_MSG, EXACT, sizeof(struct sc_vu_iotlb), 0, 0, NONE, NONE, KEEP) \
	X(GET_CONFIG, CONFIG, 0, 0, 0, NONE, NONE, KEEP)                    \
	X(SET_CONFIG, CONFIG, 0, 0, 0, NONE, NONE, KEEP)                    \
	/* QEMU sends the 20-byte inflight description padded to 24. */     \
	X(GET_INFLIGHT_FD, EXACT, 24, 0, 0, NONE, NONE, ALL)                \
	X(SET_INFLIGHT_FD, EXACT, 24, 1, 1, NONE, INFLIGHT, ALL)            \
	X(RESET_DEVICE, EXACT, 0, 0, 0, NONE, NONE, ALL)                    \
	X(GET_MAX_MEM_SLOTS, EXACT, 0, 0, 0, NONE, NONE, KEEP)              \
	X(ADD_MEM_REG, EXACT, 8 + sizeof(struct sc_vu_region), 1, 1, NONE, MEM, ALL) \
	X(REM_MEM_REG, EXACT, 8 + sizeof(struct sc_vu_region), 0, 1, NONE, IGNORED, ALL) \
	X(SET_STATUS, EXACT, 8, 0, 0, NONE, NONE, KEEP)                     \
	X(GET_STATUS, EXACT, 0, 0, 0, NONE, NONE, KEEP)

/* One received message. fds are owned by the message: close them with sc_vu_msg_close_fds. */
struct sc_vu_msg {
	struct sc_vu_hdr hdr;
	union {
		uint64_t u64;
		struct sc_vu_vring_state state;
		struct sc_vu_vring_addr addr;
		struct {
			uint32_t nregions;
			uint32_t padding;
			struct sc_vu_region regions[SC_VU_MAX_MEM_REGIONS];
		} memory;
		struct {
			uint64_t padding;
			struct sc_vu_region region;
		} mem_reg;
		struct sc_vu_config config;
		struct sc_vu_inflight inflight;
		struct sc_vu_iotlb iotlb;
		uint8_t raw[sizeof(struct sc_vu_config)];
	} payload;
	int fds[SC_VU_MAX_FDS];
	unsigned nfds;
};

/* The request's name ("SET_MEM_TABLE"), or "unknown". */
const char *sc_vu_request_name(uint32_t request);

/*
 * Read one message from sock and check it (nvrings: vrings the device
 * has). Returns 1 with *m filled, 0 if the peer closed the connection
 * cleanly, or a negative errno with one line in err and every received fd
 * closed:
 *   -EPROTO     bad version flags, a payload larger than any message has,
 *               or a connection that ends inside a message
 *   -EBADMSG    payload size wrong for the request type
 *   -EBADF      wrong number of fds for the request type
 *   -ERANGE     vring index out of range
 *   -EINVAL     bad value: queue size, memory region, config window, enable flag
 *   -ENOTSUP    unknown request type (the connection can go on)
 * It waits as long as the message takes; a server uses sc_vu_msg_recv_timed.
 */
int sc_vu_msg_recv(int sock, unsigned nvrings, struct sc_vu_msg *m, char *err, size_t errlen);

/*
 * sc_vu_msg_recv for a server that must not hang on one peer: call it when
 * sock is readable; the whole message must arrive within timeout_ms of the
 * call (-1: no limit), however slowly its bytes trickle in. Also returns
 *   -ETIMEDOUT  the message was not complete in time
 *   -ECANCELED  stop_fd (if ≥ 0) became readable while waiting
 */
int sc_vu_msg_recv_timed(int sock, unsigned nvrings, struct sc_vu_msg *m, int timeout_ms, int stop_fd,
			 char *err, size_t errlen);

/*
 * sc_vu_msg_recv_timed for the messages after the first of a wakeup:
 * -EAGAIN at once when no byte of a next message is there (one system
 * call, not a poll and then a read); once a message has begun, as
 * sc_vu_msg_recv_timed.
 */
int sc_vu_msg_recv_next(int sock, unsigned nvrings, struct sc_vu_msg *m, int timeout_ms, int stop_fd,
			char *err, size_t errlen);

/* One IOTLB_MSG as it is on the wire. */
struct sc_vu_iotlb_wire {
	struct sc_vu_hdr hdr;
	struct sc_vu_iotlb t;
} __attribute__((packed));

#define SC_VU_IOTLB_BURST 16   /* the most sc_vu_msg_recv_iotlb takes at once */

/*
 * Take the whole IOTLB_MSG messages at the head of sock, at most max
 * (≤ SC_VU_IOTLB_BURST), with two system calls however many there are (a
 * front end's IOTLB batch arrives as one write): a peek, then a read of
 * exactly those bytes. It stops before anything else (another request, a
 * message not yet whole, a header with another version or payload size,
 * bytes that came with fds, the end of the connection), which
 * sc_vu_msg_recv_next then reads and judges. Returns how many were taken
 * into out[] (their payload's fields still to be checked:
 * sc_vu_msg_check), 0 if something else is first, -EAGAIN if nothing is
 * there, or -errno.
 */
int sc_vu_msg_recv_iotlb(int sock, struct sc_vu_iotlb_wire *out, unsigned max);

/*
 * The same checks on a message already in memory (fds in m->fds). Returns
 * 0 or a negative errno as sc_vu_msg_recv, closing m's fds on failure.
 */
int sc_vu_msg_check(struct sc_vu_msg *m, unsigned nvrings, char *err, size_t errlen);

/*
 * Check what the fds of a checked message are (its row's fd kind): kick,
 * call and err fds must be eventfds; a memory region or inflight fd must be
 * a regular file (or memfd) at least mmap_offset + size bytes long, and a
 * memfd must be sealed against shrinking (F_SEAL_SHRINK), so that it cannot
 * fault under a sidecore later. Needs /proc/self/fd. Returns 0, or on a
 * refusal a negative errno with one line in err and every fd closed:
 *   -EBADFD     not an eventfd, not a regular file, or not a stream socket
 *   -ENXIO      the file is smaller than the range the message maps
 *   -EPERM      a memfd not sealed with F_SEAL_SHRINK
 */
int sc_vu_msg_check_fds(struct sc_vu_msg *m, char *err, size_t errlen);

/* Close every fd the message still owns. */
void sc_vu_msg_close_fds(struct sc_vu_msg *m);

/*
 * Send one message: request, flags (the version is added), size bytes of
 * payload, and fd (if ≥ 0) in the same sendmsg, never raising SIGPIPE.
 * Returns 0 or -errno.
 */
int sc_vu_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, int fd);

/*
 * sc_vu_send that gives up after timeout_ms (-1: never) with -ETIMEDOUT if
 * the peer does not read, or with -ECANCELED once stop_fd (if ≥ 0) is readable.
 */
int sc_vu_send_timed(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, int fd,
		     int timeout_ms, int stop_fd);

/* Send a reply (REPLY flag set, same request) with a payload of size bytes. Returns 0 or -errno. */
int sc_vu_reply(int sock, const struct sc_vu_msg *req, const void *payload, uint32_t size);

#endif
