/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user back end with a real virtio-blk device on io_uring and a
 * real sidecore, driven by the test front end (harness.h: memfd guest
 * memory, the driver library's split ring, eventfds) over a real unix
 * socket.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/barrier.h"
#include "runtime/vu_msg.h"
#include "harness.h"

static struct sc_poller *poller;
static struct t_disk D;
static struct t_fe fe = { .sock = -1, .memfd = -1, .kick = -1, .call = -1 };

static void setup(void)
{
	struct sc_poller_config pc = { .cpu = -1, .idle_spin_ns = 100000, .name = "sc-vu" };
	cr_assert_eq(sc_poller_create(&pc, &poller), 0);
	t_disk_open(&D, poller, 0, "vu-disk");
}

static void teardown(void)
{
	t_fe_close(&fe);
	t_disk_close(&D);
	sc_poller_destroy(poller);
}

TestSuite(vu_server, .init = setup, .fini = teardown, .timeout = 30);

Test(vu_server, guest_writes_reach_the_disk_through_the_sidecore)
{
	t_fe_start(&fe, D.sock);
	cr_assert_eq(sc_vu_server_started(D.srv), 1, "the vring is live on the sidecore");
	t_fe_verified_io(&fe, D.img, 16);
}

Test(vu_server, config_space_reports_the_disk)
{
	t_fe_start(&fe, D.sock);
	struct { uint32_t offset, size, flags; uint8_t data[60]; } c = { 0, 60, 0, { 0 } };
	t_send(fe.sock, SC_VHOST_USER_GET_CONFIG, 0, &c, 12 + 60, -1);
	t_reply(fe.sock, SC_VHOST_USER_GET_CONFIG, &c, 12 + 60);
	struct sc_virtio_blk_config *cfg = (void *)c.data;
	cr_assert_eq(cfg->capacity, T_DISK / 512);
	cr_assert_eq(cfg->num_queues, 2);
}

Test(vu_server, get_vring_base_stops_the_ring_and_says_where_it_is)
{
	t_fe_start(&fe, D.sock);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, i * 8), SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(t_fe_get_base(&fe), 5);
	cr_assert_eq(sc_vu_server_started(D.srv), 0, "stopped, detached from the sidecore");
	/* Nothing is served now. */
	uint64_t hdr = T_HDR_GPA;
	*(struct sc_virtio_blk_outhdr *)(fe.mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN };
	struct sc_drv_seg s[3] = { { hdr, 16 }, { T_DATA_GPA, 512 }, { hdr + 16, 1 } };
	sc_drv_vq_add(&fe.vq, s, 1, 2);
	sc_drv_vq_publish(&fe.vq);
	usleep(50000);
	cr_assert_eq(sc_load_acquire(&fe.vq.used->idx), 5);
}

Test(vu_server, front_end_reconnects_and_gets_its_device_back)
{
	t_fe_start(&fe, D.sock);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, i * 8), SC_VIRTIO_BLK_S_OK);
	uint16_t base = t_fe_get_base(&fe);
	t_fe_disconnect(&fe);            /* the VMM goes away... */
	usleep(50000);
	cr_assert_eq(sc_vu_server_started(D.srv), 0);
	t_fe_reconnect(&fe, D.sock, base);   /* ...comes back, and resumes where the ring was */
	for (unsigned i = 3; i < 6; i++)
		cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, i * 8), SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(t_fe_get_base(&fe), 6);
}

Test(vu_server, disconnect_without_get_vring_base_stops_the_ring)
{
	t_fe_start(&fe, D.sock);
	cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, 0), SC_VIRTIO_BLK_S_OK);
	t_fe_disconnect(&fe);
	int64_t t0 = t_now_ms();
	while (sc_vu_server_started(D.srv) != 0) {
		cr_assert_lt(t_now_ms() - t0, 5000, "the ring kept running after the front end left");
		usleep(1000);
	}
}

Test(vu_server, a_bad_message_drops_only_that_connection)
{
	int s = t_connect(D.sock);
	struct sc_vu_vring_state num = { 0, 12 };   /* not a power of two */
	t_send(s, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	cr_assert(t_wait_eof(s, 2000), "the server closed the connection");
	close(s);
	t_alive(&D, NULL);   /* and the next front end is served */
}

Test(vu_server, unsupported_request_is_answered_and_the_connection_goes_on)
{
	t_fe_start(&fe, D.sock);
	cr_assert_neq(t_set_u64_ack(fe.sock, SC_VHOST_USER_SET_LOG_BASE, 0), 0, "refused");
	cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, 0), SC_VIRTIO_BLK_S_OK, "still served");
}

Test(vu_server, queue_size_above_the_disks_limit_is_refused)
{
	D.dev.ops.max_queue_size = 32;   /* the config's queue_size; read when the message comes */
	int s = t_connect(D.sock);
	struct sc_vu_vring_state num = { 0, T_QSIZE };   /* 64 > 32 */
	t_send(s, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	cr_assert(t_wait_eof(s, 2000), "the server dropped the connection");
	close(s);
	D.dev.ops.max_queue_size = 0;
}

Test(vu_server, socket_path_errors_are_clear)
{
	struct sc_vu_server *s2;
	char err[256];
	cr_assert_eq(sc_vu_server_create("/nonexistent-dir/x.sock", &D.dev.ops, &D.dev, &s2, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent-dir/x.sock") && strstr(err, "directory exists"), "%s", err);
	cr_assert_eq(sc_vu_server_create(D.img, &D.dev.ops, &D.dev, &s2, err, sizeof(err)), -EEXIST);
	cr_assert(strstr(err, "not a socket"), "%s", err);
}
