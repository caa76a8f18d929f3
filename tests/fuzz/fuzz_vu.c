/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a vhost-user message stream against the back-end state
 * machine (runtime/vu_server.c), with the fds a front end passes
 * simulated: eventfds, memfds of fuzzed sizes (sealed or not, holding
 * fuzzed bytes), pipes, /dev/null.
 *
 * One server per process on a socket in /dev/shm, never started: each
 * message is served on this thread by sc_vu_server_handle_one over a
 * socketpair, so there is no control thread and no timing. Behind it a
 * null block device (devices/nullblk.c), two queues, each polled here
 * after every message while it runs, so rings a message sets up in the
 * memfds are served. The input's end closes the connection, which resets
 * the device for the next input.
 *
 * Input: a list of operations, each a u8 op (mod 4) then:
 *   0 message: u8 request (mod 42), u8 flags (bits 0-1 version, bit 2
 *     NEED_REPLY, bit 3 REPLY), u16 payload size (mod 320), the payload,
 *     u8 fd count (mod 9, and each fd: u8 kind, u16 size in 4 KiB pages or bytes)
 *   1 raw: u8 len, len bytes straight onto the socket (framing attacks)
 *   2 guest write: u8 memfd (of those sent so far), u16 page, a chunk
 *     (u16 offset in the page, u8 len, bytes)
 *   3 poll: the started queues once more
 * fd kinds (mod 8): 0 eventfd, 1 memfd sealed against shrinking, 2 the
 * same unsealed, 3 a sealed memfd of size bytes (not pages), 4 a pipe,
 * 5 /dev/null, 6 a socket whose peer is gone, 7 a socket whose peer stays
 * open and unread until the input ends (a back-end channel that never
 * answers: IOTLB misses pile up in it).
 *
 * The server offers ACCESS_PLATFORM, so an input may negotiate the IOTLB:
 * then queues are served as sidecored serves them, behind the IOTLB
 * wrapper (sc_viommu_tc_wrap_iotlb), and ring and buffer addresses are
 * IOVAs the input's IOTLB_MSG updates map.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/devices.h"
#include "runtime/vu_msg.h"
#include "runtime/vu_server.h"
#include "viommu/viommu.h"
#include "tests/fuzz/fuzz.h"

#define NQ 2
#define MAX_MEMFDS 16
#define MAX_PEERS 8

struct dev {
	bool live[NQ];
	struct sc_nullblk q[NQ];
	struct sc_pollq *attached[NQ];   /* q's pollq, or its IOTLB wrapper */
};

static struct dev dev;
static struct sc_vu_server *server;
static int memfds[MAX_MEMFDS];
static unsigned nmemfds;
static int peers[MAX_PEERS];     /* kind 7's other ends, closed when the input ends */
static unsigned npeers;

static int get_config(void *ctx, uint8_t *buf, uint32_t offset, uint32_t len)
{
	struct sc_virtio_blk_config c = { .capacity = 2048 };
	if (offset > sizeof(c) || len > sizeof(c) - offset)
		return -EINVAL;
	memcpy(buf, (uint8_t *)&c + offset, len);
	return 0;
}

static int queue_start(void *ctx, unsigned idx, const struct sc_vq_config *cfg, struct sc_viommu_tc *tc)
{
	fz_check(idx < NQ && !dev.live[idx]);
	int ret = sc_nullblk_init(&dev.q[idx], cfg, 2048, "fuzz vu");
	if (ret < 0)
		return ret;
	dev.attached[idx] = tc ? sc_viommu_tc_wrap_iotlb(tc, &dev.q[idx].pq, &dev.q[idx].vq) : &dev.q[idx].pq;
	dev.live[idx] = true;
	return 0;
}

static uint16_t queue_stop(void *ctx, unsigned idx)
{
	fz_check(idx < NQ && dev.live[idx]);
	dev.live[idx] = false;
	uint16_t at = dev.q[idx].vq.last_avail;
	sc_vq_fini(&dev.q[idx].vq);
	return at;
}

static bool queue_broken(void *ctx, unsigned idx)
{
	return dev.live[idx] && sc_vq_broken(&dev.q[idx].vq);
}

static const struct sc_vu_device_ops ops = {
	.features = (1ull << SC_VIRTIO_F_INDIRECT_DESC) | (1ull << SC_VIRTIO_F_EVENT_IDX) | (1ull << SC_VIRTIO_F_VERSION_1),
	.num_queues = NQ, .max_queue_size = 256,
	.get_config = get_config, .queue_start = queue_start, .queue_stop = queue_stop,
	.queue_broken = queue_broken,
};

static void server_open(void)
{
	char path[64], err[256];
	snprintf(path, sizeof(path), "/dev/shm/sidecore-fuzz-vu-%d.sock", (int)getpid());
	if (sc_vu_server_create(path, &ops, &dev, &server, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_vu: %s\n", err);
		abort();
	}
	/* Short: a message cut short by the input waits this long for the rest. */
	sc_vu_server_set_timeout(server, 1);
}

/* One simulated fd of the kind the input says; memfds are remembered for guest writes. */
static int make_fd(struct fz *f)
{
	uint8_t kind = fz_u8(f) % 8;
	uint16_t n = fz_u16(f);
	int fd = -1, p[2];

	switch (kind) {
	case 0:
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	case 1:
	case 2:
	case 3: {
		uint64_t bytes = kind == 3 ? n : (uint64_t)(n % 64 + 1) << 12;
		fd = memfd_create("fuzz-vu", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
			break;
		if (kind != 2)
			(void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
		if (nmemfds < MAX_MEMFDS)
			memfds[nmemfds++] = dup(fd);
		return fd;
	}
	case 4:
		if (pipe2(p, O_CLOEXEC) < 0)
			return -1;
		close(p[1]);
		return p[0];
	case 6:
	case 7:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, p) < 0)
			return -1;
		if (kind == 7 && npeers < MAX_PEERS)
			peers[npeers++] = p[1];
		else
			close(p[1]);
		return p[0];
	case 5:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	}
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Send one message the input describes (fds passed in the same sendmsg, then closed here). */
static void send_message(struct fz *f, int sock)
{
	struct { struct sc_vu_hdr hdr; uint8_t payload[320]; } __attribute__((packed)) msg;
	int fds[8];
	unsigned nfds = 0;

	msg.hdr.request = fz_u8(f) % (SC_VHOST_USER_REQUEST_MAX + 1);
	uint8_t fl = fz_u8(f);
	msg.hdr.flags = (fl & 3) | (fl & 4 ? SC_VHOST_USER_NEED_REPLY : 0) | (fl & 8 ? SC_VHOST_USER_REPLY : 0);
	msg.hdr.size = fz_u16(f) % sizeof(msg.payload);
	fz_bytes(f, msg.payload, msg.hdr.size);
	unsigned want = fz_u8(f) % 9;
	for (unsigned i = 0; i < want; i++) {
		int fd = make_fd(f);
		if (fd >= 0)
			fds[nfds++] = fd;
	}

	struct iovec iov = { &msg, sizeof(msg.hdr) + msg.hdr.size };
	union { char buf[CMSG_SPACE(sizeof(fds))]; struct cmsghdr align; } u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	(void)sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
}

/* Read and drop the server's replies, closing any fd they carry. */
static void drain(int sock)
{
	for (;;) {
		char buf[512];
		union { char b[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } u;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
		if (recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < n; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
	}
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* Serve what the front end sent, then let the running queues see their rings. */
static bool serve(int conn, int peer, bool *up)
{
	while (*up && readable(conn)) {
		*up = sc_vu_server_handle_one(server, conn);
		drain(peer);
	}
	for (unsigned i = 0; i < NQ; i++)
		if (dev.live[i])
			(void)dev.attached[i]->ops->poll(dev.attached[i], 8);
	return *up;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	int sv[2];
	bool up = true;

	if (!server)
		server_open();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	nmemfds = 0;
	npeers = 0;
	for (unsigned ops_done = 0; f.n && ops_done < 64 && up; ops_done++) {
		switch (fz_u8(&f) % 4) {
		case 0:
			send_message(&f, sv[1]);
			break;
		case 1: {
			uint8_t raw[255], len = fz_u8(&f);
			fz_bytes(&f, raw, len);
			(void)send(sv[1], raw, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			break;
		}
		case 2: {
			uint8_t which = fz_u8(&f);
			uint16_t page = fz_u16(&f), off = fz_u16(&f) % 4096;
			uint8_t len = fz_u8(&f), bytes[255];
			fz_bytes(&f, bytes, len);
			if (nmemfds)
				(void)!pwrite(memfds[which % nmemfds], bytes, len, (off_t)(page % 64) * 4096 + off);
			break;
		}
		default:
			break;
		}
		serve(sv[0], sv[1], &up);
	}
	/* The front end goes away: the server drops the connection and resets the device. */
	shutdown(sv[1], SHUT_WR);
	while (up) {
		up = sc_vu_server_handle_one(server, sv[0]);
		drain(sv[1]);
	}
	fz_check(sc_vu_server_started(server) == 0 && !dev.live[0] && !dev.live[1]);
	close(sv[1]);
	for (unsigned i = 0; i < nmemfds; i++)
		close(memfds[i]);
	for (unsigned i = 0; i < npeers; i++)
		close(peers[i]);
	return 0;
}
