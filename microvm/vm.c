/* SPDX-License-Identifier: MIT */
#include "microvm/microvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/barrier.h"
#include "common/tsc.h"
#include "common/compiler.h"
#include "guestmem/guestmem.h"

/* The guest image, linked in from guest.bin (microvm/blob.S). */
extern const uint8_t sc_guest_image[], sc_guest_image_end[];

#define MAX_HANDLERS 8

struct pio_handler { uint16_t port, n; sc_vm_pio_fn fn; void *ctx; };

/*
 * One KVM binary statistics file (KVM_GET_STATS_FD, api.rst 4.133): its
 * header and descriptors are read once at open; values are pread by offset
 * on each query, since only the data block changes (api.rst: "the
 * descriptors ... are constant for the lifetime of the fd").
 */
struct stats {
	int fd;
	struct kvm_stats_header hdr;
	uint8_t *desc;            /* num_desc entries of sizeof(kvm_stats_desc) + name_size */
};
struct mmio_handler { uint64_t addr, len; sc_vm_mmio_fn fn; void *ctx; };

struct sc_vcpu {
	struct sc_vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	int cpu;
	int tid;
	int stop;                 /* asked to stop (any thread) */
	int state;                /* VM_RUNNING, VM_DONE, VM_FAILED; under vm->lock */

	struct stats stats;       /* this vCPU's counters */
};

struct sc_vm {
	int kvm_fd, vm_fd, memfd;
	struct stats stats;       /* VM-wide counters */
	uint8_t *mem;
	uint64_t mem_size;
	size_t run_size;

	struct pio_handler pio[MAX_HANDLERS];
	struct mmio_handler mmio[MAX_HANDLERS];
	unsigned npio, nmmio;

	struct sc_vcpu vcpus[SC_VM_MAX_VCPUS];
	int nvcpus;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	char error[320];          /* why the first vCPU that failed stopped */
};

enum { VM_RUNNING, VM_DONE, VM_FAILED };

static int fail(const char *what, int err, const char *hint)
{
	fprintf(stderr, "sidecore microvm: %s: %s%s%s\n", what, strerror(err), hint ? ": " : "", hint ? hint : "");
	return -err;
}

bool sc_vm_available(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- long mode at CPL3 ---- */

static void setup_page_tables(uint8_t *mem)
{
	uint64_t *pml4 = (uint64_t *)(mem + SC_VM_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(mem + SC_VM_PDPT_GPA);
	uint64_t *pd = (uint64_t *)(mem + SC_VM_PD_GPA);
	/* P | RW | US at every level: the guest runs at CPL3 and needs user pages. */
	const uint64_t flags = 0x7;

	pml4[0] = SC_VM_PDPT_GPA | flags;
	pdpt[0] = SC_VM_PD_GPA | flags;
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | flags | 0x80;   /* PS: 2 MiB pages, identity */
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, uint8_t s, uint8_t dpl, uint8_t l)
{
	return (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel,
				     .type = type, .present = 1, .dpl = dpl, .db = l ? 0 : 1,
				     .s = s, .l = l, .g = 1 };
}

static int setup_vcpu_state(struct sc_vm *vm, struct sc_vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t *gdt = (uint64_t *)(vm->mem + SC_VM_GDT_GPA);

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS", errno, NULL);

	/* GDT for the record (the guest never loads a selector): null, user code 64, user data, TSS. */
	gdt[0] = 0;
	gdt[3] = 0x00affa000000ffffull;   /* 0x18: code, DPL3, L */
	gdt[4] = 0x00cff2000000ffffull;   /* 0x20: data, DPL3 */
	gdt[5] = 0x0000890000000000ull | ((SC_VM_TSS_GPA & 0xffffff) << 16) | (SC_VM_TSS_SIZE - 1); /* 0x28: TSS */
	gdt[6] = 0;

	sregs.gdt.base = SC_VM_GDT_GPA;
	sregs.gdt.limit = 7 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;     /* no IDT: any exception is a triple fault, reported as such */
	sregs.cs = seg(0x18 | 3, 0xb, 1, 3, 1);
	sregs.ss = seg(0x20 | 3, 0x3, 1, 3, 0);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	/*
	 * A busy 64-bit TSS (VMX wants one) with an I/O permission bitmap that
	 * allows every port. IOPL=3 alone is not enough: under PVM the guest
	 * really runs in host ring 3, its RFLAGS.IOPL is lost at the first
	 * exit, and the emulated 'out' is then checked against this bitmap.
	 */
	uint8_t *tss = vm->mem + SC_VM_TSS_GPA;
	memset(tss, 0, SC_VM_TSS_SIZE);
	tss[0x66] = 0x68;                       /* I/O map base: right after the 104-byte TSS */
	tss[SC_VM_TSS_SIZE - 1] = 0xff;         /* the byte past the bitmap must be all ones */
	sregs.tr = (struct kvm_segment){ .base = SC_VM_TSS_GPA, .limit = SC_VM_TSS_SIZE - 1,
					 .selector = 0x28, .type = 0xb, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .selector = 0, .type = 2, .present = 1, .unusable = 1 };
	sregs.cr3 = SC_VM_PML4_GPA;
	sregs.cr4 = (1u << 5) | (1u << 9) | (1u << 10);   /* PAE, OSFXSR, OSXMMEXCPT (TSD clear: rdtsc at CPL3) */
	sregs.cr0 = (1u << 0) | (1u << 1) | (1u << 4) | (1u << 5) | (1u << 16) | (1u << 31); /* PE MP ET NE WP PG */
	sregs.efer = (1u << 8) | (1u << 10);   /* LME, LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return fail("KVM_SET_SREGS (long mode at CPL3)", errno, NULL);

	memset(&regs, 0, sizeof(regs));
	regs.rip = SC_VM_IMAGE_GPA;
	regs.rsp = SC_VM_STACK_TOP(v->id);
	regs.rdi = (uint64_t)v->id;        /* guest_main's argument: which vCPU am I */
	regs.rflags = 0x2 | (3u << 12);   /* IOPL=3: in/out allowed at CPL3; IF clear */
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS", errno, NULL);
	return 0;
}

/* Open owner's stats fd (a VM or vCPU fd). An old kernel has none: its counters read as absent. */
static void stats_open(struct stats *st, int owner_fd)
{
	st->fd = ioctl(owner_fd, KVM_GET_STATS_FD, NULL);
	if (st->fd < 0) {
		st->fd = -1;
		return;
	}
	if (pread(st->fd, &st->hdr, sizeof(st->hdr), 0) != sizeof(st->hdr))
		goto bad;
	size_t total = (sizeof(struct kvm_stats_desc) + st->hdr.name_size) * st->hdr.num_desc;
	st->desc = malloc(total);
	if (!st->desc || pread(st->fd, st->desc, total, st->hdr.desc_offset) != (ssize_t)total)
		goto bad;
	return;
bad:
	free(st->desc);
	st->desc = NULL;
	close(st->fd);
	st->fd = -1;
}

static void stats_close(struct stats *st)
{
	if (st->fd >= 0)
		close(st->fd);
	free(st->desc);
	st->fd = -1;
	st->desc = NULL;
}

static const struct kvm_stats_desc *stats_desc(const struct stats *st, uint32_t i)
{
	return (const struct kvm_stats_desc *)(st->desc + i * (sizeof(struct kvm_stats_desc) + st->hdr.name_size));
}

/* A plain counter is one u64; histograms (size > 1) are not read by name. */
static bool stats_is_scalar(const struct kvm_stats_desc *d)
{
	uint32_t type = d->flags & KVM_STATS_TYPE_MASK;
	return d->size == 1 && (type == KVM_STATS_TYPE_CUMULATIVE || type == KVM_STATS_TYPE_INSTANT ||
				type == KVM_STATS_TYPE_PEAK);
}

static uint64_t stats_value(const struct stats *st, const struct kvm_stats_desc *d)
{
	uint64_t val;
	if (pread(st->fd, &val, sizeof(val), (off_t)(st->hdr.data_offset + d->offset)) != sizeof(val))
		return UINT64_MAX;
	return val;
}

static uint64_t stats_read(const struct stats *st, const char *name)
{
	if (st->fd < 0)
		return UINT64_MAX;
	for (uint32_t i = 0; i < st->hdr.num_desc; i++) {
		const struct kvm_stats_desc *d = stats_desc(st, i);
		if (stats_is_scalar(d) && strncmp(d->name, name, st->hdr.name_size) == 0)
			return stats_value(st, d);
	}
	return UINT64_MAX;
}

static int stats_each(const struct stats *st, sc_vm_stat_fn fn, void *ctx)
{
	int n = 0;

	if (st->fd < 0)
		return -ENOTSUP;
	for (uint32_t i = 0; i < st->hdr.num_desc; i++) {
		const struct kvm_stats_desc *d = stats_desc(st, i);
		if (!stats_is_scalar(d))
			continue;
		fn(ctx, d->name, stats_value(st, d));
		n++;
	}
	return n;
}

uint64_t sc_vm_vcpu_stat(struct sc_vm *vm, int vcpu, const char *name)
{
	if (vcpu < 0 || vcpu >= vm->nvcpus)
		return UINT64_MAX;
	return stats_read(&vm->vcpus[vcpu].stats, name);
}

uint64_t sc_vm_vcpu_stat_sum(struct sc_vm *vm, const char *name)
{
	uint64_t sum = 0;

	for (int i = 0; i < vm->nvcpus; i++) {
		uint64_t v = stats_read(&vm->vcpus[i].stats, name);
		if (v == UINT64_MAX)
			return UINT64_MAX;
		sum += v;
	}
	return sum;
}

uint64_t sc_vm_stat(struct sc_vm *vm, const char *name)
{
	return stats_read(&vm->stats, name);
}

int sc_vm_stat_each(struct sc_vm *vm, int vcpu, sc_vm_stat_fn fn, void *ctx)
{
	if (vcpu < -1 || vcpu >= vm->nvcpus)
		return -EINVAL;
	return stats_each(vcpu < 0 ? &vm->stats : &vm->vcpus[vcpu].stats, fn, ctx);
}

int sc_vm_create(int nvcpus, struct sc_vm **out)
{
	struct sc_vm *vm = calloc(1, sizeof(*vm));
	size_t image = (size_t)(sc_guest_image_end - sc_guest_image);
	uint64_t mem_size = SC_VM_MEM_SIZE(nvcpus);
	int ret;

	if (!vm)
		return -ENOMEM;
	if (nvcpus < 1 || nvcpus > SC_VM_MAX_VCPUS) {
		free(vm);
		return fail("microvm", EINVAL, "between 1 and 8 vCPUs");
	}
	vm->kvm_fd = vm->vm_fd = vm->memfd = -1;
	for (int i = 0; i < SC_VM_MAX_VCPUS; i++)
		vm->vcpus[i] = (struct sc_vcpu){ .vm = vm, .id = i, .fd = -1, .stats = { .fd = -1 } };
	vm->stats.fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	/* Timeouts must not move with the wall clock (NTP steps, suspend). */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cv, &ca);
	pthread_condattr_destroy(&ca);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = fail("/dev/kvm", errno, errno == EACCES ? "add your user to the kvm group"
					     : "KVM is not available on this machine (no /dev/kvm)");
		goto err;
	}
	/* api.rst 4.1: applications should refuse to run if KVM_GET_API_VERSION is not 12. */
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		char what[96];
		snprintf(what, sizeof(what), "/dev/kvm: KVM_GET_API_VERSION returned %d, not %d", api, KVM_API_VERSION);
		ret = fail(what, api < 0 ? errno : EPROTO, "this kernel's KVM is not supported");
		goto err;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = fail("KVM_CREATE_VM", errno, errno == EBUSY ? "another hypervisor owns VMX/SVM on this cpu"
					       : "is the kvm_intel/kvm_amd module loaded?");
		goto err;
	}
	/*
	 * api.rst 4.48: Intel needs three pages below 4 GiB for a real-mode TSS
	 * even if we never use real mode; on AMD the ioctl is accepted and unused.
	 */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	stats_open(&vm->stats, vm->vm_fd);

	vm->mem_size = mem_size;
	vm->memfd = sc_mem_memfd_create("sidecore-microvm", mem_size);
	if (vm->memfd < 0) {
		ret = fail("memfd for guest memory", -vm->memfd, NULL);
		goto err;
	}
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		ret = fail("mapping guest memory", errno, NULL);
		goto err;
	}
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		ret = fail("KVM_SET_USER_MEMORY_REGION", errno, NULL);
		goto err;
	}
	if (image > SC_VM_IMAGE_MAX) {
		ret = fail("guest image", EFBIG, "larger than its 1 MiB slot");
		goto err;
	}
	memcpy(vm->mem + SC_VM_IMAGE_GPA, sc_guest_image, image);
	setup_page_tables(vm->mem);

	int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) {
		ret = fail("KVM_GET_VCPU_MMAP_SIZE", errno, NULL);
		goto err;
	}
	vm->run_size = (size_t)sz;
	for (int i = 0; i < nvcpus; i++) {
		struct sc_vcpu *v = &vm->vcpus[i];
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			ret = fail("KVM_CREATE_VCPU", errno, NULL);
			goto err;
		}
		vm->nvcpus = i + 1;
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			ret = fail("mapping kvm_run", errno, NULL);
			goto err;
		}
		ret = setup_vcpu_state(vm, v);
		if (ret < 0)
			goto err;
		stats_open(&v->stats, v->fd);
	}
	*out = vm;
	return 0;
err:
	sc_vm_destroy(vm);
	return ret;
}

void sc_vm_destroy(struct sc_vm *vm)
{
	if (!vm)
		return;
	sc_vm_stop(vm);
	for (int i = 0; i < vm->nvcpus; i++) {
		struct sc_vcpu *v = &vm->vcpus[i];
		if (v->started)
			pthread_join(v->thread, NULL);
		if (v->run)
			munmap(v->run, vm->run_size);
		stats_close(&v->stats);
		if (v->fd >= 0)
			close(v->fd);
	}
	stats_close(&vm->stats);
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->memfd >= 0)
		close(vm->memfd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	pthread_cond_destroy(&vm->cv);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

uint8_t *sc_vm_mem(struct sc_vm *vm) { return vm->mem; }
int sc_vm_memfd(struct sc_vm *vm) { return vm->memfd; }
uint64_t sc_vm_mem_size(struct sc_vm *vm) { return vm->mem_size; }
int sc_vm_nvcpus(struct sc_vm *vm) { return vm->nvcpus; }
int sc_vm_vcpu_tid(struct sc_vm *vm, int vcpu) { return __atomic_load_n(&vm->vcpus[vcpu].tid, __ATOMIC_ACQUIRE); }
const char *sc_vm_error(struct sc_vm *vm) { return vm->error; }

struct sc_vm_mailbox *sc_vm_mailbox(struct sc_vm *vm, int vcpu)
{
	return (struct sc_vm_mailbox *)(vm->mem + SC_VM_MAILBOX_GPA(vcpu));
}

const uint32_t *sc_vm_samples(struct sc_vm *vm, int vcpu)
{
	return (const uint32_t *)(vm->mem + SC_VM_SAMPLES_GPA(vcpu));
}

int sc_vm_on_pio(struct sc_vm *vm, uint16_t port, uint16_t n, sc_vm_pio_fn fn, void *ctx)
{
	if (vm->npio == MAX_HANDLERS)
		return fail("sc_vm_on_pio", ENOSPC, "at most 8 port ranges (MAX_HANDLERS in microvm/vm.c)");
	vm->pio[vm->npio++] = (struct pio_handler){ port, n, fn, ctx };
	return 0;
}

int sc_vm_on_mmio(struct sc_vm *vm, uint64_t addr, uint64_t len, sc_vm_mmio_fn fn, void *ctx)
{
	if (vm->nmmio == MAX_HANDLERS)
		return fail("sc_vm_on_mmio", ENOSPC, "at most 8 MMIO ranges (MAX_HANDLERS in microvm/vm.c)");
	vm->mmio[vm->nmmio++] = (struct mmio_handler){ addr, len, fn, ctx };
	return 0;
}

/*
 * KVM_IOEVENTFD (api.rst 4.59): a guest write of len bytes (1, 2, 4 or 8) to
 * addr signals fd in the kernel. With datamatch, only writes of exactly that
 * value do; others exit to user space as before. A deassign must repeat the
 * same addr, len, flags and datamatch.
 */
static int ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd,
		     const uint64_t *datamatch, bool remove)
{
	struct kvm_ioeventfd io = {
		.addr = addr, .len = len, .fd = fd, .datamatch = datamatch ? *datamatch : 0,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (remove ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0) |
			 (datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
	};
	char what[96];

	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) == 0)
		return 0;
	int err = errno;
	snprintf(what, sizeof(what), "KVM_IOEVENTFD %s %s 0x%llx, %u bytes%s", remove ? "removing" : "on",
		 pio ? "port" : "MMIO", (unsigned long long)addr, len, datamatch ? ", datamatch" : "");
	return fail(what, err, err == EEXIST ? "one is already registered there"
			       : err == ENOENT ? "none is registered there with these parameters"
			       : err == EINVAL ? "len must be 1, 2, 4 or 8 and the range must not wrap" : NULL);
}

int sc_vm_ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd)
{
	return ioeventfd(vm, addr, pio, len, fd, NULL, false);
}

int sc_vm_ioeventfd_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd)
{
	return ioeventfd(vm, addr, pio, len, fd, NULL, true);
}

int sc_vm_ioeventfd_match(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd, uint64_t value)
{
	return ioeventfd(vm, addr, pio, len, fd, &value, false);
}

int sc_vm_ioeventfd_match_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd, uint64_t value)
{
	return ioeventfd(vm, addr, pio, len, fd, &value, true);
}

/* ---- the vCPU thread ---- */

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39   /* newer than Debian 12's <linux/kvm.h> */
#endif

static const char *exit_name(uint32_t r)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN", [KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
		[KVM_EXIT_IO] = "KVM_EXIT_IO", [KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
		[KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG", [KVM_EXIT_HLT] = "KVM_EXIT_HLT",
		[KVM_EXIT_MMIO] = "KVM_EXIT_MMIO", [KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN", [KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
		[KVM_EXIT_INTR] = "KVM_EXIT_INTR", [KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
		[KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS", [KVM_EXIT_NMI] = "KVM_EXIT_NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR", [KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
		[KVM_EXIT_IOAPIC_EOI] = "KVM_EXIT_IOAPIC_EOI", [KVM_EXIT_X86_RDMSR] = "KVM_EXIT_X86_RDMSR",
		[KVM_EXIT_X86_WRMSR] = "KVM_EXIT_X86_WRMSR", [KVM_EXIT_DIRTY_RING_FULL] = "KVM_EXIT_DIRTY_RING_FULL",
		[KVM_EXIT_X86_BUS_LOCK] = "KVM_EXIT_X86_BUS_LOCK", [KVM_EXIT_NOTIFY] = "KVM_EXIT_NOTIFY",
		[KVM_EXIT_MEMORY_FAULT] = "KVM_EXIT_MEMORY_FAULT",
	};
	return r < SC_ARRAY_SIZE(names) && names[r] ? names[r] : "unknown exit";
}

static const char *exit_hint(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_SHUTDOWN:
		return "a triple fault: the guest took an exception (it has no IDT), e.g. a bad memory access or a privileged instruction at CPL3";
	case KVM_EXIT_FAIL_ENTRY:
		return "KVM refused the vCPU state (segments, control registers)";
	case KVM_EXIT_INTERNAL_ERROR:
		return "KVM could not emulate an instruction (run.internal.suberror says why)";
	case KVM_EXIT_HLT:
		return "the guest halted (it cannot at CPL3: is it running at CPL0?)";
	case KVM_EXIT_MEMORY_FAULT:
		return "the guest touched memory KVM could not map: outside the memslot?";
	case KVM_EXIT_SYSTEM_EVENT:
		return "the guest asked for a reset or power-off";
	default:
		return "the VMM does not handle this exit";
	}
}

/* One line: which exit, where the guest was, and what it probably means. */
/* Record why a vCPU stopped; the VM keeps the first reason. Returns the state to set. */
static int vcpu_stopped(struct sc_vcpu *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vcpu_stopped(struct sc_vcpu *v, const char *fmt, ...)
{
	struct sc_vm *vm = v->vm;
	char msg[288];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&vm->lock);
	if (!vm->error[0])
		snprintf(vm->error, sizeof(vm->error), "vCPU %d: %s", v->id, msg);
	pthread_mutex_unlock(&vm->lock);
	return VM_FAILED;
}

/* Why a port or MMIO access could not be served (err from handle_io/handle_mmio), into buf. */
static const char *access_problem(int err, char *buf, size_t len)
{
	if (err == -ENOENT)
		return "no handler is registered for it (sc_vm_on_pio / sc_vm_on_mmio)";
	if (err == -EOPNOTSUPP)
		return "string I/O (rep ins/outs) is not supported";
	snprintf(buf, len, "its handler failed: %s", strerror(-err));
	return buf;
}

/* One line: which exit, where the guest was, and what it probably means. */
static int vcpu_failed(struct sc_vcpu *v, uint32_t reason, int err)
{
	struct kvm_run *r = v->run;
	struct kvm_regs regs = { 0 };
	unsigned long long rip;
	char why[96];
	int state;

	rip = ioctl(v->fd, KVM_GET_REGS, &regs) == 0 ? (unsigned long long)regs.rip : ~0ull;
	if (reason == KVM_EXIT_IO)
		state = vcpu_stopped(v, "stopped: %s (%u): %u-byte %s port 0x%x at guest rip 0x%llx: %s",
				     exit_name(reason), reason, r->io.size,
				     r->io.direction == KVM_EXIT_IO_OUT ? "write to" : "read from",
				     r->io.port, rip, access_problem(err, why, sizeof(why)));
	else if (reason == KVM_EXIT_MMIO)
		state = vcpu_stopped(v, "stopped: %s (%u): %u-byte %s 0x%llx at guest rip 0x%llx: %s",
				     exit_name(reason), reason, r->mmio.len, r->mmio.is_write ? "write to" : "read from",
				     (unsigned long long)r->mmio.phys_addr, rip, access_problem(err, why, sizeof(why)));
	else
		state = vcpu_stopped(v, "stopped: %s (%u) at guest rip 0x%llx: %s", exit_name(reason),
				     reason, rip, exit_hint(reason));
	fprintf(stderr, "sidecore microvm: %s\n", v->vm->error);
	return state;
}

static const struct pio_handler *find_pio(const struct sc_vm *vm, uint16_t port)
{
	for (unsigned i = 0; i < vm->npio; i++)
		if ((uint16_t)(port - vm->pio[i].port) < vm->pio[i].n)
			return &vm->pio[i];
	return NULL;
}

static const struct mmio_handler *find_mmio(const struct sc_vm *vm, uint64_t addr)
{
	for (unsigned i = 0; i < vm->nmmio; i++)
		if (addr - vm->mmio[i].addr < vm->mmio[i].len)
			return &vm->mmio[i];
	return NULL;
}

/*
 * KVM_EXIT_IO (api.rst 5, kvm_run): the data is at run + data_offset. Returns
 * 1 for the "done" port, 0 to resume, or -errno to stop the vCPU. Handlers
 * take writes; a read of a handled port reads all ones, as a bus with
 * nothing driving it does.
 */
static int handle_io(struct sc_vm *vm, struct kvm_run *r)
{
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	const struct pio_handler *h;
	uint32_t value = 0;

	if (r->io.direction == KVM_EXIT_IO_OUT && r->io.port == SC_VM_PORT_DONE)
		return 1;
	h = find_pio(vm, r->io.port);
	if (!h)
		return -ENOENT;
	if (r->io.count != 1 || r->io.size > sizeof(value))
		return -EOPNOTSUPP;
	if (r->io.direction == KVM_EXIT_IO_IN) {
		memset(data, 0xff, r->io.size);
		return 0;
	}
	memcpy(&value, data, r->io.size);
	return h->fn(h->ctx, r->io.port, value, r->io.size);
}

/* KVM_EXIT_MMIO: same contract as handle_io. */
static int handle_mmio(struct sc_vm *vm, struct kvm_run *r)
{
	const struct mmio_handler *h = find_mmio(vm, r->mmio.phys_addr);
	uint64_t value = 0;

	if (!h)
		return -ENOENT;
	if (!r->mmio.is_write) {
		memset(r->mmio.data, 0xff, sizeof(r->mmio.data));
		return 0;
	}
	memcpy(&value, r->mmio.data, r->mmio.len <= 8 ? r->mmio.len : 8);
	return h->fn(h->ctx, r->mmio.phys_addr, value, r->mmio.len);
}

static void set_state(struct sc_vcpu *v, int state)
{
	pthread_mutex_lock(&v->vm->lock);
	__atomic_store_n(&v->state, state, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&v->vm->cv);
	pthread_mutex_unlock(&v->vm->lock);
}

static int vcpu_loop(struct sc_vcpu *v)
{
	struct sc_vm *vm = v->vm;

	for (;;) {
		if (__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE))
			return vcpu_stopped(v, "stopped by the VMM");
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;   /* kicked out by sc_vm_stop's signal: re-check stop */
			return vcpu_stopped(v, "KVM_RUN: %s", strerror(errno));
		}
		int ret;
		uint32_t reason = v->run->exit_reason;
		switch (reason) {
		case KVM_EXIT_IO: ret = handle_io(vm, v->run); break;
		case KVM_EXIT_MMIO: ret = handle_mmio(vm, v->run); break;
		case KVM_EXIT_INTR: ret = 0; break;   /* a signal: loop and re-check stop */
		default: ret = -EFAULT; break;
		}
		if (ret == 1)
			return VM_DONE;
		if (ret < 0)
			return vcpu_failed(v, reason, ret);
	}
}

static void *vcpu_main(void *arg)
{
	struct sc_vcpu *v = arg;

	/* Pinned before its first instruction by start_vcpu's thread attributes. */
	__atomic_store_n(&v->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	set_state(v, vcpu_loop(v));
	return NULL;
}

static void on_sigusr1(int sig) { (void)sig; }

/*
 * The thread is created already pinned (the affinity is in its attributes),
 * so a cpu that does not exist or is outside our cpuset fails here, in the
 * caller, and the guest never runs a single instruction on the wrong cpu.
 */
static int start_vcpu(struct sc_vcpu *v, int cpu)
{
	pthread_attr_t attr;
	char what[64], name[16];
	int ret;

	v->cpu = cpu;
	v->state = VM_RUNNING;
	v->stop = 0;
	v->run->immediate_exit = 0;   /* left set by an earlier sc_vm_stop */
	pthread_attr_init(&attr);
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	ret = pthread_create(&v->thread, &attr, vcpu_main, v);
	pthread_attr_destroy(&attr);
	if (ret) {
		snprintf(what, sizeof(what), "starting vCPU %d on cpu %d", v->id, cpu);
		return fail(what, ret, ret == EINVAL ? "is that cpu online and in this process's cpuset?" : NULL);
	}
	snprintf(name, sizeof(name), "sc-vcpu%d", v->id);
	pthread_setname_np(v->thread, name);
	v->started = true;
	return 0;
}

int sc_vm_start(struct sc_vm *vm, const int *cpus)
{
	/* A signal with a no-op handler (no SA_RESTART) makes KVM_RUN return EINTR: how we stop a spinning guest. */
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	for (int i = 0; i < vm->nvcpus; i++) {
		int ret = start_vcpu(&vm->vcpus[i], cpus ? cpus[i] : -1);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void sc_vm_stop(struct sc_vm *vm)
{
	for (int i = 0; i < vm->nvcpus; i++) {
		struct sc_vcpu *v = &vm->vcpus[i];
		if (!v->started || __atomic_load_n(&v->state, __ATOMIC_ACQUIRE) != VM_RUNNING)
			continue;
		__atomic_store_n(&v->stop, 1, __ATOMIC_RELEASE);
		/* immediate_exit closes the race with a signal that lands just before KVM_RUN. */
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, SIGUSR1);
	}
}

/* Any vCPU still running? Under vm->lock. */
static bool any_running(struct sc_vm *vm)
{
	for (int i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].started && vm->vcpus[i].state == VM_RUNNING)
			return true;
	return false;
}

int sc_vm_wait(struct sc_vm *vm, unsigned timeout_ms)
{
	struct timespec deadline;
	bool running, failed = false;

	clock_gettime(CLOCK_MONOTONIC, &deadline);   /* vm->cv waits on the monotonic clock */
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&vm->lock);
	while (any_running(vm))
		if (pthread_cond_timedwait(&vm->cv, &vm->lock, &deadline) == ETIMEDOUT)
			break;
	running = any_running(vm);
	if (running && !vm->error[0])
		snprintf(vm->error, sizeof(vm->error), "the guest did not finish within %u ms", timeout_ms);
	pthread_mutex_unlock(&vm->lock);

	if (running)
		sc_vm_stop(vm);
	for (int i = 0; i < vm->nvcpus; i++) {
		struct sc_vcpu *v = &vm->vcpus[i];
		if (!v->started)
			continue;
		pthread_join(v->thread, NULL);
		v->started = false;
		failed |= v->state != VM_DONE;
	}
	return running ? -ETIMEDOUT : failed ? -EFAULT : 0;
}

uint32_t sc_vm_submit(struct sc_vm *vm, int vcpu)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(vm, vcpu);
	uint32_t seq = mb->cmd_seq + 1;

	mb->done_seq = 0;
	/* Pairs with the guest's acquire of cmd_seq: the command is complete before it sees the number. */
	sc_store_release(&mb->cmd_seq, seq);
	return seq;
}

int sc_vm_poll_done(struct sc_vm *vm, int vcpu, uint32_t seq)
{
	/* Pairs with the guest's release of done_seq: its results are visible. */
	if (sc_load_acquire(&sc_vm_mailbox(vm, vcpu)->done_seq) == seq)
		return 1;
	return __atomic_load_n(&vm->vcpus[vcpu].state, __ATOMIC_ACQUIRE) == VM_RUNNING ? 0 : -EFAULT;
}

int sc_vm_run_workload(struct sc_vm *vm, int vcpu, unsigned timeout_ms)
{
	struct sc_vm_mailbox *mb = sc_vm_mailbox(vm, vcpu);
	struct timespec ts = { 0, 200000 };
	uint64_t waited_us = 0;
	uint32_t seq = sc_vm_submit(vm, vcpu);
	int done;

	while ((done = sc_vm_poll_done(vm, vcpu, seq)) != 1) {
		if (done < 0)
			return -EFAULT;
		if (waited_us / 1000 >= timeout_ms) {
			pthread_mutex_lock(&vm->lock);
			snprintf(vm->error, sizeof(vm->error), "vCPU %d: workload %u did not finish within %u ms",
				 vcpu, mb->workload, timeout_ms);
			pthread_mutex_unlock(&vm->lock);
			return -ETIMEDOUT;
		}
		nanosleep(&ts, NULL);
		waited_us += 200;
	}
	return 0;
}

/* ---- the ping-pong peer ---- */

static void *echo_main(void *arg)
{
	struct sc_vm_echo *e = arg;
	uint64_t patience = sc_tsc_hz() * 5;

	for (uint64_t i = 1; i <= e->n; i++) {
		uint64_t deadline = sc_rdtsc() + patience;
		/* Acquire pairs with the guest's release of ping; our release with its acquire of pong. */
		while (sc_load_acquire(&e->mb->ping) != i)
			if (sc_rdtsc() > deadline)
				return NULL;   /* the guest died: do not spin forever */
		sc_store_release(&e->mb->pong, i);
	}
	return NULL;
}

int sc_vm_echo_start(struct sc_vm *vm, int vcpu, uint64_t n, int cpu, struct sc_vm_echo *e)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int ret;

	*e = (struct sc_vm_echo){ .mb = sc_vm_mailbox(vm, vcpu), .n = n, .cpu = cpu };
	e->mb->ping = e->mb->pong = 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_attr_init(&attr);
	/* Created already pinned: the peer's first ping is answered from its own cpu. */
	pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	ret = pthread_create(&e->thread, &attr, echo_main, e);
	pthread_attr_destroy(&attr);
	if (ret)
		return fail("starting the ping-pong peer", ret, "check the cpu number");
	return 0;
}

void sc_vm_echo_join(struct sc_vm_echo *e)
{
	pthread_join(e->thread, NULL);
}
