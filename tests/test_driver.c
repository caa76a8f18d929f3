/* SPDX-License-Identifier: MIT */
/* The driver library alone: the test plays the device by reading and writing ring memory. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "driver/driver.h"

#define QSIZE 8
#define GPA 0x40000ull
#define MEM_BYTES (1u << 20)   /* room for the largest ring (32768 entries: ~850 KiB) */

static uint8_t *mem;
static struct sc_drv_vq vq;

static void setup(void)
{
	mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	memset(mem, 0xa5, MEM_BYTES);   /* init must zero what it uses */
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, QSIZE, 0), 0);
}

static void teardown(void) { munmap(mem, MEM_BYTES); }

TestSuite(driver, .init = setup, .fini = teardown, .timeout = 10);

static void reinit(uint16_t size, uint64_t features)
{
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, size, features), 0);
}

/* As the device: complete head with len and publish it. */
static void device_use(uint16_t head, uint32_t len)
{
	vq.used->ring[vq.used->idx & vq.mask] = (struct sc_vring_used_elem){ head, len };
	__atomic_store_n(&vq.used->idx, (uint16_t)(vq.used->idx + 1), __ATOMIC_RELEASE);
}

static int add1(uint64_t addr)
{
	struct sc_drv_seg s[] = { { addr, 16 }, { addr + 16, 1 } };
	return sc_drv_vq_add(&vq, s, 1, 1);
}

Test(driver, init_rejects_bad_size_and_alignment)
{
	struct sc_drv_vq v;
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 0, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 3, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 65535, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA + 8, 8, 0), -22, "gpa not 64-aligned");
	cr_assert_eq(sc_drv_vq_init(&v, mem + 32, GPA, 8, 0), -22, "memory not 64-aligned");
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 1, 0), 0);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 32768, 0), 0);
}

Test(driver, layout_keeps_each_side_on_its_own_lines)
{
	for (uint32_t size = 1; size <= SC_VIRTQ_MAX_SIZE; size *= 2) {
		uint64_t bytes = sc_drv_vq_ring_bytes((uint16_t)size);
		cr_assert_leq(bytes, MEM_BYTES);
		reinit((uint16_t)size, 0);
		cr_assert_eq(vq.desc_gpa, GPA);
		cr_assert_eq(vq.avail_gpa % 64, 0, "size %u: avail on its own line", size);
		cr_assert_eq(vq.used_gpa % 64, 0, "size %u: used on its own line", size);
		cr_assert_geq(vq.avail_gpa, vq.desc_gpa + sc_vring_desc_bytes(size));
		/* sc_vring_avail_bytes includes used_event: it must not reach the used ring's line. */
		cr_assert_geq(vq.used_gpa, vq.avail_gpa + sc_vring_avail_bytes(size));
		cr_assert_leq(vq.used_gpa + sc_vring_used_bytes(size), GPA + bytes, "avail_event inside");
		cr_assert_eq(bytes % 64, 0);
		cr_assert_eq((uint8_t *)vq.avail - mem, vq.avail_gpa - GPA);
		cr_assert_eq((uint8_t *)vq.used - mem, vq.used_gpa - GPA);
		cr_assert_eq(vq.num_free, size);
	}
}

Test(driver, init_zeroes_the_rings_and_links_the_free_list)
{
	for (unsigned i = 0; i < QSIZE; i++) {
		cr_assert_eq(vq.desc[i].addr, 0);
		cr_assert_eq(vq.desc[i].len, 0);
		cr_assert_eq(vq.desc[i].flags, 0);
		if (i + 1 < QSIZE)
			cr_assert_eq(vq.desc[i].next, i + 1);
	}
	for (uint8_t *p = (uint8_t *)vq.avail; p < mem + sc_drv_vq_ring_bytes(QSIZE); p++)
		cr_assert_eq(*p, 0, "byte %td", p - mem);
	cr_assert_eq(mem[sc_drv_vq_ring_bytes(QSIZE)], 0xa5, "nothing past ring_bytes");
	cr_assert_eq(vq.num_free, QSIZE);
}

Test(driver, add_builds_a_chain_visible_only_after_publish)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 512 }, { 0x3000, 1 } };
	int head = sc_drv_vq_add(&vq, s, 1, 2);
	cr_assert_geq(head, 0);
	cr_assert_eq(vq.avail->ring[0], head, "head in the next avail slot");
	cr_assert_eq(vq.avail->idx, 0, "not yet published");
	sc_drv_vq_publish(&vq);
	cr_assert_eq(vq.avail->idx, 1);

	uint16_t i = (uint16_t)head;
	for (int k = 0; k < 3; k++) {
		struct sc_vring_desc *d = &vq.desc[i];
		cr_assert_eq(d->addr, s[k].addr);
		cr_assert_eq(d->len, s[k].len);
		cr_assert_eq(!!(d->flags & SC_VIRTQ_DESC_F_WRITE), k >= 1, "desc %d write flag", k);
		cr_assert_eq(!!(d->flags & SC_VIRTQ_DESC_F_NEXT), k < 2, "desc %d next flag", k);
		cr_assert_eq(d->flags & SC_VIRTQ_DESC_F_INDIRECT, 0);
		i = d->next;
	}
	cr_assert_eq(vq.num_free, QSIZE - 3);
}

Test(driver, add_rejects_empty_and_oversized_requests)
{
	struct sc_drv_seg s[QSIZE + 1] = { { 0x1000, 16 } };
	cr_assert_eq(sc_drv_vq_add(&vq, s, 0, 0), -22, "empty request");
	cr_assert_eq(sc_drv_vq_add(&vq, s, QSIZE, 1), -22, "can never fit");
	cr_assert_eq(sc_drv_vq_add(&vq, s, 1u << 31, 1u << 31), -22, "out + in wraps");
	cr_assert_eq(vq.num_free, QSIZE);
	cr_assert_eq(sc_drv_vq_add(&vq, s, QSIZE, 0), 0, "exactly the whole table");
	cr_assert_eq(vq.num_free, 0);
}

Test(driver, runs_out_of_descriptors_and_recovers)
{
	int heads[4];
	for (int k = 0; k < 4; k++)
		cr_assert_geq(heads[k] = add1(0x1000), 0);
	cr_assert_eq(add1(0x1000), -28);
	sc_drv_vq_publish(&vq);
	cr_assert_eq(vq.avail->idx, 4, "the refused add published nothing");

	device_use((uint16_t)heads[2], 1);
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(head, heads[2]);
	cr_assert_eq(len, 1);
	cr_assert_eq(vq.num_free, 2);
	cr_assert_eq(add1(0x1000), heads[2], "freed descriptors are reused");
	cr_assert_eq(add1(0x1000), -28);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 0, "nothing else completed");
}

Test(driver, get_used_returns_what_the_device_wrote_and_frees_the_chain)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 4096 }, { 0x3000, 1 } };
	int a = sc_drv_vq_add(&vq, s, 1, 2);
	int b = sc_drv_vq_add(&vq, s, 1, 2);
	cr_assert(a >= 0 && b >= 0 && a != b);
	sc_drv_vq_publish(&vq);
	cr_assert_eq(vq.num_free, QSIZE - 6);
	cr_assert(!sc_drv_vq_has_used(&vq));

	/* Out of order, as a device may complete them. */
	device_use((uint16_t)b, 4097);
	device_use((uint16_t)a, 7);
	cr_assert(sc_drv_vq_has_used(&vq));
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(head, b);
	cr_assert_eq(len, 4097);
	cr_assert_eq(vq.num_free, QSIZE - 3);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(head, a);
	cr_assert_eq(len, 7);
	cr_assert_eq(vq.num_free, QSIZE);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 0);
	cr_assert(!sc_drv_vq_has_used(&vq));

	/* The free list is whole again: one request can take every descriptor. */
	struct sc_drv_seg all[QSIZE];
	for (int k = 0; k < QSIZE; k++)
		all[k] = (struct sc_drv_seg){ 0x1000 + 16 * k, 16 };
	cr_assert_geq(sc_drv_vq_add(&vq, all, QSIZE, 0), 0);
}

Test(driver, one_in_flight_reuses_the_same_head)
{
	uint16_t head;
	uint32_t len;
	int first = add1(0x1000);
	for (int k = 0; k < 20; k++) {
		sc_drv_vq_publish(&vq);
		device_use((uint16_t)first, 1);
		cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
		cr_assert_eq(add1(0x1000), first, "round %d", k);
	}
}

/*
 * A request identical to the last one on the same head must not write the
 * descriptor table at all: make the table's page read-only and add again
 * (a write would fault and fail the test).
 */
Test(driver, same_content_descriptors_are_not_rewritten)
{
	reinit(256, 0);   /* 256 * 16 bytes: the table is exactly the first page */
	cr_assert_eq(vq.avail_gpa - GPA, 4096);
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 512 }, { 0x3000, 1 } };
	uint16_t head;
	uint32_t len;
	int first = sc_drv_vq_add(&vq, s, 1, 2);
	sc_drv_vq_publish(&vq);
	device_use((uint16_t)first, 513);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);

	cr_assert_eq(mprotect(mem, 4096, PROT_READ), 0);
	int again = sc_drv_vq_add(&vq, s, 1, 2);
	cr_assert_eq(mprotect(mem, 4096, PROT_READ | PROT_WRITE), 0);
	cr_assert_eq(again, first);

	/* And a changed length is written. */
	s[1].len = 1024;
	sc_drv_vq_publish(&vq);
	device_use((uint16_t)again, 1025);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(sc_drv_vq_add(&vq, s, 1, 2), first);
	cr_assert_eq(vq.desc[vq.desc[first].next].len, 1024);
}

Test(driver, device_returning_a_bad_id_is_refused)
{
	device_use(QSIZE + 3, 0);
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), -5);
	cr_assert_eq(vq.num_free, QSIZE, "nothing freed");
}

Test(driver, kick_follows_no_notify)
{
	cr_assert_geq(add1(0x1000), 0);
	sc_drv_vq_publish(&vq);
	cr_assert(sc_drv_vq_kick_needed(&vq), "NO_NOTIFY clear: kick");
	vq.used->flags = SC_VIRTQ_USED_F_NO_NOTIFY;
	cr_assert_geq(add1(0x1000), 0);
	sc_drv_vq_publish(&vq);
	cr_assert(!sc_drv_vq_kick_needed(&vq), "NO_NOTIFY set: no kick");
	cr_assert_eq(vq.kicks, 1);
}

Test(driver, kick_only_when_avail_event_is_crossed)
{
	enum { Q = 32 };
	reinit(Q, 1ull << SC_VIRTIO_F_EVENT_IDX);
	vq.used->flags = SC_VIRTQ_USED_F_NO_NOTIFY;  /* ignored with EVENT_IDX */
	*sc_vring_avail_event(vq.used, Q) = 2;       /* "kick me when entry 2 is published" */
	bool kicks[4];
	for (int k = 0; k < 4; k++) {
		cr_assert_geq(add1(0x1000), 0);
		sc_drv_vq_publish(&vq);
		kicks[k] = sc_drv_vq_kick_needed(&vq);
	}
	cr_assert(!kicks[0] && !kicks[1] && kicks[2] && !kicks[3]);

	/* A batch that jumps over the event kicks once. */
	*sc_vring_avail_event(vq.used, Q) = 5;
	for (int k = 0; k < 3; k++)
		cr_assert_geq(add1(0x1000), 0);
	sc_drv_vq_publish(&vq);
	cr_assert(sc_drv_vq_kick_needed(&vq), "4 -> 7 crosses 5");
	cr_assert(!sc_drv_vq_kick_needed(&vq), "nothing new since");
	cr_assert_eq(vq.kicks, 2);
}

Test(driver, interrupts_enable_sets_used_event_and_reports_pending)
{
	reinit(QSIZE, 1ull << SC_VIRTIO_F_EVENT_IDX);
	sc_drv_vq_interrupts_disable(&vq);
	cr_assert_eq(vq.avail->flags, SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
	int head = add1(0x1000);
	sc_drv_vq_publish(&vq);
	cr_assert(!sc_drv_vq_interrupts_enable(&vq), "nothing completed yet");
	cr_assert_eq(*sc_vring_used_event(vq.avail, QSIZE), 0, "interrupt at the next completion");
	cr_assert_eq(vq.avail->flags, 0);
	device_use((uint16_t)head, 0);
	cr_assert(sc_drv_vq_interrupts_enable(&vq), "a completion is waiting");
}

Test(driver, get_used_moves_used_event_only_while_interrupts_are_on)
{
	reinit(QSIZE, 1ull << SC_VIRTIO_F_EVENT_IDX);
	uint16_t head;
	uint32_t len;
	int h = add1(0x1000);
	sc_drv_vq_publish(&vq);
	device_use((uint16_t)h, 1);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(*sc_vring_used_event(vq.avail, QSIZE), 1, "interrupts on: ask for the next one");

	sc_drv_vq_interrupts_disable(&vq);
	h = add1(0x1000);
	sc_drv_vq_publish(&vq);
	device_use((uint16_t)h, 1);
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(*sc_vring_used_event(vq.avail, QSIZE), 1, "polling: used_event left alone");
}

Test(driver, interrupts_without_event_idx_use_the_flag_only)
{
	sc_drv_vq_interrupts_disable(&vq);
	cr_assert_eq(vq.avail->flags, SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
	cr_assert(!sc_drv_vq_interrupts_enable(&vq));
	cr_assert_eq(vq.avail->flags, 0);
	cr_assert_eq(*sc_vring_used_event(vq.avail, QSIZE), 0);
}

Test(driver, indirect_table)
{
	reinit(QSIZE, 1ull << SC_VIRTIO_F_INDIRECT_DESC);
	struct sc_vring_desc *table = (struct sc_vring_desc *)(mem + 8192);
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 512 }, { 0x3000, 1 } };
	int head = sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 1, 2);
	cr_assert_geq(head, 0);
	cr_assert_eq(vq.avail->ring[0], head);
	cr_assert_eq(vq.desc[head].flags, SC_VIRTQ_DESC_F_INDIRECT);
	cr_assert_eq(vq.desc[head].len, 48);
	cr_assert_eq(vq.desc[head].addr, GPA + 8192);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(table[k].addr, s[k].addr);
		cr_assert_eq(table[k].len, s[k].len);
	}
	cr_assert_eq(table[0].flags, SC_VIRTQ_DESC_F_NEXT);
	cr_assert_eq(table[1].flags, SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE);
	cr_assert_eq(table[2].flags, SC_VIRTQ_DESC_F_WRITE);
	cr_assert_eq(table[0].next, 1);
	cr_assert_eq(table[1].next, 2);
	cr_assert_eq(vq.num_free, QSIZE - 1);

	sc_drv_vq_publish(&vq);
	device_use((uint16_t)head, 513);
	uint16_t h;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &h, &len), 1);
	cr_assert_eq(h, head);
	cr_assert_eq(vq.num_free, QSIZE, "an indirect request holds one ring descriptor");
}

Test(driver, indirect_needs_the_feature)
{
	struct sc_vring_desc table[2];
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x3000, 1 } };
	cr_assert_eq(sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 1, 1), -22, "not negotiated");
	reinit(QSIZE, 1ull << SC_VIRTIO_F_INDIRECT_DESC);
	cr_assert_eq(sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 0, 0), -22, "empty");
	for (int k = 0; k < QSIZE; k++)
		cr_assert_geq(sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 1, 1), 0);
	cr_assert_eq(sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 1, 1), -28);
}
