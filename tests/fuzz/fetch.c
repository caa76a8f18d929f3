/* SPDX-License-Identifier: MIT */
/*
 * The double-fetch recorder behind common/fetch.h (fuzz builds only).
 * Per thread: an open-addressing set of (kind, byte) keys stamped with the
 * request's generation, so starting a request costs nothing. A request
 * that reads more bytes than half the set holds stops being recorded
 * (counted in overflowed): bounded memory beats a slow fuzzer.
 */
#include "common/fetch.h"

#include <stdio.h>
#include <stdlib.h>

#define SLOTS (1u << 20)

struct slot {
	uint64_t key;
	uint32_t gen;
	const char *where;
};

struct recorder {
	struct slot *slots;
	uint32_t gen, used;
	/* the first double fetch of the request, if any */
	const char *first, *second;
	enum sc_fetch_kind kind;
	uintptr_t at;
	unsigned long forgiven, overflowed;
};

static __thread struct recorder rec;

static uint64_t hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k;
}

void sc_fetch_note(enum sc_fetch_kind kind, uintptr_t at, size_t len, const char *where)
{
	if (!rec.slots) {
		rec.slots = calloc(SLOTS, sizeof(*rec.slots));
		if (!rec.slots)
			abort();
		rec.gen = 1;
	}
	for (size_t i = 0; i < len; i++) {
		if (rec.used >= SLOTS / 2) {
			rec.overflowed++;
			return;
		}
		uint64_t key = ((uint64_t)kind << 56) ^ (uint64_t)(at + i);
		for (uint32_t h = (uint32_t)hash(key) & (SLOTS - 1);; h = (h + 1) & (SLOTS - 1)) {
			struct slot *s = &rec.slots[h];
			if (s->gen != rec.gen) {
				*s = (struct slot){ key, rec.gen, where };
				rec.used++;
				break;
			}
			if (s->key == key) {
				if (!rec.first) {
					rec.first = s->where;
					rec.second = where;
					rec.kind = kind;
					rec.at = at + i;
				}
				break;
			}
		}
	}
}

void sc_fetch_check(void)
{
	static const char *const kinds[] = { "?", "avail ring entry", "descriptor", "indirect descriptor",
					     "request byte at offset" };
	if (!rec.first)
		return;
	fprintf(stderr, "sidecore fuzz: double fetch of %s 0x%llx in one request: read at %s, again at %s\n",
		kinds[rec.kind < 5 ? rec.kind : 0], (unsigned long long)rec.at, rec.first, rec.second);
	abort();
}

void sc_fetch_forget(void)
{
	if (rec.first)
		rec.forgiven++;
	rec.first = rec.second = NULL;
	rec.used = 0;
	if (++rec.gen == 0) {   /* stamps wrapped: old ones could match again */
		for (uint32_t i = 0; rec.slots && i < SLOTS; i++)
			rec.slots[i].gen = 0;
		rec.gen = 1;
	}
}

void sc_fetch_begin(void)
{
	sc_fetch_check();
	sc_fetch_forget();
}

unsigned long sc_fetch_forgiven(void)
{
	return rec.forgiven;
}
