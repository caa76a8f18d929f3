/* SPDX-License-Identifier: MIT */
/*
 * guestmem: the guest memory table.
 *
 * A table of regions, each a range of guest physical addresses backed by a
 * host mapping (normally a shared memfd mapping that the VMM, the sidecore
 * and other processes all map). translate() returns host pointers only for
 * ranges that lie fully inside the table, splits a range that spans
 * adjacent regions into iovec segments, and refuses overflow and wrap.
 *
 * Threads: the table is read lock-free by sidecores. It may be changed only
 * while no queue that translates through it is attached to a poller (the
 * runtime detaches, changes the table, re-attaches: DESIGN "Control path").
 */
#ifndef SC_GUESTMEM_H
#define SC_GUESTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Access the device makes to guest memory. */
#define SC_PERM_READ  1u   /* device reads (driver-written buffers) */
#define SC_PERM_WRITE 2u   /* device writes (device-writable buffers) */
#define SC_PERM_RW    (SC_PERM_READ | SC_PERM_WRITE)

/* As many regions as libvhost-user's VHOST_USER_MAX_RAM_SLOTS. */
#define SC_MEM_MAX_REGIONS 32

struct sc_mem_region {
	uint64_t gpa;        /* first guest physical address */
	uint64_t size;       /* bytes, > 0 */
	uint8_t *hva;        /* host address of gpa */
	int fd;              /* backing fd (owned, closed on remove), or -1 */
	uint64_t fd_offset;  /* offset of gpa within fd */
	unsigned prot;       /* SC_PERM_* the device may do here */
	bool isolated;       /* only granted pages are mapped (sc_mem_add_fd_isolated) */
	/* the mapping to undo on remove; NULL if the caller owns the memory */
	void *map_base;
	size_t map_len;
};

struct sc_mem {
	unsigned nregions;
	struct sc_mem_region regions[SC_MEM_MAX_REGIONS]; /* sorted by gpa, disjoint */
};

/*
 * Address translation hook. vqueue translates every guest address through
 * one of these, so that a vIOMMU can stand between a queue and guestmem.
 *
 * map() maps [addr, addr + len) into at most iov_max host segments that the
 * device may access with perm. It returns the number of segments written
 * (0 for len 0), -EFAULT if any byte is unmapped or the range wraps, -EPERM
 * if the access is not allowed, -ENOBUFS if more than iov_max segments are
 * needed. It never returns a partial mapping.
 */
typedef int (*sc_xlate_fn)(void *ctx, uint64_t addr, uint64_t len, unsigned perm,
			   struct iovec *iov, unsigned iov_max);

struct sc_xlate {
	sc_xlate_fn map;
	void *ctx;
	/*
	 * Set when addresses are plain GPAs of this table (no IOMMU): vqueue
	 * then translates inline (sc_mem_map) instead of calling map, which
	 * saves an indirect call per descriptor on the hot path.
	 */
	const struct sc_mem *mem;
};

/* Empty table. */
void sc_mem_init(struct sc_mem *m);

/* Remove every region (unmapping and closing what the table owns). */
void sc_mem_fini(struct sc_mem *m);

/*
 * Map size bytes of fd at fd_offset (MAP_SHARED) as guest range
 * [gpa, gpa + size). The table takes ownership of fd, also on failure.
 * Returns 0; -EINVAL if size is 0 or a range overflows; -ERANGE if fd is a
 * regular file (memfd, tmpfs, hugetlbfs) shorter than fd_offset + size
 * (touching the rest would SIGBUS); -EEXIST if it overlaps a region;
 * -ENOSPC if the table is full; or fstat's or mmap's -errno. A file that
 * shrinks after this can still fault: the sidecore contains that
 * (polling.h), and sealed memfds (F_SEAL_SHRINK) cannot shrink at all.
 */
int sc_mem_add_fd(struct sc_mem *m, uint64_t gpa, uint64_t size, int fd,
		  uint64_t fd_offset, unsigned prot);

/*
 * As sc_mem_add_fd, but map none of the fd: the region gets host addresses
 * (address space reserved PROT_NONE, backed by nothing) and keeps fd, and
 * only the ranges sc_mem_grant maps hold guest memory. Touching the rest
 * faults (SIGSEGV), which a sidecore contains (polling.h: sc_mem_isolated_at
 * tells it the address is such a reservation). For a device that may see
 * only what an IOMMU grants it. Errors as sc_mem_add_fd; -ENOSPC also when
 * the process holds 4096 isolated regions already.
 */
int sc_mem_add_fd_isolated(struct sc_mem *m, uint64_t gpa, uint64_t size, int fd,
			   uint64_t fd_offset, unsigned prot);

/*
 * Does addr lie in the address space of an isolated region (granted or
 * not) of any table in this process? For a fault handler: any thread,
 * async-signal-safe, no lock; a scan of a fixed array (not for a hot path).
 */
bool sc_mem_isolated_at(const void *addr);

/*
 * Map the fd pages behind [gpa, gpa + len) of an isolated region at their
 * host addresses (MAP_FIXED over the reservation or an earlier grant of the
 * same pages). Returns 0; -EFAULT if the range is not inside one isolated
 * region; -ERANGE if its offset in the fd or len is not page-aligned; or
 * mmap's -errno. The control thread only; sidecores may read the table.
 */
int sc_mem_grant(struct sc_mem *m, uint64_t gpa, uint64_t len);

/*
 * Undo sc_mem_grant for [gpa, gpa + len): the pages become bare reserved
 * address space again. Errors as sc_mem_grant. The caller makes sure no
 * thread can still use them (after a grace period).
 */
int sc_mem_revoke(struct sc_mem *m, uint64_t gpa, uint64_t len);

/*
 * Add memory the caller has mapped already at hva (the caller keeps
 * ownership). Errors as sc_mem_add_fd.
 */
int sc_mem_add_hva(struct sc_mem *m, uint64_t gpa, uint64_t size, void *hva,
		   unsigned prot);

/* Remove the region that starts at gpa. Returns 0 or -ENOENT. */
int sc_mem_remove(struct sc_mem *m, uint64_t gpa);

/* The region containing gpa, or NULL. */
const struct sc_mem_region *sc_mem_find(const struct sc_mem *m, uint64_t gpa);

/*
 * Host pointer for [gpa, gpa + len) if the whole range lies in one region
 * that allows perm; NULL otherwise (unmapped, straddling a region's end,
 * wrapping, or not permitted). len 0 is treated as 1.
 */
void *sc_mem_translate(const struct sc_mem *m, uint64_t gpa, uint64_t len, unsigned perm);

/*
 * [gpa, gpa + len) as host segments, split where it crosses from one region
 * to an adjacent one. Returns the segment count or a negative errno, as
 * sc_xlate_fn.
 */
int sc_mem_translate_iov(const struct sc_mem *m, uint64_t gpa, uint64_t len,
			 unsigned perm, struct iovec *iov, unsigned iov_max);

/* The translation hook for this table (no IOMMU: guest address == GPA). */
struct sc_xlate sc_mem_xlate(struct sc_mem *m);

/*
 * sc_mem_translate_iov with the common case inline: the range lies in one
 * region. Same results and errors.
 */
static inline int sc_mem_map(const struct sc_mem *m, uint64_t gpa, uint64_t len,
			     unsigned perm, struct iovec *iov, unsigned iov_max)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct sc_mem_region *r = &m->regions[i];
		uint64_t off = gpa - r->gpa;   /* wraps to huge when gpa < r->gpa */

		if (off >= r->size)
			continue;
		/* len - 1 < room: 1 ≤ len ≤ bytes left, with no overflow. */
		if (len - 1 < r->size - off && (r->prot & perm) == perm && iov_max) {
			iov->iov_base = r->hva + off;
			iov->iov_len = (size_t)len;
			return 1;
		}
		break;
	}
	return sc_mem_translate_iov(m, gpa, len, perm, iov, iov_max);
}

/*
 * A new memfd of size bytes for guest memory, sealed against shrinking so a
 * peer that maps it cannot be made to fault. Returns the fd or -errno.
 */
int sc_mem_memfd_create(const char *name, uint64_t size);

#endif
