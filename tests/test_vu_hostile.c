/* SPDX-License-Identifier: MIT */
/*
 * Hostile front ends against the vhost-user back end, one test per fault:
 * messages that stall, replies nobody reads, fds of the wrong kind or size,
 * memory and inflight areas replaced under running rings, protocol state
 * across a reset, a ring the guest broke. Two disks share one sidecore;
 * after each fault the server is alive and a fresh front end does verified
 * I/O on the same disk and on the other one.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/barrier.h"
#include "guestmem/guestmem.h"
#include "runtime/vu_msg.h"
#include "harness.h"

#define TIMEOUT_MS 400   /* the control timeout the disks use here */

static struct sc_poller *poller;
static struct t_disk A, B;

static void setup(void)
{
	struct sc_poller_config pc = { .cpu = -1, .idle_spin_ns = 100000, .name = "sc-hostile" };
	cr_assert_eq(sc_poller_create(&pc, &poller), 0);
	t_disk_open(&A, poller, TIMEOUT_MS, "a");
	t_disk_open(&B, poller, TIMEOUT_MS, "b");
}

static void teardown(void)
{
	t_disk_close(&A);
	t_disk_close(&B);
	sc_poller_destroy(poller);
}

TestSuite(vu_hostile, .init = setup, .fini = teardown, .timeout = 60);

/* ---- stalls ---- */

Test(vu_hostile, half_a_header_then_silence_drops_only_that_connection)
{
	int h = t_connect(A.sock);
	uint32_t half[2] = { SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION };
	cr_assert_eq(send(h, half, 6, MSG_NOSIGNAL), 6);
	int64_t t0 = t_now_ms();
	t_alive(&B, NULL);   /* the other disk does not wait for it */
	cr_assert(t_wait_eof(h, TIMEOUT_MS + 2000), "the stalled connection was never dropped");
	int64_t dt = t_now_ms() - t0;
	cr_assert(dt >= TIMEOUT_MS - 50 && dt < TIMEOUT_MS + 1000, "dropped after %lld ms", (long long)dt);
	close(h);
	t_alive(&A, &B);
}

Test(vu_hostile, half_a_payload_then_silence_drops_the_connection)
{
	int h = t_connect(A.sock);
	struct sc_vu_hdr hdr = { SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 8 };
	uint8_t msg[sizeof(hdr) + 4] = { 0 };
	memcpy(msg, &hdr, sizeof(hdr));
	cr_assert_eq(send(h, msg, sizeof(msg), MSG_NOSIGNAL), (ssize_t)sizeof(msg));
	cr_assert(t_wait_eof(h, TIMEOUT_MS + 2000), "the stalled connection was never dropped");
	close(h);
	t_alive(&A, &B);
}

Test(vu_hostile, one_byte_at_a_time_cannot_stretch_a_message)
{
	/* Each byte comes well within the timeout; the message as a whole does not. */
	int h = t_connect(A.sock);
	struct sc_vu_hdr hdr = { SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 8 };
	uint8_t msg[sizeof(hdr) + 8] = { 0 };
	memcpy(msg, &hdr, sizeof(hdr));
	int64_t t0 = t_now_ms();
	size_t sent = 0;
	for (; sent < sizeof(msg); sent++) {
		if (send(h, msg + sent, 1, MSG_NOSIGNAL) != 1)
			break;
		if (t_wait_eof(h, TIMEOUT_MS / 4))
			break;
	}
	cr_assert_lt(sent, sizeof(msg), "the whole message trickled in");
	cr_assert_lt(t_now_ms() - t0, TIMEOUT_MS + 1000, "dropped too late");
	close(h);
	t_alive(&A, &B);
}

Test(vu_hostile, never_reading_replies_drops_the_connection)
{
	int h = t_connect(A.sock);
	t_flood_unread(h);
	t_alive(&B, NULL);
	usleep((TIMEOUT_MS + 300) * 1000);
	/* Now read: a server that gave up ends the stream after what it sent; one still waiting goes on. */
	cr_assert(t_wait_eof(h, 3000), "the connection that never read its replies is still served");
	close(h);
	t_alive(&A, &B);
}

Test(vu_hostile, a_connection_that_sends_nothing_gives_way_to_the_next)
{
	int idle = t_connect(A.sock);
	usleep(50000);
	int64_t t0 = t_now_ms();
	t_alive(&A, NULL);   /* waits in the backlog until the idle one is replaced */
	cr_assert_lt(t_now_ms() - t0, TIMEOUT_MS + 2000);
	cr_assert(t_wait_eof(idle, 1000), "the idle connection was not dropped");
	close(idle);
	t_alive(&A, &B);
}

/* ---- fds ---- */

/* Set up vring 0 up to its call fd, which is fd; expect a refusal and a dropped connection. */
static void call_fd_refused(int fd, uint32_t req)
{
	struct t_fe fe;
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	uint64_t idx0 = 0, ack;
	t_send(fe.sock, req, SC_VHOST_USER_NEED_REPLY, &idx0, 8, fd);
	t_reply(fe.sock, req, &ack, 8);
	cr_assert_eq(ack, EBADFD, "%s with a non-eventfd was acked %llu", sc_vu_request_name(req),
		     (unsigned long long)ack);
	cr_assert(t_wait_eof(fe.sock, 1000));
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, call_fd_that_is_a_pipe_is_refused)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	call_fd_refused(p[1], SC_VHOST_USER_SET_VRING_CALL);
	close(p[0]);
	close(p[1]);
}

Test(vu_hostile, kick_and_err_fds_that_are_sockets_are_refused)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	call_fd_refused(sv[0], SC_VHOST_USER_SET_VRING_KICK);
	call_fd_refused(sv[0], SC_VHOST_USER_SET_VRING_ERR);
	close(sv[0]);
	close(sv[1]);
}

/* A memory table whose one region comes from fd: refused with want (0: accepted). */
static void mem_fd_gets(int fd, uint64_t want)
{
	struct t_fe fe;
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	uint64_t ack = t_fe_mem_table(&fe, fd);
	cr_assert_eq(ack, want, "SET_MEM_TABLE acked %llu, expected %llu", (unsigned long long)ack,
		     (unsigned long long)want);
	if (want)
		cr_assert(t_wait_eof(fe.sock, 1000));
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, memfd_smaller_than_its_region_is_refused)
{
	int fd = sc_mem_memfd_create("small", T_MEM / 4);   /* sealed, but a quarter of what it claims */
	mem_fd_gets(fd, ENXIO);
	close(fd);
}

Test(vu_hostile, unsealed_memfd_is_refused)
{
	int fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_eq(ftruncate(fd, T_MEM), 0);
	mem_fd_gets(fd, EPERM);
	close(fd);
}

Test(vu_hostile, a_pipe_as_memory_is_refused)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	mem_fd_gets(p[0], EBADFD);
	close(p[0]);
	close(p[1]);
}

Test(vu_hostile, regular_file_memory_is_accepted_and_serves_io)
{
	/* A file cannot be sealed; it is taken (a fault on it is vqueue's to contain). */
	char path[] = "/tmp/sidecore-mem-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_eq(ftruncate(fd, T_MEM), 0);
	unlink(path);
	struct t_fe fe;
	t_fe_open(&fe, A.sock);
	munmap(fe.mem, T_MEM);
	fe.mem = mmap(NULL, T_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(fe.mem, MAP_FAILED);
	t_fe_negotiate(&fe);
	cr_assert_eq(t_fe_mem_table(&fe, fd), 0, "a regular file was refused");
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, A.img, 40);
	t_fe_close(&fe);
	close(fd);
	t_alive(&A, &B);
}

/* ---- memory and inflight replaced under running rings ---- */

Test(vu_hostile, empty_memory_table_then_a_good_one_runs_the_rings_again)
{
	struct t_fe fe;
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 0);
	struct { uint32_t n, pad; } empty = { 0, 0 };
	uint64_t ack;
	t_send(fe.sock, SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_NEED_REPLY, &empty, sizeof(empty), -1);
	t_reply(fe.sock, SC_VHOST_USER_SET_MEM_TABLE, &ack, 8);
	cr_assert_eq(ack, 0, "an empty table was refused");
	cr_assert_eq(sc_vu_server_started(A.srv), 0, "a ring ran without memory");
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	cr_assert_eq(sc_vu_server_started(A.srv), 1, "the ring did not run again");
	t_fe_verified_io(&fe, A.img, 8);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, remove_then_add_the_ring_region_keeps_the_device)
{
	/* QEMU's own update path: REM_MEM_REG then ADD_MEM_REG of the region holding rings and buffers. */
	struct t_fe fe;
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 0);
	struct { uint64_t pad; struct sc_vu_region r; } reg = { 0, { 0, T_MEM, (uintptr_t)fe.mem, 0 } };
	uint64_t ack;
	t_send(fe.sock, SC_VHOST_USER_REM_MEM_REG, SC_VHOST_USER_NEED_REPLY, &reg, sizeof(reg), fe.memfd);
	t_reply(fe.sock, SC_VHOST_USER_REM_MEM_REG, &ack, 8);
	cr_assert_eq(ack, 0, "REM_MEM_REG refused: %llu", (unsigned long long)ack);
	cr_assert_eq(sc_vu_server_started(A.srv), 0, "the ring ran with its region gone");
	t_send(fe.sock, SC_VHOST_USER_ADD_MEM_REG, SC_VHOST_USER_NEED_REPLY, &reg, sizeof(reg), fe.memfd);
	t_reply(fe.sock, SC_VHOST_USER_ADD_MEM_REG, &ack, 8);
	cr_assert_eq(ack, 0, "ADD_MEM_REG refused: %llu", (unsigned long long)ack);
	cr_assert_eq(sc_vu_server_started(A.srv), 1, "the ring did not run again");
	t_fe_verified_io(&fe, A.img, 16);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, inflight_area_replaced_while_rings_run)
{
	struct t_fe fe;
	struct sc_vu_inflight got;
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	int ifd = t_get_inflight(fe.sock, 2, &got);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, A.img, 0);
	/* SET_INFLIGHT_FD twice, then a new GET_INFLIGHT_FD, while the ring runs: the old mapping goes only once the ring let go. */
	for (int i = 0; i < 3; i++) {
		if (i < 2) {
			uint64_t ack = t_set_inflight(fe.sock, &got, ifd);
			cr_assert_eq(ack, 0, "SET_INFLIGHT_FD refused: %llu", (unsigned long long)ack);
		} else {
			close(ifd);
			ifd = t_get_inflight(fe.sock, 2, &got);
		}
		cr_assert_eq(sc_vu_server_started(A.srv), 1, "the ring did not run again");
		t_fe_verified_io(&fe, A.img, 8 + 8 * (uint64_t)i);
	}
	close(ifd);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, inflight_fd_smaller_than_it_claims_is_refused)
{
	struct t_fe fe;
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	int fd = sc_mem_memfd_create("small-inflight", 4096);
	struct sc_vu_inflight in = { 1u << 20, 0, 2, T_QSIZE };
	cr_assert_eq(t_set_inflight(fe.sock, &in, fd), ENXIO);
	cr_assert(t_wait_eof(fe.sock, 1000));
	close(fd);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

/* ---- protocol state ---- */

Test(vu_hostile, need_reply_is_acked_after_reset_device)
{
	struct t_fe fe;
	t_fe_start(&fe, A.sock);
	t_send(fe.sock, SC_VHOST_USER_RESET_DEVICE, 0, NULL, 0, -1);
	uint64_t f = (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VIRTIO_F_VERSION_1);
	cr_assert_eq(t_set_u64_ack(fe.sock, SC_VHOST_USER_SET_FEATURES, f), 0, "no ack after the reset");
	cr_assert_eq(sc_vu_server_started(A.srv), 0, "the reset stopped the ring");
	/* The device is usable again on the same connection. */
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, A.img, 24);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, get_status_says_needs_reset_after_a_ring_attack)
{
	struct t_fe fe;
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 0);
	cr_assert_eq(t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS) & 0x40, 0);
	/* The driver claims far more available entries than the ring holds (virtio 1.2 §2.7.6). */
	sc_store_release(&fe.vq.avail->idx, (uint16_t)(fe.vq.avail_idx + T_QSIZE + 5));
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
	int64_t t0 = t_now_ms();
	while (!(t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS) & 0x40)) {
		cr_assert_lt(t_now_ms() - t0, 3000, "GET_STATUS never said DEVICE_NEEDS_RESET");
		usleep(10000);
	}
	t_fe_close(&fe);
	t_alive(&A, &B);
}

/* ---- one device's slow ring stop ---- */

static uint16_t (*blk_stop)(void *ctx, unsigned idx);

/* A device whose in-flight I/O takes 1.5 s to finish when its ring stops. */
static uint16_t slow_stop(void *ctx, unsigned idx)
{
	usleep(1500 * 1000);
	return blk_stop(ctx, idx);
}

Test(vu_hostile, a_slow_ring_stop_on_one_disk_does_not_hold_up_the_other)
{
	blk_stop = A.dev.ops.queue_stop;
	A.dev.ops.queue_stop = slow_stop;   /* read by A's control thread when a ring stops */
	struct t_fe fa, fb;
	t_fe_start(&fa, A.sock);
	t_fe_verified_io(&fa, A.img, 0);
	struct sc_vu_vring_state st = { 0, 0 };
	t_send(fa.sock, SC_VHOST_USER_GET_VRING_BASE, 0, &st, 8, -1);   /* A's control thread now waits 1.5 s */
	usleep(100 * 1000);
	int64_t t0 = t_now_ms();
	t_fe_start(&fb, B.sock);
	t_fe_verified_io(&fb, B.img, 0);
	cr_assert_eq(t_fe_get_base(&fb), 2, "B's ring stopped where it was");
	int64_t dt = t_now_ms() - t0;
	cr_assert_lt(dt, 1000, "disk B's set-up, I/O and ring stop took %lld ms behind disk A's slow stop", (long long)dt);
	t_reply(fa.sock, SC_VHOST_USER_GET_VRING_BASE, &st, 8);
	cr_assert_eq(st.num, 2);
	t_fe_close(&fa);
	t_fe_close(&fb);
	A.dev.ops.queue_stop = blk_stop;
	t_alive(&A, &B);
}

/* ---- broken queues, reported through the server ---- */

static uint64_t vq_stat(struct t_disk *d, size_t off)
{
	return sc_vq_stat(&d->dev.queues[0].vq, off);
}

/*
 * Disk d's vring 0 (front end fe) broke: its err eventfd fired once, the
 * break is counted, GET_STATUS says DEVICE_NEEDS_RESET, and the other disk
 * (on the same sidecore) serves meanwhile. The log (captured since the
 * fault) has one line naming the socket, the queue and why.
 */
static void expect_broken(struct t_fe *fe, struct t_disk *d, struct t_disk *other, struct t_log *log,
			  const char *why)
{
	cr_assert_eq(t_fe_err_count(fe, 3000), 1, "the err eventfd did not fire (once)");
	cr_assert_eq(vq_stat(d, offsetof(struct sc_vq_stats, broken)), 1);
	cr_assert(t_get_u64(fe->sock, SC_VHOST_USER_GET_STATUS) & 0x40, "GET_STATUS lacks DEVICE_NEEDS_RESET");
	t_alive(other, NULL);
	uint64_t one = 1;
	cr_assert_eq(write(fe->kick, &one, 8), 8);   /* a guest that goes on kicking is not reported again */
	cr_assert_eq(t_fe_err_count(fe, 200), 0, "the err eventfd fired again");
	char *text = t_log_end(log), line[256];
	snprintf(line, sizeof(line), "sidecore: %s vring 0: queue broken: ", d->sock);
	cr_assert_eq(t_count(text, "queue broken"), 1, "not one line for the break:\n%s", text);
	cr_assert_eq(t_count(text, line), 1, "no line names '%s':\n%s", line, text);
	cr_assert(strstr(strstr(text, line), why), "the line does not say '%s':\n%s", why, text);
	free(text);
}

/* ---- memory that faults under the sidecore (a plain file, shrunk by its front end) ---- */

/* A front end whose guest memory is a plain file under dir, rings running, one verified write done. */
static void fe_start_on_file(struct t_fe *fe, struct t_disk *d, const char *dir, uint8_t acked[4096])
{
	t_fe_open(fe, d->sock);
	t_fe_use_file(fe, dir);
	t_fe_negotiate(fe);
	cr_assert_eq(t_fe_mem_table(fe, fe->memfd), 0, "a plain file was refused");
	t_fe_ring(fe);
	t_fe_verified_io(fe, d->img, 0);
	t_disk_read(d->img, 0, acked);
}

Test(vu_hostile, memory_truncated_under_a_running_ring_breaks_only_that_queue)
{
	struct t_fe fe;
	struct t_log log;
	uint8_t acked[4096], now[4096];
	fe_start_on_file(&fe, &A, "/tmp", acked);
	t_log_begin(&log);
	/* Rings and buffers gone: the sidecore's next look at the avail ring faults (SIGBUS). */
	cr_assert_eq(ftruncate(fe.memfd, 0), 0);
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
	expect_broken(&fe, &A, &B, &log, "SIGBUS");
	struct sc_poller_stats st;
	sc_poller_get_stats(poller, &st);
	cr_assert_eq(st.faults, 1);
	t_fe_close(&fe);   /* the ring stops on the control thread: nothing may touch the file again */
	t_alive(&A, &B);
	t_disk_read(A.img, 0, now);
	cr_assert_eq(memcmp(acked, now, 4096), 0, "the acknowledged write is gone");
}

enum in_flight { HELD_SIDECORE_FAULTS, HELD_STOP_AT_ONCE, CUT_WHILE_SUBMITTED };

/*
 * Writes in flight on an O_DIRECT backing under /var/tmp (each goes through
 * io_uring, its completion then held 300 ms by delay_us) when the front end
 * cuts the file below its request headers: the rings still map, headers,
 * data and status bytes do not. HELD_*: cut once the writes are done and
 * held; then the sidecore faults first when it publishes, or the ring is
 * stopped (GET_VRING_BASE) before that and the control thread finishes the
 * requests. CUT_WHILE_SUBMITTED: cut right after the kick, while the
 * sidecore pops and io_uring writes (the kernel sees EFAULT, the sidecore
 * SIGBUS on a header or status byte, whichever comes first).
 */
static void truncated_with_writes_in_flight(enum in_flight mode)
{
	struct t_fe fe;
	struct t_log log;
	uint8_t acked[4096], now[4096];
	bool stop_at_once = mode == HELD_STOP_AT_ONCE;
	t_disk_close(&A);
	t_disk_open_in(&A, poller, TIMEOUT_MS, "a", "/var/tmp", true);
	A.be.delay_ns = 300 * 1000000ull;
	fe_start_on_file(&fe, &A, "/var/tmp", acked);
	for (uint64_t i = 0; i < 4; i++)
		t_fe_post(&fe, SC_VIRTIO_BLK_T_OUT, 64 + 8 * i);
	if (mode != CUT_WHILE_SUBMITTED)
		usleep(50 * 1000);   /* popped, written, held for the delay */
	t_log_begin(&log);
	cr_assert_eq(ftruncate(fe.memfd, T_HDR_GPA), 0);
	if (stop_at_once) {
		int64_t t0 = t_now_ms();
		uint16_t base = t_fe_get_base(&fe);
		cr_assert_eq(base, 6, "the ring stopped at %u", base);
		cr_assert_lt(t_now_ms() - t0, 2000);
		/* The used ring still maps: no completion was published over the missing status bytes. */
		cr_assert_eq(sc_load_acquire(&fe.vq.used->idx), 2, "completions published into memory that is gone");
		char *text = t_log_end(&log), line[256];
		snprintf(line, sizeof(line), "sidecore: %s vring 0: queue broken: ", A.sock);
		cr_assert_eq(t_count(text, line), 1, "no line names '%s':\n%s", line, text);
		free(text);
		cr_assert_eq(t_fe_err_count(&fe, 1000), 1, "the err eventfd did not fire (once)");
	} else {
		expect_broken(&fe, &A, &B, &log, "SIGBUS");
		cr_assert_eq(sc_load_acquire(&fe.vq.used->idx), 2, "completions published into memory that is gone");
	}
	t_fe_close(&fe);
	t_alive(&A, &B);
	t_disk_read(A.img, 0, now);
	cr_assert_eq(memcmp(acked, now, 4096), 0, "the acknowledged write is gone");
}

Test(vu_hostile, memory_truncated_with_writes_in_flight_faults_on_the_sidecore)
{
	truncated_with_writes_in_flight(HELD_SIDECORE_FAULTS);
}

Test(vu_hostile, memory_truncated_with_writes_in_flight_then_the_ring_stops_at_once)
{
	truncated_with_writes_in_flight(HELD_STOP_AT_ONCE);
}

Test(vu_hostile, memory_truncated_while_writes_are_submitted_to_io_uring)
{
	truncated_with_writes_in_flight(CUT_WHILE_SUBMITTED);
}

/* ---- ring attacks ---- */

Test(vu_hostile, avail_index_jump_is_reported_once_and_a_reset_serves_again)
{
	struct t_fe fe;
	struct t_log log;
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 0);
	t_log_begin(&log);
	/* virtio 1.2 §2.7.6: at most a queue's worth may be outstanding. */
	sc_store_release(&fe.vq.avail->idx, (uint16_t)(fe.vq.avail_idx + T_QSIZE + 5));
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
	expect_broken(&fe, &A, &B, &log, "ahead");
	/* The driver resets the device on the same connection and sets it up again. */
	t_send(fe.sock, SC_VHOST_USER_RESET_DEVICE, 0, NULL, 0, -1);
	uint64_t f = (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VIRTIO_F_VERSION_1);
	cr_assert_eq(t_set_u64_ack(fe.sock, SC_VHOST_USER_SET_FEATURES, f), 0);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	fe.slot = 0;
	t_fe_ring(&fe);
	cr_assert_eq(t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS) & 0x40, 0, "still NEEDS_RESET after the reset");
	t_fe_verified_io(&fe, A.img, 8);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, descriptor_loop_is_reported_once_and_a_new_connection_serves_again)
{
	struct t_fe fe;
	struct t_log log;
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 0);
	t_log_begin(&log);
	/* Descriptor 9 chains to itself. */
	fe.vq.desc[9] = (struct sc_vring_desc){ T_HDR_GPA, 16, SC_VIRTQ_DESC_F_NEXT, 9 };
	fe.vq.avail->ring[fe.vq.avail_idx & (T_QSIZE - 1)] = 9;
	sc_store_release(&fe.vq.avail->idx, (uint16_t)(fe.vq.avail_idx + 1));
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
	expect_broken(&fe, &A, &B, &log, "loop");
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, memory_truncated_before_the_ring_starts_refuses_the_start)
{
	/* The control thread reads the rings as it starts them: that read faults, not the process. */
	struct t_fe fe;
	struct t_log log;
	t_fe_open(&fe, A.sock);
	t_fe_use_file(&fe, "/tmp");
	t_fe_negotiate(&fe);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	cr_assert_eq(sc_drv_vq_init(&fe.vq, fe.mem, 0, T_QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	t_log_begin(&log);
	cr_assert_eq(ftruncate(fe.memfd, 0), 0);
	struct sc_vu_vring_state num = { 0, T_QSIZE }, en = { 0, 1 };
	struct sc_vu_vring_addr a = { .index = 0, .desc_user_addr = (uintptr_t)fe.vq.desc,
				      .avail_user_addr = (uintptr_t)fe.vq.avail, .used_user_addr = (uintptr_t)fe.vq.used };
	uint64_t idx0 = 0, ack;
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_ERR, 0, &idx0, 8, fe.err);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_KICK, 0, &idx0, 8, fe.kick);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_ENABLE, SC_VHOST_USER_NEED_REPLY, &en, 8, -1);
	t_reply(fe.sock, SC_VHOST_USER_SET_VRING_ENABLE, &ack, 8);
	cr_assert_eq(ack, EFAULT, "starting a ring in memory that is gone was acked %llu", (unsigned long long)ack);
	cr_assert(t_wait_eof(fe.sock, 1000));
	cr_assert_eq(t_fe_err_count(&fe, 1000), 1, "the err eventfd did not fire (once)");
	char *text = t_log_end(&log), line[256];
	snprintf(line, sizeof(line), "sidecore: %s vring 0: queue broken: SIGBUS", A.sock);
	cr_assert_eq(t_count(text, line), 1, "no line '%s':\n%s", line, text);
	free(text);
	cr_assert_eq(sc_vu_server_started(A.srv), 0);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

/* ---- a lying inflight area ---- */

Test(vu_hostile, inflight_area_naming_a_head_never_offered_breaks_that_queue)
{
	struct t_fe fe;
	struct t_log log;
	struct sc_vu_inflight got;
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	int ifd = t_get_inflight(fe.sock, 2, &got);
	struct sc_vq_inflight *area = mmap(NULL, got.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
	cr_assert_neq(area, MAP_FAILED);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, A.img, 0);
	cr_assert_eq(t_fe_get_base(&fe), 2);
	/* One real request waits in the ring; the area says head 40 (never offered) is in flight instead. */
	t_fe_post(&fe, SC_VIRTIO_BLK_T_IN, 0);
	cr_assert_eq(area->version, 1);
	area->desc[40].inflight = 1;
	area->desc[40].counter = 7;
	t_log_begin(&log);
	struct sc_vu_vring_state num = { 0, T_QSIZE }, b = { 0, 2 };
	struct sc_vu_vring_addr a = { .index = 0, .desc_user_addr = (uintptr_t)fe.vq.desc,
				      .avail_user_addr = (uintptr_t)fe.vq.avail, .used_user_addr = (uintptr_t)fe.vq.used };
	uint64_t idx0 = 0, ack;
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_NUM, 0, &num, 8, -1);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_BASE, 0, &b, 8, -1);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_ADDR, 0, &a, sizeof(a), -1);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_ERR, 0, &idx0, 8, fe.err);
	t_send(fe.sock, SC_VHOST_USER_SET_VRING_KICK, SC_VHOST_USER_NEED_REPLY, &idx0, 8, fe.kick);   /* starts it */
	t_reply(fe.sock, SC_VHOST_USER_SET_VRING_KICK, &ack, 8);
	cr_assert_eq(ack, EBADMSG, "a ring with a lying inflight area was started (ack %llu)", (unsigned long long)ack);
	cr_assert(t_wait_eof(fe.sock, 1000));
	cr_assert_eq(t_fe_err_count(&fe, 1000), 1, "the err eventfd did not fire (once)");
	char *text = t_log_end(&log), line[256];
	snprintf(line, sizeof(line), "sidecore: %s vring 0: queue broken: inflight region: head 40", A.sock);
	cr_assert_eq(t_count(text, line), 1, "no line '%s':\n%s", line, text);
	free(text);
	usleep(100 * 1000);
	cr_assert_eq(sc_load_acquire(&fe.vq.used->idx), 2, "used entries were published");
	munmap(area, got.mmap_size);
	close(ifd);
	t_fe_close(&fe);
	t_alive(&A, &B);
}

/* ---- stopping one disk's ring never waits on the other's I/O ---- */

Test(vu_hostile, a_ring_stop_waiting_on_slow_io_does_not_hold_up_the_other_disk)
{
	enum { N = 8, DELAY_MS = 1000 };
	struct t_fe fa, fb;
	uint8_t want[N][4096], disk[4096];
	A.be.delay_ns = DELAY_MS * 1000000ull;   /* a slow disk: every completion waits 1 s */
	t_fe_start(&fa, A.sock);
	int64_t posted = t_now_ms();
	for (unsigned i = 0; i < N; i++) {
		uint8_t *buf = fa.mem + T_DATA_GPA + (fa.slot % 32) * 4096;
		for (unsigned k = 0; k < 4096; k++)
			want[i][k] = (uint8_t)(k * 3 + i * 17 + 1);
		memcpy(buf, want[i], 4096);
		t_fe_post(&fa, SC_VIRTIO_BLK_T_OUT, 128 + 8 * i);
	}
	usleep(50 * 1000);
	struct sc_vu_vring_state st = { 0, 0 };
	t_send(fa.sock, SC_VHOST_USER_GET_VRING_BASE, 0, &st, 8, -1);   /* A's stop now waits for its I/O */
	usleep(50 * 1000);
	int64_t t0 = t_now_ms();
	t_fe_start(&fb, B.sock);
	t_fe_verified_io(&fb, B.img, 0);
	cr_assert_eq(t_fe_get_base(&fb), 2);
	int64_t dt = t_now_ms() - t0;
	cr_assert_lt(dt, DELAY_MS / 2, "disk B's set-up, I/O and ring stop took %lld ms behind disk A's stop",
		     (long long)dt);
	t_reply(fa.sock, SC_VHOST_USER_GET_VRING_BASE, &st, 8);
	int64_t stop_ms = t_now_ms() - posted;
	cr_assert_geq(stop_ms, DELAY_MS - 100, "A's stop returned after %lld ms, before its I/O was done", (long long)stop_ms);
	cr_assert_eq(st.num, N);
	cr_assert_eq(t_fe_wait(&fa, N, 1000), N, "A's requests were not all completed by its stop");
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(fa.mem[T_HDR_GPA + i * 64 + 16], SC_VIRTIO_BLK_S_OK);
		t_disk_read(A.img, 128 + 8 * i, disk);
		cr_assert_eq(memcmp(disk, want[i], 4096), 0, "acknowledged write %u is not on disk A", i);
	}
	t_fe_close(&fa);
	t_fe_close(&fb);
	A.be.delay_ns = 0;
	t_alive(&A, &B);
}

/* ---- more bad inputs ---- */

Test(vu_hostile, write_zeroes_after_reset_device_on_tmpfs)
{
	/* tmpfs has no ZERO_RANGE: the fallback must hold on a device set up again after a reset. */
	t_disk_close(&A);
	t_disk_open_in(&A, poller, TIMEOUT_MS, "a", "/dev/shm", false);
	struct t_fe fe;
	uint8_t disk[4096], zero[4096] = { 0 };
	t_fe_start(&fe, A.sock);
	t_fe_verified_io(&fe, A.img, 32);
	t_send(fe.sock, SC_VHOST_USER_RESET_DEVICE, 0, NULL, 0, -1);
	uint64_t f = (1ull << SC_VU_F_PROTOCOL_FEATURES) | (1ull << SC_VIRTIO_F_VERSION_1) |
		     (1ull << SC_VIRTIO_BLK_F_WRITE_ZEROES);
	cr_assert_eq(t_set_u64_ack(fe.sock, SC_VHOST_USER_SET_FEATURES, f), 0);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	fe.slot = 0;
	t_fe_ring(&fe);
	cr_assert_eq(t_fe_write_zeroes(&fe, 32, 8), SC_VIRTIO_BLK_S_OK);
	t_disk_read(A.img, 32, disk);
	cr_assert_eq(memcmp(disk, zero, 4096), 0, "the backing file was not zeroed");
	unsigned slot = fe.slot % 32;
	memset(fe.mem + T_DATA_GPA + slot * 4096, 0xa5, 4096);
	cr_assert_eq(t_fe_io(&fe, SC_VIRTIO_BLK_T_IN, 32), SC_VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(fe.mem + T_DATA_GPA + slot * 4096, zero, 4096), 0, "zeroes did not read back");
	t_fe_close(&fe);
	t_alive(&A, &B);
}

Test(vu_hostile, call_and_err_fds_that_are_pipes_whose_reader_closed_are_refused)
{
	/* Were one written, SIGPIPE would kill the process: it is refused before that. */
	int p[2];
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	call_fd_refused(p[1], SC_VHOST_USER_SET_VRING_CALL);
	call_fd_refused(p[1], SC_VHOST_USER_SET_VRING_ERR);
	close(p[1]);
}

Test(vu_hostile, inflight_file_truncated_under_a_running_ring_breaks_only_that_queue)
{
	/* The inflight area may be a plain file too (it cannot be sealed); the sidecore writes it on every pop. */
	struct t_fe fe;
	struct t_log log;
	char path[] = "/tmp/sidecore-inflight-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	struct sc_vu_inflight in = { 2 * sc_vq_inflight_bytes(T_QSIZE), 0, 2, T_QSIZE };
	cr_assert_eq(ftruncate(fd, (off_t)in.mmap_size), 0);
	t_fe_open(&fe, A.sock);
	t_fe_negotiate(&fe);
	uint64_t ack = t_set_inflight(fe.sock, &in, fd);
	cr_assert_eq(ack, 0, "a plain file as the inflight area was refused: %llu", (unsigned long long)ack);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, A.img, 0);
	t_log_begin(&log);
	cr_assert_eq(ftruncate(fd, 0), 0);
	t_fe_post(&fe, SC_VIRTIO_BLK_T_IN, 0);
	expect_broken(&fe, &A, &B, &log, "SIGBUS");
	cr_assert_eq(sc_load_acquire(&fe.vq.used->idx), 2, "a completion was published past the fault");
	t_fe_close(&fe);
	close(fd);
	t_alive(&A, &B);
}
