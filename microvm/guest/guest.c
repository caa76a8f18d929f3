/* SPDX-License-Identifier: MIT */
/*
 * The microvm guest: freestanding, CPL3, no interrupts. It waits for a
 * command in the mailbox, runs it, measuring each operation with rdtsc,
 * writes the results to guest memory, and waits for the next. No exits
 * except the ones a workload is about.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "spec/sc_virtio_blk.h"
#include "driver/driver.h"
#include "microvm/mailbox.h"

void guest_main(uint64_t vcpu);

/* The compiler may emit calls to these even freestanding. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--)
		*p++ = (uint8_t)c;
	return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *a = d;
	const uint8_t *b = s;
	while (n--)
		*a++ = *b++;
	return d;
}

#define BLK_MAX_QSIZE 1024
#define BLK_MAX_DEPTH 256

/*
 * Everything one vCPU owns. All vCPUs run this image, so nothing per-vCPU may
 * live in .data or .bss: guest_main keeps this on the vCPU's own stack.
 */
struct gcpu {
	struct sc_vm_mailbox *mb;
	uint32_t *samples;
	uint64_t ring_gpa, buf_gpa;
	uint64_t touched;                       /* sample entries already faulted in */
	struct sc_drv_vq vq;
	uint16_t slot_of_head[BLK_MAX_QSIZE];
	uint64_t submitted_at[BLK_MAX_DEPTH];
};

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

/* Samples are a ring: a long run keeps its most recent SC_VM_SAMPLES_MAX. */
static inline void record(struct gcpu *c, uint64_t i, uint64_t cycles)
{
	c->samples[i & (SC_VM_SAMPLES_MAX - 1)] = cycles > UINT32_MAX ? UINT32_MAX : (uint32_t)cycles;
}

static void set_done(struct gcpu *c, uint64_t n)
{
	c->mb->ops = n;
	c->mb->samples = n < SC_VM_SAMPLES_MAX ? n : SC_VM_SAMPLES_MAX;
}

/*
 * Touch the sample pages before timing: under shadow paging the first write
 * to each page is an exit, which would be charged to the workload.
 */
static void touch_samples(struct gcpu *c, uint64_t n)
{
	if (n > SC_VM_SAMPLES_MAX)
		n = SC_VM_SAMPLES_MAX;
	for (; c->touched < n; c->touched += 1024)
		sc_store_once(&c->samples[c->touched], 0);
}

static bool is_amd(void)
{
	uint32_t a = 0, b, cx, d;
	/* cpuid exits, but only once, outside any timed region. */
	__asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "=c"(cx), "=d"(d));
	return b == 0x68747541;   /* "Auth" of AuthenticAMD */
}

/* ---- exit-cost workloads: one timed operation each ---- */

static void wl_pio(struct gcpu *c, uint16_t port, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = sc_rdtsc();
		outb(port, 1);
		record(c, i, sc_rdtscp() - t0);
	}
	set_done(c, n);
}

static void wl_mmio(struct gcpu *c, uint64_t addr, uint64_t n)
{
	volatile uint32_t *p = (volatile uint32_t *)addr;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = sc_rdtsc();
		*p = 1;
		record(c, i, sc_rdtscp() - t0);
	}
	set_done(c, n);
}

static void wl_vmcall(struct gcpu *c, uint64_t n)
{
	bool amd = is_amd();
	uint64_t rax = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = sc_rdtsc();
		rax = 0;   /* nr 0: no such hypercall, and KVM refuses any at CPL3 anyway */
		/* At CPL3 KVM answers -KVM_EPERM and resumes: a full exit handled in the kernel. */
		if (amd)
			__asm__ __volatile__("vmmcall" : "+a"(rax) : : "memory");
		else
			__asm__ __volatile__("vmcall" : "+a"(rax) : : "memory");
		record(c, i, sc_rdtscp() - t0);
	}
	c->mb->result = rax;   /* lets the host see who answered: KVM says -KVM_EPERM (-1) */
	set_done(c, n);
}

static void wl_pingpong(struct gcpu *c, uint64_t n)
{
	for (uint64_t i = 1; i <= n; i++) {
		uint64_t t0 = sc_rdtsc();
		/* Release pairs with the host echo thread's acquire; its release with our acquire. */
		sc_store_release(&c->mb->ping, i);
		while (sc_load_acquire(&c->mb->pong) != i)
			sc_cpu_relax();
		record(c, i - 1, sc_rdtscp() - t0);
	}
	set_done(c, n);
}

/* ---- virtio-blk through the driver library ---- */

static void wl_blk_setup(struct gcpu *c)
{
	struct sc_vm_blk_params *p = &c->mb->blk;
	if (p->queue_size > BLK_MAX_QSIZE ||
	    sc_drv_vq_init(&c->vq, (void *)c->ring_gpa, c->ring_gpa, (uint16_t)p->queue_size,
			   p->features_lo) < 0) {
		c->mb->error = SC_VM_ERR_DRIVER;
		return;
	}
	sc_drv_vq_interrupts_disable(&c->vq);   /* we reap by polling the used ring */
	p->desc_gpa = c->vq.desc_gpa;
	p->avail_gpa = c->vq.avail_gpa;
	p->used_gpa = c->vq.used_gpa;
}

static uint64_t req_gpa(struct gcpu *c, uint32_t slot) { return c->buf_gpa + (uint64_t)slot * 64; }
static uint64_t data_gpa(struct gcpu *c, uint32_t slot, uint32_t bs) { return c->buf_gpa + 0x10000 + (uint64_t)slot * bs; }

static bool blk_submit(struct gcpu *c, uint32_t slot, uint32_t bs)
{
	struct sc_drv_seg segs[3] = {
		{ req_gpa(c, slot), sizeof(struct sc_virtio_blk_outhdr) },
		{ data_gpa(c, slot, bs), bs },
		{ req_gpa(c, slot) + sizeof(struct sc_virtio_blk_outhdr), 1 },
	};
	int head = sc_drv_vq_add(&c->vq, segs, 1, 2);
	if (head < 0)
		return false;
	c->slot_of_head[head] = (uint16_t)slot;
	c->submitted_at[slot] = sc_rdtsc();
	return true;
}

static void kick_if_needed(struct gcpu *c)
{
	sc_drv_vq_publish(&c->vq);
	if (sc_drv_vq_kick_needed(&c->vq))
		outb(SC_VM_PORT_KICK, 1);
}

static void wl_blk(struct gcpu *c)
{
	struct sc_vm_mailbox *mb = c->mb;
	struct sc_vm_blk_params *p = &mb->blk;
	uint32_t qd = p->queue_depth, bs = p->block_size;
	uint64_t n = mb->iterations, done = 0, issued = 0, recorded = 0;
	uint64_t deadline = p->duration_ms ? sc_rdtsc() + mb->tsc_hz / 1000 * p->duration_ms : 0;

	/* Headers, then qd data buffers, must fit this vCPU's 1 MiB buffer area. */
	if (qd == 0 || qd > BLK_MAX_DEPTH || qd > p->queue_size || bs == 0 ||
	    0x10000 + (uint64_t)qd * bs > 0x100000) {
		mb->error = SC_VM_ERR_DRIVER;
		return;
	}
	/* Headers are written once: a driver that reuses buffers does not pull them back. */
	for (uint32_t s = 0; s < qd; s++)
		*(struct sc_virtio_blk_outhdr *)req_gpa(c, s) =
			(struct sc_virtio_blk_outhdr){ .type = SC_VIRTIO_BLK_T_IN, .sector = (uint64_t)s * (bs / 512) };

	uint64_t kicks0 = c->vq.kicks, start = sc_rdtsc();
	for (uint32_t s = 0; s < qd && (deadline || issued < n); s++)
		issued += blk_submit(c, s, bs);
	kick_if_needed(c);

	while (done < issued) {
		uint16_t head;
		uint32_t len;
		bool resubmitted = false;
		int got;

		while ((got = sc_drv_vq_get_used(&c->vq, &head, &len)) == 1) {
			uint32_t slot = c->slot_of_head[head];
			record(c, recorded++, sc_rdtscp() - c->submitted_at[slot]);
			if (len != bs + 1)
				mb->error = SC_VM_ERR_STATUS;
			done++;
			bool more = deadline ? sc_rdtsc() < deadline : issued < n;
			if (more && blk_submit(c, slot, bs)) {
				issued++;
				resubmitted = true;
			}
		}
		if (got < 0) {
			mb->error = SC_VM_ERR_STATUS;
			break;
		}
		if (resubmitted) {
			kick_if_needed(c);
			/* Release: the samples up to 'done' are written before the host reads them. */
			sc_store_release(&mb->progress, done);
		} else {
			sc_cpu_relax();
		}
	}
	mb->total_cycles = sc_rdtsc() - start;
	mb->ops = done;
	mb->samples = recorded < SC_VM_SAMPLES_MAX ? recorded : SC_VM_SAMPLES_MAX;
	mb->kicks = c->vq.kicks - kicks0;
}

void guest_main(uint64_t vcpu)
{
	struct gcpu self = {
		.mb = (struct sc_vm_mailbox *)SC_VM_MAILBOX_GPA(vcpu),
		.samples = (uint32_t *)SC_VM_SAMPLES_GPA(vcpu),
		.ring_gpa = SC_VM_RING_GPA(vcpu),
		.buf_gpa = SC_VM_BUF_GPA(vcpu),
	};
	struct gcpu *c = &self;
	struct sc_vm_mailbox *mb = c->mb;
	uint32_t seen = 0;

	for (;;) {
		uint32_t seq;
		/* Acquire pairs with the host's release of cmd_seq. */
		while ((seq = sc_load_acquire(&mb->cmd_seq)) == seen)
			sc_cpu_relax();
		seen = seq;
		mb->error = 0;
		mb->ops = mb->samples = mb->total_cycles = mb->kicks = mb->progress = mb->result = 0;

		uint64_t n = mb->iterations, t0 = sc_rdtsc();
		switch (mb->workload) {
		case SC_WL_NONE: return;   /* entry.S reports done */
		case SC_WL_PIO_USER: wl_pio(c, SC_VM_PORT_USER, n); break;
		case SC_WL_PIO_IOEVENTFD: wl_pio(c, SC_VM_PORT_IOEVENTFD, n); break;
		case SC_WL_MMIO_USER: wl_mmio(c, SC_VM_MMIO_USER, n); break;
		case SC_WL_MMIO_IOEVENTFD: wl_mmio(c, SC_VM_MMIO_IOEVENTFD, n); break;
		case SC_WL_VMCALL: wl_vmcall(c, n); break;
		case SC_WL_PINGPONG: wl_pingpong(c, n); break;
		case SC_WL_BLK_SETUP: wl_blk_setup(c); break;
		case SC_WL_BLK: wl_blk(c); break;
		case SC_WL_TOUCH: touch_samples(c, n); break;
		case SC_WL_SPIN: for (;;) sc_cpu_relax();
		case SC_WL_PRIVILEGED: __asm__ __volatile__("hlt"); break;   /* #GP at CPL3 */
		default: mb->error = SC_VM_ERR_WORKLOAD; break;
		}
		if (!mb->total_cycles)
			mb->total_cycles = sc_rdtsc() - t0;
		/* Results first, then the sequence number: pairs with the host's acquire. */
		sc_store_release(&mb->done_seq, seq);
	}
}
