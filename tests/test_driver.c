/* SPDX-License-Identifier: MIT */
/* The driver library alone: the test reads and writes the ring as the device would. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"

#define QSIZE 8
#define GPA 0x40000ull

static uint8_t *mem;
static struct sc_drv_vq vq;

static void setup(void)
{
	mem = aligned_alloc(4096, 65536);
	memset(mem, 0xa5, 65536);   /* init must zero what it uses */
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, QSIZE, 0), 0);
}

static void teardown(void) { free(mem); }

TestSuite(driver, .init = setup, .fini = teardown, .timeout = 10);

/* As the device: complete head with len. */
static void device_use(uint16_t head, uint32_t len)
{
	vq.used->ring[vq.used->idx % QSIZE] = (struct vring_used_elem){ head, len };
	__atomic_store_n(&vq.used->idx, (uint16_t)(vq.used->idx + 1), __ATOMIC_RELEASE);
}

Test(driver, init_rejects_bad_size_and_alignment)
{
	struct sc_drv_vq v;
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 0, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 3, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA, 65535, 0), -22);
	cr_assert_eq(sc_drv_vq_init(&v, mem, GPA + 8, 8, 0), -22);
}

Test(driver, layout_keeps_each_side_on_its_own_lines)
{
	cr_assert_eq(vq.desc_gpa, GPA);
	cr_assert_eq(vq.avail_gpa % 64, 0);
	cr_assert_eq(vq.used_gpa % 64, 0);
	cr_assert_geq(vq.avail_gpa, GPA + 16 * QSIZE);
	cr_assert_geq(vq.used_gpa, vq.avail_gpa + 6 + 2 * QSIZE + 2, "used_event stays off the used ring's line");
	cr_assert_leq(vq.used_gpa + 6 + 8 * QSIZE + 2, GPA + sc_drv_vq_ring_bytes(QSIZE));
	cr_assert_eq(vq.avail->idx, 0);
	cr_assert_eq(vq.used->idx, 0);
	cr_assert_eq((uint8_t *)vq.avail - mem, vq.avail_gpa - GPA);
}

Test(driver, add_builds_a_chain_visible_only_after_publish)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 512 }, { 0x3000, 1 } };
	int head = sc_drv_vq_add(&vq, s, 1, 2);
	cr_assert_geq(head, 0);
	cr_assert_eq(vq.avail->idx, 0, "not yet published");
	sc_drv_vq_publish(&vq);
	cr_assert_eq(vq.avail->idx, 1);
	cr_assert_eq(vq.avail->ring[0], head);

	uint16_t i = (uint16_t)head;
	for (int k = 0; k < 3; k++) {
		struct vring_desc *d = &vq.desc[i];
		cr_assert_eq(d->addr, s[k].addr);
		cr_assert_eq(d->len, s[k].len);
		cr_assert_eq(!!(d->flags & VIRTQ_DESC_F_WRITE), k >= 1, "desc %d write flag", k);
		cr_assert_eq(!!(d->flags & VIRTQ_DESC_F_NEXT), k < 2, "desc %d next flag", k);
		i = d->next;
	}
	cr_assert_eq(vq.num_free, QSIZE - 3);
}

Test(driver, runs_out_of_descriptors_and_recovers)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x3000, 1 } };
	int heads[4];
	for (int k = 0; k < 4; k++)
		cr_assert_geq(heads[k] = sc_drv_vq_add(&vq, s, 1, 1), 0);
	cr_assert_eq(sc_drv_vq_add(&vq, s, 1, 1), -28);
	cr_assert_eq(sc_drv_vq_add(&vq, s, 0, 0), -22, "empty request");
	sc_drv_vq_publish(&vq);
	device_use((uint16_t)heads[2], 1);
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
	cr_assert_eq(head, heads[2]);
	cr_assert_eq(len, 1);
	cr_assert_eq(vq.num_free, 2);
	cr_assert_geq(sc_drv_vq_add(&vq, s, 1, 1), 0, "freed descriptors are reused");
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 0, "nothing else completed");
}

Test(driver, one_in_flight_reuses_the_same_head)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x3000, 1 } };
	uint16_t head;
	uint32_t len;
	int first = sc_drv_vq_add(&vq, s, 1, 1);
	for (int k = 0; k < 20; k++) {
		sc_drv_vq_publish(&vq);
		device_use((uint16_t)first, 1);
		cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), 1);
		cr_assert_eq(sc_drv_vq_add(&vq, s, 1, 1), first, "round %d", k);
	}
}

Test(driver, device_returning_a_bad_id_is_refused)
{
	device_use(QSIZE + 3, 0);
	uint16_t head;
	uint32_t len;
	cr_assert_eq(sc_drv_vq_get_used(&vq, &head, &len), -5);
}

Test(driver, kick_follows_no_notify)
{
	struct sc_drv_seg s[] = { { 0x1000, 16 } };
	sc_drv_vq_add(&vq, s, 1, 0);
	sc_drv_vq_publish(&vq);
	cr_assert(sc_drv_vq_kick_needed(&vq));
	vq.used->flags = VIRTQ_USED_F_NO_NOTIFY;
	sc_drv_vq_add(&vq, s, 1, 0);
	sc_drv_vq_publish(&vq);
	cr_assert(!sc_drv_vq_kick_needed(&vq));
	cr_assert_eq(vq.kicks, 1);
}

Test(driver, kick_follows_avail_event)
{
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, QSIZE, 1ull << VIRTIO_F_EVENT_IDX), 0);
	struct sc_drv_seg s[] = { { 0x1000, 16 } };
	*vring_avail_event(vq.used, QSIZE) = 2;   /* "kick me when entry 2 is published" */
	bool kicks[4];
	for (int k = 0; k < 4; k++) {
		sc_drv_vq_add(&vq, s, 1, 0);
		sc_drv_vq_publish(&vq);
		kicks[k] = sc_drv_vq_kick_needed(&vq);
	}
	cr_assert(!kicks[0] && !kicks[1] && kicks[2] && !kicks[3]);
}

Test(driver, interrupts_enable_sets_used_event_and_reports_pending)
{
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, QSIZE, 1ull << VIRTIO_F_EVENT_IDX), 0);
	sc_drv_vq_interrupts_disable(&vq);
	cr_assert_eq(vq.avail->flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
	struct sc_drv_seg s[] = { { 0x1000, 16 } };
	int head = sc_drv_vq_add(&vq, s, 1, 0);
	sc_drv_vq_publish(&vq);
	cr_assert(!sc_drv_vq_interrupts_enable(&vq), "nothing completed yet");
	cr_assert_eq(*vring_used_event(vq.avail, QSIZE), 0);
	cr_assert_eq(vq.avail->flags, 0);
	device_use((uint16_t)head, 0);
	cr_assert(sc_drv_vq_interrupts_enable(&vq), "a completion is waiting");
}

Test(driver, indirect_table)
{
	cr_assert_eq(sc_drv_vq_init(&vq, mem, GPA, QSIZE, 1ull << VIRTIO_F_INDIRECT_DESC), 0);
	struct vring_desc *table = (struct vring_desc *)(mem + 8192);
	struct sc_drv_seg s[] = { { 0x1000, 16 }, { 0x2000, 512 }, { 0x3000, 1 } };
	int head = sc_drv_vq_add_indirect(&vq, table, GPA + 8192, s, 1, 2);
	cr_assert_geq(head, 0);
	cr_assert_eq(vq.desc[head].flags, VIRTQ_DESC_F_INDIRECT);
	cr_assert_eq(vq.desc[head].len, 48);
	cr_assert_eq(vq.desc[head].addr, GPA + 8192);
	cr_assert_eq(table[0].flags, VIRTQ_DESC_F_NEXT);
	cr_assert_eq(table[1].flags, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE);
	cr_assert_eq(table[2].flags, VIRTQ_DESC_F_WRITE);
	cr_assert_eq(table[0].next, 1);
	cr_assert_eq(vq.num_free, QSIZE - 1);
	struct sc_drv_vq plain;
	cr_assert_eq(sc_drv_vq_init(&plain, mem, GPA, QSIZE, 0), 0);
	cr_assert_eq(sc_drv_vq_add_indirect(&plain, table, GPA + 8192, s, 1, 2), -22, "not negotiated");
}
