/* SPDX-License-Identifier: MIT */
/* sidecore-bench: the benchmarks, one subcommand each. */
#include <stdio.h>
#include <string.h>

#include "benches/bench.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *what;
} benches[] = {
	{ "roundtrip", bench_roundtrip, "one request at a time: sidecore polling vs eventfd vs the cache-line floor" },
	{ "exits", bench_exits, "what an exit costs a KVM guest, by kind, beside a sidecore round trip" },
	{ "vhost-blk", bench_vhost_blk, "sidecored vs qemu-storage-daemon over vhost-user, same file and client" },
	{ "fairness", bench_fairness, "four tenants on one sidecore: quiet QD1 readers beside a flood and beside huge reads" },
	{ "scale", bench_scale, "1 to 64 queues on one sidecore: aggregate IOPS, and what an idle queue costs a round" },
	{ "net", bench_net, "virtio-net: sidecored vs DPDK's vhost PMD, DPDK virtio-user driver, Mpps at 64 and 1500 B" },
	{ "latency", bench_latency, "KVM guest virtio-blk latency at QD 1-64: sidecore vs eventfd vs user-space exit" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sidecore-bench COMMAND [--json FILE] [--plot FILE.png] [--quick] [--cpus S,G]\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		fprintf(f, "  %-10s %s\n", benches[i].name, benches[i].what);
	fprintf(f, "\n'sidecore-bench COMMAND --help' describes one.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("sidecore-bench %s\n", SC_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		if (!strcmp(argv[1], benches[i].name))
			return benches[i].run(argc - 1, argv + 1);
	fprintf(stderr, "sidecore-bench: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
