/* SPDX-License-Identifier: MIT */
/*
 * sidecore-vm-probe: what one guest operation costs on this host's KVM.
 *
 * Each workload runs N times in a fresh microvm guest pinned to one cpu; the
 * guest times every operation with rdtsc and writes the cycles to its sample
 * ring; the VM exits per operation come from KVM's binary stats
 * (KVM_GET_STATS_FD), read before and after, not assumed. The ping-pong
 * peer is a host thread pinned to another cpu: the floor a sidecore starts
 * from. Only the microvm module is used, so this runs before anything else
 * in the project does.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/compiler.h"
#include "common/tsc.h"
#include "microvm/microvm.h"

#define PROG "sidecore-vm-probe"
#define MAX_COUNTERS 256

static const char usage[] =
	"usage: " PROG " [-n N] [--cpus G,P] [--stats] [--help] [--version]\n"
	"\n"
	"Runs each exit-cost workload N times (default 10000) in a KVM guest at CPL3\n"
	"on cpu G and prints cycles per operation (measured in the guest with rdtsc)\n"
	"and VM exits per operation (from KVM's binary stats):\n"
	"  pio-user       out to a port that exits to this program (KVM_EXIT_IO)\n"
	"  pio-ioeventfd  out to a port bound to an ioeventfd (served in the kernel)\n"
	"  mmio-user      write to an unmapped address (KVM_EXIT_MMIO)\n"
	"  mmio-ioeventfd write to an address bound to an ioeventfd\n"
	"  vmcall         hypercall (KVM answers -KVM_EPERM at CPL3)\n"
	"  ping-pong      shared-memory round trip with a host thread on cpu P\n"
	"\n"
	"  -n N          operations per workload (1..4194304)\n"
	"  --cpus G,P    guest cpu and ping-pong peer cpu (default: the first two\n"
	"                cpus this process may use)\n"
	"  --stats       also list every KVM counter that moved during each workload\n"
	"Exit status: 0 all ran, 1 one failed, 2 usage, 77 no usable /dev/kvm.\n";

struct op {
	const char *name;
	enum sc_vm_workload wl;
};

static const struct op ops[] = {
	{ "pio-user", SC_WL_PIO_USER },
	{ "pio-ioeventfd", SC_WL_PIO_IOEVENTFD },
	{ "mmio-user", SC_WL_MMIO_USER },
	{ "mmio-ioeventfd", SC_WL_MMIO_IOEVENTFD },
	{ "vmcall", SC_WL_VMCALL },
	{ "ping-pong", SC_WL_PINGPONG },
};

/* A snapshot of one vCPU's counters, in the kernel's order (the same on each read). */
struct counters {
	int n;
	char name[MAX_COUNTERS][64];
	uint64_t value[MAX_COUNTERS];
};

struct result {
	bool ok;
	uint64_t p50, p99;
	double mean;
	double exits_per_op;
	double served_per_op;       /* host side: handler calls or eventfd signals */
	char moved[160];            /* other counters that moved, per op */
};

struct probe {
	uint64_t n;
	int guest_cpu, peer_cpu;
	bool stats;
	uint64_t user_exits;        /* handler calls, on the vCPU thread */
	struct counters before, after;
};

/* ---- the VM ---- */

static int count_pio(void *ctx, uint16_t port, uint32_t value, unsigned size)
{
	(void)port, (void)value, (void)size;
	((struct probe *)ctx)->user_exits++;
	return 0;
}

static int count_mmio(void *ctx, uint64_t addr, uint64_t value, unsigned size)
{
	(void)addr, (void)value, (void)size;
	((struct probe *)ctx)->user_exits++;
	return 0;
}

/* A VM with the probe's ports wired, its vCPU running on the guest cpu. */
static int vm_open(struct probe *p, int efd, struct sc_vm **out)
{
	struct sc_vm *vm;
	int ret = sc_vm_create(1, &vm);

	if (ret < 0)
		return ret;
	if ((ret = sc_vm_on_pio(vm, SC_VM_PORT_USER, 1, count_pio, p)) < 0 ||
	    (ret = sc_vm_on_mmio(vm, SC_VM_MMIO_USER, 8, count_mmio, p)) < 0 ||
	    (ret = sc_vm_ioeventfd(vm, SC_VM_PORT_IOEVENTFD, true, 1, efd)) < 0 ||   /* the guest writes a byte */
	    (ret = sc_vm_ioeventfd(vm, SC_VM_MMIO_IOEVENTFD, false, 4, efd)) < 0 ||  /* ... and a u32 */
	    (ret = sc_vm_start(vm, &p->guest_cpu)) < 0) {
		sc_vm_destroy(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

static void vm_close(struct sc_vm *vm)
{
	sc_vm_mailbox(vm, 0)->workload = SC_WL_NONE;   /* guest_main returns, entry.S writes the done port */
	if (sc_vm_run_workload(vm, 0, 1000) == 0)
		sc_vm_wait(vm, 1000);
	sc_vm_destroy(vm);
}

static int guest_run(struct sc_vm *vm, enum sc_vm_workload wl, uint64_t n)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(vm, 0);
	int ret;

	mb->workload = wl;
	mb->iterations = n;
	ret = sc_vm_run_workload(vm, 0, 60000);
	if (ret < 0)
		return ret;
	return mb->error ? -EIO : 0;
}

/* ---- counters and samples ---- */

static void counters_add(void *ctx, const char *name, uint64_t value)
{
	struct counters *c = ctx;
	if (c->n == MAX_COUNTERS)
		return;
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	c->value[c->n++] = value;
}

static void counters_read(struct sc_vm *vm, struct counters *c)
{
	c->n = 0;
	sc_vm_stat_each(vm, 0, counters_add, c);
}

/* The counters (besides "exits") that moved by at least one per two ops, as "name x.xx". */
static void counters_moved(const struct probe *p, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = 0;
	for (int i = 0; i < p->after.n && i < p->before.n; i++) {
		double per_op = (double)(p->after.value[i] - p->before.value[i]) / (double)p->n;
		if (per_op < 0.5 || !strcmp(p->after.name[i], "exits") || used >= len)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s %.2f", used ? ", " : "", p->after.name[i], per_op);
	}
}

static void counters_print_moved(const struct probe *p)
{
	for (int i = 0; i < p->after.n && i < p->before.n; i++)
		if (p->after.value[i] != p->before.value[i])
			printf("      %-28s +%llu\n", p->after.name[i],
			       (unsigned long long)(p->after.value[i] - p->before.value[i]));
}

static uint64_t counter(const struct counters *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->name[i], name))
			return c->value[i];
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Percentiles from a sorted copy: the guest's ring stays as it wrote it. */
static int summarize(struct sc_vm *vm, struct result *r)
{
	uint64_t n = sc_vm_mailbox(vm, 0)->samples, sum = 0;
	uint32_t *s = malloc(n * sizeof(*s));

	if (!s || n == 0) {
		free(s);
		return -ENOMEM;
	}
	memcpy(s, sc_vm_samples(vm, 0), n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u32);
	for (uint64_t i = 0; i < n; i++)
		sum += s[i];
	r->p50 = s[n / 2];
	r->p99 = s[n * 99 / 100];
	r->mean = (double)sum / (double)n;
	free(s);
	return 0;
}

/* ---- one workload ---- */

static int measure(struct probe *p, struct sc_vm *vm, const struct op *op, int efd, struct result *r)
{
	struct sc_vm_echo peer;
	uint64_t signals = 0;
	int ret;

	/* Untimed: fault the sample pages in, so their first-touch exits are not charged to the op. */
	ret = guest_run(vm, SC_WL_TOUCH, p->n);
	if (ret < 0)
		return ret;
	if (op->wl == SC_WL_PINGPONG && (ret = sc_vm_echo_start(vm, 0, p->n, p->peer_cpu, &peer)) < 0)
		return ret;
	p->user_exits = 0;
	counters_read(vm, &p->before);
	ret = guest_run(vm, op->wl, p->n);
	counters_read(vm, &p->after);
	if (op->wl == SC_WL_PINGPONG)
		sc_vm_echo_join(&peer);
	if (ret < 0)
		return ret;

	if (read(efd, &signals, sizeof(signals)) != sizeof(signals))
		signals = 0;   /* EAGAIN: no ioeventfd fired */
	r->exits_per_op = (double)(counter(&p->after, "exits") - counter(&p->before, "exits")) / (double)p->n;
	r->served_per_op = (double)(p->user_exits + signals) / (double)p->n;
	counters_moved(p, r->moved, sizeof(r->moved));
	if (op->wl == SC_WL_VMCALL) {
		/* Who answered: KVM's hypercall handler puts -KVM_EPERM (-1) in rax at CPL3. */
		size_t used = strlen(r->moved);
		int64_t rax = (int64_t)sc_vm_mailbox(vm, 0)->result;
		snprintf(r->moved + used, sizeof(r->moved) - used, "%sguest saw rax=%lld%s", used ? ", " : "",
			 (long long)rax, rax != -1 ? "" : r->exits_per_op < 0.5
			 ? " (-KVM_EPERM: KVM answered, yet counted no exit)" : " (-KVM_EPERM)");
	}
	return summarize(vm, r);
}

static int run_op(struct probe *p, const struct op *op, struct result *r)
{
	struct sc_vm *vm;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int ret;

	if (efd < 0) {
		fprintf(stderr, PROG ": eventfd: %s\n", strerror(errno));
		return -errno;
	}
	/* A fresh VM per workload: one that dies cannot spoil the next. */
	ret = vm_open(p, efd, &vm);
	if (ret == 0) {
		ret = measure(p, vm, op, efd, r);
		if (ret < 0)
			fprintf(stderr, PROG ": %s: %s\n", op->name,
				sc_vm_error(vm)[0] ? sc_vm_error(vm) : "the guest reported an error");
		vm_close(vm);
	}
	close(efd);
	r->ok = ret == 0;
	return ret;
}

/* ---- main ---- */

/* The first two cpus we may run on: guest and peer. */
static int default_cpus(int *guest, int *peer)
{
	cpu_set_t set;
	int found = 0;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
		if (CPU_ISSET(c, &set))
			*(found++ ? peer : guest) = c;
	return found == 2 ? 0 : -ENODEV;
}

static int parse_args(int argc, char **argv, struct probe *p)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' },
		{ "cpus", required_argument, NULL, 'c' }, { "stats", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	bool cpus_given = false;
	int c;

	while ((c = getopt_long(argc, argv, "n:hV", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'h': fputs(usage, stdout); exit(0);
		case 'V': puts(PROG " " SC_VERSION); exit(0);
		case 's': p->stats = true; break;
		case 'n':
			p->n = strtoull(optarg, &end, 10);
			if (*end || p->n == 0 || p->n > SC_VM_SAMPLES_MAX) {
				fprintf(stderr, PROG ": -n %s: want 1..%u operations\n", optarg, SC_VM_SAMPLES_MAX);
				return -EINVAL;
			}
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &p->guest_cpu, &p->peer_cpu) != 2 || p->guest_cpu < 0 ||
			    p->peer_cpu < 0 || p->guest_cpu == p->peer_cpu) {
				fprintf(stderr, PROG ": --cpus %s: want two different cpu numbers, G,P\n", optarg);
				return -EINVAL;
			}
			cpus_given = true;
			break;
		default: fputs(usage, stderr); return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n%s", argv[optind], usage);
		return -EINVAL;
	}
	if (!cpus_given && default_cpus(&p->guest_cpu, &p->peer_cpu) < 0) {
		fprintf(stderr, PROG ": needs two cpus (a guest cpu and a ping-pong peer); this process may use one\n");
		return -ENODEV;
	}
	return 0;
}

static void print_table(const struct probe *p, const struct result *res)
{
	printf("\n%-15s %9s %9s %9s %9s %9s  %s\n", "op", "p50 cyc", "mean cyc", "p99 cyc", "exits/op",
	       "host/op", "other KVM counters per op");
	for (size_t i = 0; i < SC_ARRAY_SIZE(ops); i++) {
		const struct result *r = &res[i];
		if (!r->ok) {
			printf("%-15s %9s   (failed: see the message above)\n", ops[i].name, "-");
			continue;
		}
		printf("%-15s %9llu %9.0f %9llu %9.2f %9.2f  %s\n", ops[i].name, (unsigned long long)r->p50, r->mean,
		       (unsigned long long)r->p99, r->exits_per_op, r->served_per_op, r->moved);
	}
	printf("\n%llu ops each; cycles measured in the guest (rdtsc to rdtscp around one op);\n"
	       "exits/op: KVM's \"exits\" counter of the vCPU; host/op: handler calls + ioeventfd signals.\n",
	       (unsigned long long)p->n);
}

int main(int argc, char **argv)
{
	struct probe *p = calloc(1, sizeof(*p));
	struct result res[SC_ARRAY_SIZE(ops)] = { 0 };
	struct utsname u;
	int failed = 0;

	if (!p)
		return 1;
	p->n = 10000;
	if (parse_args(argc, argv, p) < 0) {
		free(p);
		return 2;
	}
	if (!sc_vm_available()) {
		fprintf(stderr, PROG ": /dev/kvm cannot be opened (%s): this probe needs KVM\n", strerror(errno));
		free(p);
		return 77;
	}
	uname(&u);
	printf(PROG " " SC_VERSION ": kernel %s, guest on cpu %d, ping-pong peer on cpu %d, TSC %.2f GHz\n",
	       u.release, p->guest_cpu, p->peer_cpu, (double)sc_tsc_hz() / 1e9);
	for (size_t i = 0; i < SC_ARRAY_SIZE(ops); i++) {
		printf("  %-15s ...", ops[i].name);
		fflush(stdout);
		failed |= run_op(p, &ops[i], &res[i]) < 0;
		if (!res[i].ok) {
			printf(" failed\n");
			continue;
		}
		printf(" p50 %llu cycles, %.2f exits/op\n", (unsigned long long)res[i].p50, res[i].exits_per_op);
		if (p->stats)
			counters_print_moved(p);   /* the snapshots of the op just run */
	}
	print_table(p, res);
	free(p);
	return failed ? 1 : 0;
}
