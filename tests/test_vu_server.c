/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user back end with a real virtio-blk device on io_uring and a
 * real sidecore, driven by a small front end written here against the
 * protocol (memfd guest memory, the driver library's split ring, eventfds),
 * over a real unix socket.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "runtime/vhost_user.h"
#include "runtime/vu_blk.h"

#define MEM (4u << 20)
#define QSIZE 64
#define DISK (1u << 20)

static char dir[] = "/tmp/sidecore-vu-XXXXXX", sock_path[80], disk_path[80];
static struct sc_blk_backend be;
static struct sc_poller *poller;
static struct sc_vu_blk dev;
static struct sc_vu_server *srv;
static pthread_t srv_thread;
static int srv_stop;

/* the front end */
static int fe = -1, memfd = -1, kick = -1, call = -1;
static uint8_t *guest;
static struct sc_drv_vq dvq;

static void *server_main(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&srv_stop, __ATOMIC_ACQUIRE))
		sc_vu_server_poll(srv, 20);
	return NULL;
}

static void setup(void)
{
	char err[256];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/blk.sock", dir);
	snprintf(disk_path, sizeof(disk_path), "%s/disk.img", dir);
	int fd = open(disk_path, O_CREAT | O_RDWR, 0644);
	cr_assert_eq(ftruncate(fd, DISK), 0);
	close(fd);
	cr_assert_eq(sc_blk_backend_open(&be, disk_path, false, false, "vu-disk", err, sizeof(err)), 0, "%s", err);
	struct sc_poller_config pc = { .cpu = -1, .idle_spin_ns = 100000, .name = "sc-vu" };
	cr_assert_eq(sc_poller_create(&pc, &poller), 0);
	sc_vu_blk_init(&dev, &be, &poller, 1, 2);
	cr_assert_eq(sc_vu_server_create(sock_path, &dev.ops, &dev, &srv, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pthread_create(&srv_thread, NULL, server_main, NULL), 0);
}

static void fe_close(void)
{
	if (fe >= 0)
		close(fe);
	fe = -1;
}

static void teardown(void)
{
	fe_close();
	__atomic_store_n(&srv_stop, 1, __ATOMIC_RELEASE);
	pthread_join(srv_thread, NULL);
	sc_vu_server_destroy(srv);
	sc_poller_destroy(poller);
	sc_blk_backend_close(&be);
	if (guest)
		munmap(guest, MEM);
	guest = NULL;
	for (int *f = &memfd; f; f = f == &memfd ? &kick : f == &kick ? &call : NULL)
		if (*f >= 0)
			close(*f), *f = -1;
	unlink(disk_path);
	rmdir(dir);
}

TestSuite(vu_server, .init = setup, .fini = teardown, .timeout = 30);

static void fe_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock_path);
	fe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fe, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void fe_send(uint32_t req, uint32_t flags, const void *payload, uint32_t size, int fd)
{
	int ret = sc_vu_send(fe, req, flags, payload, size, fd);
	cr_assert_eq(ret, 0, "sending %s: %s", sc_vu_request_name(req), strerror(-ret));
}

/* Read a reply to req into buf (size bytes of payload expected). */
static void fe_reply(uint32_t req, void *buf, uint32_t size)
{
	struct sc_vu_hdr h;
	cr_assert_eq(recv(fe, &h, sizeof(h), MSG_WAITALL), (ssize_t)sizeof(h), "no reply to %s", sc_vu_request_name(req));
	cr_assert_eq(h.request, req);
	cr_assert(h.flags & VHOST_USER_REPLY);
	cr_assert_eq(h.size, size, "reply of %u bytes", h.size);
	cr_assert_eq(recv(fe, buf, size, MSG_WAITALL), (ssize_t)size);
}

static uint64_t fe_get_u64(uint32_t req)
{
	uint64_t v;
	fe_send(req, 0, NULL, 0, -1);
	fe_reply(req, &v, 8);
	return v;
}

static void fe_set_u64(uint32_t req, uint64_t v, bool ack)
{
	fe_send(req, ack ? VHOST_USER_NEED_REPLY : 0, &v, 8, -1);
	if (ack) {
		uint64_t r;
		fe_reply(req, &r, 8);
		cr_assert_eq(r, 0, "%s was refused (%llu)", sc_vu_request_name(req), (unsigned long long)r);
	}
}

/* Negotiate, share memory, and describe vring 0 starting at base; the ring goes live. */
static void fe_setup(uint16_t base, bool fresh_ring)
{
	fe_connect();
	uint64_t f = fe_get_u64(VHOST_USER_GET_FEATURES);
	cr_assert(f & (1ull << SC_VU_F_PROTOCOL_FEATURES));
	cr_assert(f & (1ull << VIRTIO_F_VERSION_1));
	fe_set_u64(VHOST_USER_SET_FEATURES, (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << VIRTIO_F_VERSION_1), false);
	uint64_t pf = fe_get_u64(VHOST_USER_GET_PROTOCOL_FEATURES);
	cr_assert(pf & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	fe_set_u64(VHOST_USER_SET_PROTOCOL_FEATURES, pf, false);
	fe_send(VHOST_USER_SET_OWNER, 0, NULL, 0, -1);
	cr_assert_eq(fe_get_u64(VHOST_USER_GET_QUEUE_NUM), 2);

	if (!guest) {
		memfd = sc_mem_memfd_create("fe", MEM);
		guest = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		cr_assert_neq(guest, MAP_FAILED);
	}
	if (fresh_ring) {
		cr_assert_eq(sc_drv_vq_init(&dvq, guest, 0, QSIZE, 1ull << VIRTIO_F_VERSION_1), 0);
		sc_drv_vq_interrupts_disable(&dvq);
	}
	struct { uint32_t n, pad; struct sc_vu_region r; } mt = { 1, 0, { 0, MEM, (uintptr_t)guest, 0 } };
	fe_send(VHOST_USER_SET_MEM_TABLE, VHOST_USER_NEED_REPLY, &mt, sizeof(mt), memfd);
	uint64_t ack;
	fe_reply(VHOST_USER_SET_MEM_TABLE, &ack, 8);
	cr_assert_eq(ack, 0);

	struct sc_vu_vring_state num = { 0, QSIZE }, b = { 0, base };
	fe_send(VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	fe_send(VHOST_USER_SET_VRING_BASE, 0, &b, 8, -1);
	struct sc_vu_vring_addr a = { .index = 0,
		.desc_user_addr = (uintptr_t)dvq.desc, .avail_user_addr = (uintptr_t)dvq.avail,
		.used_user_addr = (uintptr_t)dvq.used };
	fe_send(VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1);
	if (kick < 0) {
		kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	uint64_t idx0 = 0;
	fe_send(VHOST_USER_SET_VRING_CALL, 0, &idx0, 8, call);
	fe_send(VHOST_USER_SET_VRING_KICK, 0, &idx0, 8, kick);
	struct sc_vu_vring_state en = { 0, 1 };
	fe_send(VHOST_USER_SET_VRING_ENABLE, VHOST_USER_NEED_REPLY, &en, 8, -1);
	fe_reply(VHOST_USER_SET_VRING_ENABLE, &ack, 8);
	cr_assert_eq(ack, 0, "enable refused");
	cr_assert_eq(sc_vu_server_started(srv), 1, "the vring is live on the sidecore");
}

/* One blk request through the ring: write (or read) 4 KiB at sector; returns the status. */
static int fe_io(uint32_t type, uint64_t sector, unsigned slot)
{
	uint64_t hdr = 0x100000 + slot * 64, data = 0x200000 + slot * 4096;
	*(struct virtio_blk_outhdr *)(guest + hdr) = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	guest[hdr + 16] = 0xee;
	struct sc_drv_seg s[3] = { { hdr, 16 }, { data, 4096 }, { hdr + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&dvq, s, type == VIRTIO_BLK_T_OUT ? 2 : 1, type == VIRTIO_BLK_T_OUT ? 1 : 2), 0);
	sc_drv_vq_publish(&dvq);
	if (sc_drv_vq_kick_needed(&dvq)) {
		uint64_t one = 1;
		cr_assert_eq(write(kick, &one, 8), 8);
	}
	uint16_t head;
	uint32_t len;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (sc_drv_vq_get_used(&dvq, &head, &len) == 0) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 5, "no completion");
		sc_cpu_relax();
	}
	return guest[hdr + 16];
}

static uint16_t fe_get_base(void)
{
	struct sc_vu_vring_state st = { 0, 0 };
	fe_send(VHOST_USER_GET_VRING_BASE, 0, &st, 8, -1);
	fe_reply(VHOST_USER_GET_VRING_BASE, &st, 8);
	cr_assert_eq(st.index, 0);
	return (uint16_t)st.num;
}

Test(vu_server, guest_writes_reach_the_disk_through_the_sidecore)
{
	fe_setup(0, true);
	for (int i = 0; i < 4096; i++)
		guest[0x200000 + i] = (uint8_t)(i ^ 0x5a);
	cr_assert_eq(fe_io(VIRTIO_BLK_T_OUT, 16, 0), VIRTIO_BLK_S_OK);
	uint8_t disk[4096];
	int fd = open(disk_path, O_RDONLY);
	cr_assert_eq(pread(fd, disk, 4096, 16 * 512), 4096);
	close(fd);
	cr_assert_eq(memcmp(disk, guest + 0x200000, 4096), 0, "the disk holds what the guest wrote");
	cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, 16, 1), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(guest + 0x201000, guest + 0x200000, 4096), 0);
}

Test(vu_server, config_space_reports_the_disk)
{
	fe_setup(0, true);
	struct { uint32_t offset, size, flags; uint8_t data[60]; } c = { 0, 60, 0, { 0 } };
	fe_send(VHOST_USER_GET_CONFIG, 0, &c, 12 + 60, -1);
	fe_reply(VHOST_USER_GET_CONFIG, &c, 12 + 60);
	struct virtio_blk_config *cfg = (void *)c.data;
	cr_assert_eq(cfg->capacity, DISK / 512);
	cr_assert_eq(cfg->num_queues, 2);
}

Test(vu_server, get_vring_base_stops_the_ring_and_says_where_it_is)
{
	fe_setup(0, true);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, i * 8, i), VIRTIO_BLK_S_OK);
	cr_assert_eq(fe_get_base(), 5);
	cr_assert_eq(sc_vu_server_started(srv), 0, "stopped, detached from the sidecore");
	/* Nothing is served now. */
	uint64_t hdr = 0x100000;
	*(struct virtio_blk_outhdr *)(guest + hdr) = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN };
	struct sc_drv_seg s[3] = { { hdr, 16 }, { 0x200000, 512 }, { hdr + 16, 1 } };
	sc_drv_vq_add(&dvq, s, 1, 2);
	sc_drv_vq_publish(&dvq);
	usleep(50000);
	cr_assert_eq(sc_load_acquire(&dvq.used->idx), 5);
}

Test(vu_server, front_end_reconnects_and_gets_its_device_back)
{
	fe_setup(0, true);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, i * 8, i), VIRTIO_BLK_S_OK);
	uint16_t base = fe_get_base();
	fe_close();                   /* the VMM goes away... */
	usleep(50000);
	cr_assert_eq(sc_vu_server_started(srv), 0);
	fe_setup(base, false);        /* ...comes back, and resumes where the ring was */
	for (unsigned i = 3; i < 6; i++)
		cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, i * 8, i), VIRTIO_BLK_S_OK);
	cr_assert_eq(fe_get_base(), 6);
}

Test(vu_server, disconnect_without_get_vring_base_stops_the_ring)
{
	fe_setup(0, true);
	cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, 0, 0), VIRTIO_BLK_S_OK);
	fe_close();
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (sc_vu_server_started(srv) != 0) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 5, "the ring kept running after the front end left");
		usleep(1000);
	}
}

Test(vu_server, a_bad_message_drops_only_that_connection)
{
	fe_connect();
	struct sc_vu_vring_state num = { 0, 12 };   /* not a power of two */
	fe_send(VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	char c;
	cr_assert_eq(recv(fe, &c, 1, 0), 0, "the server closed the connection");
	fe_close();
	fe_setup(0, true);   /* and the next front end is served */
	cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, 0, 0), VIRTIO_BLK_S_OK);
}

Test(vu_server, unsupported_request_is_answered_and_the_connection_goes_on)
{
	fe_setup(0, true);
	uint64_t v = 0, ack;
	fe_send(VHOST_USER_SET_LOG_BASE, VHOST_USER_NEED_REPLY, &v, 8, -1);
	fe_reply(VHOST_USER_SET_LOG_BASE, &ack, 8);
	cr_assert_neq(ack, 0, "refused");
	cr_assert_eq(fe_io(VIRTIO_BLK_T_IN, 0, 0), VIRTIO_BLK_S_OK, "still served");
}

Test(vu_server, queue_size_above_the_disks_limit_is_refused)
{
	dev.ops.max_queue_size = 32;   /* the config's queue_size */
	fe_connect();
	struct sc_vu_vring_state num = { 0, QSIZE };   /* 64 > 32 */
	fe_send(VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	char c;
	cr_assert_eq(recv(fe, &c, 1, 0), 0, "the server dropped the connection");
	dev.ops.max_queue_size = 0;
}

Test(vu_server, socket_path_errors_are_clear)
{
	struct sc_vu_server *s2;
	char err[256];
	cr_assert_eq(sc_vu_server_create("/nonexistent-dir/x.sock", &dev.ops, &dev, &s2, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent-dir/x.sock") && strstr(err, "directory exists"), "%s", err);
	cr_assert_eq(sc_vu_server_create(disk_path, &dev.ops, &dev, &s2, err, sizeof(err)), -EEXIST);
	cr_assert(strstr(err, "not a socket"), "%s", err);
}
