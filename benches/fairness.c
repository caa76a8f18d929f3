/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench fairness: four tenants on one sidecore. Four
 * vhost-user-blk devices (runtime/vu_blk on the project's own vhost-user
 * server, in this process) on four memory-backed disks in /dev/shm, all
 * served by one poller pinned to the sidecore cpu; each device has its own
 * front end (runtime/vu_frontend: its own socket, memory and ring). Tenants
 * 1-3 are quiet (QD1, 4 KiB random reads); tenant 0 is idle, quiet, a flood
 * (the smallest reads at a deep queue) or a huge reader (the largest read
 * the device's config space allows). One run measures every scenario, so
 * the ratios compare figures from the same machine state.
 *
 * One thread on the guest cpu drives all four front ends, as a VMM's I/O
 * thread would: each pass reaps every tenant's completions (timestamped
 * when seen) and refills at most a few requests per tenant. With only two
 * cpus, four front-end threads would share the guest cpu through the
 * kernel's scheduler, and a quiet tenant's latency would mostly be the
 * time it waited for cpu behind the flood's thread, not the sidecore's
 * doing. Here the flood's front-end cost per pass is bounded (--refill),
 * and "alone" is the same loop with the other tenants idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benches/bench.h"
#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "spec/sc_virtio_blk.h"
#include "runtime/vu_msg.h"
#include "runtime/vu_blk.h"
#include "runtime/vu_frontend.h"

static const char usage[] =
	"usage: sidecore-bench fairness [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"                               [--seconds N] [--flood-qd N] [--huge-mb N] [--budget N]\n"
	"                               [--turn-us N] [--refill N]\n"
	"\n"
	"Four vhost-user-blk disks (memory-backed, in /dev/shm) served by one sidecore\n"
	"on cpu S. One front-end thread on cpu G drives all four (a VMM's I/O thread):\n"
	"each pass reaps every tenant's completions and refills at most --refill\n"
	"requests per tenant. Tenants 1-3 are quiet: QD1 random 4 KiB reads.\n"
	"Scenarios, in one run:\n"
	"  alone   each quiet tenant by itself: the same loop, the other three tenants\n"
	"          idle (their queues attached to the sidecore and empty)\n"
	"  shared  tenants 1-3 quiet together, tenant 0 idle: the flood and huge\n"
	"          scenarios without their neighbour (what sharing the sidecore costs)\n"
	"  flood   tenant 0 floods: the smallest reads (one block) at QD --flood-qd\n"
	"  huge    tenant 0 issues the largest read the device accepts (seg_max x\n"
	"          size_max from its config space, at most the disk and --huge-mb)\n"
	"Prints the quiet tenants' p50/p99/p99.9 latency and IOPS per scenario with\n"
	"their ratio to alone, and the issue's bars: within 10% of alone beside the\n"
	"flood; p99 under 1 ms beside the huge reads.\n"
	"  --seconds N   measured time per scenario (default 2; --quick 0.3)\n"
	"  --flood-qd N  the flood's queue depth (default 128)\n"
	"  --huge-mb N   cap on the huge read and tenant 0's disk (default 128; --quick 16)\n"
	"  --budget N    the sidecore's requests per queue per round (default 32)\n"
	"  --turn-us N   the sidecore's time per queue per round (default 2, as sidecored)\n"
	"  --refill N    requests the front-end loop adds per tenant per pass (default 8)\n";

#define NT 4
#define QSIZE 512                /* ring entries: QD128 of 3-descriptor chains fits */
#define MAX_QD 128
#define DISK_MB 64               /* each quiet tenant's disk */
#define SLOT_DATA 0x10000ull     /* request data starts this far after the headers */
#define REAP_MAX 32              /* completions the loop takes per tenant per pass: a pass stays bounded */

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
	double mean_inflight;      /* requests in flight after each refill, on average */
};

struct tenant {
	int idx;
	char sock[128], disk[128];
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
	struct sc_vu_fe fe;
	uint64_t rng;
	/* this run: set by main before the start barrier, results read after the end barrier */
	enum role role;
	struct samples lat;
	struct figures fig;
	int err;
	/* the front-end loop's own, during a run */
	uint64_t submitted[MAX_QD];   /* TSC at submission, per slot */
	uint16_t slot_of[QSIZE];      /* head -> slot */
	unsigned free_slots[MAX_QD], nfree, inflight;
	uint64_t ops, depth_sum, depth_n;
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
static unsigned flood_qd = MAX_QD, refill_max = 8;
static double drv_pass_ns;       /* the loop's mean pass in the last run */
static uint64_t warm_cycles;
static int guest_cpu;

/* ---- reading the device's limits as a front end does ---- */

static int recv_reply(int sock, uint32_t req, void *payload, uint32_t size)
{
	struct sc_vu_hdr h;
	if (recv(sock, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.request != req ||
	    !(h.flags & SC_VHOST_USER_REPLY) || h.size > size ||
	    (h.size && recv(sock, payload, h.size, MSG_WAITALL) != (ssize_t)h.size))
		return -EPROTO;
	return (int)h.size;
}

/* GET_FEATURES and GET_CONFIG on a connected front end's socket. */
static int read_limits(struct sc_vu_fe *fe, uint64_t *features, struct sc_virtio_blk_config *c)
{
	struct { uint32_t offset, size, flags; struct sc_virtio_blk_config c; } __attribute__((packed)) cfg = {
		0, sizeof(struct sc_virtio_blk_config), 0, { 0 } };
	int ret = sc_vu_send(fe->sock, SC_VHOST_USER_GET_FEATURES, 0, NULL, 0, -1);
	if (ret < 0 || (ret = recv_reply(fe->sock, SC_VHOST_USER_GET_FEATURES, features, 8)) != 8)
		return ret < 0 ? ret : -EPROTO;
	ret = sc_vu_send(fe->sock, SC_VHOST_USER_GET_CONFIG, 0, &cfg, sizeof(cfg), -1);
	if (ret < 0 || (ret = recv_reply(fe->sock, SC_VHOST_USER_GET_CONFIG, &cfg, sizeof(cfg))) != (int)sizeof(cfg))
		return ret < 0 ? ret : -EPROTO;
	*c = cfg.c;
	return 0;
}

/*
 * The largest read: seg_max segments of size_max bytes when the device
 * offers both, else (no size_max) as large as the disk, in at most seg_max
 * segments (or what the ring holds); never more than cap bytes.
 */
static void plan_huge(uint64_t features, const struct sc_virtio_blk_config *c, uint64_t capacity, uint64_t cap)
{
	huge.blk_size = (features & (1ull << SC_VIRTIO_BLK_F_BLK_SIZE)) && c->blk_size ? c->blk_size : 512;
	huge.seg_max = (features & (1ull << SC_VIRTIO_BLK_F_SEG_MAX)) && c->seg_max ? c->seg_max : QSIZE - 2;
	if (huge.seg_max > QSIZE - 2)
		huge.seg_max = QSIZE - 2;   /* header and status take two descriptors */
	huge.size_max = (features & (1ull << SC_VIRTIO_BLK_F_SIZE_MAX)) ? c->size_max : 0;
	huge.device_max = huge.size_max ? (uint64_t)huge.seg_max * huge.size_max : 0;

	uint64_t bytes = capacity * SC_VIRTIO_BLK_SECTOR_SIZE;
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

/* ---- the front ends' thread ---- */

/* Set t up for its role in this run: an empty ring, every slot free. */
static void tenant_begin(struct tenant *t)
{
	struct figures *f = &t->fig;

	f->role = t->role;
	f->qd = t->role == ROLE_FLOOD ? flood_qd : 1;
	f->req_bytes = t->role == ROLE_FLOOD ? huge.blk_size : t->role == ROLE_HUGE ? huge.bytes : 4096;
	t->nfree = f->qd;
	for (unsigned s = 0; s < f->qd; s++)
		t->free_slots[s] = f->qd - 1 - s;
	t->inflight = 0;
	t->ops = t->depth_sum = t->depth_n = 0;
}

/* Put at most max requests of t's role on its ring, publish them and kick (if the device asks) once. */
static void tenant_refill(struct tenant *t, unsigned max)
{
	struct sc_vu_fe *fe = &t->fe;
	struct sc_drv_vq *vq = &fe->vq[0];
	const struct figures *f = &t->fig;
	uint64_t cap = fe->capacity ? fe->capacity : t->be.capacity;
	unsigned added = 0;

	while (added < max && t->nfree) {
		unsigned s = t->free_slots[--t->nfree];
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
			uint64_t per = f->req_bytes / SC_VIRTIO_BLK_SECTOR_SIZE;
			sector = bench_xorshift(&t->rng) % (cap / per) * per;
			segs[1] = (struct sc_drv_seg){ data, (uint32_t)f->req_bytes };
		}
		segs[nin] = (struct sc_drv_seg){ hdr + 16, 1 };
		*(struct sc_virtio_blk_outhdr *)(fe->mem + hdr) =
			(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = sector };
		fe->mem[hdr + 16] = 0xff;
		int head = sc_drv_vq_add(vq, segs, 1, nin);
		if (head < 0) {
			t->free_slots[t->nfree++] = s;   /* the ring is full: the slot waits */
			break;
		}
		t->slot_of[head] = (uint16_t)s;
		t->submitted[s] = sc_rdtsc();
		t->inflight++;
		added++;
	}
	if (added) {
		sc_drv_vq_publish(vq);
		sc_vu_fe_kick(fe, 0);
	}
}

/*
 * Take at most REAP_MAX of t's completions, each timestamped when seen; a
 * request counts if it was submitted after the warm-up (tw) and seen before
 * the run ended (tend, 0 while it runs). Returns 0, or -EIO if the device
 * completed a head it was never given.
 */
static int tenant_reap(struct tenant *t, uint64_t tw, uint64_t tend)
{
	struct sc_vu_fe *fe = &t->fe;
	const struct figures *f = &t->fig;
	bool keep = t->role != ROLE_FLOOD;   /* the flood's own latency is not the question */
	uint16_t head;
	uint32_t len;
	int got = 0;

	for (unsigned n = 0; n < REAP_MAX && (got = sc_drv_vq_get_used(&fe->vq[0], &head, &len)) == 1; n++) {
		uint64_t now = sc_rdtsc();
		unsigned s = t->slot_of[head];
		uint8_t status = fe->mem[fe->buf_gpa + s * 64 + 16];
		if (status != SC_VIRTIO_BLK_S_OK || len != f->req_bytes + 1) {
			if (!t->err)
				fprintf(stderr, "sidecore-bench fairness: tenant %d: a %llu-byte read completed with status %u, length %u\n",
					t->idx, (unsigned long long)f->req_bytes, status, len);
			t->err = -EIO;
		}
		if (t->submitted[s] >= tw && !tend) {
			t->ops++;
			if (keep)
				samples_add(&t->lat, now - t->submitted[s]);
		}
		t->free_slots[t->nfree++] = s;
		t->inflight--;
	}
	if (got < 0) {
		fprintf(stderr, "sidecore-bench fairness: tenant %d: the device completed a descriptor it was never given\n", t->idx);
		return t->err = -EIO;
	}
	return 0;
}

/*
 * One scenario: pass over the tenants (reap, then refill) until stop_run,
 * then until nothing is in flight. Returns 0, or a negative errno (a
 * tenant's err says which).
 */
static int drive(void)
{
	uint64_t hz = sc_tsc_hz(), t0 = sc_rdtsc(), tw = t0 + warm_cycles, tend = 0, passes = 0;

	for (int i = 0; i < NT; i++)
		tenant_begin(&tenants[i]);
	for (;;) {
		unsigned inflight = 0;
		if (!tend && (__atomic_load_n(&stop_run, __ATOMIC_RELAXED) || (one_shot && passes)))
			tend = sc_rdtsc();
		for (int i = 0; i < NT; i++) {
			struct tenant *t = &tenants[i];
			if (t->role == ROLE_IDLE)
				continue;
			if (tenant_reap(t, tw, tend) < 0)
				return -EIO;
			if (!tend) {
				/* QD1 tenants refill their one request; the flood at most refill_max. */
				tenant_refill(t, refill_max);
				t->depth_sum += t->inflight;
				t->depth_n++;
			}
			inflight += t->inflight;
		}
		if (!tend) {
			passes++;
			continue;
		}
		if (!inflight)
			break;
		if (sc_rdtsc() - tend > hz * 30) {
			fprintf(stderr, "sidecore-bench fairness: %u requests still in flight 30 s after the run\n", inflight);
			return -ETIMEDOUT;
		}
	}
	drv_pass_ns = passes ? sc_cycles_to_ns((tend - t0) / passes) : 0;
	for (int i = 0; i < NT; i++) {
		struct tenant *t = &tenants[i];
		struct figures *f = &t->fig;
		f->ops = t->ops;
		f->secs = tend > tw ? (double)(tend - tw) / (double)hz : 0;   /* 0: stopped within the warm-up */
		f->iops = f->secs > 0 ? (double)t->ops / f->secs : 0;
		f->mean_inflight = t->depth_n ? (double)t->depth_sum / (double)t->depth_n : 0;
	}
	return 0;
}

static void *driver_main(void *arg)
{
	(void)arg;
	bench_pin(guest_cpu, "front end");
	for (;;) {
		pthread_barrier_wait(&start_bar);
		if (__atomic_load_n(&quit, __ATOMIC_ACQUIRE))
			return NULL;
		drive();
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
	double pass_ns;             /* the front-end loop's mean pass */
	double asleep;              /* share of the sidecore's time asleep on the kick fds */
	double req_per_round;
};

static struct scenario scen[NSCEN];

static int run_scenario(int k, unsigned ms)
{
	static const enum role roles[NSCEN][NT] = {
		[SC_ALONE1] = { ROLE_IDLE, ROLE_QUIET, ROLE_IDLE, ROLE_IDLE },
		[SC_ALONE2] = { ROLE_IDLE, ROLE_IDLE, ROLE_QUIET, ROLE_IDLE },
		[SC_ALONE3] = { ROLE_IDLE, ROLE_IDLE, ROLE_IDLE, ROLE_QUIET },
		[SC_SHARED] = { ROLE_IDLE, ROLE_QUIET, ROLE_QUIET, ROLE_QUIET },
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
	s->pass_ns = drv_pass_ns;

	uint64_t busy = b.busy_cycles - a.busy_cycles, idle = b.idle_cycles - a.idle_cycles;
	uint64_t slept = b.sleep_cycles - a.sleep_cycles, rounds = b.rounds - a.rounds;
	s->sidecore_busy = busy + idle + slept ? (double)busy / (double)(busy + idle + slept) : 0;
	s->round_ns = rounds ? sc_cycles_to_ns((busy + idle) / rounds) : 0;
	s->requests = b.requests - a.requests;
	s->asleep = busy + idle + slept ? (double)slept / (double)(busy + idle + slept) : 0;
	s->req_per_round = rounds ? (double)s->requests / (double)rounds : 0;
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
	if (s->fig[0].role == ROLE_FLOOD)
		printf(" | t0 flood %.0f IOPS, %.0f in flight", s->fig[0].iops, s->fig[0].mean_inflight);
	if (s->fig[0].role == ROLE_HUGE)
		printf(" | t0 huge %.0f IOPS", s->fig[0].iops);
	printf(" | sidecore %.0f%% busy, %.0f%% asleep, %.0f ns and %.2f requests/round | loop %.0f ns/pass\n",
	       s->sidecore_busy * 100, s->asleep * 100, s->round_ns, s->req_per_round, s->pass_ns);
	return ret;
}

static const struct figures *alone_of(int tenant)
{
	return &scen[SC_ALONE1 + tenant - 1].fig[tenant];
}

static const struct figures *shared_of(int tenant)
{
	return &scen[SC_SHARED].fig[tenant];
}

/* a / b; 0 when b is 0 (a tenant with no request in the window: the machine stalled the run). */
static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0;
}

static double fratio(double a, double b)
{
	return b > 0 ? a / b : 0;
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
		const struct figures *a = alone_of(i), *sh = shared_of(i);
		printf(" %7.2fx %7.2fx %7.2fx %7.2fx", ratio(f->p50, a->p50), ratio(f->p99, a->p99), ratio(f->p999, a->p999),
		       fratio(f->iops, a->iops));
		if (f != sh && f != a)
			printf(" %7.2fx %7.2fx %7.2fx", ratio(f->p50, sh->p50), ratio(f->p99, sh->p99), fratio(f->iops, sh->iops));
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
	if (f->role == ROLE_FLOOD)
		json_object_set_new(o, "mean_in_flight", json_real(f->mean_inflight));
	if (f->role == ROLE_QUIET && i > 0) {
		const struct figures *a = alone_of(i), *sh = shared_of(i);
		json_object_set_new(o, "ratio_to_alone", json_pack("{s:f, s:f, s:f, s:f}",
			"p50", ratio(f->p50, a->p50), "p99", ratio(f->p99, a->p99),
			"p99_9", ratio(f->p999, a->p999), "iops", fratio(f->iops, a->iops)));
		if (f != sh && f != a)
			json_object_set_new(o, "ratio_to_shared", json_pack("{s:f, s:f, s:f, s:f}",
				"p50", ratio(f->p50, sh->p50), "p99", ratio(f->p99, sh->p99),
				"p99_9", ratio(f->p999, sh->p999), "iops", fratio(f->iops, sh->iops)));
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
	double turn_us = SC_POLLER_DEFAULT_TURN_NS / 1000.0, refill = refill_max;
	int nservers = 0, nfe = 0, ret = 1;

	if (bench_take_number(&argc, argv, "seconds", 0.05, 3600, &seconds) < 0 ||
	    bench_take_number(&argc, argv, "flood-qd", 1, MAX_QD, &qd) < 0 ||
	    bench_take_number(&argc, argv, "huge-mb", 1, 4095, &huge_mb) < 0 ||
	    bench_take_number(&argc, argv, "budget", 1, 1024, &budget) < 0 ||
	    bench_take_number(&argc, argv, "turn-us", 0.001, 1000000, &turn_us) < 0 ||
	    bench_take_number(&argc, argv, "refill", 1, MAX_QD, &refill) < 0 ||
	    bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	flood_qd = (unsigned)qd;
	refill_max = (unsigned)refill;
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
	printf("fairness: one sidecore on cpu %d (budget %u, turn %.2f us), four vhost-user-blk disks in %s,\n"
	       "  one front-end loop on cpu %d for all four (at most %u requests per tenant per pass)\n",
	       o.sidecore_cpu, (unsigned)budget, turn_us, dir, o.guest_cpu, refill_max);
	printf("  preparing disks (%d MiB x3, %llu MiB for tenant 0)...\n", DISK_MB, (unsigned long long)big_mb);
	fflush(stdout);
	bench_pin(o.guest_cpu, "main");

	struct sc_poller_config pc = { .cpu = o.sidecore_cpu, .budget = (unsigned)budget,
				       .turn_ns = (uint64_t)(turn_us * 1000 + 0.5),
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
		/*
		 * The loop polls the used rings, as a polling VMM thread does: with
		 * interrupts on, every turn that completes something would also
		 * write the call eventfd (a system call no one reads here).
		 */
		sc_drv_vq_interrupts_disable(&t->fe.vq[0]);
	}

	uint64_t features;
	struct sc_virtio_blk_config c;
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
	printf("  alone means: the same front-end loop with the other three tenants idle (their queues attached\n"
	       "  to the sidecore and empty). shared: tenants 1-3 quiet, tenant 0 idle (flood and huge without tenant 0).\n"
	       "  Latency: from submission to the completion seen by the loop, in TSC cycles.\n");
	printf("  %u ms per scenario after %.0f ms warm-up\n", ms, sc_cycles_to_ns(warm_cycles) / 1e6);
	bench_note_load();
	fflush(stdout);

	pthread_barrier_init(&start_bar, NULL, 2);
	pthread_barrier_init(&end_bar, NULL, 2);
	pthread_t driver;
	if (pthread_create(&driver, NULL, driver_main, NULL)) {
		fprintf(stderr, "sidecore-bench fairness: cannot start the front-end thread\n");
		goto out;
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

	printf("\nratios: /al to the same tenant alone, /sh to it in the shared scenario (tenants 1-3, tenant 0 idle)\n");
	printf("%-7s %6s %-6s %4s %10s %9s %9s %9s %10s %8s %8s %8s %8s %8s %8s %8s\n", "scenario", "tenant", "role", "QD",
	       "size", "p50 us", "p99 us", "p99.9 us", "IOPS", "p50/al", "p99/al", "p999/al", "IOPS/al", "p50/sh",
	       "p99/sh", "IOPS/sh");
	for (int k = 0; k < NSCEN; k++)
		for (int i = 0; i < NT; i++)
			if (scen[k].fig[i].role != ROLE_IDLE)
				print_row(scen_name[k], i, &scen[k].fig[i]);

	/* The bars, on the quiet tenants' worst figure. */
	double worst_flood = 0, worst_shared = 0, worst_flood_vs_shared = 0;
	uint64_t worst_huge_p99 = 0;
	for (int i = 1; i < NT; i++) {
		const struct figures *a = alone_of(i), *fl = &scen[SC_FLOOD].fig[i], *sh = &scen[SC_SHARED].fig[i];
		if (!a->nsamples || !fl->nsamples || !sh->nsamples) {
			printf("note: tenant %d completed no request in the window of a scenario (the machine stalled the run):\n"
			       "      its ratios are left out; run again on a quieter machine\n", i);
			continue;
		}
		double r1[] = { ratio(fl->p50, a->p50), ratio(fl->p99, a->p99), fratio(a->iops, fl->iops) };
		double r2[] = { ratio(sh->p50, a->p50), ratio(sh->p99, a->p99), fratio(a->iops, sh->iops) };
		double r3[] = { ratio(fl->p50, sh->p50), ratio(fl->p99, sh->p99), fratio(sh->iops, fl->iops) };
		for (int j = 0; j < 3; j++) {
			worst_flood = r1[j] > worst_flood ? r1[j] : worst_flood;
			worst_shared = r2[j] > worst_shared ? r2[j] : worst_shared;
			worst_flood_vs_shared = r3[j] > worst_flood_vs_shared ? r3[j] : worst_flood_vs_shared;
		}
		if (scen[SC_HUGE].fig[i].p99 > worst_huge_p99)
			worst_huge_p99 = scen[SC_HUGE].fig[i].p99;
	}
	bool ok_flood = worst_flood <= 1.10, ok_huge = sc_cycles_to_ns(worst_huge_p99) < 1e6;
	printf("\ntargets: beside the flood, quiet p50/p99/IOPS within 10%% of alone: %s (worst %.2fx)\n",
	       ok_flood ? "met" : "MISSED", worst_flood);
	printf("         (the three quiet tenants together, no flood: worst %.2fx of alone; beside the flood: worst %.2fx of that)\n",
	       worst_shared, worst_flood_vs_shared);
	printf("         beside the %.1f MiB reads, quiet 4 KiB p99 under 1 ms: %s (worst %.0f us)\n",
	       (double)huge.bytes / (1 << 20), ok_huge ? "met" : "MISSED", us(worst_huge_p99));

	if (o.json_path) {
		json_t *root = bench_json_header("fairness", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (int k = 0; k < NSCEN; k++) {
			json_t *tj = json_array();
			for (int i = 0; i < NT; i++)
				if (scen[k].fig[i].role != ROLE_IDLE)
					json_array_append_new(tj, figures_json(i, &scen[k].fig[i]));
			json_array_append_new(arr, json_pack("{s:s, s:o, s:f, s:f, s:I, s:f}", "scenario", scen_name[k],
				"tenants", tj, "sidecore_busy", scen[k].sidecore_busy, "round_ns", scen[k].round_ns,
				"sidecore_requests", (json_int_t)scen[k].requests, "frontend_pass_ns", scen[k].pass_ns));
			json_object_set_new(json_array_get(arr, json_array_size(arr) - 1), "sidecore_requests_per_round",
					    json_real(scen[k].req_per_round));
		}
		json_object_set_new(root, "scenarios", arr);
		json_object_set_new(root, "setup", json_pack("{s:i, s:f, s:i, s:i, s:i, s:f, s:s}", "budget", (int)budget,
			"turn_us", turn_us, "refill_per_pass", (int)refill_max, "flood_qd", (int)flood_qd, "ring_size", QSIZE,
			"seconds_per_scenario", ms / 1000.0, "alone_means",
			"the same front-end loop (one thread for all four tenants) with the other three tenants idle; "
			"their queues attached to the sidecore and empty"));
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
		const char *names[] = { "alone", "three quiet tenants", flood_name, huge_name };
		bench_plot_cdf(o.plot_path, "one sidecore, four disks: quiet tenant 1, 4 KiB reads at QD1", sets, names, 4);
	}
	ret = 0;
out_threads:
	__atomic_store_n(&quit, 1, __ATOMIC_RELEASE);
	pthread_barrier_wait(&start_bar);
	pthread_join(driver, NULL);
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
