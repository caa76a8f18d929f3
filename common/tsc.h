/* SPDX-License-Identifier: MIT */
/*
 * Time in TSC cycles. The poll loop and the benchmarks count cycles, because
 * rdtsc costs ~20 cycles where clock_gettime costs ~60 ns, and cycles are
 * what the exit-cost literature reports.
 */
#ifndef SC_COMMON_TSC_H
#define SC_COMMON_TSC_H

#include <stdint.h>

static inline uint64_t sc_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* rdtsc that waits for earlier instructions to finish (for the end of a timed region). */
static inline uint64_t sc_rdtscp(void)
{
	uint32_t lo, hi, aux;
	__asm__ __volatile__("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	return ((uint64_t)hi << 32) | lo;
}

#ifndef SC_FREESTANDING
/*
 * TSC frequency in Hz, measured once against CLOCK_MONOTONIC (about 20 ms on
 * first call, then cached). Thread-safe.
 */
uint64_t sc_tsc_hz(void);
uint64_t sc_ns_to_cycles(uint64_t ns);
double sc_cycles_to_ns(uint64_t cycles);
#endif

#endif
