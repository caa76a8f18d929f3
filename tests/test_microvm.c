/* SPDX-License-Identifier: MIT */
/*
 * A real KVM guest (microvm) against a real sidecore. Skips, visibly, where
 * /dev/kvm cannot be opened.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "benches/vmblk.h"
#include "cpuset/cpuset.h"

static struct vmblk b;
static bool opened;

static void setup(void)
{
	struct sc_topology *t = calloc(1, sizeof(*t));
	int s, g;

	if (!sc_vm_available())
		cr_skip_test("/dev/kvm is not available");
	cr_assert_eq(sc_topology_load(t), 0);
	if (sc_cpuset_pick_pair(t, &s, &g) < 0) {
		free(t);
		cr_skip_test("needs two cpus: a sidecore and a guest cpu");
	}
	free(t);
	cr_assert_eq(vmblk_open(&b, g, s), 0);
	opened = true;
}

static void teardown(void)
{
	if (opened)
		vmblk_close(&b);
	opened = false;
}

TestSuite(microvm, .init = setup, .fini = teardown, .timeout = 60);

Test(microvm, port_exits_are_measured_and_counted_by_kvm)
{
	struct vmblk_result r;
	cr_assert_eq(vmblk_workload(&b, SC_WL_PIO_USER, 200, &r), 0, "%s", sc_vm_error(b.vm));
	cr_assert_eq(r.ops, 200);
	cr_assert_eq(r.nsamples, 200);
	for (int i = 0; i < 200; i++)
		cr_assert_gt(r.samples[i], 100, "op %d took %u cycles: not an exit", i, r.samples[i]);
	cr_assert_geq(r.exits, 200, "KVM counted %llu exits for 200 port writes", (unsigned long long)r.exits);
}

Test(microvm, polled_requests_cause_no_exits)
{
	struct vmblk_result r;
	cr_assert_eq(vmblk_start(&b, VMBLK_POLL, 256), 0);
	/* Warm-up: the first touches of each page fault into KVM's shadow page tables. */
	cr_assert_eq(vmblk_run(&b, 4, 512, 2000, 0, &r), 0);

	uint64_t irq0 = sc_vm_vcpu_stat(b.vm, 0, "irq_exits");
	struct sc_poller_stats st0, st1;
	sc_poller_get_stats(b.poller, &st0);
	cr_assert_eq(vmblk_run(&b, 4, 512, 20000, 0, &r), 0, "%s", sc_vm_error(b.vm));
	uint64_t irqs = sc_vm_vcpu_stat(b.vm, 0, "irq_exits") - irq0;
	sc_poller_get_stats(b.poller, &st1);
	cr_assert_eq(r.ops, 20000);
	cr_assert_eq(r.guest_error, 0, "a completion had the wrong length");
	cr_assert_eq(r.nsamples, 20000);
	/*
	 * A kick only wakes a sidecore that slept: after the pause, or when a
	 * noisy host stalled the guest past the idle window. Each is one sleep.
	 */
	cr_assert_leq(r.kicks, 1 + (st1.sleeps - st0.sleeps), "the guest kicked %llu times; the sidecore slept %llu times",
		      (unsigned long long)r.kicks, (unsigned long long)(st1.sleeps - st0.sleeps));
	/* Host timer interrupts may land on the guest cpu; nothing else the guest did may exit. */
	cr_assert_leq(r.exits, irqs + r.kicks, "%llu exits in the polled phase: %llu host interrupts, %llu kicks",
		      (unsigned long long)r.exits, (unsigned long long)irqs, (unsigned long long)r.kicks);
	cr_assert_lt(r.exits, 20 + r.kicks, "%llu exits", (unsigned long long)r.exits);
	cr_assert_eq(__atomic_load_n(&b.dev.stats.reads, __ATOMIC_RELAXED), 22000, "the device served every read");
	vmblk_stop(&b);
}

Test(microvm, user_exit_mode_serves_on_the_vcpu_thread)
{
	struct vmblk_result r;
	cr_assert_eq(vmblk_start(&b, VMBLK_USER, 64), 0);
	cr_assert_eq(vmblk_run(&b, 1, 512, 100, 0, &r), 0, "%s", sc_vm_error(b.vm));
	cr_assert_eq(r.ops, 100);
	cr_assert_eq(r.kicks, 100, "no sidecore: every request kicks");
	cr_assert_geq(r.exits, 100);
	vmblk_stop(&b);
}

Test(microvm, unexpected_exit_is_reported_not_hung)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b.vm, 0);
	mb->workload = SC_WL_PRIVILEGED;   /* hlt at CPL3: #GP, no IDT, triple fault */
	cr_assert_eq(sc_vm_run_workload(b.vm, 0, 5000), -EFAULT);
	cr_assert(strstr(sc_vm_error(b.vm), "SHUTDOWN") && strstr(sc_vm_error(b.vm), "rip 0x"),
		  "message: %s", sc_vm_error(b.vm));
	cr_assert_eq(sc_vm_wait(b.vm, 1000), -EFAULT);
}

Test(microvm, spinning_guest_is_stopped_by_the_timeout)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(b.vm, 0);
	mb->workload = SC_WL_SPIN;
	cr_assert_eq(sc_vm_run_workload(b.vm, 0, 200), -ETIMEDOUT);
	cr_assert_eq(sc_vm_wait(b.vm, 200), -ETIMEDOUT, "the vCPU was stopped");
	cr_assert(strstr(sc_vm_error(b.vm), "did not finish"), "%s", sc_vm_error(b.vm));
}

static int ignore_port(void *ctx, uint16_t port, uint32_t value, unsigned size)
{
	(void)ctx, (void)port, (void)value, (void)size;
	return 0;
}

Test(microvm, two_vcpus_each_on_its_own_thread_and_cpu)
{
	struct sc_vm *vm;
	int cpus[2] = { b.guest_cpu, b.sidecore_cpu };
	uint32_t seq[2];

	cr_assert_eq(sc_vm_create(2, &vm), 0);
	cr_assert_eq(sc_vm_nvcpus(vm), 2);
	cr_assert_eq(sc_vm_on_pio(vm, SC_VM_PORT_USER, 1, ignore_port, NULL), 0);
	cr_assert_eq(sc_vm_start(vm, cpus), 0);

	/* Both vCPUs at once, each through its own mailbox. */
	for (int i = 0; i < 2; i++) {
		struct sc_vm_mailbox *mb = sc_vm_mailbox(vm, i);
		mb->workload = SC_WL_PIO_USER;
		mb->iterations = 100 + 50 * (uint64_t)i;
		seq[i] = sc_vm_submit(vm, i);
	}
	for (int i = 0; i < 2; i++) {
		int done;
		for (int waited = 0; (done = sc_vm_poll_done(vm, i, seq[i])) == 0 && waited < 10000; waited++)
			usleep(1000);
		cr_assert_eq(done, 1, "vCPU %d: %s", i, sc_vm_error(vm));
		cr_assert_eq(sc_vm_mailbox(vm, i)->ops, 100 + 50 * (uint64_t)i, "each vCPU ran its own command");
		cr_assert_gt(sc_vm_samples(vm, i)[0], 100);
		cr_assert_geq(sc_vm_vcpu_stat(vm, i, "exits"), 100 + 50 * (uint64_t)i, "per-vCPU exit counters");
	}
	cr_assert_neq(sc_vm_vcpu_tid(vm, 0), sc_vm_vcpu_tid(vm, 1), "one host thread per vCPU");

	for (int i = 0; i < 2; i++) {
		sc_vm_mailbox(vm, i)->workload = SC_WL_NONE;
		sc_vm_submit(vm, i);
	}
	cr_assert_eq(sc_vm_wait(vm, 5000), 0, "%s", sc_vm_error(vm));
	sc_vm_destroy(vm);
}

Test(microvm, pingpong_with_a_host_thread_polls_without_exits)
{
	const uint64_t n = 10000;
	struct vmblk_result r;

	cr_assert_eq(vmblk_workload(&b, SC_WL_PINGPONG, n, &r), 0, "%s", sc_vm_error(b.vm));
	cr_assert_eq(r.ops, n);
	cr_assert_eq(r.nsamples, n);
	for (uint64_t i = 0; i < n; i++)
		cr_assert_gt(r.samples[i], 0, "round trip %llu took 0 cycles", (unsigned long long)i);
	/* Host timer ticks may still land on the guest cpu; the ping-pong itself must not exit. */
	cr_log_info("ping-pong: %llu exits over %llu round trips", (unsigned long long)r.exits, (unsigned long long)n);
	cr_assert_lt(r.exits, n / 10, "%llu exits over %llu polled round trips", (unsigned long long)r.exits,
		     (unsigned long long)n);
}

static int count_port(void *ctx, uint16_t port, uint32_t value, unsigned size)
{
	(void)port, (void)value, (void)size;
	(*(uint64_t *)ctx)++;
	return 0;
}

/* A VM of one vCPU on the fixture's idle sidecore cpu, with nothing wired. */
static struct sc_vm *bare_vm(void)
{
	struct sc_vm *vm;
	cr_assert_eq(sc_vm_create(1, &vm), 0);
	return vm;
}

static int guest_pio_writes(struct sc_vm *vm, uint64_t n)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(vm, 0);
	mb->workload = SC_WL_PIO_USER;   /* n times: outb $1, SC_VM_PORT_USER */
	mb->iterations = n;
	return sc_vm_run_workload(vm, 0, 10000);
}

Test(microvm, datamatch_ioeventfd_takes_only_its_value)
{
	struct sc_vm *vm = bare_vm();
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t user = 0, signals = 0;

	cr_assert_geq(efd, 0);
	cr_assert_eq(sc_vm_ioeventfd_match(vm, SC_VM_PORT_USER, true, 1, efd, 1), 0);
	cr_assert_eq(sc_vm_ioeventfd_match(vm, SC_VM_PORT_USER, true, 1, efd, 1), -EEXIST, "registered twice");
	cr_assert_eq(sc_vm_on_pio(vm, SC_VM_PORT_USER, 1, count_port, &user), 0);
	cr_assert_eq(sc_vm_start(vm, &b.sidecore_cpu), 0);

	/* The guest writes 1: every write is the kernel's, none reaches the handler. */
	cr_assert_eq(guest_pio_writes(vm, 100), 0, "%s", sc_vm_error(vm));
	cr_assert_eq(read(efd, &signals, sizeof(signals)), (ssize_t)sizeof(signals));
	cr_assert_eq(signals, 100);
	cr_assert_eq(user, 0);

	/* Now only a 2 matches: the writes of 1 exit to user space. */
	cr_assert_eq(sc_vm_ioeventfd_match_remove(vm, SC_VM_PORT_USER, true, 1, efd, 1), 0);
	cr_assert_eq(sc_vm_ioeventfd_match(vm, SC_VM_PORT_USER, true, 1, efd, 2), 0);
	cr_assert_eq(guest_pio_writes(vm, 100), 0, "%s", sc_vm_error(vm));
	cr_assert_eq(user, 100);
	cr_assert_eq(read(efd, &signals, sizeof(signals)), -1, "no signal for a value that does not match");

	sc_vm_mailbox(vm, 0)->workload = SC_WL_NONE;
	sc_vm_submit(vm, 0);
	cr_assert_eq(sc_vm_wait(vm, 5000), 0, "%s", sc_vm_error(vm));
	sc_vm_destroy(vm);
	close(efd);
}

Test(microvm, unhandled_port_write_names_the_port)
{
	struct sc_vm *vm = bare_vm();

	cr_assert_eq(sc_vm_start(vm, &b.sidecore_cpu), 0);
	cr_assert_eq(guest_pio_writes(vm, 1), -EFAULT);
	cr_assert(strstr(sc_vm_error(vm), "KVM_EXIT_IO") && strstr(sc_vm_error(vm), "port 0x510") &&
		  strstr(sc_vm_error(vm), "no handler"), "message: %s", sc_vm_error(vm));
	cr_assert_eq(sc_vm_wait(vm, 1000), -EFAULT);
	sc_vm_destroy(vm);
}

static void count_stat(void *ctx, const char *name, uint64_t value)
{
	(void)value;
	if (!strcmp(name, "exits"))
		(*(int *)ctx)++;
}

Test(microvm, stats_are_read_by_name_from_the_vm_and_each_vcpu)
{
	struct sc_vm *vm;
	int cpus[2] = { b.sidecore_cpu, b.sidecore_cpu };
	int found = 0;

	cr_assert_eq(sc_vm_create(2, &vm), 0);
	cr_assert_eq(sc_vm_on_pio(vm, SC_VM_PORT_USER, 1, ignore_port, NULL), 0);
	cr_assert_gt(sc_vm_stat_each(vm, 0, count_stat, &found), 0);
	cr_assert_eq(found, 1, "the vCPU has an \"exits\" counter");
	cr_assert_geq(sc_vm_stat_each(vm, -1, count_stat, &found), 0, "the VM has a stats fd too");
	cr_assert_eq(sc_vm_stat_each(vm, 2, count_stat, &found), -EINVAL);
	cr_assert_eq(sc_vm_vcpu_stat(vm, 0, "no_such_counter"), UINT64_MAX);
	cr_assert_eq(sc_vm_stat(vm, "no_such_counter"), UINT64_MAX);

	cr_assert_eq(sc_vm_start(vm, cpus), 0);
	cr_assert_eq(guest_pio_writes(vm, 50), 0, "%s", sc_vm_error(vm));
	for (int i = 0; i < 2; i++) {
		sc_vm_mailbox(vm, i)->workload = SC_WL_NONE;
		sc_vm_submit(vm, i);
	}
	cr_assert_eq(sc_vm_wait(vm, 5000), 0, "%s", sc_vm_error(vm));
	/* Both vCPUs are stopped: the counters hold still while we add them up. */
	uint64_t e0 = sc_vm_vcpu_stat(vm, 0, "exits"), e1 = sc_vm_vcpu_stat(vm, 1, "exits");
	cr_assert_geq(e0, 50);
	cr_assert_eq(sc_vm_vcpu_stat_sum(vm, "exits"), e0 + e1);
	sc_vm_destroy(vm);
}

Test(microvm, a_cpu_we_do_not_have_is_refused_at_start)
{
	struct sc_vm *vm = bare_vm();
	int cpu = CPU_SETSIZE - 1;

	cr_assert_eq(sc_vm_start(vm, &cpu), -EINVAL);
	sc_vm_destroy(vm);
}
