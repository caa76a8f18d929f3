/* SPDX-License-Identifier: MIT */
#include "runtime/vu_frontend.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/compiler.h"
#include "spec/sc_virtio_blk.h"
#include "guestmem/guestmem.h"
#include "runtime/vu_msg.h"
#include "runtime/vu_server.h"

static int send_msg(struct sc_vu_fe *fe, uint32_t req, uint32_t flags, const void *payload,
		    uint32_t size, int fd)
{
	return sc_vu_send(fe->sock, req, flags, payload, size, fd);
}

static int recv_reply(struct sc_vu_fe *fe, uint32_t req, void *payload, uint32_t size)
{
	struct sc_vu_hdr h;
	if (recv(fe->sock, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.request != req ||
	    !(h.flags & SC_VHOST_USER_REPLY) || h.size > size)
		return -EPROTO;
	if (h.size && recv(fe->sock, payload, h.size, MSG_WAITALL) != (ssize_t)h.size)
		return -EPROTO;
	return (int)h.size;
}

static int get_u64(struct sc_vu_fe *fe, uint32_t req, uint64_t *v)
{
	int ret = send_msg(fe, req, 0, NULL, 0, -1);
	if (ret == 0)
		ret = recv_reply(fe, req, v, 8) == 8 ? 0 : -EPROTO;
	return ret;
}

int sc_vu_fe_iotlb(struct sc_vu_fe *fe, uint8_t type, uint64_t iova, uint64_t size, uint64_t gpa, uint8_t perm,
		   bool reply)
{
	struct sc_vu_iotlb t = { .iova = iova, .size = size, .uaddr = (uintptr_t)fe->mem + gpa, .perm = perm, .type = type };
	uint64_t ack;
	int ret = send_msg(fe, SC_VHOST_USER_IOTLB_MSG, reply ? SC_VHOST_USER_NEED_REPLY : 0, &t, sizeof(t), -1);

	if (ret < 0 || !reply)
		return ret;
	if (recv_reply(fe, SC_VHOST_USER_IOTLB_MSG, &ack, sizeof(ack)) != sizeof(ack))
		return -EPROTO;
	return -(int)ack;
}

int sc_vu_fe_iotlb_batch(struct sc_vu_fe *fe, const struct sc_vu_fe_iotlb_op *ops, unsigned n)
{
	struct {
		struct sc_vu_hdr h;
		struct sc_vu_iotlb t;
	} __attribute__((packed)) m[SC_VU_FE_IOTLB_BATCH_MAX + 2];

	if (n > SC_VU_FE_IOTLB_BATCH_MAX)
		return -E2BIG;
	for (unsigned i = 0; i < n + 2; i++) {
		struct sc_vu_fe_iotlb_op op = { .type = i == 0 ? SC_VHOST_IOTLB_BATCH_BEGIN : SC_VHOST_IOTLB_BATCH_END };
		if (i && i <= n)
			op = ops[i - 1];
		m[i].h = (struct sc_vu_hdr){ .request = SC_VHOST_USER_IOTLB_MSG, .size = sizeof(m[i].t),
					     .flags = SC_VHOST_USER_VERSION | (i == n + 1 ? SC_VHOST_USER_NEED_REPLY : 0) };
		m[i].t = (struct sc_vu_iotlb){ .iova = op.iova, .size = op.size, .perm = op.perm, .type = op.type,
					       .uaddr = op.type == SC_VHOST_IOTLB_UPDATE ? (uintptr_t)fe->mem + op.gpa : 0 };
	}
	const uint8_t *b = (const uint8_t *)m;
	size_t left = (n + 2) * sizeof(m[0]);
	while (left) {
		ssize_t w = send(fe->sock, b, left, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		b += w;
		left -= (size_t)w;
	}
	return 0;
}

int sc_vu_fe_iotlb_ack(struct sc_vu_fe *fe)
{
	uint8_t peek[sizeof(struct sc_vu_hdr) + sizeof(uint64_t)];
	uint64_t ack;

	/* Only a whole reply is taken: the back end writes it with one send. */
	if (recv(fe->sock, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT) != (ssize_t)sizeof(peek))
		return -EAGAIN;
	if (recv_reply(fe, SC_VHOST_USER_IOTLB_MSG, &ack, sizeof(ack)) != sizeof(ack))
		return -EPROTO;
	return -(int)ack;
}

int sc_vu_fe_connect(struct sc_vu_fe *fe, const char *path, uint64_t mem_size, unsigned nq,
		     uint16_t qsize, char *err, size_t errlen)
{
	return sc_vu_fe_connect_flags(fe, path, mem_size, nq, qsize, 0, err, errlen);
}

int sc_vu_fe_connect_flags(struct sc_vu_fe *fe, const char *path, uint64_t mem_size, unsigned nq,
			   uint16_t qsize, unsigned flags, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t f, pf;
	int ret;

	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->memfd = fe->backend = -1;
	fe->iommu = flags & SC_VU_FE_IOMMU;
	for (unsigned i = 0; i < SC_VU_FE_MAX_QUEUES; i++)
		fe->kick[i] = fe->call[i] = -1;
	if (nq == 0 || nq > SC_VU_FE_MAX_QUEUES || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: bad front-end parameters", path);
		return -EINVAL;
	}
	fe->nq = nq;
	fe->qsize = qsize;
	strcpy(sa.sun_path, path);
	fe->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fe->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: connect: %s", path, strerror(errno));
		goto fail;
	}
#define STEP(what, call)                                                              \
	do {                                                                          \
		if ((ret = (call)) < 0) {                                              \
			snprintf(err, errlen, "%s: %s failed: %s", path, what, strerror(-ret)); \
			goto fail;                                                    \
		}                                                                     \
	} while (0)
	STEP("GET_FEATURES", get_u64(fe, SC_VHOST_USER_GET_FEATURES, &f));
	/* A plain client: version 1 and protocol features; the back end's blk bits it offers for the config. */
	fe->features = f & ((1ull << SC_VIRTIO_F_VERSION_1) | (1ull << SC_VU_F_PROTOCOL_FEATURES) |
			    (1ull << SC_VIRTIO_BLK_F_FLUSH) | (1ull << SC_VIRTIO_BLK_F_BLK_SIZE) |
			    (1ull << SC_VIRTIO_BLK_F_SEG_MAX) | (1ull << SC_VIRTIO_BLK_F_MQ));
	if (fe->iommu)
		fe->features |= f & (1ull << SC_VU_F_ACCESS_PLATFORM);
	if (!(f & (1ull << SC_VU_F_PROTOCOL_FEATURES))) {
		snprintf(err, errlen, "%s: the back end lacks VHOST_USER_F_PROTOCOL_FEATURES", path);
		ret = -ENOTSUP;
		goto fail;
	}
	STEP("GET_PROTOCOL_FEATURES", get_u64(fe, SC_VHOST_USER_GET_PROTOCOL_FEATURES, &pf));
	uint64_t want_pf = (1ull << SC_VHOST_USER_PROTOCOL_F_MQ) | (1ull << SC_VHOST_USER_PROTOCOL_F_CONFIG);
	if (fe->iommu)
		want_pf |= (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ull << SC_VHOST_USER_PROTOCOL_F_IOTLB) |
			   (1ull << SC_VHOST_USER_PROTOCOL_F_BACKEND_REQ);
	if (fe->iommu && ((pf & want_pf) != want_pf || !(fe->features & (1ull << SC_VU_F_ACCESS_PLATFORM)))) {
		snprintf(err, errlen, "%s: the back end lacks ACCESS_PLATFORM, IOTLB, BACKEND_REQ or REPLY_ACK", path);
		ret = -ENOTSUP;
		goto fail;
	}
	pf &= want_pf;
	STEP("SET_PROTOCOL_FEATURES", send_msg(fe, SC_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, -1));
	if (fe->iommu) {
		int sv[2];
		STEP("socketpair", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0);
		fe->backend = sv[0];
		ret = send_msg(fe, SC_VHOST_USER_SET_BACKEND_REQ_FD, 0, NULL, 0, sv[1]);
		close(sv[1]);
		STEP("SET_BACKEND_REQ_FD", ret);
	}
	STEP("SET_OWNER", send_msg(fe, SC_VHOST_USER_SET_OWNER, 0, NULL, 0, -1));
	STEP("SET_FEATURES", send_msg(fe, SC_VHOST_USER_SET_FEATURES, 0, &fe->features, 8, -1));
	if (pf & (1ull << SC_VHOST_USER_PROTOCOL_F_CONFIG)) {
		struct { uint32_t offset, size, flags; struct sc_virtio_blk_config c; } __attribute__((packed)) cfg = {
			0, sizeof(struct sc_virtio_blk_config), 0, { 0 } };
		STEP("GET_CONFIG", send_msg(fe, SC_VHOST_USER_GET_CONFIG, 0, &cfg, sizeof(cfg), -1));
		STEP("GET_CONFIG reply", recv_reply(fe, SC_VHOST_USER_GET_CONFIG, &cfg, sizeof(cfg)));
		fe->capacity = cfg.c.capacity;
	}

	fe->mem_size = mem_size;
	fe->memfd = sc_mem_memfd_create("sidecore-frontend", mem_size);
	STEP("memfd", fe->memfd);
	fe->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
	if (fe->mem == MAP_FAILED) {
		fe->mem = NULL;
		ret = -errno;
		snprintf(err, errlen, "%s: mapping front-end memory: %s", path, strerror(errno));
		goto fail;
	}
	struct { uint32_t n, pad; struct sc_vu_region r; } mt = { 1, 0, { 0, mem_size, (uintptr_t)fe->mem, 0 } };
	STEP("SET_MEM_TABLE", send_msg(fe, SC_VHOST_USER_SET_MEM_TABLE, 0, &mt, sizeof(mt), fe->memfd));

	uint64_t off = 0;
	/* The rings sit at IOVA = guest address, mapped for as long as we run. */
	if (fe->iommu)
		STEP("IOTLB UPDATE of the rings",
		     sc_vu_fe_iotlb(fe, SC_VHOST_IOTLB_UPDATE, 0, nq * SC_ALIGN_UP(sc_drv_vq_ring_bytes(qsize), 4096ull), 0,
				    SC_VHOST_ACCESS_RW, true));
	for (unsigned q = 0; q < nq; q++) {
		struct sc_drv_vq *vq = &fe->vq[q];
		STEP("ring layout", sc_drv_vq_init(vq, fe->mem + off, off, qsize, fe->features));
		off += SC_ALIGN_UP(sc_drv_vq_ring_bytes(qsize), 4096ull);
		sc_drv_vq_interrupts_disable(vq);   /* we reap by polling */
		struct sc_vu_vring_state num = { q, qsize }, base = { q, 0 }, en = { q, 1 };
		struct sc_vu_vring_addr a = { .index = q, .desc_user_addr = (uintptr_t)vq->desc,
					      .avail_user_addr = (uintptr_t)vq->avail, .used_user_addr = (uintptr_t)vq->used };
		if (fe->iommu) {
			a.desc_user_addr = (uint64_t)((uint8_t *)vq->desc - fe->mem);
			a.avail_user_addr = (uint64_t)((uint8_t *)vq->avail - fe->mem);
			a.used_user_addr = (uint64_t)((uint8_t *)vq->used - fe->mem);
		}
		uint64_t idx = q;
		fe->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		fe->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		STEP("SET_VRING_NUM", send_msg(fe, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1));
		STEP("SET_VRING_BASE", send_msg(fe, SC_VHOST_USER_SET_VRING_BASE, 0, &base, 8, -1));
		STEP("SET_VRING_ADDR", send_msg(fe, SC_VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1));
		STEP("SET_VRING_CALL", send_msg(fe, SC_VHOST_USER_SET_VRING_CALL, 0, &idx, 8, fe->call[q]));
		STEP("SET_VRING_KICK", send_msg(fe, SC_VHOST_USER_SET_VRING_KICK, 0, &idx, 8, fe->kick[q]));
		STEP("SET_VRING_ENABLE", send_msg(fe, SC_VHOST_USER_SET_VRING_ENABLE, 0, &en, 8, -1));
	}
#undef STEP
	fe->buf_gpa = off;
	/* A round trip so we know the back end has taken every message before I/O starts. */
	uint64_t nqueues;
	if (get_u64(fe, SC_VHOST_USER_GET_QUEUE_NUM, &nqueues) < 0) {
		snprintf(err, errlen, "%s: the back end closed the connection during set-up", path);
		ret = -EPROTO;
		goto fail;
	}
	return 0;
fail:
	sc_vu_fe_close(fe);
	return ret;
}

void sc_vu_fe_kick(struct sc_vu_fe *fe, unsigned q)
{
	static const uint64_t one = 1;
	if (sc_drv_vq_kick_needed(&fe->vq[q]) && write(fe->kick[q], &one, sizeof(one)) != sizeof(one)) {
		/* A full counter means a kick is pending anyway. */
	}
}

void sc_vu_fe_close(struct sc_vu_fe *fe)
{
	if (fe->sock >= 0) {
		for (unsigned q = 0; q < fe->nq && fe->mem; q++) {
			struct sc_vu_vring_state st = { q, 0 };
			if (send_msg(fe, SC_VHOST_USER_GET_VRING_BASE, 0, &st, 8, -1) == 0)
				recv_reply(fe, SC_VHOST_USER_GET_VRING_BASE, &st, sizeof(st));
		}
		close(fe->sock);
	}
	for (unsigned q = 0; q < SC_VU_FE_MAX_QUEUES; q++) {
		if (fe->kick[q] >= 0)
			close(fe->kick[q]);
		if (fe->call[q] >= 0)
			close(fe->call[q]);
	}
	if (fe->mem)
		munmap(fe->mem, fe->mem_size);
	if (fe->memfd >= 0)
		close(fe->memfd);
	if (fe->backend >= 0)
		close(fe->backend);
	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->memfd = fe->backend = -1;
}
