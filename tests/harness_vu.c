/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "guestmem/guestmem.h"
#include "runtime/vu_msg.h"

int64_t t_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void t_disk_open(struct t_disk *d, struct sc_poller *p, int timeout_ms, const char *name)
{
	t_disk_open_in(d, p, timeout_ms, name, "/tmp", false);
}

void t_disk_read(const char *img, uint64_t sector, uint8_t *buf)
{
	int fd = open(img, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, 4096, (off_t)sector * 512), 4096);
	close(fd);
}

void t_disk_open_in(struct t_disk *d, struct sc_poller *p, int timeout_ms, const char *name, const char *base,
		    bool direct)
{
	char err[256];
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s/sidecore-vuh-XXXXXX", base);
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", d->dir, name);
	snprintf(d->img, sizeof(d->img), "%s/%s.img", d->dir, name);
	int fd = open(d->img, O_CREAT | O_RDWR, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, T_DISK), 0);
	close(fd);
	cr_assert_eq(sc_blk_backend_open(&d->be, d->img, false, direct, name, err, sizeof(err)), 0, "%s", err);
	d->poller = p;
	sc_vu_blk_init(&d->dev, &d->be, &d->poller, 1, 2);
	cr_assert_eq(sc_vu_server_create(d->sock, &d->dev.ops, &d->dev, &d->srv, err, sizeof(err)), 0, "%s", err);
	sc_vu_server_set_timeout(d->srv, timeout_ms);
	cr_assert_eq(sc_vu_server_start(d->srv), 0);
}

void t_disk_close(struct t_disk *d)
{
	if (!d->srv)
		return;
	sc_vu_server_destroy(d->srv);
	d->srv = NULL;
	sc_blk_backend_close(&d->be);
	unlink(d->img);
	rmdir(d->dir);
}

int t_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path, strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

void t_send(int sock, uint32_t req, uint32_t flags, const void *payload, uint32_t size, int fd)
{
	int ret = sc_vu_send(sock, req, flags, payload, size, fd);
	cr_assert_eq(ret, 0, "sending %s: %s", sc_vu_request_name(req), strerror(-ret));
}

void t_reply(int sock, uint32_t req, void *buf, uint32_t size)
{
	struct sc_vu_hdr h;
	cr_assert_eq(recv(sock, &h, sizeof(h), MSG_WAITALL), (ssize_t)sizeof(h), "no reply to %s",
		     sc_vu_request_name(req));
	cr_assert_eq(h.request, req, "reply to %u, expected %s", h.request, sc_vu_request_name(req));
	cr_assert(h.flags & SC_VHOST_USER_REPLY);
	cr_assert_eq(h.size, size, "reply of %u bytes to %s", h.size, sc_vu_request_name(req));
	if (size)
		cr_assert_eq(recv(sock, buf, size, MSG_WAITALL), (ssize_t)size);
}

uint64_t t_get_u64(int sock, uint32_t req)
{
	uint64_t v;
	t_send(sock, req, 0, NULL, 0, -1);
	t_reply(sock, req, &v, 8);
	return v;
}

uint64_t t_set_u64_ack(int sock, uint32_t req, uint64_t v)
{
	uint64_t ack;
	t_send(sock, req, SC_VHOST_USER_NEED_REPLY, &v, 8, -1);
	t_reply(sock, req, &ack, 8);
	return ack;
}

void t_fe_open(struct t_fe *fe, const char *path)
{
	memset(fe, 0, sizeof(*fe));
	fe->memfd = fe->kick = fe->call = fe->err = -1;
	fe->sock = t_connect(path);
	fe->memfd = sc_mem_memfd_create("t-fe", T_MEM);
	cr_assert_geq(fe->memfd, 0);
	fe->mem = mmap(NULL, T_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
	cr_assert_neq(fe->mem, MAP_FAILED);
	fe->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fe->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fe->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert(fe->kick >= 0 && fe->call >= 0 && fe->err >= 0);
}

void t_fe_use_file(struct t_fe *fe, const char *dir)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/sidecore-mem-XXXXXX", dir);
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	unlink(path);
	cr_assert_eq(ftruncate(fd, T_MEM), 0);
	munmap(fe->mem, T_MEM);
	close(fe->memfd);
	fe->memfd = fd;
	fe->mem = mmap(NULL, T_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(fe->mem, MAP_FAILED);
}

void t_fe_negotiate(struct t_fe *fe)
{
	uint64_t f = t_get_u64(fe->sock, SC_VHOST_USER_GET_FEATURES);
	cr_assert(f & (1ull << SC_VU_F_PROTOCOL_FEATURES));
	uint64_t want = (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VIRTIO_F_VERSION_1);
	t_send(fe->sock, SC_VHOST_USER_SET_FEATURES, 0, &want, 8, -1);
	uint64_t pf = t_get_u64(fe->sock, SC_VHOST_USER_GET_PROTOCOL_FEATURES);
	cr_assert(pf & (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK));
	t_send(fe->sock, SC_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, -1);
	t_send(fe->sock, SC_VHOST_USER_SET_OWNER, 0, NULL, 0, -1);
}

uint64_t t_fe_mem_table(struct t_fe *fe, int fd)
{
	struct { uint32_t n, pad; struct sc_vu_region r; } mt = { 1, 0, { 0, T_MEM, (uintptr_t)fe->mem, 0 } };
	uint64_t ack;
	t_send(fe->sock, SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_NEED_REPLY, &mt, sizeof(mt), fd);
	t_reply(fe->sock, SC_VHOST_USER_SET_MEM_TABLE, &ack, 8);
	return ack;
}

void t_fe_ring_at(struct t_fe *fe, uint16_t base, uint64_t mem_addr)
{
	struct sc_vu_vring_state num = { 0, T_QSIZE }, b = { 0, base };
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_BASE, 0, &b, 8, -1);
	struct sc_vu_vring_addr a = { .index = 0, .desc_user_addr = mem_addr + (uint64_t)((uint8_t *)fe->vq.desc - fe->mem),
				      .avail_user_addr = mem_addr + (uint64_t)((uint8_t *)fe->vq.avail - fe->mem),
				      .used_user_addr = mem_addr + (uint64_t)((uint8_t *)fe->vq.used - fe->mem) };
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1);
	uint64_t idx0 = 0;
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_CALL, 0, &idx0, 8, fe->call);
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_ERR, 0, &idx0, 8, fe->err);
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_KICK, 0, &idx0, 8, fe->kick);
	struct sc_vu_vring_state en = { 0, 1 };
	uint64_t ack;
	t_send(fe->sock, SC_VHOST_USER_SET_VRING_ENABLE, SC_VHOST_USER_NEED_REPLY, &en, 8, -1);
	t_reply(fe->sock, SC_VHOST_USER_SET_VRING_ENABLE, &ack, 8);
	cr_assert_eq(ack, 0, "enable refused: %llu", (unsigned long long)ack);
}

void t_fe_ring_resume(struct t_fe *fe, uint16_t base)
{
	t_fe_ring_at(fe, base, (uintptr_t)fe->mem);
}

void t_fe_ring(struct t_fe *fe)
{
	cr_assert_eq(sc_drv_vq_init(&fe->vq, fe->mem, 0, T_QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	sc_drv_vq_interrupts_disable(&fe->vq);
	t_fe_ring_resume(fe, 0);
}

uint16_t t_fe_get_base(struct t_fe *fe)
{
	struct sc_vu_vring_state st = { 0, 0 };
	t_send(fe->sock, SC_VHOST_USER_GET_VRING_BASE, 0, &st, 8, -1);
	t_reply(fe->sock, SC_VHOST_USER_GET_VRING_BASE, &st, 8);
	cr_assert_eq(st.index, 0);
	return (uint16_t)st.num;
}

void t_fe_start(struct t_fe *fe, const char *path)
{
	t_fe_open(fe, path);
	t_fe_negotiate(fe);
	cr_assert_eq(t_fe_mem_table(fe, fe->memfd), 0, "memory table refused");
	t_fe_ring(fe);
}

/* Make the chain segs available (out device-readable, in device-writable) and kick if asked to. */
static void fe_add(struct t_fe *fe, const struct sc_drv_seg *s, unsigned out, unsigned in)
{
	cr_assert_geq(sc_drv_vq_add(&fe->vq, s, out, in), 0);
	sc_drv_vq_publish(&fe->vq);
	if (sc_drv_vq_kick_needed(&fe->vq)) {
		uint64_t one = 1;
		cr_assert_eq(write(fe->kick, &one, 8), 8);
	}
}

uint64_t t_fe_post(struct t_fe *fe, uint32_t type, uint64_t sector)
{
	unsigned slot = fe->slot++ % 32;
	uint64_t hdr = T_HDR_GPA + slot * 64, data = T_DATA_GPA + slot * 4096;
	*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	fe->mem[hdr + 16] = 0xee;
	struct sc_drv_seg s[3] = { { hdr, 16 }, { data, 4096 }, { hdr + 16, 1 } };
	bool out = type == SC_VIRTIO_BLK_T_OUT;
	fe_add(fe, s, out ? 2 : 1, out ? 1 : 2);
	return hdr + 16;
}

unsigned t_fe_wait(struct t_fe *fe, unsigned n, int ms)
{
	uint16_t head;
	uint32_t len;
	unsigned got = 0;
	int64_t t0 = t_now_ms();
	while (got < n && t_now_ms() - t0 < ms) {
		if (sc_drv_vq_get_used(&fe->vq, &head, &len))
			got++;
		else
			usleep(50);
	}
	return got;
}

int t_fe_io(struct t_fe *fe, uint32_t type, uint64_t sector)
{
	uint64_t status = t_fe_post(fe, type, sector);
	cr_assert_eq(t_fe_wait(fe, 1, 5000), 1, "no completion in 5 s");
	return fe->mem[status];
}

int t_fe_write_zeroes(struct t_fe *fe, uint64_t sector, uint32_t nsect)
{
	unsigned slot = fe->slot++ % 32;
	uint64_t hdr = T_HDR_GPA + slot * 64;
	*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_WRITE_ZEROES };
	*(struct sc_virtio_blk_discard_write_zeroes *)(fe->mem + hdr + 16) =
		(struct sc_virtio_blk_discard_write_zeroes){ .sector = sector, .num_sectors = nsect };
	fe->mem[hdr + 32] = 0xee;
	struct sc_drv_seg s[3] = { { hdr, 16 }, { hdr + 16, 16 }, { hdr + 32, 1 } };
	fe_add(fe, s, 2, 1);
	cr_assert_eq(t_fe_wait(fe, 1, 5000), 1, "no completion in 5 s");
	return fe->mem[hdr + 32];
}

uint64_t t_fe_err_count(struct t_fe *fe, int ms)
{
	struct pollfd p = { .fd = fe->err, .events = POLLIN };
	uint64_t v = 0;
	if (poll(&p, 1, ms) == 1 && read(fe->err, &v, 8) != 8)
		v = 0;
	return v;
}

void t_fe_verified_io(struct t_fe *fe, const char *img, uint64_t sector)
{
	static unsigned seed = 1;
	unsigned slot = fe->slot % 32;
	uint8_t *buf = fe->mem + T_DATA_GPA + slot * 4096, disk[4096], want[4096];
	seed++;
	for (int i = 0; i < 4096; i++)
		want[i] = (uint8_t)(i * 7 + seed * 13 + sector);
	memcpy(buf, want, 4096);
	cr_assert_eq(t_fe_io(fe, SC_VIRTIO_BLK_T_OUT, sector), SC_VIRTIO_BLK_S_OK, "write to %s", img);
	t_disk_read(img, sector, disk);
	cr_assert_eq(memcmp(disk, want, 4096), 0, "%s holds what the guest wrote", img);
	slot = fe->slot % 32;
	memset(fe->mem + T_DATA_GPA + slot * 4096, 0, 4096);
	cr_assert_eq(t_fe_io(fe, SC_VIRTIO_BLK_T_IN, sector), SC_VIRTIO_BLK_S_OK, "read from %s", img);
	cr_assert_eq(memcmp(fe->mem + T_DATA_GPA + slot * 4096, want, 4096), 0, "read back what was written");
}

void t_fe_close(struct t_fe *fe)
{
	int *fds[] = { &fe->sock, &fe->memfd, &fe->kick, &fe->call, &fe->err };
	if (fe->mem)
		munmap(fe->mem, T_MEM);
	for (unsigned i = 0; i < 5; i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->memfd = fe->kick = fe->call = fe->err = -1;
}

int t_fe_negotiate_iotlb(struct t_fe *fe, bool access_platform)
{
	uint64_t f = t_get_u64(fe->sock, SC_VHOST_USER_GET_FEATURES);
	cr_assert(f & (1ull << SC_VU_F_ACCESS_PLATFORM), "ACCESS_PLATFORM offered");
	uint64_t want = (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VIRTIO_F_VERSION_1) |
			(access_platform ? 1ull << SC_VU_F_ACCESS_PLATFORM : 0);
	t_send(fe->sock, SC_VHOST_USER_SET_FEATURES, 0, &want, 8, -1);
	uint64_t pf = t_get_u64(fe->sock, SC_VHOST_USER_GET_PROTOCOL_FEATURES);
	cr_assert(pf & (1ull << SC_VHOST_USER_PROTOCOL_F_IOTLB), "IOTLB offered");
	cr_assert(pf & (1ull << SC_VHOST_USER_PROTOCOL_F_BACKEND_REQ), "BACKEND_REQ offered");
	cr_assert(pf & (1ull << SC_VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD), "INFLIGHT_SHMFD offered");
	cr_assert(pf & (1ull << SC_VHOST_USER_PROTOCOL_F_REPLY_ACK));
	t_send(fe->sock, SC_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, -1);
	t_send(fe->sock, SC_VHOST_USER_SET_OWNER, 0, NULL, 0, -1);
	int sv[2];
	uint64_t ack;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	t_send(fe->sock, SC_VHOST_USER_SET_BACKEND_REQ_FD, SC_VHOST_USER_NEED_REPLY, NULL, 0, sv[1]);
	t_reply(fe->sock, SC_VHOST_USER_SET_BACKEND_REQ_FD, &ack, 8);
	cr_assert_eq(ack, 0);
	close(sv[1]);
	return sv[0];
}

uint64_t t_iotlb(int sock, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm)
{
	struct sc_vu_iotlb t = { .iova = iova, .size = size, .uaddr = uaddr, .perm = perm, .type = type };
	uint64_t ack;
	t_send(sock, SC_VHOST_USER_IOTLB_MSG, SC_VHOST_USER_NEED_REPLY, &t, sizeof(t), -1);
	t_reply(sock, SC_VHOST_USER_IOTLB_MSG, &ack, 8);
	return ack;
}

bool t_next_miss(int backend, int ms, struct sc_vu_iotlb *t)
{
	struct pollfd p = { .fd = backend, .events = POLLIN };
	struct sc_vu_hdr h;
	if (poll(&p, 1, ms) <= 0)
		return false;
	cr_assert_eq(recv(backend, &h, sizeof(h), MSG_WAITALL), (ssize_t)sizeof(h));
	cr_assert_eq(h.request, SC_VHOST_USER_BACKEND_IOTLB_MSG);
	cr_assert_eq(h.size, sizeof(*t));
	cr_assert_eq(recv(backend, t, sizeof(*t), MSG_WAITALL), (ssize_t)sizeof(*t));
	cr_assert_eq(t->type, SC_VHOST_IOTLB_MISS);
	return true;
}

int t_get_inflight(int sock, uint16_t nq, struct sc_vu_inflight *got)
{
	struct sc_vu_inflight in = { 0, 0, nq, T_QSIZE };
	struct sc_vu_hdr h;
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	uint8_t pad[24] = { 0 };   /* QEMU pads the 20-byte description to 24 */
	int fd;
	memcpy(pad, &in, sizeof(in));
	t_send(sock, SC_VHOST_USER_GET_INFLIGHT_FD, 0, pad, 24, -1);
	cr_assert_eq(recvmsg(sock, &mh, MSG_WAITALL), (ssize_t)sizeof(h));
	cr_assert_eq(h.request, SC_VHOST_USER_GET_INFLIGHT_FD);
	cr_assert_eq(h.size, 24);
	cr_assert_not_null(CMSG_FIRSTHDR(&mh), "no inflight fd");
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
	cr_assert_eq(recv(sock, pad, 24, MSG_WAITALL), 24);
	memcpy(got, pad, sizeof(*got));
	return fd;
}

uint64_t t_set_inflight(int sock, const struct sc_vu_inflight *in, int fd)
{
	uint8_t pad[24] = { 0 };
	uint64_t ack;
	memcpy(pad, in, sizeof(*in));
	t_send(sock, SC_VHOST_USER_SET_INFLIGHT_FD, SC_VHOST_USER_NEED_REPLY, pad, 24, fd);
	t_reply(sock, SC_VHOST_USER_SET_INFLIGHT_FD, &ack, 8);
	return ack;
}

unsigned t_flood_unread(int sock)
{
	struct sc_vu_hdr hdr = { SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION, 0 };
	int64_t last = t_now_ms();
	unsigned n = 0;
	while (t_now_ms() - last < 200) {
		cr_assert_lt(n, 10000000u, "the server takes requests for ever while nobody reads its replies");
		ssize_t r = send(sock, &hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r == (ssize_t)sizeof(hdr)) {
			n++;
			last = t_now_ms();
		} else if (r < 0 && errno != EAGAIN) {
			break;   /* already dropped */
		} else {
			usleep(1000);
		}
	}
	return n;
}

void t_fe_disconnect(struct t_fe *fe)
{
	close(fe->sock);
	fe->sock = -1;
}

void t_fe_reconnect(struct t_fe *fe, const char *path, uint16_t base)
{
	fe->sock = t_connect(path);
	t_fe_negotiate(fe);
	cr_assert_eq(t_fe_mem_table(fe, fe->memfd), 0, "memory table refused");
	t_fe_ring_resume(fe, base);
}

bool t_wait_eof(int sock, int ms)
{
	int64_t end = t_now_ms() + ms;
	char buf[4096];
	for (;;) {
		int left = (int)(end - t_now_ms());
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = sock, .events = POLLIN };
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
}

void t_alive(struct t_disk *a, struct t_disk *b)
{
	struct t_disk *disks[2] = { a, b };
	for (int i = 0; i < 2 && disks[i]; i++) {
		struct t_fe fe;
		t_fe_start(&fe, disks[i]->sock);
		t_fe_verified_io(&fe, disks[i]->img, 8 + (uint64_t)i * 16);
		t_fe_close(&fe);
		/* The next front end must find the device free again. */
		int64_t t0 = t_now_ms();
		while (sc_vu_server_started(disks[i]->srv)) {
			cr_assert_lt(t_now_ms() - t0, 5000, "%s: the ring kept running after its front end left",
				     disks[i]->sock);
			usleep(1000);
		}
	}
}

void t_log_begin(struct t_log *l)
{
	snprintf(l->path, sizeof(l->path), "/tmp/sidecore-log-XXXXXX");
	l->fd = mkstemp(l->path);
	cr_assert_geq(l->fd, 0);
	unlink(l->path);   /* nothing left behind by a test that fails before t_log_end */
	fflush(stderr);
	l->saved = dup(2);
	cr_assert_eq(dup2(l->fd, 2), 2);
}

char *t_log_end(struct t_log *l)
{
	fflush(stderr);
	dup2(l->saved, 2);
	close(l->saved);
	off_t n = lseek(l->fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)n + 1);
	cr_assert_not_null(text);
	cr_assert_eq(pread(l->fd, text, (size_t)n, 0), n);
	close(l->fd);
	fputs(text, stderr);   /* still in the test's own log */
	return text;
}

unsigned t_count(const char *text, const char *needle)
{
	unsigned n = 0;
	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}
