/* SPDX-License-Identifier: MIT */
/* Private to devices/: the memory-backed disk path of blk.c (blk_mem.c). */
#ifndef SC_DEVICES_BLK_MEM_H
#define SC_DEVICES_BLK_MEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/devices.h"

/* Is fd on a file system whose files are memory (tmpfs, ramfs, hugetlbfs)? */
bool sc_blk_mem_fs(int fd);

/* Map the first bytes of be->fd MAP_SHARED into be->map. Returns 0 or mmap's -errno (be unchanged). */
int sc_blk_mem_map(struct sc_blk_backend *be, uint64_t bytes);

/*
 * Copy len bytes between disk offset off of the mapping and the n segments
 * of iov (into them for a read, from them for a write), on the calling
 * thread. Returns 0, or -EFAULT if [off, off + len) is outside the mapping
 * or the mapping faulted (the file shrank under us): the request fails,
 * part of it may have been copied. A fault on the segments themselves is
 * guest memory's (sc_fault_try). Sidecore hot path: no system call.
 */
int sc_blk_mem_rw(const struct sc_blk_backend *be, uint64_t off, const struct iovec *iov, unsigned n, size_t len,
		  bool write);

#endif
