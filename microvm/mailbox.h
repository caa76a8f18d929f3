/* SPDX-License-Identifier: MIT */
/*
 * The microvm guest's memory map and the mailbox through which the host
 * tells the guest what to run and reads what it measured, without exits.
 * Shared by the VMM (host) and the guest; freestanding.
 */
#ifndef SC_MICROVM_MAILBOX_H
#define SC_MICROVM_MAILBOX_H

#include <stdint.h>

/* Guest physical memory map (identity-mapped in the guest). */
#define SC_VM_PML4_GPA     0x1000ull
#define SC_VM_PDPT_GPA     0x2000ull
#define SC_VM_PD_GPA       0x3000ull      /* 512 x 2 MiB: the first GiB */
#define SC_VM_GDT_GPA      0x4000ull
#define SC_VM_TSS_GPA      0x5000ull
#define SC_VM_TSS_SIZE     (0x68 + 8192 + 1)  /* TSS, I/O bitmap for 65536 ports, terminator */
/*
 * Per-vCPU areas: vCPU i (0 ≤ i < SC_VM_MAX_VCPUS) has its own mailbox, stack,
 * virtqueue ring, request buffers and sample ring; the VMM passes i in rdi.
 */
#define SC_VM_MAX_VCPUS    8
#define SC_VM_MAILBOX_GPA(i)  (0x10000ull + (uint64_t)(i) * 0x1000)
#define SC_VM_STACK_TOP(i)    (0x100000ull - (uint64_t)(i) * 0x10000)   /* 64 KiB each, down from 1 MiB */
#define SC_VM_IMAGE_GPA    0x100000ull    /* the flat guest image */
#define SC_VM_IMAGE_MAX    0x100000ull
#define SC_VM_RING_GPA(i)     (0x200000ull + (uint64_t)(i) * 0x40000)   /* virtqueue ring, up to 1024 entries */
#define SC_VM_BUF_GPA(i)      (0x400000ull + (uint64_t)(i) * 0x100000)  /* request headers and data */
#define SC_VM_SAMPLES_GPA(i)  (0x1000000ull + (uint64_t)(i) * 0x1000000) /* per-operation cycle counts */
#define SC_VM_SAMPLES_MAX  (4u << 20)     /* uint32_t entries, a ring (power of two): 16 MiB */
/* Guest memory for n vCPUs: everything below the samples, then a sample ring each. */
#define SC_VM_MEM_SIZE(n)  (0x1000000ull * (1 + (uint64_t)(n)))
#define SC_VM_MMIO_GPA     0x30000000ull  /* mapped by the page tables, not by a memslot: MMIO */

/* I/O ports the guest uses. */
#define SC_VM_PORT_DONE      0x500   /* "I finished": handled in user space */
#define SC_VM_PORT_USER      0x510   /* plain user-space exit */
#define SC_VM_PORT_IOEVENTFD 0x520   /* an ioeventfd: the kernel completes the exit */
#define SC_VM_PORT_KICK      0x530   /* virtqueue kick; ioeventfd or user space per mode */
#define SC_VM_MMIO_USER      (SC_VM_MMIO_GPA + 0x0)
#define SC_VM_MMIO_IOEVENTFD (SC_VM_MMIO_GPA + 0x1000)

enum sc_vm_workload {
	SC_WL_NONE = 0,
	SC_WL_PIO_USER,        /* out to SC_VM_PORT_USER */
	SC_WL_PIO_IOEVENTFD,   /* out to SC_VM_PORT_IOEVENTFD */
	SC_WL_MMIO_USER,       /* write to SC_VM_MMIO_USER */
	SC_WL_MMIO_IOEVENTFD,  /* write to SC_VM_MMIO_IOEVENTFD */
	SC_WL_VMCALL,          /* hypercall */
	SC_WL_PINGPONG,        /* shared-memory ping-pong with a host thread */
	SC_WL_BLK_SETUP,       /* lay out the ring, report its addresses in blk */
	SC_WL_BLK,             /* virtio-blk reads through the driver library */
	SC_WL_TOUCH,           /* fault in 'iterations' sample entries (untimed, before a measured run) */
	SC_WL_SPIN,            /* spin forever (tests the VMM's timeout) */
	SC_WL_PRIVILEGED,      /* execute hlt at CPL3 (tests the unexpected-exit report) */
	SC_WL_COUNT
};

/* The ring and request layout the host's device sets up for SC_WL_BLK. */
struct sc_vm_blk_params {
	uint64_t desc_gpa, avail_gpa, used_gpa;  /* filled by the guest after it lays out the ring */
	uint32_t queue_size;
	uint32_t queue_depth;    /* requests in flight */
	uint32_t block_size;     /* bytes per read */
	uint32_t features_lo;    /* negotiated feature bits 0-31 */
	uint32_t duration_ms;    /* 0: run 'iterations' requests; else run until the time is up */
	uint32_t pad;
};

/*
 * One page at SC_VM_MAILBOX_GPA. The host fills the command, then stores
 * cmd_seq (release); the guest runs it, fills the results, then stores
 * done_seq = cmd_seq (release). Each side acquires the other's sequence.
 */
struct sc_vm_mailbox {
	/* host -> guest */
	uint32_t cmd_seq;
	uint32_t workload;          /* enum sc_vm_workload */
	uint64_t iterations;
	uint64_t tsc_hz;            /* for duration_ms */
	struct sc_vm_blk_params blk;
	uint64_t pad0[4];

	/* guest -> host */
	uint32_t done_seq;
	uint32_t error;             /* nonzero: what went wrong (SC_VM_ERR_*) */
	uint64_t ops;               /* operations completed */
	uint64_t samples;           /* cycle counts written at SC_VM_SAMPLES_GPA */
	uint64_t total_cycles;      /* rdtsc from first op to last */
	uint64_t kicks;             /* notifications the guest had to send */
	uint64_t progress;          /* ops so far, updated while running (for live output) */
	uint64_t result;            /* workload-specific: SC_WL_VMCALL's last rax (KVM: -KVM_EPERM at CPL3) */

	/* ping-pong lines, each on its own cache line */
	uint64_t ping __attribute__((aligned(64)));
	uint64_t pong __attribute__((aligned(64)));
};

#define SC_VM_ERR_DRIVER  1   /* the driver library refused (ring set-up) */
#define SC_VM_ERR_STATUS  2   /* a request completed with a bad status */
#define SC_VM_ERR_WORKLOAD 3  /* unknown workload */

#endif
