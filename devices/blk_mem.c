/* SPDX-License-Identifier: MIT */
/*
 * Memory-backed disks: a backing file on tmpfs, ramfs or hugetlbfs (or a
 * `ram:SIZE` disk, a sealed memfd) is mapped MAP_SHARED into the process,
 * and the sidecore moves a read or write with memcpy: no system call per
 * request. The mapping is of the same page cache pread/pwrite would copy
 * from, so the file, other readers and the syscall path see the same bytes.
 *
 * The file can be truncated under us by whoever else may open it: a copy
 * touching a page past the new end takes SIGBUS. Each copy runs under
 * sc_fault_try on the mapping's range, so such a fault fails that request
 * (IOERR) and nothing else: the queue, the sidecore and the process go on,
 * later requests within the new end still work, and those beyond it fail
 * the same way each time. A fault on guest memory inside the same copy is
 * still the queue's (polling.h), as everywhere else.
 *
 * A read of a hole through the mapping allocates the page (a read() would
 * not): a memory-backed disk can use up to its size in memory either way,
 * and the operator sized it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "devices/blk_mem.h"
#include "polling/polling.h"

bool sc_blk_mem_fs(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0)
		return false;
	return sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC || sfs.f_type == HUGETLBFS_MAGIC;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22    /* Linux 5.14 */
#define MADV_POPULATE_WRITE 23
#endif

/*
 * Map in advance the pages the file already holds (its data extents, not
 * its holes, which would be allocated): the first touch of a page is a
 * page fault, 1 us on bare metal and 20 us and more in a nested VM, which
 * would otherwise be paid by the first request to each page. Best effort:
 * an older kernel, or a file system without SEEK_DATA, just faults later.
 */
static void populate(int fd, uint8_t *map, size_t len, bool write)
{
	off_t at = 0, end;

	while ((size_t)at < len && (at = lseek(fd, at, SEEK_DATA)) >= 0 && (size_t)at < len) {
		end = lseek(fd, at, SEEK_HOLE);
		if (end < 0 || (size_t)end > len)
			end = (off_t)len;
		if (madvise(map + at, (size_t)(end - at), write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) < 0)
			return;
		at = end;
	}
}

int sc_blk_mem_map(struct sc_blk_backend *be, uint64_t bytes)
{
	if (!bytes || bytes > SIZE_MAX)
		return -EINVAL;
	void *m = mmap(NULL, (size_t)bytes, be->read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, be->fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	be->map = m;
	be->map_len = (size_t)bytes;
	populate(be->fd, m, (size_t)bytes, !be->read_only);
	return 0;
}

void sc_blk_backend_unmap(struct sc_blk_backend *be)
{
	if (be->map)
		munmap(be->map, be->map_len);
	be->map = NULL;
	be->map_len = 0;
}

int sc_blk_backend_open_ram(struct sc_blk_backend *be, uint64_t bytes, const char *serial, char *err, size_t errlen)
{
	char path[64];
	int fd, ret;

	if (!bytes || bytes % SC_VIRTIO_BLK_SECTOR_SIZE || bytes > SC_BLK_RAM_MAX) {
		snprintf(err, errlen, "ram:%llu: a RAM disk is 512 bytes to 1 TiB, in whole sectors",
			 (unsigned long long)bytes);
		return -EINVAL;
	}
	fd = memfd_create("sidecore-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "ram:%llu: memfd_create: %s", (unsigned long long)bytes, strerror(-ret));
		return ret;
	}
	/* Sealed at its size: nobody (another opener of /proc/PID/fd) can shrink it under the mapping. */
	if (ftruncate(fd, (off_t)bytes) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		ret = -errno;
		snprintf(err, errlen, "ram:%llu: cannot size it: %s", (unsigned long long)bytes, strerror(-ret));
		close(fd);
		return ret;
	}
	/* Opened again by path, so the RAM disk takes exactly the file path's way (and its checks). */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ret = sc_blk_backend_open(be, path, false, false, serial, err, errlen);
	close(fd);
	return ret;
}

struct mem_copy {
	uint8_t *at;                 /* in the mapping */
	const struct iovec *iov;     /* guest memory */
	unsigned n;
	bool write;
};

static void mem_copy(void *arg)
{
	const struct mem_copy *c = arg;
	uint8_t *at = c->at;

	for (unsigned i = 0; i < c->n; i++) {
		if (c->write)
			memcpy(at, c->iov[i].iov_base, c->iov[i].iov_len);
		else
			memcpy(c->iov[i].iov_base, at, c->iov[i].iov_len);
		at += c->iov[i].iov_len;
	}
}

int sc_blk_mem_rw(const struct sc_blk_backend *be, uint64_t off, const struct iovec *iov, unsigned n, size_t len,
		  bool write)
{
	/* The request was checked against the capacity, which the mapping covers; this keeps it so. */
	if (off > be->map_len || len > be->map_len - off)
		return -EFAULT;
	struct mem_copy c = { be->map + off, iov, n, write };
	return sc_fault_try(mem_copy, &c, be->map, be->map_len);
}
