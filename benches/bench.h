/* SPDX-License-Identifier: MIT */
/* What the sidecore-bench subcommands share: samples, percentiles, JSON, plots, output. */
#ifndef SC_BENCHES_BENCH_H
#define SC_BENCHES_BENCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/compiler.h"

/* Options every subcommand takes. */
struct bench_opts {
	const char *json_path;   /* --json FILE */
	const char *plot_path;   /* --plot FILE.png */
	bool quick;              /* --quick: few iterations (smoke test) */
	int sidecore_cpu;        /* --cpus S,G: -1 = choose */
	int guest_cpu;
};

/* Latency samples in TSC cycles. */
struct samples {
	uint64_t *v;
	size_t n, cap;
	bool sorted;
};

int samples_init(struct samples *s, size_t cap);
void samples_free(struct samples *s);
static inline void samples_add(struct samples *s, uint64_t c)
{
	if (s->n < s->cap)
		s->v[s->n++] = c;
}
/* p in [0, 100]; sorts on first use. */
uint64_t samples_pct(struct samples *s, double p);
double samples_mean(const struct samples *s);

/* {"p50": .., "p99": .., "p99_9": .., "mean": .., "min": .., "max": ..} in cycles and ns. */
json_t *samples_json(struct samples *s);

/* The run's context: date, machine, cpus, TSC rate. Caller adds its results. */
json_t *bench_json_header(const char *bench, const struct bench_opts *o, int sidecore, int guest);
/* The 1-minute load average (from /proc/loadavg), or -1 if unknown. */
double bench_loadavg(void);
/* Say on stdout if other work is running (load average above 1): the figures will show it. */
void bench_note_load(void);

/* Write root to path (pretty), print where; returns 0 or -1 with a message. */
int bench_json_write(json_t *root, const char *path);

/*
 * Latency CDFs, one curve per named sample set, log-scale x in ns, drawn
 * with gnuplot into png. Returns 0, or -1 with a message (gnuplot missing).
 */
int bench_plot_cdf(const char *png, const char *title, struct samples **sets,
		   const char **names, int nsets);

/* A cheap pseudo-random stream for request offsets (xorshift64); *x must start non-zero. */
static inline uint64_t bench_xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Parse common options; returns the index of the first unparsed arg or -1 on error. */
int bench_parse_common(int argc, char **argv, struct bench_opts *o, const char *usage);

/*
 * Take a subcommand's own "--name VALUE" (or "--name=VALUE") out of argv,
 * before bench_parse_common sees it: a number in [min, max] into *v.
 * Returns 1 if it was there, 0 if not (*v untouched), or -1 with one line
 * on stderr if the value is missing or out of range.
 */
int bench_take_number(int *argc, char **argv, const char *name, double min, double max, double *v);

/* The value of --name (--name=V or --name V; "" if nothing follows), removed from argv; NULL if absent. */
const char *bench_take_string(int *argc, char **argv, const char *name);

/* Choose cpus from o or the topology; prints the plan. Returns 0 or -1 with a message. */
int bench_pick_cpus(struct bench_opts *o);

/* Pin the calling thread or die with a clear message. */
void bench_pin(int cpu, const char *who);

int bench_roundtrip(int argc, char **argv);
int bench_exits(int argc, char **argv);
int bench_latency(int argc, char **argv);
int bench_vhost_blk(int argc, char **argv);
int bench_fairness(int argc, char **argv);
int bench_scale(int argc, char **argv);
int bench_net(int argc, char **argv);

/* Two cache lines ping-ponged between a driver thread and an echo thread on cpu (bench_echo_thread). */
struct bench_pingpong {
	uint64_t ping sc_cache_aligned;   /* written by the driver: 1, 2, ... n */
	uint64_t pong sc_cache_aligned;   /* written by the echo thread: each ping echoed */
	int cpu;
	uint64_t n;
};

/* Pins itself to pp->cpu and echoes pings 1..pp->n. */
void *bench_echo_thread(void *pp);

/*
 * The round trip of a cache line between cpus a and b now, in ns (the
 * mean of a few thousand trips), or -1. What a ring shared by a driver on
 * one and a server on the other pays per handoff. On a VM the host may
 * move the two vCPUs between placements whose round trips differ
 * several-fold, so a throughput figure goes with the one measured beside
 * it. The calling thread's affinity is put back.
 */
double bench_c2c_ns(int a, int b);

/*
 * How far apart n such round trips are: the largest over the smallest, or
 * INFINITY if one of them failed. Figures whose round trips are more than
 * BENCH_C2C_SAME apart were measured in different placements.
 */
#define BENCH_C2C_SAME 1.5
double bench_c2c_spread(const double *c2c_ns, int n);

/* The cpu time process pid has used so far (user + system), in seconds; -1 if it is gone. */
double bench_proc_cpu_s(pid_t pid);

/*
 * sidecored's stats document (runtime/stats.h) from its stats socket, or
 * NULL (after one line on stderr) if it does not answer within a second.
 */
json_t *bench_sidecored_stats(const char *sock);

#endif
