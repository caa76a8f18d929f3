/* SPDX-License-Identifier: MIT */
/*
 * Double-fetch detection for fuzz builds (QEMU's generic-fuzz does the
 * same for DMA). Every read of guest memory on the request path says so
 * with SC_FETCH; in a build with SC_FUZZ defined, a second read of the
 * same bytes of the same kind within one request fails the run (abort
 * with both read sites). In every other build the macros are empty.
 *
 * What is keyed: ring entries and descriptors by host address, each kind
 * on its own (an indirect table may alias the descriptor table: those are
 * different fields, each read once); a request's contents by their offset
 * in the chain's readable part (sc_iov_copy_from), so two descriptors of
 * one chain that point at the same guest buffer are not a double fetch,
 * but reading the same header field twice is.
 *
 * A request starts at sc_vq_pop and is checked at its sc_vq_push (or the
 * next pop, or an explicit SC_FETCH_CHECK). Re-reads in a request that
 * broke its queue are forgiven (SC_FETCH_FORGET in sc_vq_set_broken): a
 * looping chain is read again until the loop bound stops it, and nothing
 * of it is used. Freestanding when SC_FUZZ is not defined.
 */
#ifndef SC_COMMON_FETCH_H
#define SC_COMMON_FETCH_H

enum sc_fetch_kind {
	SC_FETCH_AVAIL = 1,     /* an avail ring entry (a head) */
	SC_FETCH_DESC,          /* a descriptor of the queue's table */
	SC_FETCH_INDIRECT,      /* a descriptor of an indirect table */
	SC_FETCH_REQ,           /* request bytes, keyed by offset in the chain's readable part */
};

#ifdef SC_FUZZ
#include <stddef.h>
#include <stdint.h>

/* Record a read of len bytes at at (an address, or an offset for SC_FETCH_REQ). where: "file:line". */
void sc_fetch_note(enum sc_fetch_kind kind, uintptr_t at, size_t len, const char *where);
/* Check the request so far (abort on a double fetch), then start a new one. */
void sc_fetch_begin(void);
/* Forget the request's reads and any double fetch in it (its results are thrown away). */
void sc_fetch_forget(void);
/* Abort if the request read any guest bytes twice. */
void sc_fetch_check(void);
/* Double fetches seen and forgiven so far on this thread (for tests). */
unsigned long sc_fetch_forgiven(void);

#define SC_FETCH_STR2(x) #x
#define SC_FETCH_STR(x) SC_FETCH_STR2(x)
#define SC_FETCH(kind, at, len) sc_fetch_note((kind), (uintptr_t)(at), (len), __FILE__ ":" SC_FETCH_STR(__LINE__))
#define SC_FETCH_BEGIN() sc_fetch_begin()
#define SC_FETCH_FORGET() sc_fetch_forget()
#define SC_FETCH_CHECK() sc_fetch_check()
#else
#define SC_FETCH(kind, at, len) ((void)0)
#define SC_FETCH_BEGIN() ((void)0)
#define SC_FETCH_FORGET() ((void)0)
#define SC_FETCH_CHECK() ((void)0)
#endif

#endif
