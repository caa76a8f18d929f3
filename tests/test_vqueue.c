/* SPDX-License-Identifier: MIT */
/* The split ring's normal behaviour: pop, push, flush, notification suppression both ways. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vq_fixture.h"

static struct fx f;

static void setup(void) { fx_setup(&f, FX_FEATURES); }
static void teardown(void) { fx_teardown(&f); }

TestSuite(vq, .init = setup, .fini = teardown, .timeout = 10);

static uint64_t eventfd_count(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

Test(vq, pop_splits_readable_then_writable)
{
	memcpy(fx_ptr(&f, FX_BUF(0)), "header..", 8);
	fx_put_desc(fx_desc(&f), 2, FX_BUF(0), 8, SC_VIRTQ_DESC_F_NEXT, 7);
	fx_put_desc(fx_desc(&f), 7, FX_BUF(1), 512, SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE, 9);
	fx_put_desc(fx_desc(&f), 9, FX_BUF(2), 1, SC_VIRTQ_DESC_F_WRITE, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0, "nothing posted yet");
	fx_post(&f, 2);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 2);
	cr_assert_eq(f.e.out_num, 1);
	cr_assert_eq(f.e.in_num, 2);
	cr_assert_eq(f.e.out_len, 8);
	cr_assert_eq(f.e.in_len, 513);
	cr_assert_eq(f.e.iov[0].iov_base, fx_ptr(&f, FX_BUF(0)));
	cr_assert_eq(f.e.iov[1].iov_len, 512);
	cr_assert_eq(f.e.iov[2].iov_base, fx_ptr(&f, FX_BUF(2)));
	cr_assert_eq(f.vq.stats.requests, 1);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
}

Test(vq, buffer_spanning_two_regions_becomes_two_segments)
{
	/* A second region right after the first: one guest buffer, two host mappings. */
	int fd = sc_mem_memfd_create("next", 4096);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&f.g.mem, FX_GPA + FX_SIZE, 4096, fd, 0, SC_PERM_RW), 0);
	fx_put_desc(fx_desc(&f), 0, FX_GPA + FX_SIZE - 100, 300, 0, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert_eq(f.e.out_num, 2);
	cr_assert_eq(f.e.iov[0].iov_len, 100);
	cr_assert_eq(f.e.iov[1].iov_len, 200);
	cr_assert_eq(f.e.out_len, 300);
}

Test(vq, indirect_chain)
{
	struct sc_vring_desc *t = fx_ptr(&f, FX_BUF(10));
	fx_put_desc(t, 0, FX_BUF(0), 16, SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(t, 1, FX_BUF(1), 4096, SC_VIRTQ_DESC_F_NEXT | SC_VIRTQ_DESC_F_WRITE, 2);
	fx_put_desc(t, 2, FX_BUF(2), 1, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_put_desc(fx_desc(&f), 4, FX_BUF(10), 48, SC_VIRTQ_DESC_F_INDIRECT, 0);
	fx_post(&f, 4);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "%s", f.vq.broken_reason);
	cr_assert_eq(f.e.head, 4);
	cr_assert_eq(f.e.out_num, 1);
	cr_assert_eq(f.e.in_num, 2);
	cr_assert_eq(f.e.in_len, 4097);
}

Test(vq, zero_length_descriptor_adds_no_segment)
{
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 0, SC_VIRTQ_DESC_F_NEXT, 1);
	fx_put_desc(fx_desc(&f), 1, FX_BUF(1), 8, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.out_num, 0);
	cr_assert_eq(f.e.in_num, 1);
}

Test(vq, push_is_invisible_until_flush)
{
	fx_put_desc(fx_desc(&f), 3, FX_BUF(0), 8, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 3);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	sc_vq_push(&f.vq, f.e.head, 5);
	cr_assert_eq(fx_used(&f)->idx, 0);
	sc_vq_flush(&f.vq);
	cr_assert_eq(fx_used(&f)->idx, 1);
	cr_assert_eq(fx_used(&f)->ring[0].id, 3);
	cr_assert_eq(fx_used(&f)->ring[0].len, 5);
}

Test(vq, batch_of_pushes_publishes_once)
{
	for (uint16_t i = 0; i < 8; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, i);
	}
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
		sc_vq_push(&f.vq, f.e.head, 8);
	}
	f.vq.call_fd = eventfd(0, EFD_NONBLOCK);
	cr_assert(sc_vq_flush(&f.vq), "NO_INTERRUPT clear: the driver is interrupted");
	cr_assert_eq(fx_used(&f)->idx, 8);
	cr_assert_eq(eventfd_count(f.vq.call_fd), 1, "one interrupt for the whole batch");
	cr_assert(!sc_vq_flush(&f.vq), "nothing new: no second interrupt");
	close(f.vq.call_fd);
}

Test(vq, pop_cached_counts_what_the_last_index_load_found)
{
	for (uint16_t i = 0; i < 3; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, i);
	}
	cr_assert_eq(sc_vq_pop_cached(&f.vq), 0, "avail->idx not loaded yet");
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(sc_vq_pop_cached(&f.vq), 2, "the rest of what one load found");
	fx_put_desc(fx_desc(&f), 3, FX_BUF(3), 8, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 3);
	cr_assert_eq(sc_vq_pop_cached(&f.vq), 2, "a later publish is not seen without a load");
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(sc_vq_pop_cached(&f.vq), 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1, "the next pop loads the index again");
	cr_assert_eq(f.e.head, 3);
	cr_assert_eq(sc_vq_pop_cached(&f.vq), 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
}

Test(vq, no_interrupt_flag_suppresses_interrupts)
{
	f.vq.call_fd = eventfd(0, EFD_NONBLOCK);
	fx_avail(&f)->flags = SC_VIRTQ_AVAIL_F_NO_INTERRUPT;
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 8, SC_VIRTQ_DESC_F_WRITE, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	sc_vq_push(&f.vq, 0, 8);
	cr_assert(!sc_vq_flush(&f.vq));
	cr_assert_eq(eventfd_count(f.vq.call_fd), 0);
	cr_assert_eq(f.vq.stats.interrupts_suppressed, 1);
	close(f.vq.call_fd);
}

Test(vq, used_event_decides_interrupts)
{
	f.cfg.features |= 1ull << SC_VIRTIO_F_EVENT_IDX;
	f.cfg.call_fd = eventfd(0, EFD_NONBLOCK);
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	/* The driver wants an interrupt when entry 2 (the third) is used. */
	*sc_vring_used_event(fx_avail(&f), FX_QSZ) = 2;
	for (uint16_t i = 0; i < 4; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, i);
	}
	bool irq[4];
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
		sc_vq_push(&f.vq, f.e.head, 8);
		irq[i] = sc_vq_flush(&f.vq);
	}
	cr_assert(!irq[0] && !irq[1] && irq[2] && !irq[3], "%d %d %d %d", irq[0], irq[1], irq[2], irq[3]);
	cr_assert_eq(f.vq.stats.interrupts, 1);
	cr_assert_eq(f.vq.stats.interrupts_suppressed, 3);
	close(f.cfg.call_fd);
}

Test(vq, notify_disable_and_enable_without_event_idx)
{
	sc_vq_notify_disable(&f.vq);
	cr_assert_eq(fx_used(&f)->flags, SC_VIRTQ_USED_F_NO_NOTIFY);
	cr_assert(!sc_vq_notify_enable(&f.vq), "ring empty: safe to sleep");
	cr_assert_eq(fx_used(&f)->flags, 0);
	cr_assert_eq(f.vq.stats.notify_enables, 1);
}

Test(vq, notify_enable_reports_work_that_raced_in)
{
	sc_vq_notify_disable(&f.vq);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 8, 0, 0);
	fx_post(&f, 0);  /* the driver published while told not to kick: no kick */
	cr_assert(sc_vq_notify_enable(&f.vq), "the re-check must find the entry");
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
}

Test(vq, notify_enable_with_event_idx_sets_avail_event)
{
	f.cfg.features |= 1ull << SC_VIRTIO_F_EVENT_IDX;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	for (uint16_t i = 0; i < 3; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, 0, 0);
		fx_post(&f, i);
	}
	sc_vq_notify_disable(&f.vq);
	cr_assert_eq(fx_used(&f)->flags, 0, "EVENT_IDX: the flag is not used");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert(!sc_vq_notify_enable(&f.vq));
	cr_assert_eq(*sc_vring_avail_event(fx_used(&f), FX_QSZ), 3, "kick me when entry 3 arrives");
}

Test(vq, rearm_with_nothing_served_does_not_store_avail_event)
{
	f.cfg.features |= 1ull << SC_VIRTIO_F_EVENT_IDX;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	fx_put_desc(fx_desc(&f), 0, FX_BUF(0), 8, 0, 0);
	fx_post(&f, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	sc_vq_notify_disable(&f.vq);
	cr_assert(!sc_vq_notify_enable(&f.vq));
	uint16_t *ev = sc_vring_avail_event(fx_used(&f), FX_QSZ);
	cr_assert_eq(*ev, 1);
	sc_vq_notify_disable(&f.vq);
	/* Read-only now: a store of the same value would fault. */
	long pg = sysconf(_SC_PAGESIZE);
	void *page = (void *)((uintptr_t)ev & ~(uintptr_t)(pg - 1));
	cr_assert_eq(mprotect(page, (size_t)pg, PROT_READ), 0);
	bool work = sc_vq_notify_enable(&f.vq);
	cr_assert_eq(mprotect(page, (size_t)pg, PROT_READ | PROT_WRITE), 0);
	cr_assert(!work);
	cr_assert_eq(*ev, 1, "still: kick me when entry 1 arrives");
	cr_assert_eq(f.vq.stats.notify_enables, 2, "re-armed both times");
}

Test(vq, kicks_avoided_counts_work_found_while_polling)
{
	sc_vq_notify_disable(&f.vq);
	for (uint16_t i = 0; i < 2; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, 0, 0);
		fx_post(&f, i);
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	}
	cr_assert_eq(f.vq.stats.kicks_avoided, 2);
	cr_assert_eq(sc_vq_stat(&f.vq, offsetof(struct sc_vq_stats, requests)), 2);
}

Test(vq, resumes_from_last_avail)
{
	for (uint16_t i = 0; i < 5; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, 0, 0);
		fx_post(&f, i);
	}
	f.cfg.last_avail = 3;   /* a previous backend had consumed three */
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 3);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 4);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0);
}

Test(vq, stat_names_cover_every_counter)
{
	cr_assert_eq(sc_vq_stat_count * sizeof(uint64_t), sizeof(struct sc_vq_stats));
	for (unsigned i = 0; i < sc_vq_stat_count; i++)
		cr_assert_lt(sc_vq_stat_names[i].offset, sizeof(struct sc_vq_stats));
}

Test(vq, iov_copy_crosses_segments)
{
	char a[3] = "ab", b[8] = "cdefg", out[6] = { 0 };
	struct iovec iov[2] = { { a, 2 }, { b, 5 } };
	cr_assert_eq(sc_iov_copy_from(iov, 2, 1, out, 5), 5);
	cr_assert_str_eq(out, "bcdef");
	cr_assert_eq(sc_iov_copy_from(iov, 2, 6, out, 5), 1, "only 1 byte left after offset 6");
	cr_assert_eq(sc_iov_copy_to(iov, 2, 1, "XYZ", 3), 3);
	cr_assert_eq(a[1], 'X');
	cr_assert_eq(b[1], 'Z');
}

Test(vq, iov_copy_from_edges_of_the_first_segment)
{
	char a[4] = "abc", b[4] = "def", out[8] = { 0 };
	struct iovec iov[3] = { { a, 3 }, { b, 3 }, { NULL, 0 } };
	cr_assert_eq(sc_iov_copy_from(iov, 2, 0, out, 3), 3, "exactly the first segment");
	cr_assert_str_eq(out, "abc");
	memset(out, 0, sizeof(out));
	cr_assert_eq(sc_iov_copy_from(iov, 2, 3, out, 2), 2, "starting at the end of the first");
	cr_assert_str_eq(out, "de");
	memset(out, 0, sizeof(out));
	cr_assert_eq(sc_iov_copy_from(iov, 2, 2, out, 4), 4, "one byte past the first");
	cr_assert_str_eq(out, "cdef");
	cr_assert_eq(sc_iov_copy_from(iov, 0, 0, out, 1), 0, "no segments: nothing");
	cr_assert_eq(sc_iov_copy_from(iov, 2, 9, out, 1), 0, "offset past the chain: nothing");
	cr_assert_eq(sc_iov_copy_from(&iov[2], 1, 0, out, 0), 0, "an empty copy of an empty segment");
}

/* ---- inflight tracking (vhost-user "Inflight I/O tracking") ---- */

static struct sc_vq_inflight *inflight_region(void)
{
	struct sc_vq_inflight *in = calloc(1, sc_vq_inflight_bytes(FX_QSZ));
	cr_assert_not_null(in);
	return in;
}

static void post_n(uint16_t first, uint16_t n)
{
	for (uint16_t i = first; i < first + n; i++) {
		fx_put_desc(fx_desc(&f), i, FX_BUF(i), 8, SC_VIRTQ_DESC_F_WRITE, 0);
		fx_post(&f, i);
	}
}

Test(vq, inflight_records_pops_and_clears_what_is_published)
{
	struct sc_vq_inflight *in = inflight_region();
	f.cfg.inflight = in;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	cr_assert_eq(in->version, 1);
	cr_assert_eq(in->desc_num, FX_QSZ);
	post_n(0, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert(in->desc[0].inflight && in->desc[1].inflight && in->desc[2].inflight);
	cr_assert(in->desc[0].counter < in->desc[1].counter && in->desc[1].counter < in->desc[2].counter);
	sc_vq_push(&f.vq, 1, 8);
	cr_assert(in->desc[1].inflight, "not cleared before it is published");
	sc_vq_flush(&f.vq);
	cr_assert(!in->desc[1].inflight && in->desc[0].inflight && in->desc[2].inflight);
	cr_assert_eq(in->used_idx, 1);
	sc_vq_fini(&f.vq);
	free(in);
}

Test(vq, restart_serves_unfinished_requests_first_in_their_order)
{
	struct sc_vq_inflight *in = inflight_region();
	f.cfg.inflight = in;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	post_n(0, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	sc_vq_push(&f.vq, 1, 8);   /* out of order: the middle one finishes */
	sc_vq_flush(&f.vq);
	sc_vq_fini(&f.vq);         /* the back end dies here */

	/* A new back end; the VMM restores the base to the used index, as QEMU does after a crash. */
	f.cfg.last_avail = 1;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	cr_assert_eq(sc_vq_resubmit_pending(&f.vq), 2);
	cr_assert_eq(f.vq.last_avail, 3, "the avail ring resumes after everything already popped");
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 0);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 2);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 0, "nothing new yet, and head 1 is not served twice");
	post_n(3, 1);
	cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	cr_assert_eq(f.e.head, 3);
	sc_vq_fini(&f.vq);
	free(in);
}

Test(vq, restart_after_a_crash_between_publish_and_clear)
{
	struct sc_vq_inflight *in = inflight_region();
	f.cfg.inflight = in;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	post_n(0, 2);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(sc_vq_pop(&f.vq, &f.e), 1);
	sc_vq_push(&f.vq, 0, 8);
	sc_vq_push(&f.vq, 1, 8);
	sc_vq_flush(&f.vq);
	sc_vq_fini(&f.vq);
	/* As if the old back end died after used->idx but before it cleared the batch. */
	in->desc[0].inflight = in->desc[1].inflight = 1;
	in->used_idx = 0;
	f.cfg.last_avail = 2;
	cr_assert_eq(sc_vq_init(&f.vq, &f.cfg), 0);
	cr_assert_eq(sc_vq_resubmit_pending(&f.vq), 0, "the used ring shows both finished");
	cr_assert_eq(f.vq.last_avail, 2);
	cr_assert(!in->desc[0].inflight && !in->desc[1].inflight);
	sc_vq_fini(&f.vq);
	free(in);
}
