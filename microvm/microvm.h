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

#include <pthread.h>
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

/*
 * Route guest writes to ports [port, port + n) / MMIO [addr, addr + len) to
 * fn, on the vCPU thread; a read there reads all ones. A guest access
 * nobody handles stops its vCPU with one line naming the port or address.
 * Call before sc_vm_start. Returns 0 or -ENOSPC (at most 8 ranges of each).
 */
int sc_vm_on_pio(struct sc_vm *vm, uint16_t port, uint16_t n, sc_vm_pio_fn fn, void *ctx);
int sc_vm_on_mmio(struct sc_vm *vm, uint64_t addr, uint64_t len, sc_vm_mmio_fn fn, void *ctx);

/*
 * Register an ioeventfd: a guest write of len bytes (1, 2, 4, 8) to the port
 * (pio) or MMIO address signals the eventfd fd inside the kernel, with no
 * exit to user space. The _match variants fire only for writes of exactly
 * value (KVM_IOEVENTFD_FLAG_DATAMATCH); other values exit to user space as
 * usual. Remove with the same arguments. Any thread, any time. Returns 0 or
 * -errno (printed): -EEXIST if one is already there, -ENOENT on removing
 * one that is not.
 */
int sc_vm_ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd);
int sc_vm_ioeventfd_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd);
int sc_vm_ioeventfd_match(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd, uint64_t value);
int sc_vm_ioeventfd_match_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd, uint64_t value);

/*
 * Start each vCPU i on its own host thread pinned to cpus[i] (cpus NULL, or
 * -1: unpinned); the caller picks the cpus (guest cpus, not sidecores). A
 * vCPU runs the guest until the guest writes SC_VM_PORT_DONE, a handler
 * stops it, an unexpected exit happens, or sc_vm_stop. Installs a no-op
 * SIGUSR1 handler (how sc_vm_stop kicks a vCPU out of KVM_RUN). Returns 0,
 * or -errno (printed; -EINVAL for a cpu that is offline or not ours).
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
 * KVM binary statistics (KVM_GET_STATS_FD), by name. The descriptors are
 * read once when the VM is created; each call preads one value, so it is
 * cheap enough to call around a measured phase, from any thread. Only
 * single-value counters are found (not histograms). Returns the value, or
 * UINT64_MAX if this kernel has no such counter (names vary by kernel and
 * by KVM flavour: list them with sc_vm_stat_each).
 *   sc_vm_vcpu_stat      one vCPU's counter: "exits", "io_exits",
 *                        "mmio_exits", "irq_exits", "halt_exits",
 *                        "hypercalls", "signal_exits", ...
 *   sc_vm_vcpu_stat_sum  the same counter summed over every vCPU
 *   sc_vm_stat           a VM-wide counter: "remote_tlb_flush", ...
 */
uint64_t sc_vm_vcpu_stat(struct sc_vm *vm, int vcpu, const char *name);
uint64_t sc_vm_vcpu_stat_sum(struct sc_vm *vm, const char *name);
uint64_t sc_vm_stat(struct sc_vm *vm, const char *name);

/*
 * Call fn once for each single-value counter of vcpu (or of the VM, for
 * vcpu -1), in the kernel's order. Returns how many, -ENOTSUP if this kernel
 * has no binary stats, -EINVAL for a bad vcpu.
 */
typedef void (*sc_vm_stat_fn)(void *ctx, const char *name, uint64_t value);
int sc_vm_stat_each(struct sc_vm *vm, int vcpu, sc_vm_stat_fn fn, void *ctx);

/* Host thread id of a vCPU (for CPU-time accounting), 0 before start. */
int sc_vm_vcpu_tid(struct sc_vm *vm, int vcpu);

/*
 * The host side of SC_WL_PINGPONG on vcpu: a thread pinned to cpu that
 * echoes the guest's n pings (it gives up after 5 s without one, so a dead
 * guest cannot leave it spinning). Start it before the workload; join after.
 */
struct sc_vm_echo {
	pthread_t thread;
	struct sc_vm_mailbox *mb;
	uint64_t n;
	int cpu;
};
int sc_vm_echo_start(struct sc_vm *vm, int vcpu, uint64_t n, int cpu, struct sc_vm_echo *e);
void sc_vm_echo_join(struct sc_vm_echo *e);

#endif
