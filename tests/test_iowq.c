/* SPDX-License-Identifier: MIT */
/*
 * io-wq placement: a blk queue whose backend names iowq_aff gets io_uring
 * workers that run only there. The test forces a worker (an IOSQE_ASYNC
 * read of a pipe nobody writes) on the queue's own ring and reads the
 * worker thread's allowed cpus from /proc.
 *
 * io-wq belongs to the thread that submits, not to the ring: the runtime
 * sets a queue up on its control thread and a sidecore submits, so the
 * last test does the same.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/devices.h"
#include "harness.h"

static char dir[] = "/tmp/sidecore-iowq-XXXXXX", path[64];

/* The Cpus_allowed_list of the first io_uring worker thread of this process, or "" if there is none yet. */
static void worker_cpus(char *out, size_t len)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	out[0] = '\0';
	while (d && (e = readdir(d))) {
		char p[300], line[256];
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		bool worker = fgets(line, sizeof(line), f) && !strncmp(line, "iou-wrk-", 8);
		fclose(f);
		if (!worker)
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/status", e->d_name);
		f = fopen(p, "r");
		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, "Cpus_allowed_list:", 18))
				snprintf(out, len, "%.*s", (int)strcspn(line + 18 + strspn(line + 18, " \t"), "\n"),
					 line + 18 + strspn(line + 18, " \t"));
		if (f)
			fclose(f);
		break;
	}
	if (d)
		closedir(d);
}

/* Start a queue (with iowq_aff = only, or none), force a worker, return its allowed cpus. */
static void run(int only, char *cpus, size_t len)
{
	struct t_guest g;
	struct sc_drv_vq dvq;
	struct sc_vq_config cfg;
	struct sc_blk_backend be;
	static struct sc_blk_queue q;
	uint64_t ring;
	char err[256];
	cpu_set_t set;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	cr_assert_eq(t_guest_init(&g, 0, 1 << 20), 0);
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(64), 4096, &ring));
	cr_assert_eq(t_ring_init(&g, &dvq, ring, 64, 0), 0);
	t_vq_config(&g, &dvq, 0, &cfg);
	cr_assert_eq(sc_blk_backend_open(&be, path, false, false, "t", err, sizeof(err)), 0, "%s", err);
	if (only >= 0) {
		CPU_ZERO(&set);
		CPU_SET(only, &set);
		be.iowq_aff = &set;
		be.iowq_aff_size = sizeof(set);
	}
	cr_assert_eq(sc_blk_queue_init(&q, &be, &cfg, "t"), 0);

	int pipefd[2];
	char byte;
	cr_assert_eq(pipe(pipefd), 0);
	struct io_uring *r = q.ring;
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	io_uring_prep_read(sqe, pipefd[0], &byte, 1, 0);
	sqe->flags |= IOSQE_ASYNC;   /* straight to an io-wq worker, which blocks on the empty pipe */
	sqe->user_data = UINT64_MAX;
	cr_assert_eq(io_uring_submit(r), 1);
	for (int i = 0; i < 200 && !cpus[0]; i++) {
		usleep(5000);
		worker_cpus(cpus, len);
	}
	/* Let the worker finish, reap it, and put everything back. */
	cr_assert_eq(write(pipefd[1], "x", 1), 1);
	struct io_uring_cqe *cqe;
	cr_assert_eq(io_uring_wait_cqe(r, &cqe), 0);
	io_uring_cqe_seen(r, cqe);
	close(pipefd[0]);
	close(pipefd[1]);
	sc_blk_queue_fini(&q);
	sc_blk_backend_close(&be);
	t_guest_fini(&g);
	unlink(path);
	rmdir(dir);
}

Test(iowq, workers_of_a_queue_run_only_on_the_cpus_its_backend_names)
{
	cpu_set_t mine;
	int first = -1;
	char cpus[128] = "", want[16];

	cr_assert_eq(sched_getaffinity(0, sizeof(mine), &mine), 0);
	for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
		if (CPU_ISSET(c, &mine))
			first = c;
	run(first, cpus, sizeof(cpus));
	cr_assert(cpus[0], "no io_uring worker thread appeared");
	snprintf(want, sizeof(want), "%d", first);
	cr_assert_str_eq(cpus, want, "the worker may run on %s", cpus);
}

Test(iowq, without_a_mask_the_workers_go_where_the_kernel_puts_them)
{
	cpu_set_t mine;
	char cpus[128] = "";

	cr_assert_eq(sched_getaffinity(0, sizeof(mine), &mine), 0);
	if (CPU_COUNT(&mine) < 2)
		cr_skip_test("one cpu: a worker's mask cannot be told from a pinned one");
	run(-1, cpus, sizeof(cpus));
	cr_assert(cpus[0], "no io_uring worker thread appeared");
	cr_assert(strchr(cpus, '-') || strchr(cpus, ','), "the worker is pinned to %s without a mask", cpus);
}

/* The sidecore of the last test: a thread on another cpu that polls the queue (one O_DIRECT write), then forces a worker. */
struct sidecore_arg {
	struct sc_blk_queue *q;
	int cpu;
	int pipe_rd, pipe_wr;
	int ret;
	char cpus[128];             /* the worker's allowed cpus */
};

static void *sidecore(void *p)
{
	struct sidecore_arg *a = p;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(a->cpu, &one);
	a->ret = -pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	/* Until the write completed (bounded): then only the pipe read below is in the ring. */
	for (int i = 0; a->ret == 0 && i < 20000 && (a->q->stats.writes == 0 || a->q->nactive); i++) {
		a->ret = sc_blk_queue_poll(a->q, 8) < 0 ? -EIO : 0;
		usleep(100);
	}
	if (a->ret == 0 && a->q->nactive)
		a->ret = -ETIMEDOUT;
	if (a->ret == 0) {
		static char byte;
		struct io_uring *r = a->q->ring;
		struct io_uring_sqe *sqe = io_uring_get_sqe(r);
		io_uring_prep_read(sqe, a->pipe_rd, &byte, 1, 0);
		sqe->flags |= IOSQE_ASYNC;   /* to this thread's io-wq */
		sqe->user_data = UINT64_MAX;
		a->ret = io_uring_submit(r) == 1 ? 0 : -EIO;
	}
	/* Look while this thread lives: its io-wq (and the worker) go with it. */
	for (int i = 0; a->ret == 0 && i < 200 && !a->cpus[0]; i++) {
		usleep(5000);
		worker_cpus(a->cpus, sizeof(a->cpus));
	}
	if (a->ret == 0) {
		struct io_uring_cqe *cqe;
		a->ret = write(a->pipe_wr, "x", 1) == 1 ? io_uring_wait_cqe(a->q->ring, &cqe) : -errno;
		if (a->ret == 0 && cqe->user_data != UINT64_MAX)
			a->ret = -EPROTO;
		if (a->ret == 0)
			io_uring_cqe_seen(a->q->ring, cqe);
	}
	return NULL;
}

Test(iowq, workers_of_a_queue_polled_by_another_thread_run_only_on_the_backends_cpus)
{
	cpu_set_t mine, set;
	int first = -1, last = -1;
	char cpus[128] = "", want[16], err[256];

	cr_assert_eq(sched_getaffinity(0, sizeof(mine), &mine), 0);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &mine)) {
			first = first < 0 ? c : first;
			last = c;
		}
	if (first == last)
		cr_skip_test("one cpu: a worker's mask cannot be told from a pinned one");
	struct t_guest g;
	struct sc_drv_vq dvq;
	struct sc_vq_config cfg;
	struct sc_blk_backend be;
	static struct sc_blk_queue q;
	uint64_t ring, hdr, data, st;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	cr_assert_eq(t_guest_init(&g, 0, 1 << 20), 0);
	cr_assert_not_null(t_alloc(&g, sc_drv_vq_ring_bytes(64), 4096, &ring));
	cr_assert_eq(t_ring_init(&g, &dvq, ring, 64, 0), 0);
	t_vq_config(&g, &dvq, 0, &cfg);
	/* O_DIRECT: the write goes through io_uring (never done on the sidecore itself). */
	if (sc_blk_backend_open(&be, path, false, true, "t", err, sizeof(err)) < 0) {
		unlink(path);
		rmdir(dir);
		cr_skip_test("no O_DIRECT in /tmp here: %s", err);
	}
	CPU_ZERO(&set);
	CPU_SET(first, &set);
	be.iowq_aff = &set;
	be.iowq_aff_size = sizeof(set);
	cr_assert_eq(sc_blk_queue_init(&q, &be, &cfg, "t"), 0);   /* on this (the control) thread */

	*(struct sc_virtio_blk_outhdr *)t_alloc(&g, 16, 16, &hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_OUT };
	cr_assert_not_null(t_alloc(&g, 4096, 4096, &data));
	cr_assert_not_null(t_alloc(&g, 1, 1, &st));
	struct sc_drv_seg segs[3] = { { hdr, 16 }, { data, 4096 }, { st, 1 } };
	cr_assert_geq(sc_drv_vq_add(&dvq, segs, 2, 1), 0);
	sc_drv_vq_publish(&dvq);

	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	static struct sidecore_arg a;
	a = (struct sidecore_arg){ .q = &q, .cpu = last, .pipe_rd = pipefd[0], .pipe_wr = pipefd[1] };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, sidecore, &a), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(a.ret, 0, "the sidecore thread: %s", strerror(-a.ret));
	snprintf(cpus, sizeof(cpus), "%s", a.cpus);
	sc_blk_queue_fini(&q);
	close(pipefd[0]);
	close(pipefd[1]);
	sc_blk_backend_close(&be);
	t_guest_fini(&g);
	unlink(path);
	rmdir(dir);
	cr_assert(cpus[0], "no io_uring worker thread appeared");
	snprintf(want, sizeof(want), "%d", first);
	cr_assert_str_eq(cpus, want, "a worker of the polling thread (pinned to cpu %d) may run on %s", last, cpus);
}
