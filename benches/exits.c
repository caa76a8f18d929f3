/* SPDX-License-Identifier: MIT */
/*
 * sidecore-bench exits: what one operation costs a KVM guest, measured in the
 * guest with rdtsc, with the VM exits per operation read from KVM's binary
 * stats (KVM_GET_STATS_FD), not assumed. In the spirit of the SplitX exit
 * table and kvm-unit-tests' vmexit tests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benches/bench.h"
#include "benches/vmblk.h"
#include "common/tsc.h"

static const char usage[] =
	"usage: sidecore-bench exits [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n"
	"\n"
	"Cycles per operation in a KVM guest on cpu G, and VM exits per operation:\n"
	"a port write exiting to user space, a port write on an ioeventfd, an MMIO\n"
	"write exiting to user space, an MMIO write on an ioeventfd, a hypercall,\n"
	"a virtio-blk request served by a sidecore on cpu S, and the raw floor: a\n"
	"shared-memory ping-pong with a host thread on cpu S.\n";

struct op {
	const char *name;
	enum sc_vm_workload wl;   /* SC_WL_BLK: a QD1 request to the sidecore */
	struct samples s;
	double exits_per_op;
	bool ok;
	char why[160];
};

static int run_op(struct vmblk *b, struct op *op, uint64_t n)
{
	struct vmblk_result r;
	int ret = op->wl == SC_WL_BLK ? vmblk_run(b, 1, 512, n, 0, &r) : vmblk_workload(b, op->wl, n, &r);

	if (ret < 0 || r.ops == 0) {
		snprintf(op->why, sizeof(op->why), "%s", sc_vm_error(b->vm)[0] ? sc_vm_error(b->vm) : "the guest reported an error");
		return -EIO;
	}
	samples_init(&op->s, r.nsamples);
	for (uint64_t i = 0; i < r.nsamples; i++)
		samples_add(&op->s, r.samples[i]);
	op->exits_per_op = (double)r.exits / (double)r.ops;
	op->ok = true;
	return 0;
}

int bench_exits(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	struct op ops[] = {
		{ .name = "port write, user-space exit", .wl = SC_WL_PIO_USER },
		{ .name = "port write, ioeventfd", .wl = SC_WL_PIO_IOEVENTFD },
		{ .name = "MMIO write, user-space exit", .wl = SC_WL_MMIO_USER },
		{ .name = "MMIO write, ioeventfd", .wl = SC_WL_MMIO_IOEVENTFD },
		{ .name = "hypercall (vmcall)", .wl = SC_WL_VMCALL },
		{ .name = "virtio-blk request, sidecore", .wl = SC_WL_BLK },
		{ .name = "shared-memory ping-pong (floor)", .wl = SC_WL_PINGPONG },
	};
	const int nops = (int)(sizeof(ops) / sizeof(ops[0]));
	struct vmblk b;
	int ret = 1;

	if (bench_parse_common(argc, argv, &o, usage) < 0 || bench_pick_cpus(&o) < 0)
		return 2;
	if (!sc_vm_available()) {
		fprintf(stderr, "sidecore-bench exits: /dev/kvm is not available here: this benchmark needs a KVM guest\n");
		return 77;
	}
	uint64_t n = o.quick ? 1000 : 10000;
	printf("exits: KVM guest on cpu %d, host peer on cpu %d, %llu operations each, TSC %.2f GHz\n",
	       o.guest_cpu, o.sidecore_cpu, (unsigned long long)n, (double)sc_tsc_hz() / 1e9);

	for (int i = 0; i < nops; i++) {
		struct op *op = &ops[i];
		/* Each op gets a fresh VM: one that dies (a hypercall #UD under PVM) cannot spoil the rest. */
		if (vmblk_open(&b, o.guest_cpu, o.sidecore_cpu) < 0)
			return 1;
		if (op->wl == SC_WL_BLK && vmblk_start(&b, VMBLK_POLL, 256) < 0) {
			vmblk_close(&b);
			return 1;
		}
		printf("  %-32s", op->name);
		fflush(stdout);
		if (run_op(&b, op, n) < 0)
			printf(" not available: %s\n", op->why);
		else
			printf(" p50 %llu cycles, %.2f exits/op\n", (unsigned long long)samples_pct(&op->s, 50), op->exits_per_op);
		vmblk_close(&b);
	}

	struct op *side = &ops[5], *pio_ev = &ops[1], *pio_user = &ops[0];
	printf("\n%-32s %10s %10s %10s %10s %9s %9s\n", "operation", "p50 cyc", "mean cyc", "p99 cyc", "p50 ns",
	       "exits/op", "p50/side");
	for (int i = 0; i < nops; i++) {
		struct op *op = &ops[i];
		if (!op->ok) {
			printf("%-32s %10s   (%s)\n", op->name, "n/a", op->why);
			continue;
		}
		uint64_t p50 = samples_pct(&op->s, 50);
		printf("%-32s %10llu %10.0f %10llu %10.0f %9.2f %8.1fx\n", op->name, (unsigned long long)p50,
		       samples_mean(&op->s), (unsigned long long)samples_pct(&op->s, 99), sc_cycles_to_ns(p50),
		       op->exits_per_op, side->ok ? (double)p50 / (double)samples_pct(&side->s, 50) : 0.0);
	}
	if (side->ok && pio_ev->ok && pio_user->ok) {
		uint64_t s = samples_pct(&side->s, 50);
		printf("\ntargets: sidecore request cheaper than an ioeventfd exit: %s (%.1fx)\n",
		       s < samples_pct(&pio_ev->s, 50) ? "met" : "MISSED", (double)samples_pct(&pio_ev->s, 50) / (double)s);
		printf("         far cheaper than a user-space exit: %.1fx\n", (double)samples_pct(&pio_user->s, 50) / (double)s);
		printf("         exits per op: sidecore %.2f, the others >= 1: %s\n", side->exits_per_op,
		       pio_ev->exits_per_op >= 1 && pio_user->exits_per_op >= 1 ? "met" : "MISSED");
	}

	if (o.json_path) {
		json_t *root = bench_json_header("exits", &o, o.sidecore_cpu, o.guest_cpu), *arr = json_array();
		for (int i = 0; i < nops; i++)
			json_array_append_new(arr, ops[i].ok
				? json_pack("{s:s, s:o, s:f}", "op", ops[i].name, "latency", samples_json(&ops[i].s),
					    "exits_per_op", ops[i].exits_per_op)
				: json_pack("{s:s, s:s}", "op", ops[i].name, "unavailable", ops[i].why));
		json_object_set_new(root, "ops", arr);
		bench_json_write(root, o.json_path);
		json_decref(root);
	}
	if (o.plot_path) {
		/* A bar chart reads best here: one bar per operation, log scale. */
		char dat[] = "/tmp/sidecore-exits-XXXXXX";
		int fd = mkstemp(dat);
		FILE *f = fdopen(fd, "w");
		for (int i = 0; i < nops; i++)
			if (ops[i].ok)
				fprintf(f, "\"%s\" %llu %.2f\n", ops[i].name, (unsigned long long)samples_pct(&ops[i].s, 50),
					ops[i].exits_per_op);
		fclose(f);
		FILE *gp = popen("gnuplot", "w");
		if (gp) {
			fprintf(gp, "set terminal pngcairo size 1000,520 font 'sans,10'\nset output '%s'\n"
				    "set title 'cost of one operation in a KVM guest (p50, log scale)'\n"
				    "set style fill solid 0.8\nset boxwidth 0.6\nset logscale y\nset yrange [100:400000]\nset ylabel 'cycles'\n"
				    "set xtics rotate by -25\nset grid ytics\nunset key\nset offsets 0.7, 0.7, 0, 0\n"
				    "plot '%s' using 0:2:xtic(1) with boxes lc rgb '#3b7dd8', "
				    "'' using 0:2:(sprintf(\"%%d cyc\\n%%.2f exits\", $2, $3)) with labels offset 0,1.4 font 'sans,9'\n",
				    o.plot_path, dat);
			if (pclose(gp) == 0)
				printf("plot written to %s\n", o.plot_path);
		}
		unlink(dat);
	}
	ret = 0;
	for (int i = 0; i < nops; i++)
		samples_free(&ops[i].s);
	return ret;
}
