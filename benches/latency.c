/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench latency: a real KVM guest posts virtio-blk reads to the
 * null device at queue depths 1/4/16/64, served three ways (benches/vmblk.h).
 * Latency is measured in the guest with rdtsc; exits come from KVM's own
 * counters; device cpu is the serving thread's cpu time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benches/bench.h"
#include "benches/vmblk.h"
#include "common/tsc.h"

static const char usage[] =
	"usage: sidecore-bench latency [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"\n"
	"A KVM guest on cpu G reads from a null virtio-blk device, one request at a\n"
	"time and at queue depths 4, 16 and 64, served three ways:\n"
	"  sidecore   a sidecore on cpu S polls the queue; the guest never kicks\n"
	"  eventfd    the kick is an ioeventfd; a thread sleeping on it serves (vhost)\n"
	"  user-exit  the kick exits to the VMM, which serves the queue (plain QEMU)\n"
	"Prints p50/p99/p99.9 latency, requests/s, VM exits and device cpu per\n"
	"request, with ratios to the sidecore at each depth.\n";

static const uint32_t depths[] = { 1, 4, 16, 64 };
#define NDEPTHS (sizeof(depths) / sizeof(depths[0]))

struct cell {
	struct samples lat;
	double req_per_s, exits_per_req, kicks_per_req, cpu_ns_per_req;
};

static int fill_samples(struct samples *s, const struct vmblk_result *r)
{
	if (samples_init(s, r->nsamples) < 0)
		return -ENOMEM;
	for (uint64_t i = 0; i < r->nsamples; i++)
		samples_add(s, r->samples[i]);
	return 0;
}

static int measure(struct vmblk *b, enum vmblk_mode mode, uint32_t qd, uint64_t n, struct cell *c)
{
	struct vmblk_result r;
	int ret = vmblk_run(b, qd, 512, n, 0, &r);
	if (ret < 0)
		return ret;
	double ops = (double)r.ops;
	c->req_per_s = ops * (double)sc_tsc_hz() / (double)r.guest_cycles;
	c->exits_per_req = (double)r.exits / ops;
	c->kicks_per_req = (double)r.kicks / ops;
	c->cpu_ns_per_req = (double)r.device_cpu_ns / ops;
	(void)mode;
	return fill_samples(&c->lat, &r);
}

int bench_latency(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	static struct cell cells[VMBLK_MODES][NDEPTHS];
	struct vmblk b;
	int ret = 1;

	if (bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	if (!sc_vm_available()) {
		fprintf(stderr, "sidecore-bench latency: /dev/kvm is not available here: this benchmark needs a KVM guest "
				"(try 'sidecore-bench roundtrip', which does not)\n");
		return 77;
	}
	if (vmblk_open(&b, o.guest_cpu, o.sidecore_cpu) < 0)
		return 1;
	printf("latency: KVM guest on cpu %d, sidecore on cpu %d, TSC %.2f GHz\n",
	       o.guest_cpu, o.sidecore_cpu, (double)sc_tsc_hz() / 1e9);

	for (int m = 0; m < VMBLK_MODES; m++) {
		if (vmblk_start(&b, (enum vmblk_mode)m, 256) < 0)
			goto out;
		for (unsigned d = 0; d < NDEPTHS; d++) {
			/* A user-space exit costs ~100k cycles here: fewer requests keep the run short. */
			uint64_t n = m == VMBLK_USER ? 4000 : m == VMBLK_EVENTFD ? 20000 : 100000;
			if (o.quick)
				n /= 20;
			printf("  %-9s QD%-2u %6llu requests...", vmblk_mode_name[m], depths[d], (unsigned long long)n);
			fflush(stdout);
			if (measure(&b, (enum vmblk_mode)m, depths[d], n, &cells[m][d]) < 0)
				goto out;
			printf(" p50 %llu cycles\n", (unsigned long long)samples_pct(&cells[m][d].lat, 50));
		}
		vmblk_stop(&b);
	}

	printf("\n%-9s %4s %9s %9s %9s %9s %10s %9s %9s %10s %9s\n", "mode", "QD", "p50 cyc", "p99 cyc",
	       "p99.9 cyc", "p50 us", "req/s", "exits/req", "kicks/req", "dev ns/req", "p50/side");
	for (int m = 0; m < VMBLK_MODES; m++)
		for (unsigned d = 0; d < NDEPTHS; d++) {
			struct cell *c = &cells[m][d];
			uint64_t p50 = samples_pct(&c->lat, 50);
			printf("%-9s %4u %9llu %9llu %9llu %9.2f %10.0f %9.2f %9.2f %10.0f %8.1fx\n",
			       vmblk_mode_name[m], depths[d], (unsigned long long)p50,
			       (unsigned long long)samples_pct(&c->lat, 99), (unsigned long long)samples_pct(&c->lat, 99.9),
			       sc_cycles_to_ns(p50) / 1000, c->req_per_s, c->exits_per_req, c->kicks_per_req,
			       c->cpu_ns_per_req, (double)p50 / (double)samples_pct(&cells[VMBLK_POLL][d].lat, 50));
		}

	struct cell *a = &cells[VMBLK_POLL][0], *ev = &cells[VMBLK_EVENTFD][0], *us = &cells[VMBLK_USER][0];
	double vs_b = (double)samples_pct(&ev->lat, 50) / (double)samples_pct(&a->lat, 50);
	double vs_c = (double)samples_pct(&us->lat, 50) / (double)samples_pct(&a->lat, 50);
	bool p99_lower = samples_pct(&a->lat, 99) < samples_pct(&ev->lat, 99) &&
			 samples_pct(&a->lat, 99) < samples_pct(&us->lat, 99);
	printf("\ntargets (QD1): sidecore p50 >= 5x lower than eventfd: %s (%.1fx)\n", vs_b >= 5 ? "met" : "MISSED", vs_b);
	printf("               sidecore p50 >= 20x lower than user-exit: %s (%.1fx)\n", vs_c >= 20 ? "met" : "MISSED", vs_c);
	printf("               sidecore p99 lower than both: %s\n", p99_lower ? "met" : "MISSED");
	printf("               0.00 exits per request with the sidecore: %s (%.4f)\n",
	       a->exits_per_req < 0.005 ? "met" : "MISSED", a->exits_per_req);

	if (o.json_path) {
		json_t *root = bench_json_header("latency", &o, o.sidecore_cpu, o.guest_cpu);
		json_t *modes = json_object();
		for (int m = 0; m < VMBLK_MODES; m++) {
			json_t *arr = json_array();
			for (unsigned d = 0; d < NDEPTHS; d++) {
				struct cell *c = &cells[m][d];
				json_array_append_new(arr, json_pack("{s:i, s:o, s:f, s:f, s:f, s:f}", "queue_depth", depths[d],
					"latency", samples_json(&c->lat), "req_per_s", c->req_per_s,
					"exits_per_req", c->exits_per_req, "kicks_per_req", c->kicks_per_req,
					"device_cpu_ns_per_req", c->cpu_ns_per_req));
			}
			json_object_set_new(modes, vmblk_mode_name[m], arr);
		}
		json_object_set_new(root, "modes", modes);
		json_object_set_new(root, "ratios_qd1", json_pack("{s:f, s:f}", "eventfd_p50_over_sidecore_p50", vs_b,
								    "user_exit_p50_over_sidecore_p50", vs_c));
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	if (o.plot_path) {
		struct samples *sets[] = { &a->lat, &ev->lat, &us->lat };
		const char *names[] = { "sidecore polling", "eventfd (vhost model)", "user-space exit (QEMU model)" };
		bench_plot_cdf(o.plot_path, "KVM guest, virtio-blk null device, QD1: request latency", sets, names, 3);
	}
	ret = 0;
out:
	vmblk_close(&b);
	for (int m = 0; m < VMBLK_MODES; m++)
		for (unsigned d = 0; d < NDEPTHS; d++)
			samples_free(&cells[m][d].lat);
	return ret;
}
