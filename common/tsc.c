/* SPDX-License-Identifier: MIT */
#include "common/tsc.h"

#include <pthread.h>
#include <time.h>

static uint64_t tsc_hz;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void tsc_calibrate(void)
{
	/* Best of three 5 ms windows: a preemption only ever lengthens one. */
	double best = 0;
	for (int i = 0; i < 3; i++) {
		uint64_t n0 = mono_ns(), c0 = sc_rdtsc();
		while (mono_ns() - n0 < 5000000)
			;
		uint64_t n1 = mono_ns(), c1 = sc_rdtsc();
		double hz = (double)(c1 - c0) * 1e9 / (double)(n1 - n0);
		if (best == 0 || hz < best)
			best = hz;
	}
	tsc_hz = (uint64_t)best;
}

uint64_t sc_tsc_hz(void)
{
	pthread_once(&tsc_once, tsc_calibrate);
	return tsc_hz;
}

uint64_t sc_ns_to_cycles(uint64_t ns)
{
	return (uint64_t)((double)ns * (double)sc_tsc_hz() / 1e9);
}

double sc_cycles_to_ns(uint64_t cycles)
{
	return (double)cycles * 1e9 / (double)sc_tsc_hz();
}
