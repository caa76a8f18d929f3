/* SPDX-License-Identifier: MIT */
/*
 * Device-independent virtio definitions (virtio 1.2 §2.1, §6). Every name
 * carries the SC_ prefix so that this folder and <linux/virtio_*.h> or DPDK's
 * headers can be included together. Freestanding.
 */
#ifndef SC_SPEC_SC_VIRTIO_H
#define SC_SPEC_SC_VIRTIO_H

/* Reserved feature bits (§6). */
#define SC_VIRTIO_F_INDIRECT_DESC   28
#define SC_VIRTIO_F_EVENT_IDX       29
#define SC_VIRTIO_F_VERSION_1       32
#define SC_VIRTIO_F_ACCESS_PLATFORM 33
#define SC_VIRTIO_F_RING_PACKED     34
#define SC_VIRTIO_F_IN_ORDER        35

/* Device status bit the device sets when it cannot go on (§2.1). */
#define SC_VIRTIO_CONFIG_S_NEEDS_RESET 0x40

#endif
