/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench fairness: four tenants on one sidecore. Four
 * vhost-user-blk devices (runtime/vu_blk on the project's own vhost-user
 * server, in this process) on four memory-backed disks in /dev/shm, all
 * served by one poller pinned to the sidecore cpu; each device is driven by
 * its own front end (runtime/vu_frontend) in its own thread on the guest
 * cpu. Tenants 1-3 are quiet (QD1, 4 KiB random reads); tenant 0 is idle,
 * quiet, a flood (the smallest reads at a deep queue) or a huge reader (the
 * largest read the device's config space allows). One run measures every
 * scenario, so the ratios compare figures from the same machine state.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benches/bench.h"
#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "devices/virtio_blk.h"
#include "runtime/vhost_user.h"
#include "runtime/vu_blk.h"
#include "runtime/vu_frontend.h"

static const char usage[] =
	"usage: sidecore-bench fairness [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"                               [--seconds N] [--flood-qd N] [--huge-mb N] [--budget N]\n"
	"\n"
	"Four vhost-user-blk disks (memory-backed, in /dev/shm) served by one sidecore\n"
	"on cpu S, each driven by its own front-end thread on cpu G. Tenants 1-3 are\n"
	"quiet: QD1 random 4 KiB reads. Scenarios, in one run:\n"
	"  alone   each quiet tenant by itself (the other three front-end threads\n"
	"          exist but are blocked: cpu G is its own; their queues stay attached)\n"
	"  shared  all four tenants quiet (what sharing cpu G alone costs)\n"
	"  flood   tenant 0 floods: the smallest reads (one block) at QD --flood-qd\n"
	"  huge    tenant 0 issues the largest read the device accepts (seg_max x\n"
	"          size_max from its config space, at most the disk and --huge-mb)\n"
	"Prints the quiet tenants' p50/p99/p99.9 latency and IOPS per scenario with\n"
	"their ratio to alone, and the issue's bars: within 10% of alone beside the\n"
	"flood; p99 under 1 ms beside the huge reads.\n"
	"  --seconds N   measured time per scenario (default 2; --quick 0.3)\n"
	"  --flood-qd N  the flood's queue depth (default 128)\n"
	"  --huge-mb N   cap on the huge read and tenant 0's disk (default 128; --quick 16)\n"
	"  --budget N    the sidecore's requests per queue per round (default 32)\n";

#define NT 4
#define QSIZE 512                /* ring entries: QD128 of 3-descriptor chains fits */
#define MAX_QD 128
#define DISK_MB 64               /* each quiet tenant's disk */
#define SLOT_DATA 0x10000ull     /* request data starts this far after the headers */
#define PASS_MAX 32              /* completions a front end reaps per pass before yielding cpu G */

enum role { ROLE_IDLE, ROLE_QUIET, ROLE_FLOOD, ROLE_HUGE };
static const char *role_name[] = { "idle", "quiet", "flood", "huge" };

/* One tenant's figures in one scenario. */
struct figures {
	enum role role;
	unsigned qd;
	uint64_t req_bytes;
	uint64_t ops;
	double secs;
	double iops;
	uint64_t p50, p99, p999;   /* cycles; 0 when no latency was kept */
	size_t nsamples;
};

struct tenant {
	int idx;
	char sock[128], disk[128];
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
	struct sc_vu_fe fe;
	pthread_t thread;
	uint64_t rng;
	/* this run: set by main before the start barrier, results read after the end barrier */
	enum role role;
	struct samples lat;
	struct figures fig;
	int err;
};

/* The device's limits as its config space says (read by tenant 0's front end), and the largest read. */
struct huge_plan {
	uint64_t bytes;       /* the read */
	uint32_t seg_len;     /* each data segment; the last may be shorter */
	unsigned nseg;
	uint64_t device_max;  /* seg_max x size_max, or 0 when size_max is not offered */
	uint32_t seg_max, size_max, blk_size;
};

static struct tenant tenants[NT];
static struct sc_poller *poller;
static struct huge_plan huge;
static pthread_barrier_t start_bar, end_bar;
static int stop_run, quit;
static bool one_shot;            /* each active tenant issues a single request (warming up) */
static unsigned flood_qd = MAX_QD;
static uint64_t warm_cycles;
static int guest_cpu;

/* ---- reading the device's limits as a front end does ---- */

static int recv_reply(int sock, uint32_t req, void *payload, uint32_t size)
{
	struct sc_vu_hdr h;
	if (recv(sock, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.request != req ||
	    !(h.flags & VHOST_USER_REPLY) || h.size > size ||
	    (h.size && recv(sock, payload, h.size, MSG_WAITALL) != (ssize_t)h.size))
		return -EPROTO;
	return (int)h.size;
}

/* GET_FEATURES and GET_CONFIG on a connected front end's socket. */
static int read_limits(struct sc_vu_fe *fe, uint64_t *features, struct virtio_blk_config *c)
{
	struct { uint32_t offset, size, flags; struct virtio_blk_config c; } __attribute__((packed)) cfg = {
		0, sizeof(struct virtio_blk_config), 0, { 0 } };
	int ret = sc_vu_send(fe->sock, VHOST_USER_GET_FEATURES, 0, NULL, 0, -1);
	if (ret < 0 || (ret = recv_reply(fe->sock, VHOST_USER_GET_FEATURES, features, 8)) != 8)
		return ret < 0 ? ret : -EPROTO;
	ret = sc_vu_send(fe->sock, VHOST_USER_GET_CONFIG, 0, &cfg, sizeof(cfg), -1);
	if (ret < 0 || (ret = recv_reply(fe->sock, VHOST_USER_GET_CONFIG, &cfg, sizeof(cfg))) != (int)sizeof(cfg))
		return ret < 0 ? ret : -EPROTO;
	*c = cfg.c;
	return 0;
}

/*
 * The largest read: seg_max segments of size_max bytes when the device
 * offers both, else (no size_max) as large as the disk, in at most seg_max
 * segments (or what the ring holds); never more than cap bytes.
 */
static void plan_huge(uint64_t features, const struct virtio_blk_config *c, uint64_t capacity, uint64_t cap)
{
	huge.blk_size = (features & (1ull << VIRTIO_BLK_F_BLK_SIZE)) && c->blk_size ? c->blk_size : 512;
	huge.seg_max = (features & (1ull << VIRTIO_BLK_F_SEG_MAX)) && c->seg_max ? c->seg_max : QSIZE - 2;
	if (huge.seg_max > QSIZE - 2)
		huge.seg_max = QSIZE - 2;   /* header and status take two descriptors */
	huge.size_max = (features & (1ull << VIRTIO_BLK_F_SIZE_MAX)) ? c->size_max : 0;
	huge.device_max = huge.size_max ? (uint64_t)huge.seg_max * huge.size_max : 0;

	uint64_t bytes = capacity * VIRTIO_BLK_SECTOR_SIZE;
	if (bytes > cap)
		bytes = cap;
	if (huge.device_max && bytes > huge.device_max)
		bytes = huge.device_max;
	/* A chain's length is 32 bits (the status byte included). */
	if (bytes > 0xffff0000ull)
		bytes = 0xffff0000ull;
	bytes -= bytes % huge.blk_size;
	uint64_t seg = huge.size_max ? huge.size_max : (bytes + huge.seg_max - 1) / huge.seg_max;
	seg = (seg + 4095) & ~4095ull;
	if (huge.size_max && seg > huge.size_max)
		seg = huge.size_max;   /* a size_max that is not a page multiple */
	huge.bytes = bytes;
	huge.seg_len = (uint32_t)seg;
	huge.nseg = (unsigned)((bytes + seg - 1) / seg);
}

/* ---- a front end's thread ---- */

/* Drive t in its role until stop_run, then let everything in flight complete. */
static void run_role(struct tenant *t)
{
	struct sc_vu_fe *fe = &t->fe;
	struct sc_drv_vq *vq = &fe->vq[0];
	uint64_t submitted[MAX_QD], hz = sc_tsc_hz();
	uint16_t slot_of[QSIZE];
	unsigned free_slots[MAX_QD], nfree, inflight = 0;
	uint64_t blk = huge.blk_size, cap = fe->capacity ? fe->capacity : t->be.capacity;
	struct figures *f = &t->fig;
	bool keep = t->role != ROLE_FLOOD;   /* the flood's own latency is not the question */

	f->role = t->role;
	f->qd = t->role == ROLE_FLOOD ? flood_qd : 1;
	f->req_bytes = t->role == ROLE_FLOOD ? blk : t->role == ROLE_HUGE ? huge.bytes : 4096;
	nfree = f->qd;
	for (unsigned s = 0; s < f->qd; s++)
		free_slots[s] = f->qd - 1 - s;

	uint64_t t0 = sc_rdtsc(), tw = t0 + warm_cycles, tend = 0, ops = 0, issued = 0;
	for (;;) {
		bool more = !__atomic_load_n(&stop_run, __ATOMIC_RELAXED) && !(one_shot && issued), added = false;
		if (!more && !tend)
			tend = sc_rdtsc();
		while (more && nfree) {
			unsigned s = free_slots[--nfree];
			uint64_t hdr = fe->buf_gpa + s * 64, data = fe->buf_gpa + SLOT_DATA + s * 4096ull;
			uint64_t sector;
			struct sc_drv_seg segs[QSIZE];
			unsigned nin = 2;
			segs[0] = (struct sc_drv_seg){ hdr, 16 };
			if (t->role == ROLE_HUGE) {
				sector = 0;
				for (unsigned k = 0; k < huge.nseg; k++) {
					uint64_t off = (uint64_t)k * huge.seg_len;
					uint64_t len = huge.bytes - off < huge.seg_len ? huge.bytes - off : huge.seg_len;
					segs[1 + k] = (struct sc_drv_seg){ fe->buf_gpa + SLOT_DATA + off, (uint32_t)len };
				}
				nin = huge.nseg + 1;
			} else {
				uint64_t per = f->req_bytes / VIRTIO_BLK_SECTOR_SIZE;
				sector = bench_xorshift(&t->rng) % (cap / per) * per;
				segs[1] = (struct sc_drv_seg){ data, (uint32_t)f->req_bytes };
			}
			segs[nin] = (struct sc_drv_seg){ hdr + 16, 1 };
			*(struct virtio_blk_outhdr *)(fe->mem + hdr) =
				(struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN, .sector = sector };
			fe->mem[hdr + 16] = 0xff;
			int head = sc_drv_vq_add(vq, segs, 1, nin);
			if (head < 0) {
				free_slots[nfree++] = s;
				break;
			}
			slot_of[head] = (uint16_t)s;
			submitted[s] = sc_rdtsc();
			inflight++;
			issued++;
			added = true;
		}
		if (added) {
			sc_drv_vq_publish(vq);
			sc_vu_fe_kick(fe, 0);
		}
		if (!inflight)
			break;
		uint16_t head;
		uint32_t len;
		int got = 0;
		unsigned reaped = 0;
		while (reaped < PASS_MAX && (got = sc_drv_vq_get_used(vq, &head, &len)) == 1) {
			unsigned s = slot_of[head];
			uint64_t now = sc_rdtscp();
			uint8_t status = fe->mem[fe->buf_gpa + s * 64 + 16];
			if (status != VIRTIO_BLK_S_OK || len != f->req_bytes + 1) {
				if (!t->err)
					fprintf(stderr, "sidecore-bench fairness: tenant %d: a %llu-byte read completed with status %u, length %u\n",
						t->idx, (unsigned long long)f->req_bytes, status, len);
				t->err = -EIO;
			}
			if (submitted[s] >= tw && !tend) {
				ops++;
				if (keep)
					samples_add(&t->lat, now - submitted[s]);
			}
			free_slots[nfree++] = s;
			inflight--;
			reaped++;
		}
		if (got < 0) {
			fprintf(stderr, "sidecore-bench fairness: tenant %d: the device completed a descriptor it was never given\n", t->idx);
			t->err = -EIO;
			return;
		}
		if (tend && sc_rdtsc() - tend > hz * 30) {
			fprintf(stderr, "sidecore-bench fairness: tenant %d: %u requests still in flight 30 s after the run\n",
				t->idx, inflight);
			t->err = -ETIMEDOUT;
			return;
		}
		/*
		 * Front ends share cpu G: after each pass (reap at most
		 * PASS_MAX, refill, kick) the next one gets it, so the flood's
		 * front end holds cpu G about as long as a quiet one; alone,
		 * the yield returns at once.
		 */
		sched_yield();
	}
	f->ops = ops;
	f->secs = tend > tw ? (double)(tend - tw) / (double)hz : 0;   /* 0: stopped within the warm-up */
	f->iops = f->secs > 0 ? (double)ops / f->secs : 0;
}

static void *tenant_main(void *arg)
{
	struct tenant *t = arg;

	bench_pin(guest_cpu, "front end");
	for (;;) {
		pthread_barrier_wait(&start_bar);
		if (__atomic_load_n(&quit, __ATOMIC_ACQUIRE))
			return NULL;
		/* An idle tenant's thread is blocked in the barrier: it takes no share of cpu G. */
		if (t->role != ROLE_IDLE)
			run_role(t);
		pthread_barrier_wait(&end_bar);
	}
}

/* ---- scenarios ---- */

enum { SC_ALONE1, SC_ALONE2, SC_ALONE3, SC_SHARED, SC_FLOOD, SC_HUGE, NSCEN };
static const char *scen_name[NSCEN] = { "alone", "alone", "alone", "shared", "flood", "huge" };

struct scenario {
	struct figures fig[NT];
	struct samples lat1;        /* tenant 1's latencies (for the plot), or empty */
	double sidecore_busy;       /* share of the sidecore's time in rounds that served */
	double round_ns;
	uint64_t requests;
};

static struct scenario scen[NSCEN];

static int run_scenario(int k, unsigned ms)
{
	static const enum role roles[NSCEN][NT] = {
		[SC_ALONE1] = { ROLE_IDLE, ROLE_QUIET, ROLE_IDLE, ROLE_IDLE },
		[SC_ALONE2] = { ROLE_IDLE, ROLE_IDLE, ROLE_QUIET, ROLE_IDLE },
		[SC_ALONE3] = { ROLE_IDLE, ROLE_IDLE, ROLE_IDLE, ROLE_QUIET },
		[SC_SHARED] = { ROLE_QUIET, ROLE_QUIET, ROLE_QUIET, ROLE_QUIET },
		[SC_FLOOD] = { ROLE_FLOOD, ROLE_QUIET, ROLE_QUIET, ROLE_QUIET },
		[SC_HUGE] = { ROLE_HUGE, ROLE_QUIET, ROLE_QUIET, ROLE_QUIET },
	};
	struct scenario *s = &scen[k];
	struct sc_poller_stats a, b;
	/* At most one latency a microsecond is kept: more than QD1 can complete. */
	size_t cap = (size_t)ms * 1000 + 100000;

	for (int i = 0; i < NT; i++) {
		struct tenant *t = &tenants[i];
		t->role = roles[k][i];
		memset(&t->fig, 0, sizeof(t->fig));
		t->fig.role = t->role;
		if (t->role != ROLE_IDLE && t->role != ROLE_FLOOD && samples_init(&t->lat, cap) < 0) {
			fprintf(stderr, "sidecore-bench fairness: out of memory for latency samples\n");
			return -1;
		}
	}
	printf("  %-6s", scen_name[k]);
	if (k <= SC_ALONE3)
		printf(" tenant %d", k - SC_ALONE1 + 1);
	printf(" ...");
	fflush(stdout);

	__atomic_store_n(&stop_run, 0, __ATOMIC_RELAXED);
	sc_poller_get_stats(poller, &a);
	pthread_barrier_wait(&start_bar);
	usleep((useconds_t)(sc_cycles_to_ns(warm_cycles) / 1000) + ms * 1000u);
	__atomic_store_n(&stop_run, 1, __ATOMIC_RELAXED);
	pthread_barrier_wait(&end_bar);
	sc_poller_get_stats(poller, &b);

	uint64_t busy = b.busy_cycles - a.busy_cycles, idle = b.idle_cycles - a.idle_cycles;
	uint64_t slept = b.sleep_cycles - a.sleep_cycles, rounds = b.rounds - a.rounds;
	s->sidecore_busy = busy + idle + slept ? (double)busy / (double)(busy + idle + slept) : 0;
	s->round_ns = rounds ? sc_cycles_to_ns((busy + idle) / rounds) : 0;
	s->requests = b.requests - a.requests;
	int ret = 0;
	for (int i = 0; i < NT; i++) {
		struct tenant *t = &tenants[i];
		struct figures *f = &t->fig;
		if (t->err)
			ret = -1;
		if (t->lat.v) {
			f->nsamples = t->lat.n;
			f->p50 = samples_pct(&t->lat, 50);
			f->p99 = samples_pct(&t->lat, 99);
			f->p999 = samples_pct(&t->lat, 99.9);
			if (i == 1)
				s->lat1 = t->lat;   /* kept for the plot */
			else
				samples_free(&t->lat);
			memset(&t->lat, 0, sizeof(t->lat));
		}
		s->fig[i] = *f;
	}
	for (int i = 0; i < NT; i++)
		if (s->fig[i].role == ROLE_QUIET)
			printf(" t%d %.1f us", i, sc_cycles_to_ns(s->fig[i].p50) / 1000);
	if (s->fig[0].role == ROLE_FLOOD || s->fig[0].role == ROLE_HUGE)
		printf(" | t0 %s %.0f IOPS", role_name[s->fig[0].role], s->fig[0].iops);
	printf(" | sidecore busy %.0f%%\n", s->sidecore_busy * 100);
	return ret;
}

static const struct figures *alone_of(int tenant)
{
	return &scen[SC_ALONE1 + tenant - 1].fig[tenant];
}

static double us(uint64_t cycles)
{
	return sc_cycles_to_ns(cycles) / 1000;
}

static void print_row(const char *name, int i, const struct figures *f)
{
	char size[32];
	if (f->req_bytes >= 1 << 20)
		snprintf(size, sizeof(size), "%.1f MiB", (double)f->req_bytes / (1 << 20));
	else
		snprintf(size, sizeof(size), "%llu B", (unsigned long long)f->req_bytes);
	printf("%-7s %6d %-6s %4u %10s %9.2f %9.2f %9.2f %10.0f", name, i, role_name[f->role], f->qd, size,
	       us(f->p50), us(f->p99), us(f->p999), f->iops);
	if (f->role == ROLE_QUIET && i > 0) {
		const struct figures *a = alone_of(i);
		printf(" %8.2fx %8.2fx %8.2fx %8.2fx", (double)f->p50 / (double)a->p50, (double)f->p99 / (double)a->p99,
		       (double)f->p999 / (double)a->p999, f->iops / a->iops);
	}
	printf("\n");
}

static json_t *figures_json(int i, const struct figures *f)
{
	json_t *o = json_pack("{s:i, s:s, s:i, s:I, s:I, s:f, s:f}", "tenant", i, "role", role_name[f->role],
			      "queue_depth", f->qd, "request_bytes", (json_int_t)f->req_bytes, "requests", (json_int_t)f->ops,
			      "seconds", f->secs, "iops", f->iops);
	if (f->nsamples)
		json_object_set_new(o, "latency_ns", json_pack("{s:I, s:f, s:f, s:f}", "samples", (json_int_t)f->nsamples,
			"p50", sc_cycles_to_ns(f->p50), "p99", sc_cycles_to_ns(f->p99), "p99_9", sc_cycles_to_ns(f->p999)));
	if (f->role == ROLE_QUIET && i > 0) {
		const struct figures *a = alone_of(i);
		json_object_set_new(o, "ratio_to_alone", json_pack("{s:f, s:f, s:f, s:f}",
			"p50", (double)f->p50 / (double)a->p50, "p99", (double)f->p99 / (double)a->p99,
			"p99_9", (double)f->p999 / (double)a->p999, "iops", f->iops / a->iops));
	}
	return o;
}

/* Fill a file with bytes, so reads copy real pages rather than read holes. */
static int make_disk(const char *path, uint64_t mb)
{
	static char buf[1 << 16];
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	memset(buf, 0x5a, sizeof(buf));
	for (uint64_t i = 0; i < (mb << 20) / sizeof(buf); i++)
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			int e = errno ? -errno : -ENOSPC;
			close(fd);
			return e;
		}
	close(fd);
	return 0;
}

static void remove_files(const char *dir)
{
	for (int i = 0; i < NT; i++) {
		unlink(tenants[i].disk);
		unlink(tenants[i].sock);
	}
	rmdir(dir);
}

int bench_fairness(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	char dir[] = "/dev/shm/sidecore-fairness-XXXXXX", err[256];
	double seconds = 0, qd = MAX_QD, huge_mb = 0, budget = SC_POLLER_DEFAULT_BUDGET;
	int nservers = 0, nfe = 0, ret = 1;

	if (bench_take_number(&argc, argv, "seconds", 0.05, 3600, &seconds) < 0 ||
	    bench_take_number(&argc, argv, "flood-qd", 1, MAX_QD, &qd) < 0 ||
	    bench_take_number(&argc, argv, "huge-mb", 1, 4095, &huge_mb) < 0 ||
	    bench_take_number(&argc, argv, "budget", 1, 1024, &budget) < 0 ||
	    bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	flood_qd = (unsigned)qd;
	if (seconds == 0)
		seconds = o.quick ? 0.3 : 2;
	if (huge_mb == 0)
		huge_mb = o.quick ? 16 : 128;   /* the first read of a fresh buffer is slow: keep the smoke run short */
	unsigned ms = (unsigned)(seconds * 1000);
	uint64_t huge_cap = (uint64_t)huge_mb << 20, big_mb = huge_mb > DISK_MB ? (uint64_t)huge_mb : DISK_MB;
	warm_cycles = sc_ns_to_cycles((uint64_t)(ms < 1000 ? ms / 10 : 100) * 1000000ull);
	guest_cpu = o.guest_cpu;

	if (!mkdtemp(dir)) {
		fprintf(stderr, "sidecore-bench fairness: cannot create a directory in /dev/shm: %s\n", strerror(errno));
		return 1;
	}
	printf("fairness: one sidecore on cpu %d (budget %u), four vhost-user-blk disks in %s, front ends on cpu %d\n",
	       o.sidecore_cpu, (unsigned)budget, dir, o.guest_cpu);
	printf("  preparing disks (%d MiB x3, %llu MiB for tenant 0)...\n", DISK_MB, (unsigned long long)big_mb);
	fflush(stdout);
	bench_pin(o.guest_cpu, "main");

	struct sc_poller_config pc = { .cpu = o.sidecore_cpu, .budget = (unsigned)budget,
				       .idle_spin_ns = SC_POLLER_DEFAULT_IDLE_NS, .name = "sc-fairness" };
	int r = sc_poller_create(&pc, &poller);
	if (r < 0) {
		fprintf(stderr, "sidecore-bench fairness: cannot start a sidecore on cpu %d: %s\n", o.sidecore_cpu, strerror(-r));
		goto out;
	}
	for (int i = 0; i < NT; i++) {
		struct tenant *t = &tenants[i];
		t->idx = i;
		t->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		snprintf(t->sock, sizeof(t->sock), "%s/t%d.sock", dir, i);
		snprintf(t->disk, sizeof(t->disk), "%s/t%d.img", dir, i);
		if ((r = make_disk(t->disk, i ? DISK_MB : big_mb)) < 0) {
			fprintf(stderr, "sidecore-bench fairness: cannot write %s: %s (is /dev/shm full?)\n", t->disk, strerror(-r));
			goto out;
		}
		char serial[16];
		snprintf(serial, sizeof(serial), "tenant%d", i);
		if (sc_blk_backend_open(&t->be, t->disk, false, false, serial, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecore-bench fairness: %s\n", err);
			goto out;
		}
		sc_vu_blk_init(&t->dev, &t->be, &poller, 1, 1);
		if (sc_vu_server_create(t->sock, &t->dev.ops, &t->dev, &t->srv, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecore-bench fairness: %s\n", err);
			sc_blk_backend_close(&t->be);
			goto out;
		}
		nservers++;
		/* Its control thread inherits this thread's cpu (the front ends' cpu). */
		if ((r = sc_vu_server_start(t->srv)) < 0) {
			fprintf(stderr, "sidecore-bench fairness: cannot start %s's control thread: %s\n", t->sock, strerror(-r));
			goto out;
		}
	}
	for (int i = 0; i < NT; i++) {
		struct tenant *t = &tenants[i];
		uint64_t mem = (4u << 20) + (i ? 0 : ((huge_cap + 4095) & ~4095ull));
		if (sc_vu_fe_connect(&t->fe, t->sock, mem, 1, QSIZE, err, sizeof(err)) < 0) {
			fprintf(stderr, "sidecore-bench fairness: tenant %d: %s\n", i, err);
			goto out;
		}
		nfe++;
	}

	uint64_t features;
	struct virtio_blk_config c;
	if ((r = read_limits(&tenants[0].fe, &features, &c)) < 0) {
		fprintf(stderr, "sidecore-bench fairness: %s: reading features and config space: %s\n", tenants[0].sock,
			strerror(-r));
		goto out;
	}
	plan_huge(features, &c, tenants[0].fe.capacity ? tenants[0].fe.capacity : tenants[0].be.capacity, huge_cap);
	if (huge.device_max)
		printf("  device limits: seg_max %u, size_max %u: the largest read it accepts is %.1f MiB\n", huge.seg_max,
		       huge.size_max, (double)huge.device_max / (1 << 20));
	else
		printf("  device limits: seg_max %u, no size_max offered: a read may be as large as the disk\n", huge.seg_max);
	printf("  huge read: %.1f MiB in %u segments of up to %u bytes (capped by the %llu MiB disk and --huge-mb)\n",
	       (double)huge.bytes / (1 << 20), huge.nseg, huge.seg_len, (unsigned long long)big_mb);
	printf("  alone means: the other three front-end threads are blocked (not runnable), their queues attached\n"
	       "  and empty. Each front end makes one pass (reap, refill, kick) and then yields cpu %d.\n", o.guest_cpu);
	printf("  %u ms per scenario after %.0f ms warm-up\n", ms, sc_cycles_to_ns(warm_cycles) / 1e6);
	bench_note_load();
	fflush(stdout);

	pthread_barrier_init(&start_bar, NULL, NT + 1);
	pthread_barrier_init(&end_bar, NULL, NT + 1);
	for (int i = 0; i < NT; i++)
		if (pthread_create(&tenants[i].thread, NULL, tenant_main, &tenants[i])) {
			/* The threads already started wait in a barrier that can no longer fill: leave by exit. */
			fprintf(stderr, "sidecore-bench fairness: cannot start front-end thread %d\n", i);
			remove_files(dir);
			exit(1);
		}
	/*
	 * One huge read before any measurement: the sidecore's first touch of
	 * each page of the buffer (through the server's own mapping) is a page
	 * fault, about 90 us a page on these nested machines (1.5 s for 64 MiB),
	 * a cost of the first read only.
	 */
	printf("  warming up: one %.1f MiB read (the sidecore's first touch of its pages)...", (double)huge.bytes / (1 << 20));
	fflush(stdout);
	uint64_t w0 = sc_rdtsc();
	one_shot = true;
	tenants[0].role = ROLE_HUGE;
	for (int i = 1; i < NT; i++)
		tenants[i].role = ROLE_IDLE;
	pthread_barrier_wait(&start_bar);
	pthread_barrier_wait(&end_bar);
	one_shot = false;
	if (tenants[0].err)
		goto out_threads;
	printf(" %.0f ms\n", sc_cycles_to_ns(sc_rdtsc() - w0) / 1e6);
	for (int k = 0; k < NSCEN; k++)
		if (run_scenario(k, ms) < 0)
			goto out_threads;

	printf("\n%-7s %6s %-6s %4s %10s %9s %9s %9s %10s %9s %9s %9s %9s\n", "scenario", "tenant", "role", "QD", "size",
	       "p50 us", "p99 us", "p99.9 us", "IOPS", "p50/alone", "p99/alone", "p99.9/al", "IOPS/al");
	for (int k = 0; k < NSCEN; k++)
		for (int i = 0; i < NT; i++)
			if (scen[k].fig[i].role != ROLE_IDLE)
				print_row(scen_name[k], i, &scen[k].fig[i]);

	/* The bars, on the quiet tenants' worst figure. */
	double worst_flood = 0, worst_shared = 0, worst_flood_vs_shared = 0;
	uint64_t worst_huge_p99 = 0;
	for (int i = 1; i < NT; i++) {
		const struct figures *a = alone_of(i), *fl = &scen[SC_FLOOD].fig[i], *sh = &scen[SC_SHARED].fig[i];
		double r1[] = { (double)fl->p50 / (double)a->p50, (double)fl->p99 / (double)a->p99, a->iops / fl->iops };
		double r2[] = { (double)sh->p50 / (double)a->p50, (double)sh->p99 / (double)a->p99, a->iops / sh->iops };
		double r3[] = { (double)fl->p50 / (double)sh->p50, (double)fl->p99 / (double)sh->p99, sh->iops / fl->iops };
		for (int j = 0; j < 3; j++) {
			worst_flood = r1[j] > worst_flood ? r1[j] : worst_flood;
			worst_shared = r2[j] > worst_shared ? r2[j] : worst_shared;
			worst_flood_vs_shared = r3[j] > worst_flood_vs_shared ? r3[j] : worst_flood_vs_shared;
		}
		if (scen[SC_HUGE].fig[i].p99 > worst_huge_p99)
			worst_huge_p99 = scen[SC_HUGE].fig[i].p99;
	}
	bool ok_flood = worst_flood <= 1.10, ok_huge = sc_cycles_to_ns(worst_huge_p99) < 1e6;
	printf("\nsidecore per scenario:");
	for (int k = 0; k < NSCEN; k++)
		printf(" %s %.0f%% busy, %.0f ns/round;", scen_name[k], scen[k].sidecore_busy * 100, scen[k].round_ns);
	printf("\ntargets: beside the flood, quiet p50/p99/IOPS within 10%% of alone: %s (worst %.2fx)\n",
	       ok_flood ? "met" : "MISSED", worst_flood);
	printf("         (four quiet tenants sharing cpu %d, no flood: worst %.2fx of alone; flood vs that: %.2fx)\n",
	       o.guest_cpu, worst_shared, worst_flood_vs_shared);
	printf("         beside the %.1f MiB reads, quiet 4 KiB p99 under 1 ms: %s (worst %.0f us)\n",
	       (double)huge.bytes / (1 << 20), ok_huge ? "met" : "MISSED", us(worst_huge_p99));

	if (o.json_path) {
		json_t *root = bench_json_header("fairness", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (int k = 0; k < NSCEN; k++) {
			json_t *tj = json_array();
			for (int i = 0; i < NT; i++)
				if (scen[k].fig[i].role != ROLE_IDLE)
					json_array_append_new(tj, figures_json(i, &scen[k].fig[i]));
			json_array_append_new(arr, json_pack("{s:s, s:o, s:f, s:f, s:I}", "scenario", scen_name[k],
				"tenants", tj, "sidecore_busy", scen[k].sidecore_busy, "round_ns", scen[k].round_ns,
				"sidecore_requests", (json_int_t)scen[k].requests));
		}
		json_object_set_new(root, "scenarios", arr);
		json_object_set_new(root, "setup", json_pack("{s:i, s:i, s:i, s:f, s:s}", "budget", (int)budget,
			"flood_qd", (int)flood_qd, "ring_size", QSIZE, "seconds_per_scenario", ms / 1000.0, "alone_means",
			"the other three front-end threads blocked (not runnable); their queues attached and empty"));
		json_object_set_new(root, "huge_read", json_pack("{s:I, s:i, s:i, s:i, s:i, s:I}", "bytes", (json_int_t)huge.bytes,
			"segments", huge.nseg, "segment_bytes", huge.seg_len, "seg_max", huge.seg_max, "size_max", huge.size_max,
			"device_max_bytes", (json_int_t)huge.device_max));
		json_object_set_new(root, "targets", json_pack("{s:f, s:b, s:f, s:b, s:f, s:f}",
			"flood_worst_ratio_to_alone", worst_flood, "flood_within_10pct", ok_flood,
			"huge_worst_quiet_p99_ns", sc_cycles_to_ns(worst_huge_p99), "huge_p99_under_1ms", ok_huge,
			"shared_worst_ratio_to_alone", worst_shared, "flood_worst_ratio_to_shared", worst_flood_vs_shared));
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	if (o.plot_path) {
		struct samples *sets[] = { &scen[SC_ALONE1].lat1, &scen[SC_SHARED].lat1, &scen[SC_FLOOD].lat1,
					   &scen[SC_HUGE].lat1 };
		char flood_name[64], huge_name[64];
		snprintf(flood_name, sizeof(flood_name), "beside a QD%u flood of %u-byte reads", flood_qd, huge.blk_size);
		snprintf(huge_name, sizeof(huge_name), "beside %.0f MiB reads", (double)huge.bytes / (1 << 20));
		const char *names[] = { "alone", "four quiet tenants", flood_name, huge_name };
		bench_plot_cdf(o.plot_path, "one sidecore, four disks: quiet tenant 1, 4 KiB reads at QD1", sets, names, 4);
	}
	ret = 0;
out_threads:
	__atomic_store_n(&quit, 1, __ATOMIC_RELEASE);
	pthread_barrier_wait(&start_bar);
	for (int i = 0; i < NT; i++)
		pthread_join(tenants[i].thread, NULL);
out:
	for (int i = 0; i < nfe; i++)
		sc_vu_fe_close(&tenants[i].fe);
	for (int i = 0; i < nservers; i++) {
		sc_vu_server_destroy(tenants[i].srv);
		sc_blk_backend_close(&tenants[i].be);
	}
	if (poller)
		sc_poller_destroy(poller);
	for (int k = 0; k < NSCEN; k++)
		samples_free(&scen[k].lat1);
	remove_files(dir);
	return ret;
}
