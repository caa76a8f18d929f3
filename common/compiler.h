/* SPDX-License-Identifier: MIT */
/* Compiler helpers shared by every module; freestanding. */
#ifndef SC_COMMON_COMPILER_H
#define SC_COMMON_COMPILER_H

#define sc_likely(x)   __builtin_expect(!!(x), 1)
#define sc_unlikely(x) __builtin_expect(!!(x), 0)

#define SC_CACHE_LINE 64
#define sc_cache_aligned __attribute__((aligned(SC_CACHE_LINE)))

#define SC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SC_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define SC_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)

#define sc_prefetch(p)   __builtin_prefetch((p), 0, 3)
#define sc_prefetchw(p)  __builtin_prefetch((p), 1, 3)

#endif
