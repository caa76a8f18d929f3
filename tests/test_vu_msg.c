/* SPDX-License-Identifier: MIT */
/*
 * vhost-user messages as hostile input, one test per attack, over a real
 * unix socket with real fds. Each checks the errno, the reason, that every
 * fd the message brought was closed, and (where the stream is still in
 * step) that the next message on the connection is read normally.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/vu_msg.h"

#define NVRINGS 2

static int sv[2];
static int fds_before;

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fds_before = open_fds();
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

TestSuite(vu_msg, .init = setup, .fini = teardown, .timeout = 10);

/* Send a message as a front end would; nfds fresh eventfds go with it (we close our copies). */
static void send_msg(uint32_t req, uint32_t flags, const void *payload, uint32_t size, unsigned nfds)
{
	struct sc_vu_hdr h = { req, flags, size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	char control[CMSG_SPACE(16 * sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	int fds[16];

	if (nfds) {
		for (unsigned i = 0; i < nfds; i++)
			fds[i] = eventfd(0, EFD_CLOEXEC);
		mh.msg_control = control;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	cr_assert_eq(sendmsg(sv[1], &mh, 0), (ssize_t)(sizeof(h) + size));
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
}

static void expect_refused(int err, const char *what)
{
	struct sc_vu_msg m;
	char buf[256] = "";
	int ret = sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf));
	cr_assert_eq(ret, err, "got %d (%s), expected %d; message: %s", ret, strerror(-ret), err, buf);
	cr_assert(strstr(buf, what), "message '%s' lacks '%s'", buf, what);
	cr_assert_eq(open_fds(), fds_before, "a received fd was not closed");
}

/* The connection is still in step: the next message is read and accepted. */
static void next_message_is_fine(void)
{
	struct sc_vu_msg m;
	char buf[256];
	send_msg(SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION, NULL, 0, 0);
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.hdr.request, SC_VHOST_USER_GET_FEATURES);
}

static struct sc_vu_region region(uint64_t gpa, uint64_t size)
{
	return (struct sc_vu_region){ .guest_phys_addr = gpa, .memory_size = size,
				      .userspace_addr = 0x7f0000000000ull + gpa, .mmap_offset = 0 };
}

struct mem_table {
	uint32_t nregions, padding;
	struct sc_vu_region r[9];
};

Test(vu_msg, good_messages_are_read)
{
	struct sc_vu_msg m;
	char buf[256];
	struct mem_table t = { 2, 0, { region(0, 1 << 20), region(1 << 30, 1 << 20) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION | SC_VHOST_USER_NEED_REPLY, &t, 8 + 2 * 32, 2);
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.nfds, 2);
	cr_assert_eq(m.payload.memory.regions[1].guest_phys_addr, 1 << 30);
	cr_assert(m.hdr.flags & SC_VHOST_USER_NEED_REPLY);
	sc_vu_msg_close_fds(&m);
	uint64_t kick = 1;   /* vring 1, with an fd */
	send_msg(SC_VHOST_USER_SET_VRING_KICK, SC_VHOST_USER_VERSION, &kick, 8, 1);
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.nfds, 1);
	sc_vu_msg_close_fds(&m);
	cr_assert_eq(open_fds(), fds_before);
}

Test(vu_msg, clean_close_is_not_an_error)
{
	struct sc_vu_msg m;
	char buf[64];
	close(sv[1]);
	sv[1] = socket(AF_UNIX, SOCK_STREAM, 0);   /* for teardown */
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), 0);
}

Test(vu_msg, reply_carries_the_request_and_payload)
{
	struct sc_vu_msg req = { .hdr = { SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION, 0 } };
	uint64_t features = 0x1234;
	cr_assert_eq(sc_vu_reply(sv[1], &req, &features, 8), 0);
	struct { struct sc_vu_hdr h; uint64_t v; } __attribute__((packed)) got;
	cr_assert_eq(recv(sv[0], &got, sizeof(got), 0), (ssize_t)sizeof(got));
	cr_assert_eq(got.h.request, SC_VHOST_USER_GET_FEATURES);
	cr_assert_eq(got.h.flags, SC_VHOST_USER_VERSION | SC_VHOST_USER_REPLY);
	cr_assert_eq(got.v, 0x1234);
}

Test(vu_msg, unknown_request_type)
{
	uint64_t v = 0;
	send_msg(99, SC_VHOST_USER_VERSION, &v, 8, 1);
	expect_refused(-ENOTSUP, "not supported");
	next_message_is_fine();
}

Test(vu_msg, bad_version)
{
	send_msg(SC_VHOST_USER_GET_FEATURES, 2, NULL, 0, 0);
	expect_refused(-EPROTO, "version 2");
}

Test(vu_msg, payload_larger_than_any_message)
{
	send_msg(SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, NULL, 0, 0);   /* header only... */
	/* ...then a header claiming a huge payload */
	struct sc_vu_hdr h = { SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 1u << 30 };
	struct sc_vu_msg m;
	char buf[256];
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), -EBADMSG, "SET_FEATURES without payload");
	cr_assert_eq(write(sv[1], &h, sizeof(h)), (ssize_t)sizeof(h));
	expect_refused(-EPROTO, "larger than any message");
}

Test(vu_msg, message_shorter_than_its_header_says)
{
	struct { struct sc_vu_hdr h; uint32_t half; } __attribute__((packed)) msg = {
		{ SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 8 }, 7 };
	cr_assert_eq(write(sv[1], &msg, sizeof(msg)), (ssize_t)sizeof(msg));
	shutdown(sv[1], SHUT_WR);
	expect_refused(-EPROTO, "after 4 bytes of a 8-byte payload");
}

Test(vu_msg, payload_size_wrong_for_the_type)
{
	uint32_t v = 1;
	send_msg(SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, &v, 4, 0);
	expect_refused(-EBADMSG, "payload of 4 bytes, expected 8");
	next_message_is_fine();
}

Test(vu_msg, vring_index_out_of_range)
{
	struct sc_vu_vring_state s = { NVRINGS, 256 };
	send_msg(SC_VHOST_USER_SET_VRING_NUM, SC_VHOST_USER_VERSION, &s, 8, 0);
	expect_refused(-ERANGE, "vring 2, the device has 2");
	struct sc_vu_vring_addr a = { .index = 7 };
	send_msg(SC_VHOST_USER_SET_VRING_ADDR, SC_VHOST_USER_VERSION, &a, sizeof(a), 0);
	expect_refused(-ERANGE, "vring 7");
	uint64_t kick = 5;
	send_msg(SC_VHOST_USER_SET_VRING_KICK, SC_VHOST_USER_VERSION, &kick, 8, 1);
	expect_refused(-ERANGE, "vring 5");
	next_message_is_fine();
}

Test(vu_msg, queue_size_not_a_power_of_two_or_too_large)
{
	uint32_t bad[] = { 0, 12, 65536, 0xffffffffu };
	for (unsigned i = 0; i < 4; i++) {
		struct sc_vu_vring_state s = { 0, bad[i] };
		send_msg(SC_VHOST_USER_SET_VRING_NUM, SC_VHOST_USER_VERSION, &s, 8, 0);
		expect_refused(-EINVAL, "not a power of two");
	}
	next_message_is_fine();
}

Test(vu_msg, ring_base_and_enable_out_of_range)
{
	struct sc_vu_vring_state s = { 0, 70000 };
	send_msg(SC_VHOST_USER_SET_VRING_BASE, SC_VHOST_USER_VERSION, &s, 8, 0);
	expect_refused(-EINVAL, "16 bits");
	s.num = 2;
	send_msg(SC_VHOST_USER_SET_VRING_ENABLE, SC_VHOST_USER_VERSION, &s, 8, 0);
	expect_refused(-EINVAL, "not 0 or 1");
}

Test(vu_msg, kick_without_its_fd)
{
	uint64_t kick = 0;
	send_msg(SC_VHOST_USER_SET_VRING_KICK, SC_VHOST_USER_VERSION, &kick, 8, 0);
	expect_refused(-EBADF, "0 file descriptors, expected 1");
	next_message_is_fine();
}

Test(vu_msg, nofd_flag_with_an_fd)
{
	uint64_t call = SC_VHOST_USER_VRING_NOFD;
	send_msg(SC_VHOST_USER_SET_VRING_CALL, SC_VHOST_USER_VERSION, &call, 8, 1);
	expect_refused(-EBADF, "1 file descriptors, expected 0");
}

Test(vu_msg, unknown_bits_in_a_vring_file)
{
	uint64_t call = 1u << 20;
	send_msg(SC_VHOST_USER_SET_VRING_CALL, SC_VHOST_USER_VERSION, &call, 8, 1);
	expect_refused(-EINVAL, "unknown bits");
}

Test(vu_msg, fds_on_a_message_that_takes_none)
{
	uint64_t f = 0;
	send_msg(SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, &f, 8, 3);
	expect_refused(-EBADF, "3 file descriptors, expected 0");
	next_message_is_fine();
}

Test(vu_msg, more_fds_than_any_message_carries)
{
	struct mem_table t = { 8, 0, { region(0, 4096) } };
	for (int i = 0; i < 8; i++)
		t.r[i] = region((uint64_t)i << 20, 4096);
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 8 * 32, 12);
	expect_refused(-EBADF, "more than 8");
}

Test(vu_msg, too_many_memory_regions)
{
	struct mem_table t = { 9, 0, { region(0, 4096) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 8 * 32, 8);
	expect_refused(-EINVAL, "9 memory regions");
}

Test(vu_msg, fewer_fds_than_regions)
{
	struct mem_table t = { 2, 0, { region(0, 4096), region(1 << 20, 4096) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 2 * 32, 1);
	expect_refused(-EBADF, "1 file descriptors, expected 2");
	next_message_is_fine();
}

Test(vu_msg, memory_table_size_does_not_match_its_count)
{
	struct mem_table t = { 2, 0, { region(0, 4096) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 1 * 32, 2);
	expect_refused(-EBADMSG, "does not hold 2 regions");
	next_message_is_fine();
}

Test(vu_msg, overlapping_memory_regions)
{
	struct mem_table t = { 2, 0, { region(0, 1 << 20), region(0x80000, 1 << 20) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 2 * 32, 2);
	expect_refused(-EINVAL, "overlap");
}

Test(vu_msg, memory_region_that_wraps_or_is_empty)
{
	struct mem_table t = { 1, 0, { region(UINT64_MAX - 4095, 8192) } };
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 32, 1);
	expect_refused(-EINVAL, "wraps");
	t.r[0] = region(0, 4096);
	t.r[0].mmap_offset = UINT64_MAX - 10;
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 32, 1);
	expect_refused(-EINVAL, "wraps");
	t.r[0] = region(0, 0);
	send_msg(SC_VHOST_USER_SET_MEM_TABLE, SC_VHOST_USER_VERSION, &t, 8 + 32, 1);
	expect_refused(-EINVAL, "empty");
	struct { uint64_t pad; struct sc_vu_region r; } one = { 0, region(UINT64_MAX - 100, 4096) };
	send_msg(SC_VHOST_USER_ADD_MEM_REG, SC_VHOST_USER_VERSION, &one, sizeof(one), 1);
	expect_refused(-EINVAL, "wraps");
	next_message_is_fine();
}

Test(vu_msg, config_window_outside_the_config_space)
{
	struct { uint32_t offset, size, flags; uint8_t data[16]; } c = { 250, 16, 0, { 0 } };
	send_msg(SC_VHOST_USER_GET_CONFIG, SC_VHOST_USER_VERSION, &c, 12 + 16, 0);
	expect_refused(-EINVAL, "outside");
	c.offset = UINT32_MAX;
	c.size = 2;
	send_msg(SC_VHOST_USER_SET_CONFIG, SC_VHOST_USER_VERSION, &c, 12 + 2, 0);
	expect_refused(-EINVAL, "outside");
	c.offset = 0;
	c.size = 16;
	send_msg(SC_VHOST_USER_GET_CONFIG, SC_VHOST_USER_VERSION, &c, 12 + 8, 0);
	expect_refused(-EBADMSG, "payload of 20 bytes for a 16-byte config window");
	next_message_is_fine();
}

Test(vu_msg, inflight_area_that_does_not_fit_the_device)
{
	struct sc_vu_inflight in = { .mmap_size = 4096, .num_queues = 3, .queue_size = 256 };
	send_msg(SC_VHOST_USER_SET_INFLIGHT_FD, SC_VHOST_USER_VERSION, &in, 24, 1);
	expect_refused(-EINVAL, "3 queues");
	in = (struct sc_vu_inflight){ .mmap_size = 4096, .num_queues = 1, .queue_size = 100 };
	send_msg(SC_VHOST_USER_SET_INFLIGHT_FD, SC_VHOST_USER_VERSION, &in, 24, 1);
	expect_refused(-EINVAL, "100 entries");
	in.queue_size = 128;
	send_msg(SC_VHOST_USER_SET_INFLIGHT_FD, SC_VHOST_USER_VERSION, &in, 24, 0);
	expect_refused(-EBADF, "expected 1");
	next_message_is_fine();
}

/* ---- limits on a slow peer (sc_vu_msg_recv_timed, sc_vu_send_timed) ---- */

static int64_t ms_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

Test(vu_msg, half_a_header_times_out_and_its_fd_is_closed)
{
	/* 6 header bytes with an eventfd, then nothing. */
	struct sc_vu_hdr h = { SC_VHOST_USER_SET_VRING_CALL, SC_VHOST_USER_VERSION, 8 };
	int fd = eventfd(0, EFD_CLOEXEC);
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &h, 6 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	cr_assert_eq(sendmsg(sv[1], &mh, 0), 6);
	close(fd);
	struct sc_vu_msg m;
	char buf[256] = "";
	int64_t t0 = ms_now();
	cr_assert_eq(sc_vu_msg_recv_timed(sv[0], NVRINGS, &m, 100, -1, buf, sizeof(buf)), -ETIMEDOUT, "%s", buf);
	int64_t dt = ms_now() - t0;
	cr_assert(dt >= 90 && dt < 1000, "gave up after %lld ms", (long long)dt);
	cr_assert(strstr(buf, "within 100 ms"), "%s", buf);
	cr_assert_eq(open_fds(), fds_before, "the fd of the unfinished message was not closed");
}

Test(vu_msg, a_stop_fd_ends_the_wait_for_a_payload)
{
	struct sc_vu_hdr h = { SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 8 };
	cr_assert_eq(send(sv[1], &h, sizeof(h), 0), (ssize_t)sizeof(h));
	int stop = eventfd(1, EFD_CLOEXEC);   /* already readable */
	struct sc_vu_msg m;
	char buf[256] = "";
	int64_t t0 = ms_now();
	cr_assert_eq(sc_vu_msg_recv_timed(sv[0], NVRINGS, &m, 5000, stop, buf, sizeof(buf)), -ECANCELED, "%s", buf);
	cr_assert_lt(ms_now() - t0, 1000);
	close(stop);
}

/* sc_vu_msg_recv_next: nothing there is -EAGAIN at once; a message begun is waited for as usual. */
Test(vu_msg, next_message_is_eagain_when_none_is_there_and_waits_for_one_begun)
{
	struct sc_vu_msg m;
	char buf[256] = "";
	int64_t t0 = ms_now();
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 5000, -1, buf, sizeof(buf)), -EAGAIN, "%s", buf);
	cr_assert_lt(ms_now() - t0, 100, "did not wait");

	uint64_t f = 1;
	send_msg(SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, &f, 8, 0);
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 5000, -1, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.payload.u64, 1);

	/* Half a header: from there on it is a message, and the timeout holds. */
	struct sc_vu_hdr h = { SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, 8 };
	cr_assert_eq(send(sv[1], &h, 6, 0), 6);
	t0 = ms_now();
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 100, -1, buf, sizeof(buf)), -ETIMEDOUT, "%s", buf);
	cr_assert_geq(ms_now() - t0, 90, "waited for the rest");

	close(sv[1]);
	sv[1] = socket(AF_UNIX, SOCK_STREAM, 0);   /* for teardown */
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 100, -1, buf, sizeof(buf)), 0, "a closed peer: %s", buf);
}

Test(vu_msg, a_reply_nobody_reads_times_out)
{
	uint64_t v = 0;
	int ret = 0;
	int64_t t0 = ms_now();
	/* Fill the peer's socket until our send has to wait, then give up after 100 ms. */
	for (unsigned n = 0; n < 1000000 && ret == 0; n++)
		ret = sc_vu_send_timed(sv[0], SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_REPLY, &v, 8, -1, 100, -1);
	cr_assert_eq(ret, -ETIMEDOUT, "got %d", ret);
	cr_assert_lt(ms_now() - t0, 5000);
}

Test(vu_msg, kick_fd_that_is_a_pipe_is_refused_and_closed)
{
	uint64_t idx = 1;
	send_msg(SC_VHOST_USER_SET_VRING_KICK, SC_VHOST_USER_VERSION, &idx, 8, 1);   /* an eventfd: fine */
	struct sc_vu_msg m;
	char buf[256] = "";
	cr_assert_eq(sc_vu_msg_recv(sv[0], NVRINGS, &m, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(sc_vu_msg_check_fds(&m, buf, sizeof(buf)), 0, "%s", buf);
	sc_vu_msg_close_fds(&m);

	int p[2];
	cr_assert_eq(pipe(p), 0);
	m.nfds = 1;
	m.fds[0] = p[0];
	cr_assert_eq(sc_vu_msg_check_fds(&m, buf, sizeof(buf)), -EBADFD);
	cr_assert(strstr(buf, "not an eventfd") && strstr(buf, "pipe:"), "%s", buf);
	cr_assert_eq(m.nfds, 0, "the refused fd is closed");
	cr_assert_eq(fcntl(p[0], F_GETFD), -1, "the refused fd is closed");
	close(p[1]);
}

/* ---- sc_vu_msg_recv_iotlb: a run of IOTLB messages in one read, and nothing else ---- */

static struct sc_vu_iotlb_wire iotlb_wire(uint64_t iova)
{
	return (struct sc_vu_iotlb_wire){ { SC_VHOST_USER_IOTLB_MSG, SC_VHOST_USER_VERSION, sizeof(struct sc_vu_iotlb) },
					  { .iova = iova, .size = 0x1000, .uaddr = 0x10000, .perm = SC_VHOST_ACCESS_RW,
					    .type = SC_VHOST_IOTLB_UPDATE } };
}

static void send_wires(unsigned n, uint64_t iova0)
{
	struct sc_vu_iotlb_wire w[40];
	for (unsigned i = 0; i < n; i++)
		w[i] = iotlb_wire(iova0 + i * 0x1000ull);
	cr_assert_eq(send(sv[1], w, n * sizeof(w[0]), 0), (ssize_t)(n * sizeof(w[0])));
}

Test(vu_msg, iotlb_messages_of_one_write_are_taken_in_one_go_in_order)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST];
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), -EAGAIN, "nothing there");
	send_wires(3, 0x1000);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 3);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(out[i].t.iova, 0x1000 + i * 0x1000ull);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), -EAGAIN, "all taken, no more");

	/* More than a burst: the rest next time, in order. */
	send_wires(SC_VU_IOTLB_BURST + 5, 0x100000);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), SC_VU_IOTLB_BURST);
	cr_assert_eq(out[SC_VU_IOTLB_BURST - 1].t.iova, 0x100000 + (SC_VU_IOTLB_BURST - 1) * 0x1000ull);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, 2), 2, "max is honoured");
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 3);
	cr_assert_eq(out[2].t.iova, 0x100000 + (SC_VU_IOTLB_BURST + 4) * 0x1000ull);
}

Test(vu_msg, iotlb_burst_stops_before_another_request_and_leaves_it_whole)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST];
	struct sc_vu_msg m;
	char buf[256] = "";
	uint64_t f = 7;
	send_wires(2, 0x1000);
	send_msg(SC_VHOST_USER_SET_FEATURES, SC_VHOST_USER_VERSION, &f, 8, 0);
	send_wires(1, 0x9000);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 2);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0, "SET_FEATURES is next: not ours");
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 1000, -1, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.hdr.request, SC_VHOST_USER_SET_FEATURES);
	cr_assert_eq(m.payload.u64, 7);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 1);
	cr_assert_eq(out[0].t.iova, 0x9000);
}

Test(vu_msg, iotlb_burst_takes_only_whole_messages)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST], w[2] = { iotlb_wire(0x1000), iotlb_wire(0x2000) };
	cr_assert_eq(send(sv[1], w, sizeof(w[0]) + 10, 0), (ssize_t)sizeof(w[0]) + 10);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 1);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0, "10 bytes of the next: left there");
	cr_assert_eq(send(sv[1], (uint8_t *)w + sizeof(w[0]) + 10, sizeof(w[0]) - 10, 0), (ssize_t)sizeof(w[0]) - 10);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 1);
	cr_assert_eq(out[0].t.iova, 0x2000, "the message put together");
}

/* What the burst does not judge is left for the checks that do: a wrong size, a wrong version. */
Test(vu_msg, iotlb_header_with_another_size_or_version_is_left_for_the_full_checks)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST];
	struct sc_vu_msg m;
	char buf[256] = "";
	uint64_t v = 0;
	/* A whole message follows, so the bytes are there for a burst that did not look at the size. */
	send_msg(SC_VHOST_USER_IOTLB_MSG, SC_VHOST_USER_VERSION, &v, 8, 0);
	send_wires(1, 0x3000);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0);
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 1000, -1, buf, sizeof(buf)), -EBADMSG, "%s", buf);
	cr_assert(strstr(buf, "IOTLB_MSG (22): payload of 8 bytes, expected 32"), "%s", buf);
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 1, "the stream is still in step");
	cr_assert_eq(out[0].t.iova, 0x3000);

	struct sc_vu_iotlb_wire w = iotlb_wire(0x1000);
	w.hdr.flags = 2;
	cr_assert_eq(send(sv[1], &w, sizeof(w), 0), (ssize_t)sizeof(w));
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0);
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 1000, -1, buf, sizeof(buf)), -EPROTO, "%s", buf);
}

/* An IOTLB message that brings an fd: not taken; the peek's copy of the fd is closed; the normal read gets it. */
Test(vu_msg, iotlb_message_with_an_fd_is_left_for_the_full_checks_and_no_fd_leaks)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST];
	struct sc_vu_msg m;
	char buf[256] = "";
	struct sc_vu_iotlb t = iotlb_wire(0x1000).t;
	send_wires(1, 0x5000);
	send_msg(SC_VHOST_USER_IOTLB_MSG, SC_VHOST_USER_VERSION, &t, sizeof(t), 1);
	int before = open_fds();
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0, "the fd's message is in the peek");
	cr_assert_eq(open_fds(), before, "the peek's copies were closed");
	/* The fd-less message before it is read the normal way too, then the one with the fd, refused. */
	cr_assert_eq(sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 1000, -1, buf, sizeof(buf)), 1, "%s", buf);
	cr_assert_eq(m.payload.iotlb.iova, 0x5000);
	int r = sc_vu_msg_recv_next(sv[0], NVRINGS, &m, 1000, -1, buf, sizeof(buf));
	cr_assert(r < 0, "an IOTLB message carries no fd: %d", r);
	cr_assert_eq(open_fds(), fds_before, "every fd it brought closed");
}

Test(vu_msg, iotlb_burst_on_a_closed_connection_is_not_a_message)
{
	struct sc_vu_iotlb_wire out[SC_VU_IOTLB_BURST];
	close(sv[1]);
	sv[1] = socket(AF_UNIX, SOCK_STREAM, 0);   /* for teardown */
	cr_assert_eq(sc_vu_msg_recv_iotlb(sv[0], out, SC_VU_IOTLB_BURST), 0, "the end is recv_next's to report");
}
