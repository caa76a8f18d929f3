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
#include "guestmem/guestmem.h"

/* The guest image, linked in from guest.bin (microvm/blob.S). */
extern const uint8_t sc_guest_image[], sc_guest_image_end[];

#define MAX_HANDLERS 8

struct pio_handler { uint16_t port, n; sc_vm_pio_fn fn; void *ctx; };
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

	/* binary stats (KVM_GET_STATS_FD) */
	int stats_fd;
	struct kvm_stats_header stats_hdr;
	uint8_t *stats_desc;
};

struct sc_vm {
	int kvm_fd, vm_fd, memfd;
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
	char error[256];          /* why the first vCPU that failed stopped */
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

/* The descriptors are read once; values are read by offset on each query. */
static void stats_open(struct sc_vcpu *v)
{
	v->stats_fd = ioctl(v->fd, KVM_GET_STATS_FD, NULL);
	if (v->stats_fd < 0) {
		v->stats_fd = -1;
		return;   /* old kernel: counters read as unavailable */
	}
	if (pread(v->stats_fd, &v->stats_hdr, sizeof(v->stats_hdr), 0) != sizeof(v->stats_hdr))
		goto bad;
	size_t dsz = sizeof(struct kvm_stats_desc) + v->stats_hdr.name_size;
	size_t total = dsz * v->stats_hdr.num_desc;
	v->stats_desc = malloc(total);
	if (!v->stats_desc || pread(v->stats_fd, v->stats_desc, total, v->stats_hdr.desc_offset) != (ssize_t)total)
		goto bad;
	return;
bad:
	free(v->stats_desc);
	v->stats_desc = NULL;
	close(v->stats_fd);
	v->stats_fd = -1;
}

uint64_t sc_vm_vcpu_stat(struct sc_vm *vm, int vcpu, const char *name)
{
	struct sc_vcpu *v = &vm->vcpus[vcpu];
	size_t dsz = sizeof(struct kvm_stats_desc) + v->stats_hdr.name_size;

	if (vcpu < 0 || vcpu >= vm->nvcpus || v->stats_fd < 0)
		return UINT64_MAX;
	for (uint32_t i = 0; i < v->stats_hdr.num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(v->stats_desc + i * dsz);
		if (strcmp(d->name, name))
			continue;
		uint64_t val;
		if (pread(v->stats_fd, &val, sizeof(val), v->stats_hdr.data_offset + d->offset) != sizeof(val))
			return UINT64_MAX;
		return val;
	}
	return UINT64_MAX;
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
		vm->vcpus[i] = (struct sc_vcpu){ .vm = vm, .id = i, .fd = -1, .stats_fd = -1 };
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cv, NULL);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = fail("/dev/kvm", errno, errno == EACCES ? "add your user to the kvm group"
					     : "KVM is not available on this machine (no /dev/kvm)");
		goto err;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		ret = fail("/dev/kvm", EINVAL, "KVM API version is not 12");
		goto err;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = fail("KVM_CREATE_VM", errno, NULL);
		goto err;
	}
	/* Intel needs three pages for its real-mode TSS even if we never use real mode. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);

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
		stats_open(v);
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
		if (v->stats_fd >= 0)
			close(v->stats_fd);
		free(v->stats_desc);
		if (v->fd >= 0)
			close(v->fd);
	}
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
		return -ENOSPC;
	vm->pio[vm->npio++] = (struct pio_handler){ port, n, fn, ctx };
	return 0;
}

int sc_vm_on_mmio(struct sc_vm *vm, uint64_t addr, uint64_t len, sc_vm_mmio_fn fn, void *ctx)
{
	if (vm->nmmio == MAX_HANDLERS)
		return -ENOSPC;
	vm->mmio[vm->nmmio++] = (struct mmio_handler){ addr, len, fn, ctx };
	return 0;
}

static int ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd, bool remove)
{
	struct kvm_ioeventfd io = {
		.addr = addr, .len = len, .fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (remove ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
	};
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return fail(pio ? "KVM_IOEVENTFD (port)" : "KVM_IOEVENTFD (mmio)", errno, NULL);
	return 0;
}

int sc_vm_ioeventfd(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd)
{
	return ioeventfd(vm, addr, pio, len, fd, false);
}

int sc_vm_ioeventfd_remove(struct sc_vm *vm, uint64_t addr, bool pio, unsigned len, int fd)
{
	return ioeventfd(vm, addr, pio, len, fd, true);
}

/* ---- the vCPU thread ---- */

static const char *exit_name(uint32_t r)
{
	static const char *names[] = {
		[KVM_EXIT_UNKNOWN] = "UNKNOWN", [KVM_EXIT_EXCEPTION] = "EXCEPTION", [KVM_EXIT_IO] = "IO",
		[KVM_EXIT_HYPERCALL] = "HYPERCALL", [KVM_EXIT_DEBUG] = "DEBUG", [KVM_EXIT_HLT] = "HLT",
		[KVM_EXIT_MMIO] = "MMIO", [KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "SHUTDOWN", [KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY", [KVM_EXIT_INTR] = "INTR",
		[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR", [KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
	};
	return r < sizeof(names) / sizeof(names[0]) && names[r] ? names[r] : "?";
}

static const char *exit_hint(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_SHUTDOWN:
		return "a triple fault: the guest took an exception (it has no IDT), e.g. a bad memory access or a privileged instruction at CPL3";
	case KVM_EXIT_FAIL_ENTRY:
		return "KVM refused the vCPU state (segments, control registers)";
	case KVM_EXIT_INTERNAL_ERROR:
		return "KVM could not emulate an instruction";
	case KVM_EXIT_HLT:
		return "the guest halted";
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
	char msg[200];
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

/* One line: which exit, where the guest was, and what it probably means. */
static int vcpu_failed(struct sc_vcpu *v, uint32_t reason)
{
	struct kvm_regs regs = { 0 };
	int state;

	ioctl(v->fd, KVM_GET_REGS, &regs);
	if (reason == KVM_EXIT_IO)
		state = vcpu_stopped(v, "stopped: write to port 0x%x at guest rip 0x%llx has no handler",
				     v->run->io.port, (unsigned long long)regs.rip);
	else if (reason == KVM_EXIT_MMIO)
		state = vcpu_stopped(v, "stopped: MMIO write to 0x%llx at guest rip 0x%llx has no handler",
				     (unsigned long long)v->run->mmio.phys_addr, (unsigned long long)regs.rip);
	else
		state = vcpu_stopped(v, "stopped: exit %s (%u) at guest rip 0x%llx: %s", exit_name(reason),
				     reason, (unsigned long long)regs.rip, exit_hint(reason));
	fprintf(stderr, "sidecore microvm: %s\n", v->vm->error);
	return state;
}

static int handle_io(struct sc_vm *vm, struct kvm_run *r)
{
	uint32_t value = 0;

	if (r->io.direction != KVM_EXIT_IO_OUT || r->io.count != 1)
		return -EINVAL;
	memcpy(&value, (uint8_t *)r + r->io.data_offset, r->io.size);
	if (r->io.port == SC_VM_PORT_DONE)
		return 1;
	for (unsigned i = 0; i < vm->npio; i++)
		if ((uint16_t)(r->io.port - vm->pio[i].port) < vm->pio[i].n)
			return vm->pio[i].fn(vm->pio[i].ctx, r->io.port, value, r->io.size);
	return -ENOENT;
}

static int handle_mmio(struct sc_vm *vm, struct kvm_run *r)
{
	uint64_t value = 0;

	if (!r->mmio.is_write) {
		memset(r->mmio.data, 0xff, sizeof(r->mmio.data));   /* reads of nothing read ones */
		return 0;
	}
	memcpy(&value, r->mmio.data, r->mmio.len <= 8 ? r->mmio.len : 8);
	for (unsigned i = 0; i < vm->nmmio; i++)
		if (r->mmio.phys_addr - vm->mmio[i].addr < vm->mmio[i].len)
			return vm->mmio[i].fn(vm->mmio[i].ctx, r->mmio.phys_addr, value, r->mmio.len);
	return -ENOENT;
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
		case KVM_EXIT_INTR: ret = 0; break;
		default: ret = -EFAULT; break;
		}
		if (ret == 1)
			return VM_DONE;
		if (ret < 0)
			return vcpu_failed(v, reason);
	}
}

static void *vcpu_main(void *arg)
{
	struct sc_vcpu *v = arg;

	__atomic_store_n(&v->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (v->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(v->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	set_state(v, vcpu_loop(v));
	return NULL;
}

static void on_sigusr1(int sig) { (void)sig; }

int sc_vm_start(struct sc_vm *vm, const int *cpus)
{
	/* A signal with a no-op handler (no SA_RESTART) makes KVM_RUN return EINTR: how we stop a spinning guest. */
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	for (int i = 0; i < vm->nvcpus; i++) {
		struct sc_vcpu *v = &vm->vcpus[i];
		char name[16];

		v->cpu = cpus ? cpus[i] : -1;
		v->state = VM_RUNNING;
		v->stop = 0;
		int ret = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (ret)
			return fail("starting a vCPU thread", ret, NULL);
		snprintf(name, sizeof(name), "sc-vcpu%d", i);
		pthread_setname_np(v->thread, name);
		v->started = true;
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

	clock_gettime(CLOCK_REALTIME, &deadline);
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
