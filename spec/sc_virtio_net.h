/* SPDX-License-Identifier: MIT */
/*
 * virtio-net layouts, virtio 1.2 §5.1. Prefixed (SC_VIRTIO_NET_*) so that
 * this header and <linux/virtio_net.h> can be included together.
 * Everything here is little-endian on the wire.
 */
#ifndef SC_SPEC_SC_VIRTIO_NET_H
#define SC_SPEC_SC_VIRTIO_NET_H

#include <stdint.h>

/* Feature bits (§5.1.3). */
#define SC_VIRTIO_NET_F_CSUM           0    /* device takes partial checksums */
#define SC_VIRTIO_NET_F_GUEST_CSUM     1    /* driver takes partial/validated checksums */
#define SC_VIRTIO_NET_F_MTU            3
#define SC_VIRTIO_NET_F_MAC            5
#define SC_VIRTIO_NET_F_HOST_TSO4      11
#define SC_VIRTIO_NET_F_HOST_TSO6      12
#define SC_VIRTIO_NET_F_HOST_ECN       13
#define SC_VIRTIO_NET_F_MRG_RXBUF      15
#define SC_VIRTIO_NET_F_STATUS         16
#define SC_VIRTIO_NET_F_CTRL_VQ        17
#define SC_VIRTIO_NET_F_CTRL_RX        18
#define SC_VIRTIO_NET_F_MQ             22
#define SC_VIRTIO_NET_F_CTRL_MAC_ADDR  23

#define SC_VIRTIO_NET_S_LINK_UP        1

/* The header before every packet (§5.1.6). */
#define SC_VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define SC_VIRTIO_NET_HDR_F_DATA_VALID 2
#define SC_VIRTIO_NET_HDR_GSO_NONE     0
#define SC_VIRTIO_NET_HDR_GSO_TCPV4    1
#define SC_VIRTIO_NET_HDR_GSO_UDP      3
#define SC_VIRTIO_NET_HDR_GSO_TCPV6    4
#define SC_VIRTIO_NET_HDR_GSO_ECN      0x80

struct sc_virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;   /* only with VERSION_1 or MRG_RXBUF: 12 bytes, else 10 */
} __attribute__((packed));

#define SC_VIRTIO_NET_HDR_LEN_LEGACY 10
#define SC_VIRTIO_NET_HDR_LEN        12

/* Device configuration layout (§5.1.4). */
struct sc_virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

/* Control virtqueue (§5.1.6.5): class, command, data; the device writes one ack byte. */
struct sc_virtio_net_ctrl_hdr {
	uint8_t class;
	uint8_t cmd;
} __attribute__((packed));

#define SC_VIRTIO_NET_OK  0
#define SC_VIRTIO_NET_ERR 1

#define SC_VIRTIO_NET_CTRL_RX                 0
#define SC_VIRTIO_NET_CTRL_RX_PROMISC         0
#define SC_VIRTIO_NET_CTRL_RX_ALLMULTI        1
#define SC_VIRTIO_NET_CTRL_MAC                1
#define SC_VIRTIO_NET_CTRL_MAC_TABLE_SET      0
#define SC_VIRTIO_NET_CTRL_MAC_ADDR_SET       1
#define SC_VIRTIO_NET_CTRL_MQ                 4
#define SC_VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET    0
#define SC_VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN    1
#define SC_VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX    0x8000

#endif
