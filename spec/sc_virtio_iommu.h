/* SPDX-License-Identifier: MIT */
/*
 * virtio-iommu layouts, virtio 1.2 §5.13 (device ID 23), with SC_/sc_
 * names that cannot clash with <linux/virtio_iommu.h>. Shared with drivers
 * (tests, the microvm guest); freestanding. All fields little-endian.
 */
#ifndef SC_SPEC_SC_VIRTIO_IOMMU_H
#define SC_SPEC_SC_VIRTIO_IOMMU_H

#include <stdint.h>

#define SC_VIRTIO_ID_IOMMU 23

/* §5.13.3 feature bits */
#define SC_VIRTIO_IOMMU_F_INPUT_RANGE   0
#define SC_VIRTIO_IOMMU_F_DOMAIN_RANGE  1
#define SC_VIRTIO_IOMMU_F_MAP_UNMAP     2
#define SC_VIRTIO_IOMMU_F_BYPASS        3
#define SC_VIRTIO_IOMMU_F_PROBE         4
#define SC_VIRTIO_IOMMU_F_MMIO          5
#define SC_VIRTIO_IOMMU_F_BYPASS_CONFIG 6

/* §5.13.4 config space */
struct sc_virtio_iommu_config {
	uint64_t page_size_mask;
	struct { uint64_t start, end; } input_range;   /* inclusive */
	struct { uint32_t start, end; } domain_range;  /* inclusive */
	uint32_t probe_size;
	uint8_t bypass;
	uint8_t reserved[3];
};

/* §5.13.6 request types */
#define SC_VIRTIO_IOMMU_T_ATTACH 1
#define SC_VIRTIO_IOMMU_T_DETACH 2
#define SC_VIRTIO_IOMMU_T_MAP    3
#define SC_VIRTIO_IOMMU_T_UNMAP  4
#define SC_VIRTIO_IOMMU_T_PROBE  5

/* §5.13.6 status */
#define SC_VIRTIO_IOMMU_S_OK     0
#define SC_VIRTIO_IOMMU_S_IOERR  1
#define SC_VIRTIO_IOMMU_S_UNSUPP 2
#define SC_VIRTIO_IOMMU_S_DEVERR 3
#define SC_VIRTIO_IOMMU_S_INVAL  4
#define SC_VIRTIO_IOMMU_S_RANGE  5
#define SC_VIRTIO_IOMMU_S_NOENT  6
#define SC_VIRTIO_IOMMU_S_FAULT  7
#define SC_VIRTIO_IOMMU_S_NOMEM  8

struct sc_virtio_iommu_req_head {
	uint8_t type;
	uint8_t reserved[3];
};

struct sc_virtio_iommu_req_tail {
	uint8_t status;
	uint8_t reserved[3];
};

#define SC_VIRTIO_IOMMU_ATTACH_F_BYPASS (1u << 0)

/* §5.13.6.3: ATTACH and DETACH share a layout. */
struct sc_virtio_iommu_req_attach {
	struct sc_virtio_iommu_req_head head;
	uint32_t domain;
	uint32_t endpoint;
	uint32_t flags;
	uint8_t reserved[4];
	struct sc_virtio_iommu_req_tail tail;
};

struct sc_virtio_iommu_req_detach {
	struct sc_virtio_iommu_req_head head;
	uint32_t domain;
	uint32_t endpoint;
	uint8_t reserved[8];
	struct sc_virtio_iommu_req_tail tail;
};

#define SC_VIRTIO_IOMMU_MAP_F_READ  (1u << 0)
#define SC_VIRTIO_IOMMU_MAP_F_WRITE (1u << 1)
#define SC_VIRTIO_IOMMU_MAP_F_MMIO  (1u << 2)

struct sc_virtio_iommu_req_map {
	struct sc_virtio_iommu_req_head head;
	uint32_t domain;
	uint64_t virt_start;
	uint64_t virt_end;       /* inclusive */
	uint64_t phys_start;
	uint32_t flags;
	struct sc_virtio_iommu_req_tail tail;
} __attribute__((packed));

struct sc_virtio_iommu_req_unmap {
	struct sc_virtio_iommu_req_head head;
	uint32_t domain;
	uint64_t virt_start;
	uint64_t virt_end;       /* inclusive */
	uint8_t reserved[4];
	struct sc_virtio_iommu_req_tail tail;
} __attribute__((packed));

/* §5.13.6.8 PROBE: head, endpoint, reserved[64] readable; properties[probe_size], tail writable. */
struct sc_virtio_iommu_req_probe {
	struct sc_virtio_iommu_req_head head;
	uint32_t endpoint;
	uint8_t reserved[64];
};

#define SC_VIRTIO_IOMMU_PROBE_T_NONE     0
#define SC_VIRTIO_IOMMU_PROBE_T_RESV_MEM 1
#define SC_VIRTIO_IOMMU_PROBE_T_MASK     0xfff

struct sc_virtio_iommu_probe_property {
	uint16_t type;
	uint16_t length;         /* bytes of value after this header */
};

#define SC_VIRTIO_IOMMU_RESV_MEM_T_RESERVED 0
#define SC_VIRTIO_IOMMU_RESV_MEM_T_MSI      1

struct sc_virtio_iommu_probe_resv_mem {
	struct sc_virtio_iommu_probe_property head;
	uint8_t subtype;
	uint8_t reserved[3];
	uint64_t start;
	uint64_t end;            /* inclusive */
} __attribute__((packed));

/* §5.13.6.9 fault reports on the eventq */
#define SC_VIRTIO_IOMMU_FAULT_R_UNKNOWN 0
#define SC_VIRTIO_IOMMU_FAULT_R_DOMAIN  1
#define SC_VIRTIO_IOMMU_FAULT_R_MAPPING 2

#define SC_VIRTIO_IOMMU_FAULT_F_READ    (1u << 0)
#define SC_VIRTIO_IOMMU_FAULT_F_WRITE   (1u << 1)
#define SC_VIRTIO_IOMMU_FAULT_F_EXEC    (1u << 2)
#define SC_VIRTIO_IOMMU_FAULT_F_ADDRESS (1u << 8)

struct sc_virtio_iommu_fault {
	uint8_t reason;
	uint8_t reserved[3];
	uint32_t flags;
	uint32_t endpoint;
	uint8_t reserved2[4];
	uint64_t address;
};

_Static_assert(sizeof(struct sc_virtio_iommu_config) == 40, "§5.13.4 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_req_attach) == 24, "§5.13.6.3 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_req_detach) == 24, "§5.13.6.4 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_req_map) == 40, "§5.13.6.5 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_req_unmap) == 32, "§5.13.6.6 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_req_probe) == 72, "§5.13.6.8 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_probe_resv_mem) == 24, "§5.13.6.8.2 layout");
_Static_assert(sizeof(struct sc_virtio_iommu_fault) == 24, "§5.13.6.9 layout");

#endif
