/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user protocol's wire layout (QEMU docs/interop/vhost-user.rst):
 * request numbers, header flags, protocol feature bits and payloads, with
 * SC_/sc_ names that cannot clash with <linux/vhost.h> or DPDK's rte_vhost.
 * All fields little-endian. The checks live in runtime/vu_msg.h.
 */
#ifndef SC_SPEC_SC_VHOST_USER_H
#define SC_SPEC_SC_VHOST_USER_H

#include <stdint.h>

enum sc_vu_request {
	SC_VHOST_USER_GET_FEATURES = 1,
	SC_VHOST_USER_SET_FEATURES = 2,
	SC_VHOST_USER_SET_OWNER = 3,
	SC_VHOST_USER_RESET_OWNER = 4,
	SC_VHOST_USER_SET_MEM_TABLE = 5,
	SC_VHOST_USER_SET_LOG_BASE = 6,
	SC_VHOST_USER_SET_LOG_FD = 7,
	SC_VHOST_USER_SET_VRING_NUM = 8,
	SC_VHOST_USER_SET_VRING_ADDR = 9,
	SC_VHOST_USER_SET_VRING_BASE = 10,
	SC_VHOST_USER_GET_VRING_BASE = 11,
	SC_VHOST_USER_SET_VRING_KICK = 12,
	SC_VHOST_USER_SET_VRING_CALL = 13,
	SC_VHOST_USER_SET_VRING_ERR = 14,
	SC_VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	SC_VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	SC_VHOST_USER_GET_QUEUE_NUM = 17,
	SC_VHOST_USER_SET_VRING_ENABLE = 18,
	SC_VHOST_USER_SET_BACKEND_REQ_FD = 21,   /* SET_SLAVE_REQ_FD */
	SC_VHOST_USER_IOTLB_MSG = 22,
	SC_VHOST_USER_GET_CONFIG = 24,
	SC_VHOST_USER_SET_CONFIG = 25,
	SC_VHOST_USER_GET_INFLIGHT_FD = 31,
	SC_VHOST_USER_SET_INFLIGHT_FD = 32,
	SC_VHOST_USER_RESET_DEVICE = 34,
	SC_VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	SC_VHOST_USER_ADD_MEM_REG = 37,
	SC_VHOST_USER_REM_MEM_REG = 38,
	SC_VHOST_USER_SET_STATUS = 39,
	SC_VHOST_USER_GET_STATUS = 40,
	SC_VHOST_USER_REQUEST_MAX = 41,
};

/* Header flags. */
#define SC_VHOST_USER_VERSION      0x1
#define SC_VHOST_USER_VERSION_MASK 0x3
#define SC_VHOST_USER_REPLY        (1u << 2)
#define SC_VHOST_USER_NEED_REPLY   (1u << 3)

/* SET_VRING_KICK/CALL/ERR: vring index in bits 0-7, "no fd" in bit 8. */
#define SC_VHOST_USER_VRING_IDX_MASK 0xffu
#define SC_VHOST_USER_VRING_NOFD     (1u << 8)

/* Protocol feature bits (the ones this project uses). */
#define SC_VHOST_USER_PROTOCOL_F_MQ                  0
#define SC_VHOST_USER_PROTOCOL_F_REPLY_ACK           3
#define SC_VHOST_USER_PROTOCOL_F_BACKEND_REQ         5    /* SLAVE_REQ */
#define SC_VHOST_USER_PROTOCOL_F_IOTLB               11
#define SC_VHOST_USER_PROTOCOL_F_CONFIG              9
#define SC_VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD      12
#define SC_VHOST_USER_PROTOCOL_F_RESET_DEVICE        13
#define SC_VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define SC_VHOST_USER_PROTOCOL_F_STATUS              16

#define SC_VU_MAX_MEM_REGIONS 8     /* in one SET_MEM_TABLE */
#define SC_VU_MAX_FDS 8
#define SC_VU_CONFIG_SPACE 256      /* bytes of device config space the protocol carries */
#define SC_VU_MAX_QUEUE_SIZE 32768

struct sc_vu_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct sc_vu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct sc_vu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

struct sc_vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[SC_VU_CONFIG_SPACE];
};

struct sc_vu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
};

/* struct vhost_iotlb_msg (linux/vhost_types.h), 32 bytes with its padding. */
struct sc_vu_iotlb {
	uint64_t iova;
	uint64_t size;
	uint64_t uaddr;      /* the front end's virtual address */
	uint8_t perm;        /* SC_VHOST_ACCESS_* */
	uint8_t type;        /* SC_VHOST_IOTLB_* */
	uint8_t padding[6];
};

enum sc_vu_iotlb_type {
	SC_VHOST_IOTLB_MISS = 1,
	SC_VHOST_IOTLB_UPDATE = 2,
	SC_VHOST_IOTLB_INVALIDATE = 3,
	SC_VHOST_IOTLB_ACCESS_FAIL = 4,
	SC_VHOST_IOTLB_BATCH_BEGIN = 5,
	SC_VHOST_IOTLB_BATCH_END = 6,
};

/* SC_VHOST_ACCESS_*: the same bits as SC_PERM_READ and SC_PERM_WRITE. */
#define SC_VHOST_ACCESS_RO 1u
#define SC_VHOST_ACCESS_WO 2u
#define SC_VHOST_ACCESS_RW 3u

/* Requests the back end sends on the back-end channel (SET_BACKEND_REQ_FD). */
#define SC_VHOST_USER_BACKEND_IOTLB_MSG 1

struct sc_vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;      /* payload bytes after the header */
} __attribute__((packed));

#endif
