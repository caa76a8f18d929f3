/* SPDX-License-Identifier: MIT */
/*
 * The one virtio-blk request parser (virtio 1.2 §5.2.6), shared by every
 * block device in this folder: it reads the header once, checks the request
 * against the disk's limits and says what to do, or why not and which status
 * to complete with. Private to devices/ (and its tests).
 */
#ifndef SC_DEVICES_BLK_REQ_H
#define SC_DEVICES_BLK_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "spec/sc_virtio_blk.h"
#include "vqueue/vqueue.h"

/* What the disk allows; the parser's whole view of the device. */
struct sc_blk_req_limits {
	uint64_t capacity;            /* 512-byte sectors */
	uint64_t features;            /* offered bits: RO, FLUSH, DISCARD, WRITE_ZEROES decide what is served */
	unsigned seg_max;             /* data segments per request: the size of sc_blk_parsed.iov */
	uint32_t size_max;            /* bytes per data segment; 0: no limit */
	uint32_t max_discard_sectors; /* per DISCARD or WRITE_ZEROES segment */
};

/* One parsed request. */
struct sc_blk_parsed {
	uint32_t type;          /* SC_VIRTIO_BLK_T_* from the header */
	uint8_t status;         /* on a refusal: the status to complete with (IOERR or UNSUPP) */
	bool unmap;             /* WRITE_ZEROES asked to unmap (§5.2.6.2 flag bit 0) */
	uint8_t *status_byte;   /* the last device-writable byte; NULL only with -ENOBUFS */
	uint64_t sector;        /* IN, OUT: the header's; DISCARD, WRITE_ZEROES: the segment's */
	/* IN, OUT: data bytes; DISCARD, WRITE_ZEROES: bytes of the range; GET_ID: ID bytes to write. */
	uint64_t bytes;
	/*
	 * IN, OUT: the data segments (header and status byte cut off). The
	 * caller points iov at seg_max entries; with iov NULL the data is only
	 * measured, not sliced, and seg_max and size_max are not checked.
	 */
	struct iovec *iov;
	unsigned niov;
};

/*
 * Parse the popped chain e against lim into *p (p->iov set by the caller).
 * Copies the header (and a DISCARD/WRITE_ZEROES segment) once; later checks
 * read only the copies. Any thread. Returns 0 with p filled, or one errno
 * per reason, with p->status the status to write at p->status_byte:
 *   -ENOBUFS     no device-writable byte for the status: complete with nothing written
 *   -EBADMSG     device-readable part shorter than the 16-byte header (IOERR); also an
 *                oversized chain, which vqueue passes with no readable part
 *   -EOPNOTSUPP  unknown type, or one whose feature the device does not offer (UNSUPP)
 *   -EROFS       OUT, DISCARD or WRITE_ZEROES on a read-only disk (F_RO; IOERR, §5.2.6.2)
 *   -EINVAL      IN or OUT data not whole sectors (IOERR)
 *   -ERANGE      sectors beyond the capacity (IOERR)
 *   -E2BIG       more data segments than seg_max (IOERR)
 *   -EFBIG       a data segment larger than size_max (IOERR)
 *   -EMSGSIZE    DISCARD or WRITE_ZEROES data not exactly one 16-byte segment (IOERR)
 *   -EOVERFLOW   DISCARD or WRITE_ZEROES over more than max_discard_sectors (IOERR)
 *   -EPROTO      DISCARD with flags, WRITE_ZEROES with a flag other than unmap (UNSUPP)
 */
int sc_blk_req_parse(const struct sc_vq_elem *e, const struct sc_blk_req_limits *lim, struct sc_blk_parsed *p);

#endif
