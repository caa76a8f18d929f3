/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request layout, virtio 1.2 §5.2.6, with SC_/sc_ names
 * that cannot clash with <linux/virtio_blk.h>. Shared with drivers;
 * freestanding.
 */
#ifndef SC_SPEC_SC_VIRTIO_BLK_H
#define SC_SPEC_SC_VIRTIO_BLK_H

#include <stdint.h>

#define SC_VIRTIO_BLK_T_IN           0
#define SC_VIRTIO_BLK_T_OUT          1
#define SC_VIRTIO_BLK_T_FLUSH        4
#define SC_VIRTIO_BLK_T_GET_ID       8
#define SC_VIRTIO_BLK_T_DISCARD      11
#define SC_VIRTIO_BLK_T_WRITE_ZEROES 13

#define SC_VIRTIO_BLK_S_OK     0
#define SC_VIRTIO_BLK_S_IOERR  1
#define SC_VIRTIO_BLK_S_UNSUPP 2

#define SC_VIRTIO_BLK_ID_BYTES 20
#define SC_VIRTIO_BLK_SECTOR_SIZE 512

/* Feature bits (virtio 1.2 §5.2.3). */
#define SC_VIRTIO_BLK_F_SIZE_MAX     1
#define SC_VIRTIO_BLK_F_SEG_MAX      2
#define SC_VIRTIO_BLK_F_RO           5
#define SC_VIRTIO_BLK_F_BLK_SIZE     6
#define SC_VIRTIO_BLK_F_FLUSH        9
#define SC_VIRTIO_BLK_F_TOPOLOGY     10
#define SC_VIRTIO_BLK_F_CONFIG_WCE   11
#define SC_VIRTIO_BLK_F_MQ           12
#define SC_VIRTIO_BLK_F_DISCARD      13
#define SC_VIRTIO_BLK_F_WRITE_ZEROES 14

/* Device configuration layout (§5.2.4), little-endian. */
struct sc_virtio_blk_config {
	uint64_t capacity;               /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

/* The payload of DISCARD and WRITE_ZEROES (§5.2.6). */
struct sc_virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;                  /* bit 0: unmap (WRITE_ZEROES) */
};

/* The device-readable header that starts every request. */
struct sc_virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

#endif
