/* SPDX-License-Identifier: MIT */
/*
 * microvm: a minimal VMM on the KVM API.
 *
 * It creates a VM whose memory is a memfd (so a sidecore or another process
 * can map it), loads the flat guest image, and runs each vCPU on its own host
 * thread pinned to a guest cpu. Each vCPU has its own mailbox, ring, buffers
 * and sample ring (microvm/mailbox.h) and learns its number in rdi. The guest runs in 64-bit long mode at CPL3
 * with identity-mapped user pages and IOPL=3 from its first instruction:
 * nested KVM here emulates CPL0 (thousands of cycles an instruction) but runs
 * CPL3 natively, and the same set-up runs on hardware KVM.
 *
 * Exits the caller registered (port and MMIO ranges) go to its callbacks on
 * the vCPU thread; any other exit stops the vCPU with one clear line.
 */
#ifndef SC_MICROVM_H
#define SC_MICROVM_H

#include <stdbool.h>
#include <stdint.h>

#include "microvm/mailbox.h"

struct sc_vm;

/* Handle a guest port write (size 1/2/4). Return 0 to resume, <0 to stop the vCPU. Runs on the vCPU thread. */
typedef int (*sc_vm_pio_fn)(void *ctx, uint16_t port, uint32_t value, unsigned size);
/* Handle a guest MMIO write. Same contract. */
typedef int (*sc_vm_mmio_fn)(void *ctx, uint64_t addr, uint64_t value, unsigned size);

/*
 * Open /dev/kvm and create a VM with nvcpus vCPUs (1..SC_VM_MAX_VCPUS),
 * SC_VM_MEM_SIZE(nvcpus) bytes of memfd memory and the built-in guest image
 * loaded. Returns 0, or -errno after printing one line saying what failed
 * and what to do (e.g. "add your user to the kvm group").
 */
int sc_vm_create(int nvcpus, struct sc_vm **out);
int sc_vm_nvcpus(struct sc_vm *vm);
void sc_vm_destroy(struct sc_vm *vm);

/* True if /dev/kvm can be opened here (for tests and the demo to choose). */
bool sc_vm_available(void);

/* Guest memory: host address of GPA 0, its memfd and size. */
uint8_t *sc_vm_mem(struct sc_vm *vm);
int sc_vm_memfd(struct sc_vm *vm);
uint64_t sc_vm_mem_size(struct sc_vm *vm);
struct sc_vm_mailbox *sc_vm_mailbox(struct sc_vm *vm, int vcpu);
/* The vCPU's per-operation cycle counts (a ring of SC_VM_SAMPLES_MAX). */
const uint32_t *sc_vm_samples(struct sc_vm *vm, int vcpu);

/* Route writes to ports [port, port + n) / MMIO [addr, addr + len) to fn. */
int sc_vm_on_pio(struct sc_vm *vm, uint16_t port, uint16_t n, sc_vm_pio_fn fn, void *ctx);
int sc_vm_on_mmio(struct sc_vm *vm, uint64_t addr, uint64_t len, sc_vm_mmio_fn fn, void *ctx);

/*
 * Register an ioeventfd: a guest write to the port (pio) or MMIO address
 * signals fd inside the kernel, with no exit to user space. Returns 0 or
 * -errno (printed).
 */
int sc_vm_ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd);
int sc_vm_ioeventfd_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd);

/*
 * Start each vCPU i on its own host thread pinned to cpus[i] (cpus NULL, or
 * -1: unpinned). A vCPU runs the guest until the guest writes
 * SC_VM_PORT_DONE, a handler stops it, an unexpected exit happens, or
 * sc_vm_stop. Returns 0 or -errno.
 */
int sc_vm_start(struct sc_vm *vm, const int *cpus);

/*
 * Wait for every vCPU to stop, at most timeout_ms (then stop them). Returns
 * 0 if the guest said it was done on each, -ETIMEDOUT, or -EFAULT after an
 * unexpected exit (its description is in sc_vm_error).
 */
int sc_vm_wait(struct sc_vm *vm, unsigned timeout_ms);

/* Ask every vCPU to leave the guest and stop; safe from any thread. */
void sc_vm_stop(struct sc_vm *vm);

/* Why the first vCPU that stopped on its own did ("" if none did): "vCPU n: ...". */
const char *sc_vm_error(struct sc_vm *vm);

/*
 * Run the workload in vcpu's mailbox and wait for its result (the vCPU must
 * be running). Returns 0, -ETIMEDOUT, or -EFAULT if the vCPU died.
 */
int sc_vm_run_workload(struct sc_vm *vm, int vcpu, unsigned timeout_ms);

/* Hand vcpu's mailbox command to the guest without waiting; returns its sequence number. */
uint32_t sc_vm_submit(struct sc_vm *vm, int vcpu);

/* 1 if vcpu finished command seq, 0 if it is still running, -EFAULT if it died. */
int sc_vm_poll_done(struct sc_vm *vm, int vcpu, uint32_t seq);

/*
 * KVM binary statistics (KVM_GET_STATS_FD) of a vCPU, by name: "exits",
 * "io_exits", "mmio_exits", "irq_exits", "hypercalls", ... Returns the
 * value, or UINT64_MAX if this kernel has no such counter.
 */
uint64_t sc_vm_vcpu_stat(struct sc_vm *vm, int vcpu, const char *name);

/* Host thread id of a vCPU (for CPU-time accounting), 0 before start. */
int sc_vm_vcpu_tid(struct sc_vm *vm, int vcpu);

#endif
