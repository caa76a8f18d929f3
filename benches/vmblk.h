/* SPDX-License-Identifier: MIT */
/*
 * The microvm guest driving a null virtio-blk device, served one of three
 * ways. Shared by sidecore-bench (latency, exits), sidecore-demo and the
 * microvm test.
 *   VMBLK_POLL     a sidecore polls the queue; the guest is told not to kick
 *   VMBLK_EVENTFD  the guest's kick is an ioeventfd; a host thread sleeping on
 *                  it serves the queue (the vhost model)
 *   VMBLK_USER     the guest's kick exits to the VMM in user space, which
 *                  serves the queue on the vCPU thread (the plain QEMU model)
 * The guest reaps completions by polling the used ring in every mode.
 */
#ifndef SC_BENCHES_VMBLK_H
#define SC_BENCHES_VMBLK_H

#include <stdint.h>

#include "devices/devices.h"
#include "guestmem/guestmem.h"
#include "microvm/microvm.h"
#include "polling/polling.h"

enum vmblk_mode { VMBLK_POLL, VMBLK_EVENTFD, VMBLK_USER, VMBLK_MODES };

extern const char *const vmblk_mode_name[VMBLK_MODES];

struct vmblk {
	struct sc_vm *vm;
	struct sc_mem mem;          /* the sidecore's view of the guest's memfd */
	struct sc_nullblk dev;
	struct sc_poller *poller;
	int kick_fd;
	bool ioeventfd_on;
	enum vmblk_mode mode;
	int sidecore_cpu, guest_cpu;
	uint64_t handler_cycles;    /* VMBLK_USER: time spent serving in the exit handler */
	uint64_t exits0, cpu0, handler0;   /* counters when the current run began */
};

struct vmblk_result {
	uint64_t ops;
	uint64_t guest_cycles;      /* guest rdtsc, first submit to last completion */
	uint64_t exits;             /* KVM "exits" of the vCPU over the run */
	uint64_t kicks;             /* notifications the guest sent */
	uint64_t device_cpu_ns;     /* host cpu time serving the queue */
	const uint32_t *samples;    /* per-request latency in cycles (guest memory) */
	uint64_t nsamples;
	uint32_t guest_error;
};

/* Create the VM and start its vCPU on guest_cpu. 0 or -errno (printed). */
int vmblk_open(struct vmblk *b, int guest_cpu, int sidecore_cpu);
void vmblk_close(struct vmblk *b);

/* Lay out a fresh ring of qsize entries in the guest and serve it in mode. 0 or -errno (printed). */
int vmblk_start(struct vmblk *b, enum vmblk_mode mode, uint32_t qsize);
/* Stop serving (detach, stop the poller, remove the ioeventfd). */
void vmblk_stop(struct vmblk *b);

/*
 * Run qd-deep reads of block_size bytes: n requests, or for duration_ms if
 * nonzero. The guest writes per-request latencies. 0 or -errno (printed).
 */
int vmblk_run(struct vmblk *b, uint32_t qd, uint32_t block_size, uint64_t n,
	      uint32_t duration_ms, struct vmblk_result *r);

/*
 * The same in two halves, for callers that watch the run: begin hands the
 * guest its command (sequence number in *seq, poll it with
 * sc_vm_poll_done); end collects the results once it is done.
 */
int vmblk_begin(struct vmblk *b, uint32_t qd, uint32_t block_size, uint64_t n,
		uint32_t duration_ms, uint32_t *seq);
int vmblk_end(struct vmblk *b, struct vmblk_result *r);

/* Run a non-blk workload (exit probes, ping-pong) through the mailbox. */
int vmblk_workload(struct vmblk *b, enum sc_vm_workload wl, uint64_t n, struct vmblk_result *r);

#endif
