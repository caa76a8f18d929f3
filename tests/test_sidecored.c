/* SPDX-License-Identifier: MIT */
/*
 * sidecored as a process, with two disks: a front end stuck on disk A
 * (mid-message, or not reading its replies) holds up neither disk B's
 * set-up and verified I/O nor SIGTERM, which stops the service cleanly in
 * under a second; killed with writes in flight under the vhost-user IOTLB,
 * it replays them once restarted. The binary comes from meson (SIDECORED in the
 * environment); without it the tests skip, visibly.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spec/sc_virtio_blk.h"
#include "runtime/vu_msg.h"
#include "harness.h"

#define NDISKS 3   /* a, b, c; the config names some of them */

static char dir[64], log_path[96], conf[96];
static char sock[NDISKS][96], img[NDISKS][96];
static pid_t pid = -1;

/*
 * Write the config: [sidecore] with cpus = the last cpu we may run on
 * (unless sidecore_keys has its own cpus) and sidecore_keys, then a
 * [blk.X] for each letter X of disks, with extra[X - 'a'] if given.
 */
static void write_config(const char *sidecore_keys, const char *disks, const char *const extra[NDISKS])
{
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s.new", conf);
	FILE *f = fopen(tmp, "w");
	cr_assert_not_null(f);
	/* The sidecore sleeps on kicks as soon as it is idle. */
	cpu_set_t set;
	int cpu = 0;
	sched_getaffinity(0, sizeof(set), &set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			cpu = i;
	fprintf(f, "[sidecore]\n");
	if (!strstr(sidecore_keys, "cpus ="))
		fprintf(f, "cpus = %d\n", cpu);
	fprintf(f, "%s", sidecore_keys);
	for (const char *x = disks; *x; x++) {
		int i = *x - 'a';
		fprintf(f, "[blk.%c]\nsocket = %s\nbacking = %s\n%s", *x, sock[i], img[i], extra && extra[i] ? extra[i] : "");
	}
	fclose(f);
	/* Whole or not at all, as an editor's save: a SIGHUP never reads half a file. */
	cr_assert_eq(rename(tmp, conf), 0);
}

/* The log so far. */
static char *read_log(void)
{
	static char log[65536];
	FILE *f = fopen(log_path, "r");
	cr_assert_not_null(f);
	log[fread(log, 1, sizeof(log) - 1, f)] = '\0';
	fclose(f);
	return log;
}

/* Wait up to ms for the log to hold needle n times (sidecored running all along). */
static void wait_log(const char *needle, unsigned n, int ms)
{
	int64_t t0 = t_now_ms();
	while (t_count(read_log(), needle) < n) {
		cr_assert_lt(t_now_ms() - t0, ms, "the log lacks '%s' after %d ms:\n%s", needle, ms, read_log());
		cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "sidecored exited:\n%s", read_log());
		usleep(10000);
	}
}

/* Wait up to 5 s for path to exist (or, if !exists, to be gone). */
static void wait_path(const char *path, bool exists)
{
	int64_t t0 = t_now_ms();
	struct stat st;
	while ((stat(path, &st) == 0) != exists) {
		cr_assert_lt(t_now_ms() - t0, 5000, "%s is %s after 5 s:\n%s", path, exists ? "still missing" : "still there",
			     read_log());
		cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "sidecored exited:\n%s", read_log());
		usleep(10000);
	}
}

/* Make the disks' files in a fresh directory under parent; nothing runs yet. */
static void prepare(const char *parent)
{
	const char *bin = getenv("SIDECORED");
	if (!bin || access(bin, X_OK) != 0)
		cr_skip_test("SIDECORED is not set to the sidecored binary (meson sets it)");
	snprintf(dir, sizeof(dir), "%s/sidecore-d-XXXXXX", parent);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/sc.conf", dir);
	snprintf(log_path, sizeof(log_path), "%s/sidecored.log", dir);
	for (int i = 0; i < NDISKS; i++) {
		snprintf(sock[i], sizeof(sock[i]), "%s/%c.sock", dir, 'a' + i);
		snprintf(img[i], sizeof(img[i]), "%s/%c.img", dir, 'a' + i);
		int fd = open(img[i], O_CREAT | O_RDWR, 0644);
		cr_assert_eq(ftruncate(fd, T_DISK), 0);
		close(fd);
	}
}

/* Start sidecored on conf; wait for the sockets of the disks named. */
static void spawn(const char *disks)
{
	const char *bin = getenv("SIDECORED");
	pid = fork();
	if (pid == 0) {
		int fd = open(log_path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, bin, "--config", conf, (char *)NULL);
		_exit(127);
	}
	cr_assert_gt(pid, 0);
	for (const char *x = disks; *x; x++)
		wait_path(sock[*x - 'a'], true);
	wait_log("; ready", 1, 5000);
}

/* Start sidecored on two disks; control_timeout_ms = timeout_ms unless it is 0 (the default then). */
static void start(int timeout_ms)
{
	char keys[64] = "idle_spin_us = 0\n";
	prepare("/tmp");
	if (timeout_ms)
		snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "control_timeout_ms = %d\n", timeout_ms);
	write_config(keys, "ab", NULL);
	spawn("ab");
}

static void setup(void)
{
	start(0);
}

static void setup_short_timeout(void)
{
	start(300);
}

static void teardown(void)
{
	if (pid > 0 && waitpid(pid, NULL, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	pid = -1;
	char path[128];
	for (int i = 0; i < NDISKS; i++) {
		unlink(sock[i]);   /* left only if sidecored did not stop cleanly */
		unlink(img[i]);
	}
	unlink(log_path);
	unlink(conf);
	snprintf(path, sizeof(path), "%s/sidecored.sock", dir);
	unlink(path);
	rmdir(dir);
}

TestSuite(sidecored, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(sidecored_timeout, .init = setup_short_timeout, .fini = teardown, .timeout = 60);

/* SIGTERM; assert a clean exit within 1 s (and log how long it took). */
static void stop_within_a_second(void)
{
	int status;
	int64_t t0 = t_now_ms();
	cr_assert_eq(kill(pid, SIGTERM), 0);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (t_now_ms() - t0 > 3000) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			pid = -1;
			cr_assert_fail("sidecored still runs 3 s after SIGTERM");
		}
		usleep(1000);
	}
	int64_t dt = t_now_ms() - t0;
	pid = -1;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sidecored did not exit cleanly (status 0x%x)", status);
	cr_assert_lt(dt, 1000, "SIGTERM took %lld ms", (long long)dt);
	cr_log_info("sidecored stopped %lld ms after SIGTERM", (long long)dt);
}

Test(sidecored, a_peer_stuck_mid_message_on_one_disk_stalls_neither_the_other_nor_sigterm)
{
	int h = t_connect(sock[0]);
	uint32_t half[2] = { SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION };
	cr_assert_eq(send(h, half, 6, MSG_NOSIGNAL), 6);   /* half a header, then silence */
	usleep(100000);
	struct t_fe fe;
	int64_t t0 = t_now_ms();
	t_fe_start(&fe, sock[1]);
	for (uint64_t s = 0; s < 64; s += 8)
		t_fe_verified_io(&fe, img[1], s);
	cr_assert_lt(t_now_ms() - t0, 2000, "disk B waited for disk A's stuck peer");
	/* Disk B's ring is live and A's peer still stuck (well inside the 5 s default) when SIGTERM comes. */
	stop_within_a_second();
	t_fe_close(&fe);
	close(h);
}

Test(sidecored, a_peer_that_never_reads_its_replies_does_not_hold_up_sigterm)
{
	int h = t_connect(sock[0]);
	t_flood_unread(h);   /* sidecored's reply send on disk A is now blocked */
	struct t_fe fe;
	t_fe_start(&fe, sock[1]);
	t_fe_verified_io(&fe, img[1], 0);
	stop_within_a_second();
	t_fe_close(&fe);
	close(h);
}

Test(sidecored_timeout, control_timeout_ms_from_the_config_drops_a_stuck_peer)
{
	int h = t_connect(sock[0]);
	uint32_t half[2] = { SC_VHOST_USER_GET_FEATURES, SC_VHOST_USER_VERSION };
	cr_assert_eq(send(h, half, 6, MSG_NOSIGNAL), 6);
	int64_t t0 = t_now_ms();
	cr_assert(t_wait_eof(h, 3000), "the stuck peer was never dropped");
	int64_t dt = t_now_ms() - t0;
	cr_assert(dt >= 250 && dt < 1300, "dropped after %lld ms with control_timeout_ms = 300", (long long)dt);
	close(h);
	struct t_fe fe;
	t_fe_start(&fe, sock[0]);
	t_fe_verified_io(&fe, img[0], 0);
	t_fe_close(&fe);
	stop_within_a_second();
	/* One line said what happened, and where. */
	char log[8192] = "", want[256];
	FILE *f = fopen(log_path, "r");
	cr_assert_not_null(f);
	size_t n = fread(log, 1, sizeof(log) - 1, f);
	log[n] = '\0';
	fclose(f);
	snprintf(want, sizeof(want), "%s: vhost-user GET_FEATURES (1): only part of a message header came within 300 ms",
		 sock[0]);
	cr_assert(strstr(log, want), "the log lacks '%s':\n%s", want, log);
	cr_assert(strstr(log, "stopped cleanly"), "%s", log);
}

Test(sidecored, memory_shrunk_under_a_ring_breaks_only_that_disk_and_the_process_lives)
{
	/* The front end's guest memory is a plain file (it cannot be sealed); it cuts it under a running ring. */
	struct t_fe fe, fa, fb;
	t_fe_open(&fe, sock[0]);
	t_fe_use_file(&fe, dir);
	t_fe_negotiate(&fe);
	cr_assert_eq(t_fe_mem_table(&fe, fe.memfd), 0);
	t_fe_ring(&fe);
	t_fe_verified_io(&fe, img[0], 0);
	t_fe_start(&fb, sock[1]);   /* disk B is live on the same sidecore throughout */
	t_fe_verified_io(&fb, img[1], 0);
	cr_assert_eq(ftruncate(fe.memfd, 0), 0);
	uint64_t one = 1;
	cr_assert_eq(write(fe.kick, &one, 8), 8);
	cr_assert_eq(t_fe_err_count(&fe, 3000), 1, "the err eventfd did not fire");
	cr_assert(t_get_u64(fe.sock, SC_VHOST_USER_GET_STATUS) & 0x40, "GET_STATUS lacks DEVICE_NEEDS_RESET");
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "sidecored died of the fault (see %s)", log_path);
	t_fe_verified_io(&fb, img[1], 8);
	t_fe_close(&fe);
	t_fe_start(&fa, sock[0]);   /* a fresh front end on the disk that broke */
	t_fe_verified_io(&fa, img[0], 8);
	t_fe_close(&fa);
	t_fe_close(&fb);
	stop_within_a_second();
	char log[8192] = "", want[256];
	FILE *f = fopen(log_path, "r");
	cr_assert_not_null(f);
	log[fread(log, 1, sizeof(log) - 1, f)] = '\0';
	fclose(f);
	snprintf(want, sizeof(want), "%s vring 0: queue broken: SIGBUS", sock[0]);
	cr_assert(strstr(log, want), "the log lacks '%s':\n%s", want, log);
}

/* Two disks on tmpfs (mapped: served by memcpy on the sidecore), sharing one sidecore. */
static void setup_shm(void)
{
	prepare("/dev/shm");
	write_config("idle_spin_us = 0\n", "ab", NULL);
	spawn("ab");
}

TestSuite(sidecored_shm, .init = setup_shm, .fini = teardown, .timeout = 60);

Test(sidecored_shm, a_disk_file_truncated_under_it_fails_requests_past_its_end_and_the_queue_goes_on)
{
	struct t_fe fa, fb;
	t_fe_start(&fa, sock[0]);
	t_fe_start(&fb, sock[1]);
	t_fe_verified_io(&fa, img[0], 0);
	t_fe_verified_io(&fa, img[0], 1024);
	cr_assert_eq(truncate(img[0], 256 << 10), 0);   /* from 1 MiB to 256 KiB, under the running disk */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(t_fe_io(&fa, SC_VIRTIO_BLK_T_IN, 1024), SC_VIRTIO_BLK_S_IOERR, "a read past the new end, %d", i);
		cr_assert_eq(t_fe_io(&fa, SC_VIRTIO_BLK_T_OUT, 1024), SC_VIRTIO_BLK_S_IOERR, "a write past the new end, %d", i);
		t_fe_verified_io(&fa, img[0], 8);   /* within it: served, the same queue */
		cr_assert_eq(t_fe_io(&fa, SC_VIRTIO_BLK_T_FLUSH, 0), SC_VIRTIO_BLK_S_OK);
	}
	cr_assert_eq(t_fe_err_count(&fa, 100), 0, "the queue did not break");
	cr_assert_eq(t_get_u64(fa.sock, SC_VHOST_USER_GET_STATUS) & 0x40, 0, "no DEVICE_NEEDS_RESET");
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "sidecored died of the fault (see %s)", log_path);
	t_fe_verified_io(&fb, img[1], 16);   /* the other disk on the sidecore never noticed */
	t_fe_close(&fa);
	t_fe_close(&fb);
	stop_within_a_second();
	cr_assert_null(strstr(read_log(), "queue broken"), "%s", read_log());
}

/* ---- SIGHUP: re-read the config ---- */

/* Send SIGHUP and wait for the reload's n-th end: its "done" line, or the line that refused it. */
static void reload(unsigned n, const char *end)
{
	cr_assert_eq(kill(pid, SIGHUP), 0);
	wait_log(end, n, 5000);
}

Test(sidecored, sighup_adds_a_device_and_removes_one_while_an_unchanged_one_keeps_its_front_end)
{
	struct t_fe fa;
	t_fe_start(&fa, sock[0]);
	t_fe_verified_io(&fa, img[0], 0);
	write_config("idle_spin_us = 0\n", "ac", NULL);
	reload(1, "reload: done");
	wait_path(sock[2], true);
	wait_path(sock[1], false);
	const char *log = read_log();
	cr_assert(strstr(log, "reload: [blk.b] removed"), "%s", log);
	cr_assert(strstr(log, "reload: done: 2 disks served (1 kept as they ran, 1 added, 1 removed, 0 restarted)"), "%s",
		  log);
	/* Disk a's front end never noticed: same connection, same ring, verified I/O. */
	for (uint64_t s = 8; s < 64; s += 8)
		t_fe_verified_io(&fa, img[0], s);
	cr_assert(!t_wait_eof(fa.sock, 0), "disk a's connection was dropped");
	struct t_fe fc;
	t_fe_start(&fc, sock[2]);
	t_fe_verified_io(&fc, img[2], 0);
	t_fe_close(&fc);
	t_fe_close(&fa);
	stop_within_a_second();
}

Test(sidecored, sighup_restarts_a_changed_device_and_says_so)
{
	const char *const extra[NDISKS] = { NULL, "queue_size = 128\n", NULL };
	struct t_fe fa;
	t_fe_start(&fa, sock[0]);
	write_config("idle_spin_us = 0\n", "ab", extra);
	reload(1, "reload: done");
	const char *log = read_log();
	cr_assert(strstr(log, "reload: [blk.b] changed: restarting it"), "%s", log);
	cr_assert(strstr(log, "(1 kept as they ran, 0 added, 0 removed, 1 restarted)"), "%s", log);
	t_fe_verified_io(&fa, img[0], 0);
	struct t_fe fb;
	t_fe_start(&fb, sock[1]);
	t_fe_verified_io(&fb, img[1], 0);
	t_fe_close(&fb);
	t_fe_close(&fa);
	stop_within_a_second();
}

/*
 * iopoll on a disk: polled where the device can be polled, else one line
 * (config file and line, disk, file, why) and interrupt completions; the
 * disk serves either way, with its guest memory registered (direct).
 */
Test(sidecored, an_iopoll_disk_serves_and_says_once_if_it_cannot_be_polled)
{
	const char *const extra[NDISKS] = { NULL, "direct = yes\niopoll = yes\n", NULL };
	write_config("idle_spin_us = 0\n", "ab", extra);
	reload(1, "reload: done");
	char want[512];
	snprintf(want, sizeof(want), "sidecored: %s:11: [blk.b] %s: polled completions (iopoll) do not work on this file (",
		 conf, img[1]);
	const char *log = read_log();
	unsigned said = t_count(log, "polled completions (iopoll) do not work");
	cr_assert_leq(said, 1, "%s", log);
	if (said)
		cr_assert(strstr(log, want) && strstr(log, "serving it with interrupt completions instead"), "%s", log);
	struct t_fe fb;
	t_fe_start(&fb, sock[1]);
	t_fe_verified_io(&fb, img[1], 0);
	t_fe_close(&fb);
	stop_within_a_second();
}

Test(sidecored, a_broken_config_on_sighup_leaves_everything_running)
{
	struct t_fe fa;
	t_fe_start(&fa, sock[0]);
	t_fe_verified_io(&fa, img[0], 0);
	/* A typo in a new device's section: [sidecore] is lines 1-3, [blk.a] 4-6, [blk.b] 7-9, [blk.c] 10-13. */
	const char *const typo[NDISKS] = { NULL, NULL, "queus = 2\n" };
	write_config("idle_spin_us = 0\n", "abc", typo);
	reload(1, "keeping the running config");
	char want[256];
	snprintf(want, sizeof(want), "sidecored: reload: %s:13: unknown key 'queus' in [blk.c]", conf);
	cr_assert(strstr(read_log(), want), "the log lacks '%s':\n%s", want, read_log());
	/* A [sidecore] key that only a start sets: refused, naming its line. */
	write_config("idle_spin_us = 0\nbudget = 16\n", "a", NULL);
	reload(2, "keeping the running config");
	snprintf(want, sizeof(want), "sidecored: reload: %s:4: [sidecore] budget changed", conf);
	cr_assert(strstr(read_log(), want), "the log lacks '%s':\n%s", want, read_log());
	/* A new device whose backing is missing. */
	unlink(img[2]);
	write_config("idle_spin_us = 0\n", "abc", NULL);
	reload(3, "keeping the running config");
	cr_assert(strstr(read_log(), "[blk.c] backing"), "%s", read_log());
	/* Nothing changed: both sockets serve, a's front end kept its ring, nothing was added or removed. */
	cr_assert_eq(t_count(read_log(), "reload: done"), 0, "%s", read_log());
	wait_path(sock[1], true);
	cr_assert_eq(access(sock[2], F_OK), -1);
	t_fe_verified_io(&fa, img[0], 8);
	struct t_fe fb;
	t_fe_start(&fb, sock[1]);
	t_fe_verified_io(&fb, img[1], 0);
	t_fe_close(&fb);
	t_fe_close(&fa);
	stop_within_a_second();
}

/* ---- rebalance: auto queues leave a busy sidecore for an idle one ---- */

/*
 * Two sidecores (cpus 0 and 1), disk c pinned to cpu 1 with no front end,
 * then disks a and b with sidecore = auto: the plan balances by queue
 * count, so a and b both start on cpu 0. Memory-backed, so each read is a
 * copy on the sidecore. The thresholds are low on purpose: what is tested
 * is the path (measure, decide, move, log, stay), not the machine. On
 * these 2-cpu machines, shared with other jobs, this process's front end
 * competes with both sidecores, and the busy share of the sidecore serving
 * both disks measured 5-8% (ASan, load average 3.6) to 60% (release,
 * quieter): an idle sidecore shows 0%.
 */
static void setup_rebalance(void)
{
	cpu_set_t set;
	sched_getaffinity(0, sizeof(set), &set);
	if (!CPU_ISSET(0, &set) || !CPU_ISSET(1, &set))
		cr_skip_test("needs cpus 0 and 1 (two sidecores)");
	prepare("/dev/shm");
	const char *const extra[NDISKS] = { NULL, NULL, "sidecore = 1\n" };
	write_config("cpus = 0,1\nrebalance_interval_ms = 200\nrebalance_intervals = 2\nrebalance_busy = 3\n"
		     "rebalance_idle = 1\n", "cab", extra);
	spawn("abc");
}

TestSuite(sidecored_rebalance, .init = setup_rebalance, .fini = teardown, .timeout = 60);

#define BIG_READ (64u << 10)   /* a copy the sidecore takes far longer over than the front end to ask for */

/* Post one 64 KiB read (in slot % 16 of the buffers) and kick. */
static void post_big_read(struct t_fe *fe)
{
	unsigned slot = fe->slot++ % 16;
	uint64_t hdr = T_HDR_GPA + slot * 64, data = T_DATA_GPA + slot * BIG_READ;
	*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) =
		(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = slot * (BIG_READ / 512) };
	struct sc_drv_seg segs[3] = { { hdr, 16 }, { data, BIG_READ }, { hdr + 16, 1 } };
	cr_assert_geq(sc_drv_vq_add(&fe->vq, segs, 1, 2), 0);
	sc_drv_vq_publish(&fe->vq);
	if (sc_drv_vq_kick_needed(&fe->vq)) {
		uint64_t one = 1;
		cr_assert_eq(write(fe->kick, &one, 8), 8);
	}
}

/*
 * Keep depth 64 KiB reads in flight on each of n front ends for ms, so
 * that each request costs the sidecore a real copy. Returns the reads
 * completed.
 */
static uint64_t drive(struct t_fe *fe, int n, unsigned depth, int ms)
{
	unsigned inflight[2] = { 0 };
	uint64_t done = 0;
	int64_t end = t_now_ms() + ms;
	while (t_now_ms() < end) {
		for (int i = 0; i < n; i++) {
			while (inflight[i] < depth) {
				post_big_read(&fe[i]);
				inflight[i]++;
			}
			uint16_t head;
			uint32_t len;
			while (sc_drv_vq_get_used(&fe[i].vq, &head, &len)) {
				inflight[i]--;
				done++;
			}
		}
	}
	for (int i = 0; i < n; i++)
		cr_assert_eq(t_fe_wait(&fe[i], inflight[i], 5000), inflight[i], "requests lost on disk %c", 'a' + i);
	return done;
}

Test(sidecored_rebalance, two_busy_queues_on_one_sidecore_and_one_moves_to_the_idle_one)
{
	struct t_fe fe[2];
	t_fe_start(&fe[0], sock[0]);
	t_fe_start(&fe[1], sock[1]);
	/* 2 intervals of 200 ms each way, plus start-up: a move within 4 s or the test fails. */
	int64_t t0 = t_now_ms();
	uint64_t done = 0;
	while (!strstr(read_log(), "rebalance: moved") && t_now_ms() - t0 < 4000)
		done += drive(fe, 2, 12, 100);
	const char *log = read_log();
	cr_assert(strstr(log, "rebalance: moved [blk.a] queue 0 from cpu 0 to cpu 1") ||
			  strstr(log, "rebalance: moved [blk.b] queue 0 from cpu 0 to cpu 1"),
		  "no queue moved in %lld ms (%llu reads):\n%s", (long long)(t_now_ms() - t0), (unsigned long long)done, log);
	cr_log_info("moved after %lld ms", (long long)(t_now_ms() - t0));
	/* Each queue now has a sidecore to itself: no further move, back or forth, under the same load. */
	drive(fe, 2, 12, 1500);
	cr_assert_eq(t_count(read_log(), "rebalance: moved"), 1, "%s", read_log());
	cr_assert_null(strstr(read_log(), "[blk.c] queue"), "the pinned disk moved");
	/* Both still serve, with the data where it belongs. */
	t_fe_verified_io(&fe[0], img[0], 0);
	t_fe_verified_io(&fe[1], img[1], 0);
	t_fe_close(&fe[0]);
	t_fe_close(&fe[1]);
	stop_within_a_second();
}

/*
 * ---- killed with requests in flight, under the vhost-user IOTLB: replayed after the restart ----
 * A front end that plays QEMU with a vIOMMU: ACCESS_PLATFORM, the IOTLB,
 * an inflight area it keeps across the back end's restarts. Every address
 * sidecored sees is an IOVA, IOVA_OFF above the guest address, so a
 * request translated without the IOTLB (or through the wrong entry) lands
 * nowhere near its buffer. Disk a holds each completion for delay_us, so
 * the writes are still in flight when sidecored is killed.
 */

#define IOVA_OFF (1ull << 32)
#define NWRITES 6
#define DELAY_MS 500   /* long beside the few ms between the pops and the kill, on a loaded 2-cpu machine */
#define NSLOTS 32      /* 4 KiB data buffers from T_DATA_GPA, one IOTLB entry each */

/* The front end's state that outlives a connection, as QEMU keeps it across a back end's crash. */
struct iofe {
	struct t_fe fe;
	int backend;                   /* our end of the back-end channel */
	int ifd;                       /* the inflight area (a memfd from GET_INFLIGHT_FD) */
	struct sc_vu_inflight in;
	struct sc_vq_inflight *area;   /* its one queue, read to see what sidecored has popped */
	unsigned misses;               /* MISS messages answered */
	uint64_t skip;                 /* a page whose MISS is never answered (0: none) */
	bool skip_missed;              /* its MISS came */
	uint16_t heads[NWRITES];       /* write i's head */
};

static struct iofe F = { .fe = { .sock = -1, .memfd = -1, .kick = -1, .call = -1, .err = -1 }, .backend = -1, .ifd = -1 };

static void setup_replay(void)
{
	char a[128];
	snprintf(a, sizeof(a), "queue_size = %u\ndelay_us = %u\niotlb_miss_ms = 300\n", T_QSIZE, DELAY_MS * 1000);
	const char *const extra[NDISKS] = { a, NULL, NULL };
	prepare("/tmp");
	write_config("idle_spin_us = 0\n", "ab", extra);
	spawn("ab");
}

static void teardown_replay(void)
{
	if (F.area)
		munmap(F.area, F.in.mmap_size);
	if (F.ifd >= 0)
		close(F.ifd);
	if (F.backend >= 0)
		close(F.backend);
	t_fe_close(&F.fe);
	F = (struct iofe){ .fe = F.fe, .backend = -1, .ifd = -1 };
	teardown();
}

TestSuite(sidecored_replay, .init = setup_replay, .fini = teardown_replay, .timeout = 60);

/* The IOTLB entry holding iova, as the front end's vIOMMU maps it: the ring's pages, the headers, or one data buffer. */
static bool entry_of(uint64_t iova, uint64_t *start, uint64_t *size)
{
	uint64_t gpa = iova - IOVA_OFF;
	if (iova < IOVA_OFF || gpa >= T_DATA_GPA + NSLOTS * 4096ull)
		return false;
	if (gpa < T_HDR_GPA)
		*start = 0, *size = T_HDR_GPA;
	else if (gpa < T_DATA_GPA)
		*start = T_HDR_GPA, *size = T_DATA_GPA - T_HDR_GPA;
	else
		*start = gpa & ~0xfffull, *size = 4096;
	*start += IOVA_OFF;
	return true;
}

static void map_entry(uint64_t iova)
{
	uint64_t start, size;
	cr_assert(entry_of(iova, &start, &size), "a MISS at iova 0x%llx, outside everything the guest gave the device",
		  (unsigned long long)iova);
	cr_assert_eq(t_iotlb(F.fe.sock, SC_VHOST_IOTLB_UPDATE, start, size, (uintptr_t)F.fe.mem + (start - IOVA_OFF),
			     SC_VHOST_ACCESS_RW), 0);
}

/* Answer the MISSes that came within ms (all but F.skip's), as QEMU's vhost_iotlb_miss does. */
static void answer_misses(int ms)
{
	struct sc_vu_iotlb t;
	while (t_next_miss(F.backend, ms, &t)) {
		ms = 0;
		if (F.skip && t.iova == F.skip) {
			F.skip_missed = true;
			continue;
		}
		map_entry(t.iova);
		F.misses++;
	}
}

#define MAP_NONE (-2)   /* map_all: nothing; every translation comes on a MISS */
#define MAP_ALL (-1)

/* UPDATE the ring's pages, the headers and each data buffer but slot skip's (MAP_ALL: all of them). */
static void map_all(int skip)
{
	map_entry(IOVA_OFF);
	map_entry(IOVA_OFF + T_HDR_GPA);
	for (int i = 0; i < NSLOTS; i++)
		if (i != skip)
			map_entry(IOVA_OFF + T_DATA_GPA + i * 4096ull);
}

/*
 * Connect to disk a (unless F.fe is connected) as QEMU does, at its first
 * start (no area yet: GET then SET_INFLIGHT_FD) or after the back end
 * died (SET_INFLIGHT_FD with the area it kept): features with
 * ACCESS_PLATFORM, the back-end channel, the memory table, map_all(premap)
 * unless MAP_NONE, the ring by IOVA resuming at base.
 */
static void iofe_connect(uint16_t base, int premap)
{
	struct t_fe *fe = &F.fe;
	if (fe->sock < 0)
		fe->sock = t_connect(sock[0]);
	F.backend = t_fe_negotiate_iotlb(fe, true);
	if (F.ifd < 0) {
		F.ifd = t_get_inflight(fe->sock, 1, &F.in);
		F.area = mmap(NULL, F.in.mmap_size, PROT_READ, MAP_SHARED, F.ifd, 0);
		cr_assert_neq(F.area, MAP_FAILED);
	}
	cr_assert_eq(t_set_inflight(fe->sock, &F.in, F.ifd), 0, "SET_INFLIGHT_FD refused");
	cr_assert_eq(t_fe_mem_table(fe, fe->memfd), 0, "memory table refused");
	if (premap != MAP_NONE)
		map_all(premap);
	t_fe_ring_at(fe, base, IOVA_OFF);
}

/* The pattern of write i. */
static void pattern(unsigned i, uint8_t *buf)
{
	for (unsigned k = 0; k < 4096; k++)
		buf[k] = (uint8_t)(k * 31 + i * 101 + 7);
}

/* Put a 4 KiB request of type on sector in slot's buffers, by IOVA; publish, not kick. Returns its head. */
static uint16_t post(unsigned slot, uint32_t type, uint64_t sector)
{
	uint64_t hdr = T_HDR_GPA + slot * 64ull, data = T_DATA_GPA + slot * 4096ull;
	*(struct sc_virtio_blk_outhdr *)(F.fe.mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = type, .sector = sector };
	F.fe.mem[hdr + 16] = 0xee;
	struct sc_drv_seg s[3] = { { IOVA_OFF + hdr, 16 }, { IOVA_OFF + data, 4096 }, { IOVA_OFF + hdr + 16, 1 } };
	bool out = type == SC_VIRTIO_BLK_T_OUT;
	int head = sc_drv_vq_add(&F.fe.vq, s, out ? 2 : 1, out ? 1 : 2);
	cr_assert_geq(head, 0);
	sc_drv_vq_publish(&F.fe.vq);
	return (uint16_t)head;
}

static void kick(void)
{
	uint64_t one = 1;
	cr_assert_eq(write(F.fe.kick, &one, 8), 8);
}

/*
 * Reap used entries for up to ms (answering MISSes meanwhile) until n
 * came; each head once, into seen[]. Returns how many came.
 */
static unsigned reap(unsigned n, int ms, unsigned seen[T_QSIZE])
{
	unsigned got = 0;
	int64_t t0 = t_now_ms();
	while (got < n && t_now_ms() - t0 < ms) {
		uint16_t head;
		uint32_t len;
		if (sc_drv_vq_get_used(&F.fe.vq, &head, &len)) {
			cr_assert_lt(head, T_QSIZE);
			seen[head]++;
			got++;
		} else {
			answer_misses(1);   /* sleeps in poll: no cpu spent waiting */
		}
	}
	return got;
}

/* Heads sidecored has popped and not completed, as its inflight area says. */
static unsigned marked_in_flight(void)
{
	unsigned n = 0;
	if (__atomic_load_n(&F.area->version, __ATOMIC_ACQUIRE) != 1)
		return 0;
	for (unsigned h = 0; h < T_QSIZE; h++)
		n += __atomic_load_n(&F.area->desc[h].inflight, __ATOMIC_ACQUIRE) == 1;
	return n;
}

/*
 * Map everything, post NWRITES writes of known patterns (write i in slot
 * i, to sector 8 i), wait until sidecored's inflight area marks all of
 * them, SIGKILL it and zero what it may have written: whatever the file
 * holds afterwards comes from the replay.
 */
static void writes_in_flight_then_kill(void)
{
	t_fe_open(&F.fe, sock[0]);
	cr_assert_eq(sc_drv_vq_init(&F.fe.vq, F.fe.mem, 0, T_QSIZE, 1ull << SC_VIRTIO_F_VERSION_1), 0);
	sc_drv_vq_interrupts_disable(&F.fe.vq);
	/* All mapped: the writes are popped in one round, well inside the delay. */
	iofe_connect(0, MAP_ALL);
	for (unsigned i = 0; i < NWRITES; i++) {
		pattern(i, F.fe.mem + T_DATA_GPA + i * 4096ull);
		F.heads[i] = post(i, SC_VIRTIO_BLK_T_OUT, 8ull * i);
	}
	kick();
	int64_t t0 = t_now_ms();
	while (marked_in_flight() < NWRITES) {
		cr_assert_lt(t_now_ms() - t0, 3000, "sidecored marked %u of %u writes in flight after 3 s:\n%s",
			     marked_in_flight(), NWRITES, read_log());
		answer_misses(1);
	}
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	pid = -1;
	/* Had one completed before the kill, the count below would not be exact: the delay is what makes it so. */
	cr_assert_eq(__atomic_load_n(&F.fe.vq.used->idx, __ATOMIC_ACQUIRE), 0,
		     "a write completed within %d ms of its pop, before the kill", DELAY_MS);
	cr_assert_eq(marked_in_flight(), NWRITES);
	int fd = open(img[0], O_WRONLY);
	static const uint8_t zero[NWRITES * 8 * 512];
	cr_assert_eq(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
	close(fd);
	close(F.fe.sock);
	close(F.backend);
	F.fe.sock = F.backend = -1;
	F.misses = 0;
	/* The killed process left its sockets (the restart replaces them) and its log: its "; ready" must not count. */
	cr_assert_eq(truncate(log_path, 0), 0);
}

Test(sidecored_replay, killed_with_writes_in_flight_under_the_iotlb_it_replays_each_once_after_its_restart)
{
	writes_in_flight_then_kill();
	spawn("ab");
	/* QEMU's base after a back end died: the used index (the back end could not say where it was). */
	iofe_connect(__atomic_load_n(&F.fe.vq.used->idx, __ATOMIC_ACQUIRE), MAP_NONE);
	unsigned seen[T_QSIZE] = { 0 };
	cr_assert_eq(reap(NWRITES, 5000, seen), NWRITES, "the replayed writes did not all complete in 5 s:\n%s", read_log());
	/* A request served twice would complete again a delay later. */
	cr_assert_eq(reap(1, DELAY_MS + 300, seen), 0, "more completions than writes");
	for (unsigned i = 0; i < NWRITES; i++) {
		cr_assert_eq(seen[F.heads[i]], 1, "write %u (head %u) completed %u times", i, F.heads[i], seen[F.heads[i]]);
		cr_assert_eq(F.fe.mem[T_HDR_GPA + i * 64 + 16], SC_VIRTIO_BLK_S_OK, "write %u failed", i);
	}
	char want[256];
	snprintf(want, sizeof(want), "sidecore: %s vring 0: serving again %u requests a previous back end left in flight",
		 sock[0], NWRITES);
	cr_assert_eq(t_count(read_log(), "serving again"), 1, "%s", read_log());
	cr_assert(strstr(read_log(), want), "the log lacks '%s':\n%s", want, read_log());
	/* The IOTLB the restarted sidecored had was empty: each translation came on a MISS the front end answered. */
	cr_assert_geq(F.misses, 2 + NWRITES, "ring + headers + %u data pages, %u MISSes", NWRITES, F.misses);
	cr_log_info("%u MISSes answered after the restart", F.misses);
	cr_assert_null(strstr(read_log(), "the MISS was not answered"), "each MISS was answered at once:\n%s", read_log());
	uint8_t disk[4096], want_buf[4096];
	for (unsigned i = 0; i < NWRITES; i++) {
		pattern(i, want_buf);
		t_disk_read(img[0], 8ull * i, disk);
		cr_assert_eq(memcmp(disk, want_buf, 4096), 0, "sector %u lacks write %u's pattern", 8 * i, i);
		/* Read back through the ring, into another buffer. */
		unsigned slot = NWRITES + i;
		memset(F.fe.mem + T_DATA_GPA + slot * 4096ull, 0, 4096);
		post(slot, SC_VIRTIO_BLK_T_IN, 8ull * i);
	}
	kick();
	cr_assert_eq(reap(NWRITES, 5000, seen), NWRITES, "the reads did not complete in 5 s");
	for (unsigned i = 0; i < NWRITES; i++) {
		pattern(i, want_buf);
		cr_assert_eq(F.fe.mem[T_HDR_GPA + (NWRITES + i) * 64 + 16], SC_VIRTIO_BLK_S_OK);
		cr_assert_eq(memcmp(F.fe.mem + T_DATA_GPA + (NWRITES + i) * 4096ull, want_buf, 4096), 0,
			     "read %u differs from write %u", i, i);
	}
	cr_assert_eq(t_fe_err_count(&F.fe, 0), 0, "the queue broke:\n%s", read_log());
	stop_within_a_second();
}

Test(sidecored_replay, a_replayed_write_whose_buffer_the_front_end_never_maps_again_breaks_only_that_queue)
{
	writes_in_flight_then_kill();
	spawn("ab");
	/* Everything but write 0's data page: the first replayed, so nothing can be served past it. */
	F.skip = IOVA_OFF + T_DATA_GPA;
	iofe_connect(0, 0);
	/* iotlb_miss_ms = 300: the queue breaks, its err eventfd says so, nothing was served. */
	unsigned seen[T_QSIZE] = { 0 };
	cr_assert_eq(reap(1, 1500, seen), 0, "a replayed write completed without its translation");
	cr_assert(F.skip_missed, "no MISS for the unmapped buffer");
	cr_assert_eq(t_fe_err_count(&F.fe, 3000), 1, "the err eventfd did not fire:\n%s", read_log());
	cr_assert(t_get_u64(F.fe.sock, SC_VHOST_USER_GET_STATUS) & SC_VIRTIO_CONFIG_S_NEEDS_RESET,
		  "GET_STATUS lacks DEVICE_NEEDS_RESET");
	char want[256];
	snprintf(want, sizeof(want), "%s vring 0: queue broken: IOTLB miss at iova 0x%llx (read) not answered in 300 ms",
		 sock[0], (unsigned long long)F.skip);
	wait_log(want, 1, 1000);
	snprintf(want, sizeof(want), "serving again %u requests", NWRITES);
	cr_assert(strstr(read_log(), want), "the log lacks '%s':\n%s", want, read_log());
	/* sidecored lives: disk b serves, and so does disk a for a fresh front end. */
	struct t_fe fb, fa;
	t_fe_start(&fb, sock[1]);
	t_fe_verified_io(&fb, img[1], 0);
	t_fe_close(&fb);
	t_fe_close(&F.fe);
	t_fe_start(&fa, sock[0]);
	t_fe_verified_io(&fa, img[0], 128);
	t_fe_close(&fa);
	stop_within_a_second();
}
