/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench vhost-blk: the same vhost-user-blk workload against
 * sidecored and against qemu-storage-daemon (with an iothread), on the same
 * backing file on tmpfs (so the disk is not what is measured), driven by the
 * same user-space front end (runtime/vu_frontend.c) on the guest cpu; each
 * server runs pinned to the sidecore cpu. Random 4 KiB reads at QD1 and
 * QD32: latency from the front end, IOPS, and host cpu per I/O from each
 * server process's own cpu time.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benches/bench.h"
#include "common/barrier.h"
#include "common/tsc.h"
#include "spec/sc_virtio_blk.h"
#include "runtime/vu_msg.h"
#include "runtime/vu_frontend.h"

static const char usage[] =
	"usage: sidecore-bench vhost-blk [--iommu] [--spdk DIR] [--spdk-script FILE] [--json FILE]\n"
	"                                [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"\n"
	"Random 4 KiB reads at QD1 and QD32 from one user-space vhost-user front end\n"
	"on cpu G, against sidecored (its memory path, and with mmap = false),\n"
	"qemu-storage-daemon (iothread) and SPDK's vhost target (malloc bdev, and aio\n"
	"bdev on the file), each pinned to cpu S, on the same 256 MiB file in\n"
	"/dev/shm. Prints p50/p99 latency, IOPS and IOPS per host cpu, with\n"
	"sidecored's ratios to the daemon and to SPDK; --plot draws the QD1 latency CDFs.\n"
	"\n"
	"--spdk DIR: SPDK's build (DIR/build/bin/vhost); default $SIDECORE_SPDK_DIR,\n"
	"else /opt/spdk. --spdk-script FILE: the start/stop script; default\n"
	"$SIDECORE_SPDK_SCRIPT, else /work/shared/anchors/spdk/spdk-vhost.sh. Without\n"
	"either, SPDK is skipped (one line says so).\n"
	"\n"
	"--iommu: sidecored only, unprotected against protected (ACCESS_PLATFORM; the\n"
	"front end is the vIOMMU): each request's pages mapped (IOTLB UPDATE) before\n"
	"it is posted and invalidated after it completes, one acknowledged message\n"
	"each (as a strict guest does); or batched as a lazy guest does: data pages\n"
	"from 4 windows of 256 IOVA slots (Linux's flush queue), a window invalidated\n"
	"and mapped again in one batch once its requests completed, the front end\n"
	"asleep until the ack (as QEMU's vCPU is) while the requests in flight go on.\n"
	"Both again on a second disk with iommu_isolation = yes (sidecored maps only\n"
	"the granted pages: an mmap per UPDATE, an munmap per dropped grant).\n"
	"Prints IOTLB messages and acks per request and the mean ack latency, with\n"
"sidecored's share of it (its IOTLB counters, read through its stats socket).\n"
"Baselines in the same run: the batched flushes sent to a process that answers\n"
"at once (a null peer on the front end's cpu) during unprotected I/O, the\n"
"ceiling for protected I/O on the machine; and that peer's ack time alone.\n";

/*
 * How the front end protects its requests (--iommu). PROT_NULL_ACKS:
 * unprotected I/O, but every flush of PROT_BATCHED is still sent, to a
 * peer that answers at once (null_peer), and waited for: what the waits
 * alone cost on this machine.
 */
enum prot { PROT_NONE, PROT_PER_REQUEST, PROT_BATCHED, PROT_NULL_ACKS };
static const char *const prot_names[] = { "unprotected", "IOTLB per request", "IOTLB batched",
					 "isolated per request", "isolated batched", "flushes to null peer" };
/* --iommu's rows: the three modes, the two protected ones on the isolated disk, the batched flushes' waits alone. */
enum { NMODES = 6 };
static const enum prot mode_prot[NMODES] = { PROT_NONE, PROT_PER_REQUEST, PROT_BATCHED, PROT_PER_REQUEST, PROT_BATCHED,
					     PROT_NULL_ACKS };
/* Request slot s lives at these IOVAs (its header's page, then its data page), far from the rings' identity map. */
#define SLOT_IOVA(s) (0x100000000ull + (uint64_t)(s) * 0x2000)

#define DISK_MB 256
#define MEM (64u << 20)

enum kind { SIDECORED, SIDECORED_SYSCALL, QSD, SPDK_MALLOC, SPDK_AIO, NSERVERS };

struct server {
	const char *name;
	pid_t pid;
	char sock[108];
	double c2c_ns[2];          /* the cpus' cache-line round trip before it started and after it stopped */
};

/* Where SPDK is, and how it is started (the anchor's script), for one run. */
struct spdk {
	const char *dir, *script;
	char run[160];             /* SPDK_RUN: its pid files and logs, in our temp dir */
};

struct result {
	struct samples lat;
	double iops, cpu_s, ops;
};


/* Start argv pinned to cpu, quiet, and wait for its socket. */
static int spawn(struct server *s, char *const argv[], int cpu, const char *log)
{
	s->pid = fork();
	if (s->pid < 0)
		return -errno;
	if (s->pid == 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		/* -1: every cpu (not the front end's, which we inherit), left to the scheduler */
		for (long c = cpu >= 0 ? cpu : 0; c <= (cpu >= 0 ? cpu : sysconf(_SC_NPROCESSORS_ONLN) - 1); c++)
			CPU_SET(c, &set);
		sched_setaffinity(0, sizeof(set), &set);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		struct stat st;
		if (stat(s->sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			fprintf(stderr, "sidecore-bench: %s exited at start; see %s\n", s->name, log);
			s->pid = 0;
			return -ECHILD;
		}
		usleep(50000);
	}
	fprintf(stderr, "sidecore-bench: %s did not create %s within 5 s; see %s\n", s->name, s->sock, log);
	return -ETIMEDOUT;
}

static void stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (int i = 0; i < 50; i++) {
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0;
			return;
		}
		usleep(20000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

/*
 * Run the SPDK script: cmd (start/stop) with bdev on disk at sock, SPDK's
 * reactor on cpu. The script itself runs unpinned (it checks the cpu
 * against nproc, which counts only the cpus it may run on); spdk_start pins
 * the rest. Returns its exit status, or -1.
 */
static int spdk_script(const struct spdk *sp, const char *cmd, const char *bdev, const char *disk, const char *sock,
		       int cpu, const char *log)
{
	char cpus[16];
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
			CPU_SET(c, &set);
		sched_setaffinity(0, sizeof(set), &set);   /* not the front end's cpu, which we inherit */
		setenv("SPDK_DIR", sp->dir, 1);
		setenv("SPDK_BDEV", bdev, 1);
		setenv("SPDK_RUN", sp->run, 1);
		setenv("SPDK_SIZE_MIB", "256", 1);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		snprintf(cpus, sizeof(cpus), "%d", cpu);
		execl("/bin/bash", "bash", sp->script, cmd, disk, sock, cpus, (char *)NULL);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Start SPDK's vhost target on bdev; s->pid is the vhost process (from the script's pid file). */
static int spdk_start(const struct spdk *sp, struct server *s, const char *bdev, const char *disk, int cpu,
		      const char *log)
{
	char pidf[320], key[120];
	size_t k = 0;

	if (spdk_script(sp, "start", bdev, disk, s->sock, cpu, log) != 0) {
		fprintf(stderr, "sidecore-bench: %s did not start; see %s\n", s->name, log);
		return -ECHILD;
	}
	/* The script's state directory: the socket path without its leading '/', other characters as '_'. */
	for (const char *c = s->sock + (s->sock[0] == '/'); *c && k + 1 < sizeof(key); c++)
		key[k++] = (isalnum((unsigned char)*c) || strchr("._-", *c)) ? *c : '_';
	key[k] = 0;
	snprintf(pidf, sizeof(pidf), "%s/%s/pid", sp->run, key);
	FILE *f = fopen(pidf, "r");
	int pid = 0;
	if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
		fprintf(stderr, "sidecore-bench: %s: no pid in %s\n", s->name, pidf);
		if (f)
			fclose(f);
		spdk_script(sp, "stop", bdev, disk, s->sock, cpu, log);
		return -ENOENT;
	}
	fclose(f);
	s->pid = pid;
	/* Every thread of it (reactor, DPDK's control threads) on the one cpu the other servers get. */
	char task[64];
	snprintf(task, sizeof(task), "/proc/%d/task", pid);
	DIR *d = opendir(task);
	struct dirent *e;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	while (d && (e = readdir(d)))
		if (isdigit((unsigned char)e->d_name[0]))
			sched_setaffinity(atoi(e->d_name), sizeof(set), &set);
	if (d)
		closedir(d);
	return 0;
}

/* What the IOTLB messages of one run cost the front end (--iommu). */
static struct {
	uint64_t msgs, acked, ack_cycles;
	uint64_t srv_acks, srv_ns;   /* what sidecored counted of them: acks, ns from its wakeup to each answer */
} iotlb_cost;

/* Where run() reads sidecored's IOTLB counters (its stats socket, the device): set for protected runs. */
static const char *acks_sock, *acks_dev;

/* sidecored's IOTLB acks of acks_dev so far, and their time from its control thread's wakeup to the answer (ns). */
static void server_acks(uint64_t *acks, uint64_t *ack_ns)
{
	json_t *doc = bench_sidecored_stats(acks_sock), *d;
	size_t i;

	*acks = *ack_ns = 0;
	json_array_foreach(json_object_get(doc, "devices"), i, d) {
		if (strcmp(json_string_value(json_object_get(d, "name")) ?: "", acks_dev) == 0) {
			json_t *t = json_object_get(d, "iotlb");
			*acks = (uint64_t)json_integer_value(json_object_get(t, "acks"));
			*ack_ns = (uint64_t)json_integer_value(json_object_get(t, "ack_ns"));
		}
	}
	json_decref(doc);
}

/* sc_vu_fe_iotlb, counted: messages, and the cycles spent waiting for acknowledgements. */
static int fe_iotlb(struct sc_vu_fe *fe, uint8_t type, uint64_t iova, uint64_t size, uint64_t gpa, uint8_t perm,
		    bool reply)
{
	uint64_t t0 = reply ? sc_rdtsc() : 0;
	int ret = sc_vu_fe_iotlb(fe, type, iova, size, gpa, perm, reply);

	iotlb_cost.msgs++;
	if (reply) {
		iotlb_cost.acked++;
		iotlb_cost.ack_cycles += sc_rdtsc() - t0;
	}
	return ret;
}

/* Map slot s's header page and data page at its IOVAs (two UPDATEs, acknowledged if reply). */
static int map_slot(struct sc_vu_fe *fe, unsigned s, bool reply)
{
	uint64_t hdr_page = (fe->buf_gpa + s * 64) & ~0xfffull, data = fe->buf_gpa + 0x10000 + s * 4096;
	int ret = fe_iotlb(fe, SC_VHOST_IOTLB_UPDATE, SLOT_IOVA(s), 0x1000, hdr_page, SC_VHOST_ACCESS_RW, reply);
	return ret < 0 ? ret : fe_iotlb(fe, SC_VHOST_IOTLB_UPDATE, SLOT_IOVA(s) + 0x1000, 0x1000, data, SC_VHOST_ACCESS_WO, reply);
}

/*
 * --iommu, batched: a lazy guest (Linux's iommu.strict=0). Linux queues
 * unmapped IOVAs in a per-cpu flush queue of 256 (IOVA_DEFAULT_FQ_SIZE)
 * and, when it is full, invalidates them in one go, waiting for the
 * invalidation as the cpu that filled it; new I/O meanwhile takes other
 * IOVAs. Under QEMU's vIOMMU that wait is the vCPU's exit: QEMU sends the
 * INVALIDATE and blocks for its acknowledgement (REPLY_ACK). So here:
 * request headers live in one long-lived mapping; data pages come from
 * LAZY_WINDOWS windows of LAZY_W slots, each window one IOVA range mapped
 * by one UPDATE; a window whose requests have all completed is flushed
 * (INVALIDATE and UPDATE of its range, one batch) and the front end waits
 * for the acknowledgement, asleep, as QEMU's vCPU thread does, while the
 * requests in flight go on. Four messages and one ack per LAZY_W requests.
 */
#define LAZY_WINDOWS 4
#define LAZY_W 256
#define LAZY_HDR_IOVA 0x80000000ull
#define LAZY_DATA_IOVA(s) (0x200000000ull + (uint64_t)(s) * 0x1000)

struct lazy {
	/* Where a full window's flush goes (and is waited for); NULL: nowhere, the slots are recycled at once. */
	struct sc_vu_fe *flush_to;
	unsigned cur;                     /* the window slots are taken from */
	unsigned next[LAZY_WINDOWS];      /* its next slot */
	unsigned done[LAZY_WINDOWS];      /* requests of the window completed */
};

/* Set by --iommu: its unprotected baseline uses the lazy slots too. */
static bool iommu_baseline;

static uint64_t lazy_data_gpa(const struct sc_vu_fe *fe, unsigned s) { return fe->buf_gpa + 0x10000 + s * 4096ull; }

/* Send a flush of [iova, +len) to guest gpa (INVALIDATE and UPDATE, one batch) and wait for its ack, asleep. */
static int flush_batch(struct sc_vu_fe *fe, uint64_t iova, uint64_t len, uint64_t gpa)
{
	const struct sc_vu_fe_iotlb_op ops[2] = {
		{ .type = SC_VHOST_IOTLB_INVALIDATE, .iova = iova, .size = len },
		{ .type = SC_VHOST_IOTLB_UPDATE, .iova = iova, .size = len, .gpa = gpa, .perm = SC_VHOST_ACCESS_WO },
	};
	int r;

	if (sc_vu_fe_iotlb_batch(fe, ops, 2) < 0)
		return -EIO;
	/* Asleep, not spinning: the back end's control thread may need this cpu to answer. */
	while ((r = sc_vu_fe_iotlb_ack(fe)) == -EAGAIN)
		poll(&(struct pollfd){ .fd = fe->sock, .events = POLLIN }, 1, 1000);
	return r;
}

/* Flush window k: its range invalidated and mapped again in one batch, the ack waited for. */
static int lazy_flush(struct sc_vu_fe *fe, struct lazy *z, unsigned k)
{
	uint64_t t0 = sc_rdtsc();

	z->next[k] = z->done[k] = 0;
	if (!z->flush_to)
		return 0;
	int r = flush_batch(z->flush_to, LAZY_DATA_IOVA(k * LAZY_W), LAZY_W * 0x1000ull, lazy_data_gpa(fe, k * LAZY_W));
	iotlb_cost.msgs += 4;
	iotlb_cost.acked++;
	iotlb_cost.ack_cycles += sc_rdtsc() - t0;
	return r < 0 ? -EIO : 0;
}

/*
 * The null peer: a process on the front end's cpu (where sidecored's
 * control thread runs here, the sidecore having the other) that answers
 * each flush batch at once without looking at it. Its front end is
 * null_fe; null_pid 0 until null_peer_start.
 */
static struct sc_vu_fe null_fe = { .sock = -1, .memfd = -1, .backend = -1 };
static pid_t null_pid;

static int null_peer_start(int cpu)
{
	static uint8_t mem[4096];   /* what the batch's UPDATE points into; never read */
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	null_pid = fork();
	if (null_pid == 0) {
		close(sv[0]);
		bench_pin(cpu, "null peer");
		struct sc_vu_iotlb_wire buf[4];   /* BATCH_BEGIN, INVALIDATE, UPDATE, BATCH_END */
		struct {
			struct sc_vu_hdr h;
			uint64_t ack;
		} __attribute__((packed)) reply = { { .request = SC_VHOST_USER_IOTLB_MSG,
						      .flags = SC_VHOST_USER_VERSION | SC_VHOST_USER_REPLY, .size = 8 }, 0 };
		while (recv(sv[1], buf, sizeof(buf), MSG_WAITALL) == (ssize_t)sizeof(buf))
			if (send(sv[1], &reply, sizeof(reply), MSG_NOSIGNAL) != (ssize_t)sizeof(reply))
				break;
		_exit(0);
	}
	close(sv[1]);
	if (null_pid < 0) {
		close(sv[0]);
		null_pid = 0;
		return -EAGAIN;
	}
	null_fe.sock = sv[0];
	null_fe.mem = mem;
	return 0;
}

/* Close its socket (it leaves on the EOF) and reap it. */
static void null_peer_stop(void)
{
	if (null_fe.sock >= 0)
		close(null_fe.sock);
	null_fe.sock = -1;
	if (null_pid > 0)
		waitpid(null_pid, NULL, 0);
	null_pid = 0;
}

/* The floor under a flush's ack here: n flushes to the null peer with nothing else running; mean us, or -1. */
static double ack_floor_us(unsigned n)
{
	uint64_t cycles = 0;
	for (unsigned k = 0; k < n; k++) {
		uint64_t t0 = sc_rdtsc();
		if (flush_batch(&null_fe, LAZY_DATA_IOVA(0), LAZY_W * 0x1000ull, 0) < 0)
			return -1;
		cycles += sc_rdtsc() - t0;
	}
	return n ? sc_cycles_to_ns(cycles / n) / 1000 : -1;
}

/* Headers mapped for good, every window mapped: acknowledged before the run starts. */
static int lazy_setup(struct sc_vu_fe *fe, struct lazy *z, bool iotlb, struct sc_vu_fe *flush_to)
{
	*z = (struct lazy){ .flush_to = iotlb ? fe : flush_to };
	if (!iotlb)
		return 0;
	/* The headers (64 bytes a slot) end where the data pages start, buf_gpa + 0x10000. */
	uint64_t hdr0 = fe->buf_gpa & ~0xfffull,
		 hdr_len = ((fe->buf_gpa & 0xfff) + LAZY_WINDOWS * LAZY_W * 64ull + 0xfff) & ~0xfffull;
	if (fe_iotlb(fe, SC_VHOST_IOTLB_UPDATE, LAZY_HDR_IOVA, hdr_len, hdr0, SC_VHOST_ACCESS_RW, true) < 0)
		return -EIO;
	for (unsigned k = 0; k < LAZY_WINDOWS; k++)
		if (fe_iotlb(fe, SC_VHOST_IOTLB_UPDATE, LAZY_DATA_IOVA(k * LAZY_W), LAZY_W * 0x1000ull,
			     lazy_data_gpa(fe, k * LAZY_W), SC_VHOST_ACCESS_WO, true) < 0)
			return -EIO;
	iotlb_cost.msgs = iotlb_cost.acked = iotlb_cost.ack_cycles = 0;   /* set-up is not per request */
	return 0;
}

/* A free slot, or -1: the next window still has requests in flight (wait for completions). */
static int lazy_take(struct lazy *z)
{
	if (z->next[z->cur] == LAZY_W) {
		unsigned n = (z->cur + 1) % LAZY_WINDOWS;
		if (z->next[n])
			return -1;
		z->cur = n;
	}
	return (int)(z->cur * LAZY_W + z->next[z->cur]++);
}

/* Random 4 KiB reads at depth qd for ms milliseconds (protected as prot says). */
static int run(struct sc_vu_fe *fe, unsigned qd, unsigned ms, pid_t server, struct result *r, enum prot prot)
{
	struct sc_drv_vq *vq = &fe->vq[0];
	uint64_t submitted[LAZY_WINDOWS * LAZY_W], rng = 0x9e3779b97f4a7c15ull, sectors = fe->capacity ? fe->capacity : DISK_MB * 2048ull;
	uint16_t slot_of[1024];
	uint64_t hz = sc_tsc_hz(), deadline, ops = 0, t0;
	unsigned free_slots[256], nfree = qd, inflight = 0;
	struct lazy z = { 0 };

	for (unsigned s = 0; s < qd; s++)
		free_slots[s] = s;
	/* --iommu's unprotected runs take their buffers as the batched ones do: the IOMMU is the only difference. */
	const bool lazy = prot == PROT_BATCHED || prot == PROT_NULL_ACKS || (prot == PROT_NONE && iommu_baseline);
	if (lazy && lazy_setup(fe, &z, prot == PROT_BATCHED, prot == PROT_NULL_ACKS ? &null_fe : NULL) < 0)
		return -EIO;

	/* A run may add to the samples of an earlier one (--iommu's rounds). */
	if (!r->lat.v && samples_init(&r->lat, 4u << 20) < 0)
		return -ENOMEM;
	for (unsigned s = 0; s < LAZY_WINDOWS * LAZY_W; s++)
		((uint8_t *)fe->mem)[fe->buf_gpa + s * 64 + 16] = 0xff;

	/* sidecored's side of the run's acks: its counters now (after the set-up's) and at the end. */
	uint64_t acks0 = 0, ns0 = 0;
	if ((prot == PROT_PER_REQUEST || prot == PROT_BATCHED) && acks_sock)
		server_acks(&acks0, &ns0);
	double cpu0 = bench_proc_cpu_s(server);
	t0 = sc_rdtsc();
	deadline = t0 + hz / 1000 * ms;
	for (;;) {
		bool more = sc_rdtsc() < deadline;
		bool added = false;
		while (more && inflight < qd && (lazy || nfree)) {
			int s = lazy ? lazy_take(&z) : (int)free_slots[--nfree];
			if (s < 0)
				break;
			uint64_t hdr = fe->buf_gpa + (unsigned)s * 64, data = fe->buf_gpa + 0x10000 + (unsigned)s * 4096;
			*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) = (struct sc_virtio_blk_outhdr){
				.type = SC_VIRTIO_BLK_T_IN, .sector = (bench_xorshift(&rng) % (sectors / 8)) * 8 };
			struct sc_drv_seg segs[3] = { { hdr, 16 }, { data, 4096 }, { hdr + 16, 1 } };
			if (prot == PROT_PER_REQUEST) {
				/* The device sees IOVAs: the slot's own pages, at the same offsets. */
				segs[0].addr = SLOT_IOVA(s) + (hdr & 0xfff);
				segs[1].addr = SLOT_IOVA(s) + 0x1000;
				segs[2].addr = segs[0].addr + 16;
				if (map_slot(fe, (unsigned)s, true) < 0)
					return -EIO;
			} else if (prot == PROT_BATCHED) {
				segs[0].addr = LAZY_HDR_IOVA + (hdr - (fe->buf_gpa & ~0xfffull));
				segs[1].addr = LAZY_DATA_IOVA(s);
				segs[2].addr = segs[0].addr + 16;
			}
			int head = sc_drv_vq_add(vq, segs, 1, 2);
			if (head < 0) {
				if (lazy)
					z.next[(unsigned)s / LAZY_W]--;
				else
					free_slots[nfree++] = (unsigned)s;
				break;
			}
			slot_of[head] = (uint16_t)s;
			submitted[s] = sc_rdtsc();
			inflight++;
			added = true;
		}
		if (added) {
			sc_drv_vq_publish(vq);
			sc_vu_fe_kick(fe, 0);
		}
		if (!inflight && (!lazy || !more))
			break;
		uint16_t head;
		uint32_t len;
		int got;
		while ((got = sc_drv_vq_get_used(vq, &head, &len)) == 1) {
			unsigned s = slot_of[head];
			samples_add(&r->lat, sc_rdtscp() - submitted[s]);
			if (len != 4097) {
				fprintf(stderr, "sidecore-bench: a read completed with length %u\n", len);
				return -EIO;
			}
			if (prot == PROT_PER_REQUEST &&
			    fe_iotlb(fe, SC_VHOST_IOTLB_INVALIDATE, SLOT_IOVA(s), 0x2000, 0, 0, true) < 0)
				return -EIO;
			if (lazy && ++z.done[s / LAZY_W] == LAZY_W && lazy_flush(fe, &z, s / LAZY_W) < 0)
				return -EIO;
			if (!lazy)
				free_slots[nfree++] = s;
			inflight--;
			ops++;
		}
		if (got < 0)
			return -EIO;
		if (sc_rdtsc() > deadline + hz * 5) {
			fprintf(stderr, "sidecore-bench: %u requests never completed\n", inflight);
			return -ETIMEDOUT;
		}
	}
	double secs = (double)(sc_rdtsc() - t0) / (double)hz;
	r->ops = (double)ops;
	r->iops = (double)ops / secs;
	r->cpu_s = bench_proc_cpu_s(server) - cpu0;
	if ((prot == PROT_PER_REQUEST || prot == PROT_BATCHED) && acks_sock) {
		uint64_t acks1, ns1;
		server_acks(&acks1, &ns1);
		iotlb_cost.srv_acks += acks1 - acks0;
		iotlb_cost.srv_ns += ns1 - ns0;
	}
	return 0;
}

/*
 * Read the whole disk once, 64 KiB at a time, before measuring: the steady
 * state, not the first touch. On these VMs the first access to each 4 KiB
 * page of a fresh user mapping costs 5-10 us (the hypervisor fills its own
 * page tables; MADV_POPULATE does not reach them), which a random 4 KiB run
 * over 256 MiB would otherwise pay on most of its requests: for a server
 * that maps the disk (sidecored's memory path, SPDK's malloc bdev), not for
 * one reading the page cache through the kernel's own mapping.
 */
static int warm_up(struct sc_vu_fe *fe)
{
	struct sc_drv_vq *vq = &fe->vq[0];
	const uint64_t sectors = fe->capacity ? fe->capacity : DISK_MB * 2048ull, step = 128;   /* 64 KiB */
	uint64_t hdr = fe->buf_gpa, data = fe->buf_gpa + 0x10000, deadline = sc_rdtsc() + sc_tsc_hz() * 30;
	uint16_t head;
	uint32_t len;

	for (uint64_t sector = 0; sector + step <= sectors; sector += step) {
		*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) = (struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = sector };
		struct sc_drv_seg segs[3] = { { hdr, 16 }, { data, (uint32_t)step * 512 }, { hdr + 16, 1 } };
		if (sc_drv_vq_add(vq, segs, 1, 2) < 0)
			return -EIO;
		sc_drv_vq_publish(vq);
		sc_vu_fe_kick(fe, 0);
		int got;
		while ((got = sc_drv_vq_get_used(vq, &head, &len)) == 0)
			if (sc_rdtsc() > deadline)
				return -ETIMEDOUT;
		if (got < 0 || ((uint8_t *)fe->mem)[hdr + 16] != SC_VIRTIO_BLK_S_OK)
			return -EIO;
	}
	return 0;
}

/*
 * --iommu: sidecored alone, the same reads unprotected, then protected with
 * an IOTLB message per map and unmap, then with one batch per round.
 */
static int bench_iommu(const struct bench_opts *o, char *self, const char *dir, const char *disk, unsigned ms)
{
	static struct result res[NMODES][2];
	static const unsigned depths[2] = { 1, 32 };
	struct server srv = { .name = "sidecored" };
	char conf[160], log[160], iso_sock[sizeof(srv.sock)], iso_disk[160];
	int ret = 1;

	snprintf(srv.sock, sizeof(srv.sock), "%s/iommu.sock", dir);
	snprintf(log, sizeof(log), "%s/iommu.log", dir);
	snprintf(iso_sock, sizeof(iso_sock), "%s/iommu-iso.sock", dir);
	/* A copy: sidecored gives a writable file to one disk only. */
	snprintf(iso_disk, sizeof(iso_disk), "%s/disk-iso.img", dir);
	int in = open(disk, O_RDONLY), cp = open(iso_disk, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	ssize_t n = 1;
	while (in >= 0 && cp >= 0 && n > 0)
		n = copy_file_range(in, NULL, cp, NULL, 1 << 30, 0);
	if (in >= 0)
		close(in);
	if (cp >= 0)
		close(cp);
	if (n != 0) {
		fprintf(stderr, "sidecore-bench: copying %s to %s failed\n", disk, iso_disk);
		return 1;
	}
	snprintf(conf, sizeof(conf), "%s/sc-iommu.conf", dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		return 1;
	/* Two disks on one sidecore and the same data: the isolated one differs in that key alone. */
	fprintf(f, "[sidecore]\ncpus = %d\n[blk.bench]\nsocket = %s\nbacking = %s\n"
		"[blk.iso]\nsocket = %s\nbacking = %s\niommu_isolation = yes\n", o->sidecore_cpu, srv.sock, disk,
		iso_sock, iso_disk);
	fclose(f);
	char *args[] = { self, "--config", conf, NULL };
	/*
	 * Here every IOTLB message is a round trip to the device's control
	 * thread, so sidecored is not confined to the sidecore's cpu (the
	 * sidecore pins itself there from the config): its control thread
	 * runs where the scheduler finds room, as it does in service.
	 */
	if (spawn(&srv, args, -1, log) < 0)
		return 1;
	if (null_peer_start(o->guest_cpu) < 0) {
		fprintf(stderr, "sidecore-bench: cannot start the null peer\n");
		stop(&srv);
		return 1;
	}
	/*
	 * Rounds: each mode runs ROUNDS times a third of the time, in turn, so
	 * that the load of a shared machine, which drifts over seconds, falls
	 * on every mode alike; IOPS are the rounds' requests over their time.
	 */
	enum { ROUNDS = 3 };
	iommu_baseline = true;
	static double ops[NMODES][2], secs[NMODES][2];
	static uint64_t msgs[NMODES][2], acked[NMODES][2], ack_cycles[NMODES][2], srv_acks[NMODES][2], srv_ns[NMODES][2];
	double floor_us = 0;
	char stats_sock[160];
	snprintf(stats_sock, sizeof(stats_sock), "%s/sidecored.sock", dir);   /* its default: beside the first device's */
	acks_sock = stats_sock;
	for (int round = 0; round < ROUNDS; round++) {
		for (int k = 0; k < NMODES; k++) {
			struct sc_vu_fe fe;
			char err[256];
			const bool iso = k == 3 || k == 4, protect = mode_prot[k] == PROT_PER_REQUEST || mode_prot[k] == PROT_BATCHED;
			if (sc_vu_fe_connect_flags(&fe, iso ? iso_sock : srv.sock, MEM, 1, 128, protect ? SC_VU_FE_IOMMU : 0, err,
						   sizeof(err)) < 0) {
				fprintf(stderr, "sidecore-bench: %s: %s\n", prot_names[k], err);
				goto out;
			}
			for (int d = 0; d < 2; d++) {
				struct result *r = &res[k][d];
				iotlb_cost = (typeof(iotlb_cost)){ 0 };
				acks_dev = iso ? "iso" : "bench";
				if (run(&fe, depths[d], (ms + ROUNDS - 1) / ROUNDS, srv.pid, r, mode_prot[k]) < 0) {
					fprintf(stderr, "sidecore-bench: %s QD%u failed (see %s)\n", prot_names[k], depths[d], log);
					sc_vu_fe_close(&fe);
					goto out;
				}
				ops[k][d] += r->ops;
				secs[k][d] += r->iops > 0 ? r->ops / r->iops : 0;
				msgs[k][d] += iotlb_cost.msgs;
				acked[k][d] += iotlb_cost.acked;
				ack_cycles[k][d] += iotlb_cost.ack_cycles;
				srv_acks[k][d] += iotlb_cost.srv_acks;
				srv_ns[k][d] += iotlb_cost.srv_ns;
			}
			sc_vu_fe_close(&fe);
			usleep(100000);   /* the server takes the next front end once this one is gone */
		}
		double floor_round = ack_floor_us(500);
		floor_us += floor_round > 0 ? floor_round / ROUNDS : 0;
	}
	/* Mean ack as the front end waited for it, and sidecored's share (woken to answered), in us. */
#define ACK_US(k, d) (acked[k][d] ? sc_cycles_to_ns(ack_cycles[k][d] / acked[k][d]) / 1000 : 0.0)
#define SRV_ACK_US(k, d) (srv_acks[k][d] ? (double)srv_ns[k][d] / (double)srv_acks[k][d] / 1000 : 0.0)
	for (int k = 0; k < NMODES; k++)
		for (int d = 0; d < 2; d++) {
			struct result *r = &res[k][d];
			r->ops = ops[k][d];
			r->iops = secs[k][d] > 0 ? ops[k][d] / secs[k][d] : 0;
			printf("  %-20s QD%-2u %.0f IOPS, p50 %.1f us", prot_names[k], depths[d], r->iops,
			       sc_cycles_to_ns(samples_pct(&r->lat, 50)) / 1000);
			if (mode_prot[k] != PROT_NONE && r->ops > 0)
				printf(", %.2f IOTLB msgs/req, %.3f acks/req, ack taken %.1f us after sending (%.1f us of it in "
				       "sidecored, woken to answered)", (double)msgs[k][d] / r->ops, (double)acked[k][d] / r->ops,
				       ACK_US(k, d), SRV_ACK_US(k, d));
			printf("\n");
		}
	printf("\n%-20s %4s %10s %10s %12s %12s\n", "sidecored", "QD", "p50 us", "p99 us", "IOPS", "vs unprot.");
	for (int k = 0; k < NMODES; k++)
		for (int d = 0; d < 2; d++) {
			struct result *r = &res[k][d];
			printf("%-20s %4u %10.2f %10.2f %12.0f %11.2fx\n", prot_names[k], depths[d],
			       sc_cycles_to_ns(samples_pct(&r->lat, 50)) / 1000, sc_cycles_to_ns(samples_pct(&r->lat, 99)) / 1000,
			       r->iops, res[0][d].iops > 0 ? r->iops / res[0][d].iops : 0);
		}
	printf("\nack floor: the batch to a process on cpu %d that answers at once, the front end asleep as here, "
	       "nothing else running: %.1f us\n", o->guest_cpu, floor_us);
	double batched = res[0][1].iops > 0 ? res[2][1].iops / res[0][1].iops : 0;
	double ceiling = res[0][1].iops > 0 ? res[5][1].iops / res[0][1].iops : 0;
	printf("\ntarget: protected (batched) IOPS at QD32 >= 0.9x unprotected: %s (%.2fx, %.2f of the ceiling below); "
	       "every request completed OK\n", batched >= 0.9 ? "met" : "MISSED", batched, ceiling > 0 ? batched / ceiling : 0);
	/* What isolation alone costs: its rows over the same protection on the plain disk, in this run. */
	double iso[2][2];
	for (int k = 0; k < 2; k++)
		for (int d = 0; d < 2; d++)
			iso[k][d] = res[1 + k][d].iops > 0 ? res[3 + k][d].iops / res[1 + k][d].iops : 0;
	printf("the batched flushes' waits alone (unprotected I/O, each flush answered at once by the null peer): "
	       "%.2fx unprotected at QD32, the ceiling for protected I/O here\n", ceiling);
	printf("isolation (iommu_isolation = yes) over the same IOTLB mode without it: per request %.2fx at QD1, "
	       "%.2fx at QD32; batched %.2fx at QD1, %.2fx at QD32\n", iso[0][0], iso[0][1], iso[1][0], iso[1][1]);
	if (o->json_path) {
		json_t *root = bench_json_header("vhost-blk-iommu", o, o->sidecore_cpu, o->guest_cpu), *arr = json_array();
		for (int k = 0; k < NMODES; k++)
			for (int d = 0; d < 2; d++)
				json_array_append_new(arr, json_pack("{s:s, s:i, s:o, s:f, s:f, s:f}", "protection", prot_names[k],
					"queue_depth", depths[d], "latency", samples_json(&res[k][d].lat), "iops", res[k][d].iops,
					"ack_us", ACK_US(k, d), "ack_us_in_sidecored", SRV_ACK_US(k, d)));
		json_object_set_new(root, "runs", arr);
		json_object_set_new(root, "ack_floor_us", json_real(floor_us));
		json_object_set_new(root, "ratios", json_pack("{s:f, s:f, s:f, s:f}", "qd32_batched_over_unprotected", batched,
			"qd32_null_acks_over_unprotected", ceiling,
			"qd32_isolated_batched_over_unprotected", res[0][1].iops > 0 ? res[4][1].iops / res[0][1].iops : 0,
			"qd32_isolated_batched_over_batched", iso[1][1]));
		bench_json_write(root, o->json_path);
		json_decref(root);
	}
#undef ACK_US
#undef SRV_ACK_US
	ret = 0;
out:
	null_peer_stop();
	stop(&srv);
	for (int k = 0; k < NMODES; k++)
		for (int d = 0; d < 2; d++)
			samples_free(&res[k][d].lat);
	return ret;
}

/* sidecored's IOPS per host cpu at QD32 over another server's. */
static double eff_over(struct result res[][2], unsigned ms, int a, int b)
{
	double ca = res[a][1].cpu_s / (ms / 1000.0), cb = res[b][1].cpu_s / (ms / 1000.0);
	return ca > 0 && cb > 0 && res[b][1].iops > 0 ? (res[a][1].iops / ca) / (res[b][1].iops / cb) : 0;
}

struct spdk_ratios {
	double iops_best, iops_malloc, iops_aio;   /* sidecored / SPDK, QD32 IOPS per host cpu */
	double p50_best, p99_best;                 /* SPDK's best / sidecored, QD1 */
};

/*
 * The servers run one after the other, minutes apart, and the host may
 * move this VM's vCPUs in between: a ratio of two servers measured in
 * different placements (bench_c2c_ns) says so, after its figure.
 */
static const char *placement_note(const struct server *a, const struct server *b)
{
	static char note[96];
	const double c[] = { a->c2c_ns[0], a->c2c_ns[1], b->c2c_ns[0], b->c2c_ns[1] };

	if (bench_c2c_spread(c, 4) <= BENCH_C2C_SAME)
		return "";
	snprintf(note, sizeof(note), " [placements differ: c2c %.0f-%.0f vs %.0f-%.0f ns]", a->c2c_ns[0], a->c2c_ns[1],
		 b->c2c_ns[0], b->c2c_ns[1]);
	return note;
}

int bench_vhost_blk(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	char dir[] = "/dev/shm/sidecore-bench-XXXXXX", disk[128], conf[160], log[160];
	struct server srv[NSERVERS] = { { .name = "sidecored" }, { .name = "sidecored mmap=no" },
					 { .name = "qemu-storage-daemon" }, { .name = "SPDK malloc" }, { .name = "SPDK aio" } };
	static struct result res[NSERVERS][2];
	bool ran[NSERVERS] = { false };
	struct spdk sp = { .dir = getenv("SIDECORE_SPDK_DIR"), .script = getenv("SIDECORE_SPDK_SCRIPT") };
	static const unsigned depths[2] = { 1, 32 };
	int ret = 1;
	bool iommu = false;

	/* --iommu and --spdk* are ours; the rest are the common options. */
	for (int i = 1; i < argc;) {
		int take = 0;
		if (strcmp(argv[i], "--iommu") == 0) {
			iommu = true;
			take = 1;
		} else if ((strcmp(argv[i], "--spdk") == 0 || strcmp(argv[i], "--spdk-script") == 0) && i + 1 < argc) {
			*(argv[i][6] ? &sp.script : &sp.dir) = argv[i + 1];
			take = 2;
		}
		if (!take) {
			i++;
			continue;
		}
		memmove(&argv[i], &argv[i + take], (size_t)(argc - i - take + 1) * sizeof(*argv));
		argc -= take;
	}
	if (!sp.dir)
		sp.dir = "/opt/spdk";
	if (!sp.script)
		sp.script = "/work/shared/anchors/spdk/spdk-vhost.sh";
	if (bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	if (!iommu && access("/usr/bin/qemu-storage-daemon", X_OK) < 0) {
		fprintf(stderr, "sidecore-bench vhost-blk: qemu-storage-daemon is not installed (apt-get install qemu-system-common)\n");
		return 77;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 32);
	if (n < 0 || !mkdtemp(dir))
		return 1;
	self[n] = 0;
	/* sidecored is built next to us: build/benches/.. -> build/runtime/sidecored */
	char *slash = strrchr(self, '/');
	snprintf(slash, 32, "/../runtime/sidecored");
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	int fd = open(disk, O_CREAT | O_RDWR, 0644);
	if (fd < 0 || ftruncate(fd, DISK_MB << 20) < 0)
		return 1;
	/* Real data, so reads copy pages rather than hit holes. */
	char buf[1 << 16];
	memset(buf, 0x5a, sizeof(buf));
	for (unsigned i = 0; i < (DISK_MB << 20) / sizeof(buf); i++)
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			return 1;
	close(fd);
	unsigned ms = o.quick ? 300 : 2000;
	printf("vhost-blk: front end on cpu %d, servers pinned to cpu %d, %u MiB file on tmpfs, %u ms per run\n",
	       o.guest_cpu, o.sidecore_cpu, DISK_MB, ms);
	bench_pin(o.guest_cpu, "front end");
	if (iommu) {
		ret = bench_iommu(&o, self, dir, disk, ms);
		goto out;
	}

	/* SPDK when it is there; otherwise one line, and the rest goes on. */
	char vhost_bin[4200];
	snprintf(vhost_bin, sizeof(vhost_bin), "%s/build/bin/vhost", sp.dir);
	bool spdk = true;
	if (access(vhost_bin, X_OK) < 0) {
		printf("spdk: skipped (no %s; build it with /work/shared/anchors/spdk/build.sh)\n", vhost_bin);
		spdk = false;
	} else if (access(sp.script, R_OK) < 0) {
		printf("spdk: skipped (no start script %s; give --spdk-script or SIDECORE_SPDK_SCRIPT)\n", sp.script);
		spdk = false;
	}
	snprintf(sp.run, sizeof(sp.run), "%s/spdk-run", dir);

	for (int k = 0; k < NSERVERS; k++) {
		struct server *s = &srv[k];
		if ((k == SPDK_MALLOC || k == SPDK_AIO) && !spdk)
			continue;
		snprintf(s->sock, sizeof(s->sock), "%s/%d.sock", dir, k);
		snprintf(log, sizeof(log), "%s/%d.log", dir, k);
		/* Before it polls the sidecore cpu, and again after it stopped. */
		s->c2c_ns[0] = bench_c2c_ns(o.guest_cpu, o.sidecore_cpu);
		if (k == SPDK_MALLOC || k == SPDK_AIO) {
			/*
			 * The front end puts the header, the data and the status in
			 * descriptors of their own, the framing SPDK requires (it
			 * writes no status for a header that shares one with data).
			 */
			if (spdk_start(&sp, s, k == SPDK_MALLOC ? "malloc" : "aio", disk, o.sidecore_cpu, log) < 0)
				goto out;
		} else if (k == SIDECORED || k == SIDECORED_SYSCALL) {
			snprintf(conf, sizeof(conf), "%s/sc.conf", dir);
			FILE *f = fopen(conf, "w");
			fprintf(f, "[sidecore]\ncpus = %d\n[blk.bench]\nsocket = %s\nbacking = %s\nmmap = %s\n", o.sidecore_cpu,
				s->sock, disk, k == SIDECORED ? "yes" : "no");
			fclose(f);
			char *args[] = { self, "--config", conf, NULL };
			if (spawn(s, args, o.sidecore_cpu, log) < 0)
				goto out;
		} else {
			char bd[512], ex[512];
			snprintf(bd, sizeof(bd), "driver=file,node-name=disk,filename=%s", disk);
			snprintf(ex, sizeof(ex), "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=%s,writable=on,iothread=io0",
				 s->sock);
			char *args[] = { "qemu-storage-daemon", "--blockdev", bd, "--object", "iothread,id=io0", "--export", ex, NULL };
			if (spawn(s, args, o.sidecore_cpu, log) < 0)
				goto out;
		}
		struct sc_vu_fe fe;
		char err[256];
		if (sc_vu_fe_connect(&fe, s->sock, MEM, 1, 128, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecore-bench: %s: %s\n", s->name, err);
			goto out;
		}
		if (warm_up(&fe) < 0) {
			fprintf(stderr, "sidecore-bench: %s: the warm-up read failed (see %s)\n", s->name, log);
			sc_vu_fe_close(&fe);
			goto out;
		}
		for (int d = 0; d < 2; d++) {
			printf("  %-20s QD%-2u ...", s->name, depths[d]);
			fflush(stdout);
			if (run(&fe, depths[d], ms, s->pid, &res[k][d], PROT_NONE) < 0) {
				sc_vu_fe_close(&fe);
				goto out;
			}
			printf(" %.0f IOPS, p50 %.1f us\n", res[k][d].iops, sc_cycles_to_ns(samples_pct(&res[k][d].lat, 50)) / 1000);
		}
		sc_vu_fe_close(&fe);
		if (k == SPDK_MALLOC || k == SPDK_AIO) {
			spdk_script(&sp, "stop", "aio", disk, s->sock, o.sidecore_cpu, log);
			s->pid = 0;
		} else {
			stop(s);
		}
		s->c2c_ns[1] = bench_c2c_ns(o.guest_cpu, o.sidecore_cpu);
		printf("  %-20s c2c %.0f/%.0f ns before/after\n", s->name, s->c2c_ns[0], s->c2c_ns[1]);
		ran[k] = true;
	}

	printf("\n%-20s %4s %10s %10s %12s %10s %14s %12s\n", "server", "QD", "p50 us", "p99 us", "IOPS", "host cpu", "IOPS/host cpu",
	       "c2c ns");
	for (int k = 0; k < NSERVERS; k++)
		for (int d = 0; d < 2 && ran[k]; d++) {
			struct result *r = &res[k][d];
			double cpu = r->cpu_s / (ms / 1000.0);
			printf("%-20s %4u %10.2f %10.2f %12.0f %9.2f %14.0f %5.0f/%-6.0f\n", srv[k].name, depths[d],
			       sc_cycles_to_ns(samples_pct(&r->lat, 50)) / 1000, sc_cycles_to_ns(samples_pct(&r->lat, 99)) / 1000,
			       r->iops, cpu, cpu > 0 ? r->iops / cpu : 0, srv[k].c2c_ns[0], srv[k].c2c_ns[1]);
		}
	printf("(c2c: a cache line's round trip between cpus %d and %d before the server started and after it stopped; "
	       "the host moves this VM between placements, and every rate moves with it)\n", o.guest_cpu, o.sidecore_cpu);
	double lat_ratio = (double)samples_pct(&res[QSD][0].lat, 50) / (double)samples_pct(&res[SIDECORED][0].lat, 50);
	double eff_ratio = eff_over(res, ms, SIDECORED, QSD);
	const char *qsd_note = placement_note(&srv[SIDECORED], &srv[QSD]);
	printf("\ntargets: sidecored QD1 p50 >= 3x lower than qemu-storage-daemon: %s (%.1fx)%s\n", lat_ratio >= 3 ? "met" : "MISSED",
	       lat_ratio, qsd_note);
	printf("         sidecored IOPS per host cpu at QD32 >= 1.5x higher: %s (%.2fx)%s\n", eff_ratio >= 1.5 ? "met" : "MISSED",
	       eff_ratio, qsd_note);
	/* Against SPDK: each bdev, and its best (highest QD32 IOPS per cpu; lowest QD1 p50 and p99). */
	struct spdk_ratios sr = { 0 };
	if (ran[SPDK_MALLOC] && ran[SPDK_AIO]) {
		sr.iops_malloc = eff_over(res, ms, SIDECORED, SPDK_MALLOC);
		sr.iops_aio = eff_over(res, ms, SIDECORED, SPDK_AIO);
		sr.iops_best = sr.iops_malloc < sr.iops_aio ? sr.iops_malloc : sr.iops_aio;
		for (int pc = 0; pc < 2; pc++) {
			double own = (double)samples_pct(&res[SIDECORED][0].lat, pc ? 99 : 50), best = 0;
			for (int k = SPDK_MALLOC; k <= SPDK_AIO; k++) {
				double x = (double)samples_pct(&res[k][0].lat, pc ? 99 : 50);
				if (!best || x < best)
					best = x;
			}
			*(pc ? &sr.p99_best : &sr.p50_best) = best / own;
		}
		printf("\nsidecored vs SPDK (its best bdev; malloc; aio on the same file):\n");
		printf("  QD32 IOPS per host cpu, sidecored / SPDK: %.2fx best; %.2fx malloc; %.2fx aio\n", sr.iops_best,
		       sr.iops_malloc, sr.iops_aio);
		printf("  QD1 p50, SPDK best / sidecored: %.2fx; p99: %.2fx\n", sr.p50_best, sr.p99_best);
		for (int k = SPDK_MALLOC; k <= SPDK_AIO; k++)
			if (*placement_note(&srv[SIDECORED], &srv[k]))
				printf("  %s:%s\n", srv[k].name, placement_note(&srv[SIDECORED], &srv[k]));
		printf("targets: QD32 >= 1.2x SPDK malloc: %s; QD1 p50 at or below SPDK's: %s; p99 lower: %s; >= 1.5x SPDK aio: %s\n",
		       sr.iops_malloc >= 1.2 ? "met" : "MISSED", sr.p50_best >= 1 ? "met" : "MISSED",
		       sr.p99_best > 1 ? "met" : "MISSED", sr.iops_aio >= 1.5 ? "met" : "MISSED");
	}
	if (o.plot_path) {
		struct samples *sets[NSERVERS];
		const char *names[NSERVERS];
		int nsets = 0;
		for (int k = 0; k < NSERVERS; k++)
			if (ran[k]) {
				sets[nsets] = &res[k][0].lat;
				names[nsets++] = srv[k].name;
			}
		bench_plot_cdf(o.plot_path, "vhost-blk: QD1 random 4 KiB reads, 256 MiB on tmpfs", sets, names, nsets);
	}

	if (o.json_path) {
		json_t *root = bench_json_header("vhost-blk", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (int k = 0; k < NSERVERS; k++)
			for (int d = 0; d < 2 && ran[k]; d++) {
				struct result *r = &res[k][d];
				json_array_append_new(arr, json_pack("{s:s, s:i, s:o, s:f, s:f, s:f, s:f}", "server", srv[k].name,
					"queue_depth", depths[d], "latency", samples_json(&r->lat), "iops", r->iops,
					"host_cpu", r->cpu_s / (ms / 1000.0), "c2c_ns", srv[k].c2c_ns[0],
					"c2c_after_ns", srv[k].c2c_ns[1]));
			}
		json_object_set_new(root, "runs", arr);
		json_t *ratios = json_pack("{s:f, s:f}", "qd1_p50_qsd_over_sidecored", lat_ratio,
					   "qd32_iops_per_cpu_sidecored_over_qsd", eff_ratio);
		if (ran[SPDK_MALLOC] && ran[SPDK_AIO]) {
			json_object_set_new(ratios, "qd32_iops_per_cpu_sidecored_over_spdk_best", json_real(sr.iops_best));
			json_object_set_new(ratios, "qd32_iops_per_cpu_sidecored_over_spdk_malloc", json_real(sr.iops_malloc));
			json_object_set_new(ratios, "qd32_iops_per_cpu_sidecored_over_spdk_aio", json_real(sr.iops_aio));
			json_object_set_new(ratios, "qd1_p50_spdk_best_over_sidecored", json_real(sr.p50_best));
			json_object_set_new(ratios, "qd1_p99_spdk_best_over_sidecored", json_real(sr.p99_best));
		}
		json_object_set_new(root, "ratios", ratios);
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	ret = 0;
out:
	for (int k = 0; k < NSERVERS; k++) {
		if (srv[k].pid > 0 && (k == SPDK_MALLOC || k == SPDK_AIO)) {
			spdk_script(&sp, "stop", "aio", disk, srv[k].sock, o.sidecore_cpu, "/dev/null");
			srv[k].pid = 0;
		}
		stop(&srv[k]);
	}
	for (int k = 0; k < NSERVERS; k++)
		for (int d = 0; d < 2; d++)
			samples_free(&res[k][d].lat);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "sidecore-bench: could not remove %s\n", dir);
	return ret;
}
