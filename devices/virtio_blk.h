/* SPDX-License-Identifier: MIT */
/* virtio-blk request layout, virtio 1.2 §5.2.6. Shared with drivers; freestanding. */
#ifndef SC_DEVICES_VIRTIO_BLK_H
#define SC_DEVICES_VIRTIO_BLK_H

#include <stdint.h>

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SECTOR_SIZE 512

/* The device-readable header that starts every request. */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

#endif
