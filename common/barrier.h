/* SPDX-License-Identifier: MIT */
/*
 * The one barrier vocabulary of sidecore, on C11/GCC atomics.
 *
 * Memory shared with a guest (rings, request buffers) is accessed only
 * through these macros when another agent may write it concurrently, so that
 * every field is fetched exactly once and every ordering point is named.
 * Each use site says in a comment which barrier on the other side it pairs
 * with (virtio 1.2 §2.7.7, §2.7.10, §2.7.13).
 *
 * Freestanding: this header needs no libc, it is compiled into the microvm
 * guest as well.
 */
#ifndef SC_COMMON_BARRIER_H
#define SC_COMMON_BARRIER_H

/* One fetch of *p; the compiler may neither repeat nor elide it. */
#define sc_load_once(p)        __atomic_load_n((p), __ATOMIC_RELAXED)
#define sc_store_once(p, v)    __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Later loads and stores are not reordered before this load. */
#define sc_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Earlier loads and stores are not reordered after this store. */
#define sc_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/*
 * Full barrier: orders earlier stores against later loads. This is the one
 * that costs on x86 (store-load is the only reordering TSO allows); a locked
 * add on the stack is cheaper than mfence and is what Linux uses.
 */
#if defined(__x86_64__)
#define sc_smp_mb() __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc")
#else
#define sc_smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

/* Compiler-only barrier. */
#define sc_barrier() __asm__ __volatile__("" ::: "memory")

/* Spin-wait hint: lets the sibling hyperthread run and saves power. */
#if defined(__x86_64__)
#define sc_cpu_relax() __builtin_ia32_pause()
#else
#define sc_cpu_relax() sc_barrier()
#endif

#endif
