/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench scale: what one sidecore does with 1, 4, 16 and 64
 * attached queues. Null virtio-blk queues (devices/nullblk: no backend, so
 * the figures are the poller's and the ring's) on one poller pinned to the
 * sidecore cpu, driven by one host thread (driver library) on the guest
 * cpu. Round time comes from the poller's own counters (cycles and rounds),
 * so it is what the sidecore spent, not what the driver saw.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "benches/bench.h"
#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "devices/devices.h"
#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "polling/polling.h"

static const char usage[] =
	"usage: sidecore-bench scale [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"                            [--seconds N] [--qd N] [--budget N]\n"
	"\n"
	"1, 4, 16 and 64 null virtio-blk queues attached to one sidecore on cpu S,\n"
	"driven by one host thread on cpu G. For each count:\n"
	"  busy   every queue driven at QD --qd: aggregate IOPS, time per poll round\n"
	"  idle   one queue driven at QD1, the rest attached and empty: its latency and\n"
	"         IOPS, and what each idle queue adds to a round, in ns:\n"
	"         (round time with N queues - with 1) / (N - 1)\n"
	"  empty  nothing driven: a round over N empty queues, and its cost per queue\n"
	"The sidecore never sleeps here, so every round is counted; round times are\n"
	"the median of ten slices of each run (a preempted sidecore inflates a slice).\n"
	"  --seconds N  time per busy and idle run (default 1; --quick 0.2)\n"
	"  --qd N       queue depth per queue when busy (default 32)\n"
	"  --budget N   requests per queue per round (default 32)\n";

#define MAXQ 64
#define QSIZE 256               /* QD up to 85 of 3-descriptor requests */
#define MAX_QD 64
#define SLOT (64u << 10)        /* per queue: rings, then headers, then data */
#define HDR_OFF (16u << 10)
#define DATA_OFF (32u << 10)

static const unsigned counts[] = { 1, 4, 16, 64 };
#define NCOUNTS (sizeof(counts) / sizeof(counts[0]))

enum mode { MODE_BUSY, MODE_IDLE, MODE_EMPTY, NMODES };
static const char *mode_name[NMODES] = { "busy", "idle", "empty" };

struct queue {
	struct sc_drv_vq dvq;
	struct sc_nullblk dev;
	int kick_fd;
	uint64_t hdr_gpa, data_gpa;
	uint64_t submitted[MAX_QD];
	uint16_t slot_of[QSIZE];
	unsigned free_slots[MAX_QD], nfree, inflight;
};

struct run {
	unsigned queues, driven, qd;
	double iops, round_ns, req_per_round, busy_share;
	double idle_queue_ns;        /* idle: what one empty queue adds to a round; empty: round / queues */
	struct samples lat;          /* idle only: the driven queue's latency */
};

static struct sc_mem mem;
static uint8_t *base;
static struct queue *qs;
static struct run runs[NCOUNTS][NMODES];

static int queues_setup(void)
{
	int fd = sc_mem_memfd_create("sidecore-scale", (uint64_t)SLOT * MAXQ), ret;

	if (fd < 0) {
		fprintf(stderr, "sidecore-bench scale: memfd_create: %s\n", strerror(-fd));
		return -1;
	}
	sc_mem_init(&mem);
	if ((ret = sc_mem_add_fd(&mem, 0, (uint64_t)SLOT * MAXQ, fd, 0, SC_PERM_RW)) < 0) {
		fprintf(stderr, "sidecore-bench scale: mapping guest memory: %s\n", strerror(-ret));
		return -1;
	}
	base = mem.regions[0].hva;
	/* Descriptor table, then avail and used rings of under 4 KiB each at this size. */
	_Static_assert(QSIZE * 16 + 4096 * 2 <= HDR_OFF, "the rings fit below the headers");
	_Static_assert(MAX_QD * 64 <= DATA_OFF - HDR_OFF, "the headers fit below the data");
	for (unsigned i = 0; i < MAXQ; i++) {
		struct queue *q = &qs[i];
		uint64_t gpa = (uint64_t)i * SLOT;
		if (sc_drv_vq_init(&q->dvq, base + gpa, gpa, QSIZE, 1ull << SC_VIRTIO_F_VERSION_1) < 0)
			return -1;
		q->hdr_gpa = gpa + HDR_OFF;
		q->data_gpa = gpa + DATA_OFF;
		q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		struct sc_vq_config cfg = {
			.size = QSIZE, .desc_addr = q->dvq.desc_gpa, .avail_addr = q->dvq.avail_gpa,
			.used_addr = q->dvq.used_gpa, .features = 1ull << SC_VIRTIO_F_VERSION_1,
			.xlate = sc_mem_xlate(&mem), .call_fd = -1, .err_fd = -1, .kick_fd = q->kick_fd,
		};
		if (q->kick_fd < 0 || sc_nullblk_init(&q->dev, &cfg, 1 << 20, "scale") < 0) {
			fprintf(stderr, "sidecore-bench scale: queue %u: %s\n", i,
				q->kick_fd < 0 ? strerror(errno) : q->dev.vq.broken_reason);
			return -1;
		}
		sc_drv_vq_interrupts_disable(&q->dvq);
		for (unsigned s = 0; s < MAX_QD; s++)
			*(struct sc_virtio_blk_outhdr *)(base + q->hdr_gpa + s * 64) =
				(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = (uint64_t)s * 8 };
	}
	return 0;
}

static void queues_teardown(void)
{
	for (unsigned i = 0; i < MAXQ; i++)
		if (qs[i].kick_fd >= 0)
			close(qs[i].kick_fd);
	sc_mem_fini(&mem);
}

/* Fill q up to qd requests and publish them. */
static void fill(struct queue *q, unsigned qd)
{
	static const uint64_t one = 1;
	bool added = false;

	while (q->inflight < qd && q->nfree) {
		unsigned s = q->free_slots[--q->nfree];
		uint64_t hdr = q->hdr_gpa + s * 64;
		struct sc_drv_seg segs[3] = { { hdr, 16 }, { q->data_gpa, 4096 }, { hdr + 16, 1 } };
		int head = sc_drv_vq_add(&q->dvq, segs, 1, 2);
		if (head < 0) {
			q->free_slots[q->nfree++] = s;
			break;
		}
		q->slot_of[head] = (uint16_t)s;
		q->submitted[s] = sc_rdtsc();
		q->inflight++;
		added = true;
	}
	if (!added)
		return;
	sc_drv_vq_publish(&q->dvq);
	/* Only if the sidecore asked, which a polling one does not. */
	if (sc_drv_vq_kick_needed(&q->dvq)) {
		ssize_t w = write(q->kick_fd, &one, sizeof(one));
		(void)w;   /* fails only with the counter full: a kick is pending anyway */
	}
}

/* Reap q's completions; counts them, and keeps their latencies in lat if given. -EIO on a bad one. */
static int reap(struct queue *q, uint64_t *ops, struct samples *lat)
{
	uint16_t head;
	uint32_t len;
	int got;

	while ((got = sc_drv_vq_get_used(&q->dvq, &head, &len)) == 1) {
		unsigned s = q->slot_of[head];
		if (lat)
			samples_add(lat, sc_rdtscp() - q->submitted[s]);
		if (len != 4097)
			return -EIO;
		q->free_slots[q->nfree++] = s;
		q->inflight--;
		(*ops)++;
	}
	return got < 0 ? -EIO : 0;
}

#define SLICES 10

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/*
 * Drive queues [0, driven) at qd for ms (none: just wait), then drain; fill
 * r. The round time is the median over SLICES slices of the run, each from
 * the poller's counters: a slice in which the sidecore was preempted (other
 * work on a shared machine) inflates its rounds and is left out that way.
 */
static int drive(struct sc_poller *p, unsigned driven, unsigned qd, unsigned ms, struct run *r)
{
	struct sc_poller_stats a, b, prev;
	uint64_t hz = sc_tsc_hz(), ops = 0, slice = hz / 1000 * ms / SLICES;
	double slice_ns[SLICES];
	unsigned nslices = 0;

	for (unsigned i = 0; i < driven; i++) {
		struct queue *q = &qs[i];
		q->nfree = MAX_QD;
		q->inflight = 0;
		for (unsigned s = 0; s < MAX_QD; s++)
			q->free_slots[s] = MAX_QD - 1 - s;
	}
	sc_poller_get_stats(p, &a);
	prev = a;
	uint64_t t0 = sc_rdtsc(), next = t0 + slice;
	while (nslices < SLICES) {
		if (!driven)
			usleep(ms * 1000u / SLICES);
		for (unsigned i = 0; i < driven; i++) {
			fill(&qs[i], qd);
			if (reap(&qs[i], &ops, r->lat.v ? &r->lat : NULL) < 0)
				goto bad;
		}
		if (sc_rdtsc() < next)
			continue;
		struct sc_poller_stats st;
		sc_poller_get_stats(p, &st);
		uint64_t rounds = st.rounds - prev.rounds;
		uint64_t cyc = (st.busy_cycles - prev.busy_cycles) + (st.idle_cycles - prev.idle_cycles);
		slice_ns[nslices++] = rounds ? sc_cycles_to_ns(cyc) / (double)rounds : 0;
		prev = st;
		next += slice;
	}
	uint64_t t1 = sc_rdtsc();
	sc_poller_get_stats(p, &b);
	/* Drain: what is in flight now is not counted, but must come back before the next run. */
	uint64_t drained = 0;
	for (unsigned i = 0; i < driven; i++)
		while (qs[i].inflight) {
			if (reap(&qs[i], &drained, NULL) < 0)
				goto bad;
			if (sc_rdtsc() - t1 > hz * 5) {
				fprintf(stderr, "sidecore-bench scale: queue %u: %u requests not served within 5 s\n", i,
					qs[i].inflight);
				return -1;
			}
		}

	uint64_t rounds = b.rounds - a.rounds, cyc = (b.busy_cycles - a.busy_cycles) + (b.idle_cycles - a.idle_cycles);
	qsort(slice_ns, SLICES, sizeof(slice_ns[0]), cmp_double);
	r->driven = driven;
	r->qd = qd;
	r->iops = (double)ops * (double)hz / (double)(t1 - t0);
	r->round_ns = (slice_ns[SLICES / 2 - 1] + slice_ns[SLICES / 2]) / 2;
	r->req_per_round = rounds ? (double)(b.requests - a.requests) / (double)rounds : 0;
	r->busy_share = cyc ? (double)(b.busy_cycles - a.busy_cycles) / (double)cyc : 0;
	return 0;
bad:
	fprintf(stderr, "sidecore-bench scale: a request completed with the wrong length, or an unknown head (device: %s)\n",
		qs[0].dev.vq.broken ? qs[0].dev.vq.broken_reason : "not broken");
	return -1;
}

static void plot(const char *png)
{
	char dat[] = "/tmp/sidecore-scale-XXXXXX";
	int fd = mkstemp(dat);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		perror("sidecore-bench scale: mkstemp");
		return;
	}
	for (unsigned c = 0; c < NCOUNTS; c++)
		fprintf(f, "%u %.0f %.1f %.1f %.1f %.2f\n", counts[c], runs[c][MODE_BUSY].iops, runs[c][MODE_BUSY].round_ns,
			runs[c][MODE_IDLE].round_ns, runs[c][MODE_EMPTY].round_ns, runs[c][MODE_EMPTY].idle_queue_ns);
	fclose(f);
	FILE *gp = popen("gnuplot 2>&1", "w");
	if (!gp) {
		fprintf(stderr, "sidecore-bench: cannot run gnuplot (apt-get install gnuplot-nox) for %s\n", png);
		unlink(dat);
		return;
	}
	fprintf(gp, "set terminal pngcairo size 1100,480 font 'sans,10'\nset output '%s'\n"
		    "set multiplot layout 1,2 title 'one sidecore, null virtio-blk queues'\n"
		    "set logscale x 2\nset xrange [0.8:80]\nset xtics (1, 4, 16, 64)\nset xlabel 'attached queues'\nset grid\nset key top left\n"
		    "set title 'aggregate IOPS, every queue driven'\nset ylabel 'requests/s'\nset yrange [0:*]\n"
		    "plot '%s' using 1:2 with linespoints lw 2 pt 7 title 'busy'\n"
		    "set title 'time per poll round (poller counters, median of slices)'\nset ylabel 'ns'\nset logscale y\nset yrange [*:*]\n"
		    "plot '%s' using 1:3 with linespoints lw 2 pt 7 title 'busy: all driven', "
		    "'' using 1:4 with linespoints lw 2 pt 5 title 'idle: one driven', "
		    "'' using 1:5 with linespoints lw 2 pt 9 title 'empty: none driven'\n"
		    "unset multiplot\n", png, dat, dat);
	int rc = pclose(gp);
	unlink(dat);
	if (rc != 0)
		fprintf(stderr, "sidecore-bench: gnuplot failed drawing %s (is gnuplot-nox installed?)\n", png);
	else
		printf("plot written to %s\n", png);
}

int bench_scale(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	double seconds = 0, qd = 32, budget = SC_POLLER_DEFAULT_BUDGET;
	struct sc_poller *p = NULL;
	int ret = 1;

	if (bench_take_number(&argc, argv, "seconds", 0.05, 3600, &seconds) < 0 ||
	    bench_take_number(&argc, argv, "qd", 1, MAX_QD, &qd) < 0 ||
	    bench_take_number(&argc, argv, "budget", 1, 1024, &budget) < 0 ||
	    bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	if (seconds == 0)
		seconds = o.quick ? 0.2 : 1;
	unsigned ms = (unsigned)(seconds * 1000), empty_ms = ms / 4 > 50 ? ms / 4 : 50;
	qs = calloc(MAXQ, sizeof(*qs));
	for (unsigned i = 0; qs && i < MAXQ; i++)
		qs[i].kick_fd = -1;
	if (!qs || queues_setup() < 0)
		goto out;
	for (unsigned c = 0; c < NCOUNTS; c++)
		if (samples_init(&runs[c][MODE_IDLE].lat, (size_t)ms * 2000 + 10000) < 0) {
			fprintf(stderr, "sidecore-bench scale: out of memory for latency samples\n");
			goto out;
		}
	bench_pin(o.guest_cpu, "driver");
	struct sc_poller_config pc = { .cpu = o.sidecore_cpu, .budget = (unsigned)budget,
				       .idle_spin_ns = SC_POLLER_NEVER_SLEEP, .name = "sc-scale" };
	int r = sc_poller_create(&pc, &p);
	if (r < 0) {
		fprintf(stderr, "sidecore-bench scale: cannot start a sidecore on cpu %d: %s\n", o.sidecore_cpu, strerror(-r));
		goto out;
	}
	printf("scale: one sidecore on cpu %d (budget %u, never sleeps), one driver thread on cpu %d, null virtio-blk\n"
	       "  busy/idle %u ms each, empty %u ms, per queue count\n",
	       o.sidecore_cpu, (unsigned)budget, o.guest_cpu, ms, empty_ms);
	bench_note_load();

	unsigned attached = 0;
	for (unsigned c = 0; c < NCOUNTS; c++) {
		for (; attached < counts[c]; attached++)
			if ((r = sc_poller_attach(p, &qs[attached].dev.pq)) < 0) {
				fprintf(stderr, "sidecore-bench scale: attaching queue %u: %s\n", attached, strerror(-r));
				goto out;
			}
		printf("  %2u queues: busy ...", counts[c]);
		fflush(stdout);
		struct run *rs = runs[c];
		for (int m = 0; m < NMODES; m++)
			rs[m].queues = counts[c];
		if (drive(p, counts[c], (unsigned)qd, ms, &rs[MODE_BUSY]) < 0)
			goto out;
		printf(" %.2f M IOPS; idle ...", rs[MODE_BUSY].iops / 1e6);
		fflush(stdout);
		if (drive(p, 1, 1, ms, &rs[MODE_IDLE]) < 0)
			goto out;
		printf(" %.0f ns/round; empty ...", rs[MODE_IDLE].round_ns);
		fflush(stdout);
		if (drive(p, 0, 0, empty_ms, &rs[MODE_EMPTY]) < 0)
			goto out;
		rs[MODE_EMPTY].idle_queue_ns = rs[MODE_EMPTY].round_ns / counts[c];
		rs[MODE_IDLE].idle_queue_ns = c ? (rs[MODE_IDLE].round_ns - runs[0][MODE_IDLE].round_ns) / (counts[c] - 1) : 0;
		printf(" %.0f ns/round\n", rs[MODE_EMPTY].round_ns);
	}

	printf("\n%6s %-6s %6s %4s %12s %10s %9s %9s %9s %9s %13s\n", "queues", "mode", "driven", "QD", "IOPS",
	       "ns/round", "req/round", "sc busy", "p50 us", "p99 us", "ns/idle queue");
	for (unsigned c = 0; c < NCOUNTS; c++)
		for (int m = 0; m < NMODES; m++) {
			struct run *x = &runs[c][m];
			printf("%6u %-6s %6u %4u %12.0f %10.1f %9.2f %8.0f%%", x->queues, mode_name[m], x->driven, x->qd,
			       x->iops, x->round_ns, x->req_per_round, x->busy_share * 100);
			if (m == MODE_IDLE)
				printf(" %9.2f %9.2f", sc_cycles_to_ns(samples_pct(&x->lat, 50)) / 1000,
				       sc_cycles_to_ns(samples_pct(&x->lat, 99)) / 1000);
			else
				printf(" %9s %9s", "", "");
			if (m != MODE_BUSY && (m == MODE_EMPTY || c))
				printf(" %13.1f", x->idle_queue_ns);
			printf("\n");
		}
	struct run *b1 = &runs[0][MODE_BUSY], *b64 = &runs[NCOUNTS - 1][MODE_BUSY];
	printf("\nbusy: %u queues give %.2fx the IOPS of one (sidecore busy %.0f%% -> %.0f%%; below ~95%% the driver on cpu %d is the limit)\n",
	       counts[NCOUNTS - 1], b64->iops / b1->iops, b1->busy_share * 100, b64->busy_share * 100, o.guest_cpu);
	printf("idle: an idle queue adds %.1f ns to a round (one queue driven, %u attached); polling an empty queue: %.1f ns\n",
	       runs[NCOUNTS - 1][MODE_IDLE].idle_queue_ns, counts[NCOUNTS - 1], runs[NCOUNTS - 1][MODE_EMPTY].idle_queue_ns);

	if (o.json_path) {
		json_t *root = bench_json_header("scale", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (unsigned c = 0; c < NCOUNTS; c++)
			for (int m = 0; m < NMODES; m++) {
				struct run *x = &runs[c][m];
				json_t *j = json_pack("{s:i, s:s, s:i, s:i, s:f, s:f, s:f, s:f}", "queues", x->queues,
						      "mode", mode_name[m], "driven_queues", x->driven, "queue_depth", x->qd,
						      "iops", x->iops, "round_ns", x->round_ns, "requests_per_round",
						      x->req_per_round, "sidecore_busy", x->busy_share);
				if (m == MODE_IDLE)
					json_object_set_new(j, "latency", samples_json(&x->lat));
				if (m != MODE_BUSY && (m == MODE_EMPTY || c))
					json_object_set_new(j, "idle_queue_ns", json_real(x->idle_queue_ns));
				json_array_append_new(arr, j);
			}
		json_object_set_new(root, "runs", arr);
		json_object_set_new(root, "setup", json_pack("{s:i, s:i, s:i, s:f}", "budget", (int)budget, "ring_size", QSIZE,
							     "busy_queue_depth", (int)qd, "seconds_per_run", ms / 1000.0));
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	if (o.plot_path)
		plot(o.plot_path);
	ret = 0;
out:
	if (p)
		sc_poller_destroy(p);   /* lets go of every queue first */
	if (qs) {
		queues_teardown();
		free(qs);
	}
	for (unsigned c = 0; c < NCOUNTS; c++)
		samples_free(&runs[c][MODE_IDLE].lat);
	return ret;
}
