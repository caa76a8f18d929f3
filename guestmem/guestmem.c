/* SPDX-License-Identifier: MIT */
#include "guestmem/guestmem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void sc_mem_init(struct sc_mem *m)
{
	memset(m, 0, sizeof(*m));
}

/*
 * Every isolated region's reservation in the process, for the fault
 * handler (sc_mem_isolated_at), which may run on any thread at any moment:
 * a fixed array of atomics, no lock. Tables are changed by several control
 * threads at once (one per device), so a slot is claimed by a CAS of its
 * base. A slot freed while a handler reads it can pair the old base with
 * the next reservation's length; a reservation is only freed once no
 * sidecore can touch it, so that needs a fault elsewhere at that very
 * moment, inside the address range just unmapped.
 */
#define ISOLATED_MAX (SC_MEM_MAX_REGIONS * 128)   /* 128 isolated devices of 32 regions */
static struct {
	uintptr_t base;   /* 0: free */
	size_t len;       /* 0 until the slot's claimer sets it */
} isolated_zones[ISOLATED_MAX];

static int isolated_zone_add(const void *base, size_t len)
{
	for (unsigned i = 0; i < ISOLATED_MAX; i++) {
		uintptr_t free_base = 0;
		if (__atomic_compare_exchange_n(&isolated_zones[i].base, &free_base, (uintptr_t)base, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			__atomic_store_n(&isolated_zones[i].len, len, __ATOMIC_RELEASE);
			return 0;
		}
	}
	return -ENOSPC;
}

static void isolated_zone_remove(const void *base)
{
	for (unsigned i = 0; i < ISOLATED_MAX; i++) {
		if (__atomic_load_n(&isolated_zones[i].base, __ATOMIC_RELAXED) != (uintptr_t)base)
			continue;
		/* Length first: a reader that still sees the base sees an empty range. */
		__atomic_store_n(&isolated_zones[i].len, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&isolated_zones[i].base, 0, __ATOMIC_RELEASE);
		return;
	}
}

bool sc_mem_isolated_at(const void *addr)
{
	for (unsigned i = 0; i < ISOLATED_MAX; i++) {
		uintptr_t base = __atomic_load_n(&isolated_zones[i].base, __ATOMIC_ACQUIRE);
		if (base && (uintptr_t)addr - base < __atomic_load_n(&isolated_zones[i].len, __ATOMIC_ACQUIRE))
			return true;
	}
	return false;
}

static void region_release(struct sc_mem_region *r)
{
	if (r->isolated)
		isolated_zone_remove(r->map_base);
	if (r->map_base)
		munmap(r->map_base, r->map_len);
	if (r->fd >= 0)
		close(r->fd);
}

void sc_mem_fini(struct sc_mem *m)
{
	for (unsigned i = 0; i < m->nregions; i++)
		region_release(&m->regions[i]);
	m->nregions = 0;
}

/* Insert r keeping the array sorted and disjoint. */
static int region_insert(struct sc_mem *m, const struct sc_mem_region *r)
{
	uint64_t last;

	if (r->size == 0 || __builtin_add_overflow(r->gpa, r->size - 1, &last))
		return -EINVAL;
	if (m->nregions == SC_MEM_MAX_REGIONS)
		return -ENOSPC;

	unsigned pos = 0;
	while (pos < m->nregions && m->regions[pos].gpa < r->gpa)
		pos++;
	/* Disjoint from the neighbours on both sides (inclusive ends: no overflow). */
	if (pos > 0) {
		const struct sc_mem_region *p = &m->regions[pos - 1];
		if (p->gpa + (p->size - 1) >= r->gpa)
			return -EEXIST;
	}
	if (pos < m->nregions && m->regions[pos].gpa <= last)
		return -EEXIST;

	memmove(&m->regions[pos + 1], &m->regions[pos],
		(m->nregions - pos) * sizeof(m->regions[0]));
	m->regions[pos] = *r;
	m->nregions++;
	return 0;
}

static int add_fd(struct sc_mem *m, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset, unsigned prot,
		  bool isolated)
{
	struct sc_mem_region r = { .gpa = gpa, .size = size, .fd = fd,
				   .fd_offset = fd_offset, .prot = prot };
	uint64_t end;
	int ret;

	if (size == 0 || size > SIZE_MAX || __builtin_add_overflow(fd_offset, size, &end) ||
	    end > (uint64_t)INT64_MAX) {
		ret = -EINVAL;
		goto err_close;
	}
	/* The front end says how large its file is; fstat says how large it is. */
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto err_close;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < end) {
		ret = -ERANGE;
		goto err_close;
	}
	/* mmap wants a page-aligned offset; map from the page below and point inside. */
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t skew = fd_offset & (page - 1);
	int mprot = PROT_READ | ((prot & SC_PERM_WRITE) ? PROT_WRITE : 0);

	r.map_len = (size_t)(size + skew);
	/*
	 * Isolated: only address space, no guest page (PROT_NONE, no file, no
	 * swap). sc_mem_grant maps pages over it with MAP_FIXED: no other
	 * mapping of this process can have taken those addresses meanwhile.
	 */
	r.isolated = isolated;
	r.map_base = isolated ? mmap(NULL, r.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
			      : mmap(NULL, r.map_len, mprot, MAP_SHARED, fd, (off_t)(fd_offset - skew));
	if (r.map_base == MAP_FAILED) {
		ret = -errno;
		goto err_close;
	}
	r.hva = (uint8_t *)r.map_base + skew;

	ret = region_insert(m, &r);
	if (ret < 0)
		goto err_unmap;
	/* Last, so a table that refuses the region leaves no slot behind; no sidecore reads it yet. */
	if (isolated && (ret = isolated_zone_add(r.map_base, r.map_len)) < 0) {
		sc_mem_remove(m, gpa);   /* unmaps and closes fd */
		return ret;
	}
	return 0;

err_unmap:
	munmap(r.map_base, r.map_len);
err_close:
	close(fd);
	return ret;
}

int sc_mem_add_fd(struct sc_mem *m, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset, unsigned prot)
{
	return add_fd(m, gpa, size, fd, fd_offset, prot, false);
}

int sc_mem_add_fd_isolated(struct sc_mem *m, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset,
			   unsigned prot)
{
	return add_fd(m, gpa, size, fd, fd_offset, prot, true);
}

/* The isolated region holding all of [gpa, gpa + len), with its page-aligned host range; or an errno. */
static int isolated_range(const struct sc_mem *m, uint64_t gpa, uint64_t len, const struct sc_mem_region **out,
			  uint8_t **at)
{
	const struct sc_mem_region *r = sc_mem_find(m, gpa);
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!r || !r->isolated || len == 0 || len - 1 >= r->size - (gpa - r->gpa))
		return -EFAULT;
	uint64_t off = gpa - r->gpa;
	/* mmap maps whole pages of the fd: the range must be exactly such pages. */
	if (((r->fd_offset + off) | len) & (page - 1))
		return -ERANGE;
	*out = r;
	*at = r->hva + off;
	return 0;
}

int sc_mem_grant(struct sc_mem *m, uint64_t gpa, uint64_t len)
{
	const struct sc_mem_region *r;
	uint8_t *at;
	int ret = isolated_range(m, gpa, len, &r, &at);

	if (ret < 0)
		return ret;
	int mprot = PROT_READ | ((r->prot & SC_PERM_WRITE) ? PROT_WRITE : 0);
	/* Populated here, on the control thread: else the sidecore takes a page fault per page on first touch. */
	off_t off = (off_t)(r->fd_offset + (gpa - r->gpa));
	if (mmap(at, (size_t)len, mprot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, r->fd, off) == MAP_FAILED)
		return -errno;
	return 0;
}

int sc_mem_revoke(struct sc_mem *m, uint64_t gpa, uint64_t len)
{
	const struct sc_mem_region *r;
	uint8_t *at;
	int ret = isolated_range(m, gpa, len, &r, &at);

	if (ret < 0)
		return ret;
	/* Back to bare address space in one call: the range is never free for another mapping to take. */
	if (mmap(at, (size_t)len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) ==
	    MAP_FAILED)
		return -errno;
	return 0;
}

int sc_mem_add_hva(struct sc_mem *m, uint64_t gpa, uint64_t size, void *hva, unsigned prot)
{
	struct sc_mem_region r = { .gpa = gpa, .size = size, .hva = hva, .fd = -1,
				   .prot = prot };
	return region_insert(m, &r);
}

int sc_mem_remove(struct sc_mem *m, uint64_t gpa)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		if (m->regions[i].gpa != gpa)
			continue;
		region_release(&m->regions[i]);
		memmove(&m->regions[i], &m->regions[i + 1],
			(m->nregions - i - 1) * sizeof(m->regions[0]));
		m->nregions--;
		return 0;
	}
	return -ENOENT;
}

const struct sc_mem_region *sc_mem_find(const struct sc_mem *m, uint64_t gpa)
{
	/* Few regions (QEMU gives 1-4): a linear scan beats a search. */
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct sc_mem_region *r = &m->regions[i];
		if (gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *sc_mem_translate(const struct sc_mem *m, uint64_t gpa, uint64_t len, unsigned perm)
{
	const struct sc_mem_region *r = sc_mem_find(m, gpa);
	uint64_t off;

	if (!r || (r->prot & perm) != perm)
		return NULL;
	off = gpa - r->gpa;
	/* len ≤ bytes left in the region; written so it cannot overflow. */
	if ((len ? len : 1) > r->size - off)
		return NULL;
	return r->hva + off;
}

int sc_mem_translate_iov(const struct sc_mem *m, uint64_t gpa, uint64_t len,
			 unsigned perm, struct iovec *iov, unsigned iov_max)
{
	uint64_t last;
	unsigned n = 0;

	if (len == 0)
		return 0;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return -EFAULT;

	while (len > 0) {
		const struct sc_mem_region *r = sc_mem_find(m, gpa);
		if (!r)
			return -EFAULT;
		if ((r->prot & perm) != perm)
			return -EPERM;
		if (n == iov_max)
			return -ENOBUFS;

		uint64_t off = gpa - r->gpa;
		uint64_t chunk = r->size - off < len ? r->size - off : len;

		iov[n].iov_base = r->hva + off;
		iov[n].iov_len = (size_t)chunk;
		n++;
		gpa += chunk;   /* cannot wrap: gpa + len - 1 did not */
		len -= chunk;
	}
	return (int)n;
}

static int mem_xlate_map(void *ctx, uint64_t addr, uint64_t len, unsigned perm,
			 struct iovec *iov, unsigned iov_max)
{
	return sc_mem_translate_iov(ctx, addr, len, perm, iov, iov_max);
}

struct sc_xlate sc_mem_xlate(struct sc_mem *m)
{
	return (struct sc_xlate){ .map = mem_xlate_map, .ctx = m, .mem = m };
}

int sc_mem_memfd_create(const char *name, uint64_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}
