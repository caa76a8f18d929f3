/* SPDX-License-Identifier: MIT */
/*
 * sidecore-demo: the main job. A KVM guest on one cpu reads from a null
 * virtio-blk device served by a sidecore on another cpu; every second it
 * prints the I/O rate, the latency the guest saw, and the VM exits per I/O
 * that KVM counted. Then, for comparison, the same guest with the classic
 * ioeventfd path and with user-space exits. Without /dev/kvm it says so and
 * runs the driver as a host thread instead (sidecore-bench roundtrip).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benches/bench.h"
#include "benches/vmblk.h"
#include "common/barrier.h"
#include "common/tsc.h"

static const char usage[] =
	"usage: sidecore-demo [--seconds N] [--qd N] [--cpus S,G] [--json FILE]\n"
	"\n"
	"Boots a KVM guest on cpu G that reads from a null virtio-blk device served\n"
	"by a sidecore on cpu S, and prints every second: I/O per second, the\n"
	"latency the guest measured, and the VM exits per I/O counted by KVM. Then\n"
	"runs the same guest for a moment with the classic paths (a thread woken by\n"
	"an ioeventfd; the VMM woken by a user-space exit) for comparison.\n"
	"Defaults: 5 seconds, queue depth 16.\n";

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* p50 and p99 of requests [from, to) in the guest's sample ring, in ns. */
static void slice_pcts(const uint32_t *s, uint64_t from, uint64_t to, double *p50, double *p99)
{
	static uint32_t tmp[SC_VM_SAMPLES_MAX];
	const uint64_t mask = SC_VM_SAMPLES_MAX - 1;

	*p50 = *p99 = 0;
	if (to - from > SC_VM_SAMPLES_MAX)
		from = to - SC_VM_SAMPLES_MAX;   /* older ones were overwritten */
	uint64_t n = to - from;
	if (n == 0)
		return;
	for (uint64_t i = 0; i < n; i++)
		tmp[i] = s[(from + i) & mask];
	qsort(tmp, n, sizeof(*tmp), cmp_u32);
	*p50 = sc_cycles_to_ns(tmp[n / 2]);
	*p99 = sc_cycles_to_ns(tmp[n * 99 / 100]);
}

struct phase {
	const char *label;
	double iops, p50_ns, p99_ns, exits_per_io, kicks_per_io;
};

/* Run the guest for ms in the current mode, printing a line a second if live. */
static int run_phase(struct vmblk *b, uint32_t qd, uint32_t ms, bool live, struct phase *ph)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);
	const uint32_t *samples = sc_vm_samples(b->vm, 0);
	struct timespec tick = { 0, 1000000 };
	uint64_t last_ops = 0, last_exits = sc_vm_vcpu_stat(b->vm, 0, "exits"), t_last = sc_rdtsc();
	uint32_t seq, second = 0;
	int done;

	if (vmblk_begin(b, qd, 512, 0, ms, &seq) < 0)
		return -1;
	last_exits = b->exits0;
	while ((done = sc_vm_poll_done(b->vm, 0, seq)) == 0) {
		nanosleep(&tick, NULL);
		if (interrupted) {
			sc_vm_stop(b->vm);
			return -EINTR;
		}
		if (!live || sc_rdtsc() - t_last < sc_tsc_hz())
			continue;
		/* Acquire pairs with the guest's release of progress: samples below it are written. */
		uint64_t ops = sc_load_acquire(&mb->progress), exits = sc_vm_vcpu_stat(b->vm, 0, "exits");
		uint64_t now = sc_rdtsc();
		double secs = (double)(now - t_last) / (double)sc_tsc_hz(), p50, p99;
		uint64_t n = ops - last_ops;
		slice_pcts(samples, last_ops, ops, &p50, &p99);
		printf("  %3u s   %8.2f M   %8.2f us   %8.2f us   %8.2f\n", ++second, (double)n / secs / 1e6,
		       p50 / 1000, p99 / 1000, n ? (double)(exits - last_exits) / (double)n : 0.0);
		fflush(stdout);
		last_ops = ops;
		last_exits = exits;
		t_last = now;
	}
	if (done < 0) {
		fprintf(stderr, "sidecore-demo: the guest stopped: %s\n", sc_vm_error(b->vm));
		return -1;
	}
	struct vmblk_result r;
	if (vmblk_end(b, &r) < 0 || r.ops == 0)
		return -1;
	struct samples s;
	samples_init(&s, r.nsamples);
	for (uint64_t i = 0; i < r.nsamples; i++)
		samples_add(&s, r.samples[i]);
	ph->iops = (double)r.ops * (double)sc_tsc_hz() / (double)r.guest_cycles;
	ph->p50_ns = sc_cycles_to_ns(samples_pct(&s, 50));
	ph->p99_ns = sc_cycles_to_ns(samples_pct(&s, 99));
	ph->exits_per_io = (double)r.exits / (double)r.ops;
	ph->kicks_per_io = (double)r.kicks / (double)r.ops;
	samples_free(&s);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' }, { "qd", required_argument, NULL, 'q' },
		{ "cpus", required_argument, NULL, 'c' }, { "json", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { 0 },
	};
	struct bench_opts o = { .sidecore_cpu = -1, .guest_cpu = -1 };
	unsigned seconds = 5, qd = 16;
	int c;

	while ((c = getopt_long(argc, argv, "s:q:c:j:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 's': seconds = (unsigned)atoi(optarg); break;
		case 'q': qd = (unsigned)atoi(optarg); break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &o.sidecore_cpu, &o.guest_cpu) != 2 || o.sidecore_cpu == o.guest_cpu) {
				fprintf(stderr, "sidecore-demo: --cpus wants two different cpus SIDECORE,GUEST, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'j': o.json_path = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("sidecore-demo %s\n", SC_VERSION); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (seconds < 1 || seconds > 3600 || qd < 1 || qd > 128) {
		fprintf(stderr, "sidecore-demo: --seconds must be 1..3600 and --qd 1..128\n");
		return 2;
	}
	if (!sc_vm_available()) {
		printf("sidecore-demo: /dev/kvm is not available on this machine, so there is no guest to boot.\n"
		       "Running the driver as a host thread instead (sidecore-bench roundtrip).\n\n");
		char *args[] = { "roundtrip", NULL };
		return bench_roundtrip(1, args);
	}
	if (bench_pick_cpus(&o) < 0)
		return 1;
	signal(SIGINT, on_sigint);

	struct vmblk b;
	if (vmblk_open(&b, o.guest_cpu, o.sidecore_cpu) < 0)
		return 1;
	printf("sidecore demo: a KVM guest on cpu %d reads 512-byte blocks from a null virtio-blk\n"
	       "device served by a sidecore polling on cpu %d (queue depth %u, %u s, Ctrl-C stops)\n\n",
	       o.guest_cpu, o.sidecore_cpu, qd, seconds);
	printf("  time    I/O per s    p50 latency   p99 latency   VM exits per I/O\n");

	struct phase ph[VMBLK_MODES] = { { .label = "sidecore polling" }, { .label = "ioeventfd + sleeping thread" },
					 { .label = "user-space exit to the VMM" } };
	int ret = 1;
	if (vmblk_start(&b, VMBLK_POLL, 256) < 0 || run_phase(&b, qd, seconds * 1000, true, &ph[VMBLK_POLL]) < 0)
		goto out;
	vmblk_stop(&b);
	printf("\nfor comparison, the same guest with the classic notification paths (1 s each)...\n");
	fflush(stdout);
	for (int m = VMBLK_EVENTFD; m < VMBLK_MODES; m++) {
		if (vmblk_start(&b, (enum vmblk_mode)m, 256) < 0 || run_phase(&b, qd, 1000, false, &ph[m]) < 0)
			goto out;
		vmblk_stop(&b);
	}
	printf("\n  %-30s %10s %12s %12s %10s\n", "served by", "I/O per s", "p50 latency", "p99 latency", "exits/I/O");
	for (int m = 0; m < VMBLK_MODES; m++)
		printf("  %-30s %9.2fM %9.2f us %9.2f us %10.2f\n", ph[m].label, ph[m].iops / 1e6, ph[m].p50_ns / 1000,
		       ph[m].p99_ns / 1000, ph[m].exits_per_io);
	printf("\nVM exits per I/O with the sidecore: %.2f; %.1fx the I/O rate of the ioeventfd path, %.0fx that of user-space exits.\n",
	       ph[VMBLK_POLL].exits_per_io, ph[VMBLK_POLL].iops / ph[VMBLK_EVENTFD].iops,
	       ph[VMBLK_POLL].iops / ph[VMBLK_USER].iops);
	if (o.json_path) {
		json_t *root = bench_json_header("demo", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (int m = 0; m < VMBLK_MODES; m++)
			json_array_append_new(arr, json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "served_by", ph[m].label,
				"iops", ph[m].iops, "p50_ns", ph[m].p50_ns, "p99_ns", ph[m].p99_ns,
				"exits_per_io", ph[m].exits_per_io, "kicks_per_io", ph[m].kicks_per_io));
		json_object_set_new(root, "queue_depth", json_integer(qd));
		json_object_set_new(root, "phases", arr);
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	ret = 0;
out:
	vmblk_close(&b);
	return ret;
}
