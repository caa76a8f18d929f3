/* SPDX-License-Identifier: MIT */
/*
 * sidecored as a process, with two disks: a front end stuck on disk A
 * (mid-message, or not reading its replies) holds up neither disk B's
 * set-up and verified I/O nor SIGTERM, which stops the service cleanly in
 * under a second. The binary comes from meson (SIDECORED in the
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/vhost_user.h"
#include "vu_helpers.h"

static char dir[] = "/tmp/sidecore-d-XXXXXX", log_path[96];
static char sock[2][96], img[2][96];
static pid_t pid = -1;

/* Start sidecored on two disks; control_timeout_ms = timeout_ms unless it is 0 (the default then). */
static void start(int timeout_ms)
{
	const char *bin = getenv("SIDECORED");
	if (!bin || access(bin, X_OK) != 0)
		cr_skip_test("SIDECORED is not set to the sidecored binary (meson sets it)");
	cr_assert_not_null(mkdtemp(dir));
	char conf[96];
	snprintf(conf, sizeof(conf), "%s/sc.conf", dir);
	snprintf(log_path, sizeof(log_path), "%s/sidecored.log", dir);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	/* The last cpu we may run on; the sidecore sleeps on kicks as soon as it is idle. */
	cpu_set_t set;
	int cpu = 0;
	sched_getaffinity(0, sizeof(set), &set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			cpu = i;
	fprintf(f, "[sidecore]\ncpus = %d\nidle_spin_us = 0\n", cpu);
	if (timeout_ms)
		fprintf(f, "control_timeout_ms = %d\n", timeout_ms);
	for (int i = 0; i < 2; i++) {
		snprintf(sock[i], sizeof(sock[i]), "%s/%c.sock", dir, 'a' + i);
		snprintf(img[i], sizeof(img[i]), "%s/%c.img", dir, 'a' + i);
		int fd = open(img[i], O_CREAT | O_RDWR, 0644);
		cr_assert_eq(ftruncate(fd, T_DISK), 0);
		close(fd);
		fprintf(f, "[blk.%c]\nsocket = %s\nbacking = %s\n", 'a' + i, sock[i], img[i]);
	}
	fclose(f);
	pid = fork();
	if (pid == 0) {
		int fd = open(log_path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, bin, "--config", conf, (char *)NULL);
		_exit(127);
	}
	cr_assert_gt(pid, 0);
	int64_t t0 = t_now_ms();
	struct stat st;
	while (stat(sock[0], &st) < 0 || stat(sock[1], &st) < 0) {
		cr_assert_lt(t_now_ms() - t0, 5000, "sidecored did not create its sockets (see %s)", log_path);
		cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "sidecored exited (see %s)", log_path);
		usleep(10000);
	}
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
	for (int i = 0; i < 2; i++) {
		unlink(sock[i]);   /* left only if sidecored did not stop cleanly */
		unlink(img[i]);
	}
	unlink(log_path);
	snprintf(path, sizeof(path), "%s/sc.conf", dir);
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
	uint32_t half[2] = { VHOST_USER_GET_FEATURES, VHOST_USER_VERSION };
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
	uint32_t half[2] = { VHOST_USER_GET_FEATURES, VHOST_USER_VERSION };
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
	cr_assert(t_get_u64(fe.sock, VHOST_USER_GET_STATUS) & 0x40, "GET_STATUS lacks DEVICE_NEEDS_RESET");
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
