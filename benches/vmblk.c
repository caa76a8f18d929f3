/* SPDX-License-Identifier: MIT */
#include "benches/vmblk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/tsc.h"
#include "cpuset/cpuset.h"

const char *const vmblk_mode_name[VMBLK_MODES] = { "sidecore", "eventfd", "user-exit" };

/* VMBLK_USER: the kick exits to us; serve the queue right here, as a VMM's I/O thread would. */
static int on_kick(void *ctx, uint16_t port, uint32_t value, unsigned size)
{
	struct vmblk *b = ctx;
	uint64_t t0 = sc_rdtsc();

	(void)port, (void)value, (void)size;
	if (b->mode == VMBLK_USER) {
		int n;
		do
			n = sc_nullblk_poll(&b->dev, 256);
		while (n == 256);
		if (n < 0)
			return n;
	}
	b->handler_cycles += sc_rdtsc() - t0;
	return 0;
}

static int ignore_exit(void *ctx, uint16_t port, uint32_t value, unsigned size)
{
	(void)ctx, (void)port, (void)value, (void)size;
	return 0;
}

static int ignore_mmio(void *ctx, uint64_t addr, uint64_t value, unsigned size)
{
	(void)ctx, (void)addr, (void)value, (void)size;
	return 0;
}

int vmblk_open(struct vmblk *b, int guest_cpu, int sidecore_cpu)
{
	int ret;

	memset(b, 0, sizeof(*b));
	b->kick_fd = -1;
	b->guest_cpu = guest_cpu;
	b->sidecore_cpu = sidecore_cpu;
	ret = sc_vm_create(1, &b->vm);
	if (ret < 0)
		return ret;
	/* The sidecore maps the guest's memfd itself, as a vhost-user backend would. */
	sc_mem_init(&b->mem);
	int fd = dup(sc_vm_memfd(b->vm));
	ret = fd < 0 ? -errno : sc_mem_add_fd(&b->mem, 0, sc_vm_mem_size(b->vm), fd, 0, SC_PERM_RW);
	if (ret < 0) {
		fprintf(stderr, "sidecore: mapping the guest's memory: %s\n", strerror(-ret));
		goto err;
	}
	b->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->kick_fd < 0 ||
	    sc_vm_on_pio(b->vm, SC_VM_PORT_KICK, 1, on_kick, b) < 0 ||
	    sc_vm_on_pio(b->vm, SC_VM_PORT_USER, 1, ignore_exit, NULL) < 0 ||
	    sc_vm_on_mmio(b->vm, SC_VM_MMIO_USER, 8, ignore_mmio, NULL) < 0) {
		ret = -ENOMEM;
		goto err;
	}
	/* The exit probes' in-kernel variants: ioeventfds nobody reads (the counter just grows). */
	ret = sc_vm_ioeventfd(b->vm, SC_VM_PORT_IOEVENTFD, true, 1, b->kick_fd);
	if (ret == 0)
		ret = sc_vm_ioeventfd(b->vm, SC_VM_MMIO_IOEVENTFD, false, 4, b->kick_fd);
	if (ret < 0)
		goto err;
	ret = sc_vm_start(b->vm, &guest_cpu);
	if (ret < 0)
		goto err;
	return 0;
err:
	vmblk_close(b);
	return ret;
}

void vmblk_close(struct vmblk *b)
{
	vmblk_stop(b);
	if (b->vm) {
		sc_vm_mailbox(b->vm, 0)->workload = SC_WL_NONE;
		sc_vm_run_workload(b->vm, 0, 1000);
		sc_vm_wait(b->vm, 1000);
		sc_vm_destroy(b->vm);
	}
	sc_mem_fini(&b->mem);
	if (b->kick_fd >= 0)
		close(b->kick_fd);
	memset(b, 0, sizeof(*b));
	b->kick_fd = -1;
}

static int guest_command(struct vmblk *b, enum sc_vm_workload wl, uint64_t n, unsigned timeout_ms)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);

	mb->workload = wl;
	mb->iterations = n;
	mb->tsc_hz = sc_tsc_hz();
	int ret = sc_vm_run_workload(b->vm, 0, timeout_ms);
	if (ret < 0)
		fprintf(stderr, "sidecore: guest workload %d: %s\n", wl, sc_vm_error(b->vm));
	else if (mb->error)
		fprintf(stderr, "sidecore: guest workload %d reported error %u\n", wl, mb->error);
	return ret < 0 ? ret : mb->error ? -EIO : 0;
}

int vmblk_start(struct vmblk *b, enum vmblk_mode mode, uint32_t qsize)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);
	int ret;

	mb->blk = (struct sc_vm_blk_params){ .queue_size = qsize };
	ret = guest_command(b, SC_WL_BLK_SETUP, 0, 5000);
	if (ret < 0)
		return ret;
	struct sc_vq_config cfg = {
		.size = qsize, .desc_addr = mb->blk.desc_gpa, .avail_addr = mb->blk.avail_gpa,
		.used_addr = mb->blk.used_gpa, .xlate = sc_mem_xlate(&b->mem),
		.call_fd = -1, .err_fd = -1, .kick_fd = mode == VMBLK_USER ? -1 : b->kick_fd,
	};
	ret = sc_nullblk_init(&b->dev, &cfg, 1ull << 30, "vm-null");
	if (ret < 0) {
		fprintf(stderr, "sidecore: null-blk on the guest's ring: %s\n", b->dev.vq.broken_reason);
		return ret;
	}
	b->mode = mode;
	b->handler_cycles = 0;
	if (mode == VMBLK_USER)
		return 0;   /* the kick port stays a user-space exit */

	/* Kicks become an ioeventfd: handled in the kernel, waking the sidecore if it sleeps. */
	ret = sc_vm_ioeventfd(b->vm, SC_VM_PORT_KICK, true, 1, b->kick_fd);
	if (ret < 0)
		return ret;
	b->ioeventfd_on = true;
	struct sc_poller_config pc = {
		.cpu = b->sidecore_cpu, .name = "sc-sidecore",
		.idle_spin_ns = mode == VMBLK_POLL ? SC_POLLER_DEFAULT_IDLE_NS : 0,
	};
	ret = sc_poller_create(&pc, &b->poller);
	if (ret < 0) {
		fprintf(stderr, "sidecore: cannot start a sidecore on cpu %d: %s\n", b->sidecore_cpu, strerror(-ret));
		return ret;
	}
	return sc_poller_attach(b->poller, &b->dev.pq);
}

void vmblk_stop(struct vmblk *b)
{
	if (b->poller) {
		sc_poller_detach(b->poller, &b->dev.pq);
		sc_poller_destroy(b->poller);
		b->poller = NULL;
	}
	if (b->ioeventfd_on) {
		sc_vm_ioeventfd_remove(b->vm, SC_VM_PORT_KICK, true, 1, b->kick_fd);
		b->ioeventfd_on = false;
	}
}

static void collect(struct vmblk *b, struct vmblk_result *r, uint64_t exits0)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);

	r->ops = mb->ops;
	r->guest_cycles = mb->total_cycles;
	r->kicks = mb->kicks;
	r->exits = sc_vm_vcpu_stat(b->vm, 0, "exits") - exits0;
	r->samples = sc_vm_samples(b->vm, 0);
	r->nsamples = mb->samples;
	r->guest_error = mb->error;
}

int vmblk_begin(struct vmblk *b, uint32_t qd, uint32_t block_size, uint64_t n,
		uint32_t duration_ms, uint32_t *seq)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);

	/* Fault the sample pages in first, so the exits counted from here are the I/O's alone. */
	int ret = guest_command(b, SC_WL_TOUCH, duration_ms ? SC_VM_SAMPLES_MAX : n, 10000);
	if (ret < 0)
		return ret;
	mb->workload = SC_WL_BLK;
	mb->iterations = n;
	mb->tsc_hz = sc_tsc_hz();
	mb->blk.queue_depth = qd;
	mb->blk.block_size = block_size;
	mb->blk.duration_ms = duration_ms;
	b->exits0 = sc_vm_vcpu_stat(b->vm, 0, "exits");
	b->cpu0 = b->poller ? sc_poller_cpu_time_ns(b->poller) : 0;
	b->handler0 = b->handler_cycles;
	*seq = sc_vm_submit(b->vm, 0);
	return 0;
}

int vmblk_end(struct vmblk *b, struct vmblk_result *r)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b->vm, 0);

	memset(r, 0, sizeof(*r));
	collect(b, r, b->exits0);
	r->device_cpu_ns = b->poller ? sc_poller_cpu_time_ns(b->poller) - b->cpu0
				     : (uint64_t)sc_cycles_to_ns(b->handler_cycles - b->handler0);
	if (mb->error)
		fprintf(stderr, "sidecore: the guest reported error %u (a completion was wrong)\n", mb->error);
	return mb->error ? -EIO : 0;
}

int vmblk_run(struct vmblk *b, uint32_t qd, uint32_t block_size, uint64_t n,
	      uint32_t duration_ms, struct vmblk_result *r)
{
	uint64_t deadline_ms = duration_ms ? duration_ms + 10000 : 120000, waited = 0;
	struct timespec ts = { 0, 200000 };
	uint32_t seq;
	int ret = vmblk_begin(b, qd, block_size, n, duration_ms, &seq);

	if (ret < 0)
		return ret;
	while ((ret = sc_vm_poll_done(b->vm, 0, seq)) == 0 && waited / 5 < deadline_ms) {   /* 5 naps a ms */
		nanosleep(&ts, NULL);
		waited++;
	}
	if (ret != 1) {
		fprintf(stderr, "sidecore: guest virtio-blk run: %s\n",
			ret < 0 ? sc_vm_error(b->vm) : "did not finish in time");
		return ret < 0 ? ret : -ETIMEDOUT;
	}
	return vmblk_end(b, r);
}

int vmblk_workload(struct vmblk *b, enum sc_vm_workload wl, uint64_t n, struct vmblk_result *r)
{
	struct sc_vm_echo peer;
	int ret;

	ret = guest_command(b, SC_WL_TOUCH, n, 10000);
	if (ret < 0)
		return ret;
	/* The raw floor: a host thread on the sidecore cpu echoes the guest's pings. */
	if (wl == SC_WL_PINGPONG && (ret = sc_vm_echo_start(b->vm, 0, n, b->sidecore_cpu, &peer)) < 0)
		return ret;
	uint64_t exits0 = sc_vm_vcpu_stat(b->vm, 0, "exits");
	ret = guest_command(b, wl, n, 60000);
	if (wl == SC_WL_PINGPONG)
		sc_vm_echo_join(&peer);
	memset(r, 0, sizeof(*r));
	collect(b, r, exits0);
	return ret;
}
