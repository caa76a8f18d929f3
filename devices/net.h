/* SPDX-License-Identifier: MIT */
/*
 * devices/net: virtio-net on a DPDK ethdev port.
 *
 * A device has max_pairs rx/tx virtqueue pairs and a control queue: vring
 * 2k is receiveq k, 2k+1 is transmitq k, and 2 * max_pairs is the control
 * queue (virtio 1.2 §5.1.2). Pair k uses the port's rx and tx queue k, so
 * the pairs' queues may run on different sidecores without locks.
 *
 * Packets are copied once each way: a guest's tx chain into mbufs from a
 * mempool of the port's NUMA node, sent with one rte_eth_tx_burst per
 * turn; rte_eth_rx_burst's mbufs into the guest's rx buffers (mergeable
 * buffers when negotiated). A turn takes from the port only as many
 * packets as the guest has rx buffers posted (the port keeps, or drops,
 * the rest); a guest with none has a burst taken, dropped and counted
 * (rx_no_buffers): the sidecore never waits for it.
 * A guest's TSO packets go whole to a port with TSO; elsewhere TCP/IPv4
 * ones are cut on the sidecore by DPDK's librte_gso (segments: a header
 * mbuf and indirect mbufs on the packet's data), their checksums by the
 * port or in software (port->tx_gso, tx_gso_packets / tx_gso_segments).
 * Malformed tx packets are dropped and counted (tx_bad); malformed control
 * commands are acked with VIRTIO_NET_ERR; chains that break the ring's
 * rules break the queue (vqueue.h).
 *
 * Every queue completes chains in the order it popped them, so the device
 * offers VIRTIO_F_IN_ORDER (§2.7.9). It is a promise to the driver only:
 * the device still reads each avail entry and checks each chain, so a
 * driver that does not keep its side of it harms only itself.
 *
 * DPDK's EAL is initialised once per process (sc_net_eal_init) and only
 * when a net device is opened. This header keeps DPDK's own out.
 */
#ifndef SC_DEVICES_NET_H
#define SC_DEVICES_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/sc_virtio_net.h"
#include "polling/polling.h"
#include "vqueue/vqueue.h"

struct rte_gso_ctx;
struct rte_mbuf;
struct rte_mempool;

#define SC_NET_MAX_PAIRS 16          /* rx/tx pairs of one device (vhost-user allows 64 vrings) */
#define SC_NET_BURST 32              /* packets per rte_eth_*_burst */
#define SC_NET_RX_STASH 64           /* rx chains popped and not yet filled: a packet may span this many */
#define SC_NET_RX_IOV 32             /* segments of one rx chain (Linux's big packets: MAX_SKB_FRAGS + 2) */
#define SC_NET_TX_IOV 256            /* segments of one tx chain */
#define SC_NET_MAX_TSO (64u << 10)   /* largest packet a TSO header may carry, header excluded */
/*
 * Most segments one TSO packet may be cut into; a packet whose gso_size
 * would make more is dropped (tx_bad). A Linux guest's MSS is at least 48
 * (tcp_min_snd_mss), so no TSO packet it sends comes near this; a tiny
 * gso_size on a 64 KiB packet (65,000 segments, two mbufs each) does.
 */
#define SC_NET_GSO_MAX_SEGS (SC_NET_MAX_TSO / 48 + 1)

/*
 * Initialise DPDK's EAL for this process, once: no hugepages, no PCI, no
 * shared config, a file prefix of its own. The calling thread's cpu
 * affinity is kept (EAL would pin it). mem_mb: MiB for EAL's heap (0: 256).
 * Later calls return the first call's result. 0, or a negative errno with
 * one line in err. Any thread, not a sidecore's.
 */
int sc_net_eal_init(unsigned mem_mb, char *err, size_t errlen);

/*
 * Let the calling thread use DPDK's per-lcore caches (rte_thread_register),
 * once per thread; devices call it on their sidecore before the first
 * burst. Cheap after the first call.
 */
void sc_net_thread_register(void);

/* What a device is served with; the port is shared by its queues. */
struct sc_net_port {
	uint16_t port_id;
	uint16_t pairs;              /* rx and tx queues configured */
	int numa_node;
	struct rte_mempool *pool;    /* of numa_node, shared with other ports there */
	struct rte_mempool *indirect_pool;   /* mbufs without data, for GSO segments' payload; NULL without tx_gso */
	bool tx_csum, tx_tso, rx_csum;   /* offloads the port does (and the device may offer) */
	bool tx_ip_csum;             /* the port fills IPv4 header checksums */
	bool tx_multi_segs;          /* the port sends packets of chained mbufs */
	/*
	 * TCP/IPv4 segmentation offload done on the sidecore (DPDK's librte_gso)
	 * where the port has no TSO of its own: the device offers HOST_TSO4.
	 */
	bool tx_gso;
	char vdev[256];
};

/*
 * Create the port vdev (a DPDK vdev string: "net_tap0,iface=tap0",
 * "net_af_packet0,iface=eth0", "net_ring0", "net_null0", ...), configure
 * pairs rx and tx queues on numa_node (-1: any) with mtu, and start it.
 * Calls sc_net_eal_init first. Returns 0, or a negative errno with one line
 * in err naming the vdev and what to do: -EINVAL for a vdev DPDK refuses,
 * -ERANGE for more pairs or an mtu the port cannot take, else DPDK's error.
 * Control thread.
 */
int sc_net_port_open(struct sc_net_port *p, const char *vdev, unsigned pairs, int numa_node, uint16_t mtu,
		     char *err, size_t errlen);
void sc_net_port_close(struct sc_net_port *p);

/* Device-wide state, shared by the queues of one device. */
struct sc_net_dev {
	struct sc_net_port *port;
	uint16_t max_pairs;
	uint16_t mtu;
	uint64_t features;           /* offered: sc_net_dev_init sets it from the port */
	/* Written by the control queue's sidecore, read by anyone (atomic). */
	uint64_t mac;                /* 6 bytes, mac[0] in the low byte */
	uint16_t active_pairs;       /* VQ_PAIRS_SET */
	bool promisc, allmulti;
};

/* Set up d on port for max_pairs pairs with mac (6 bytes) and mtu; computes d->features. */
void sc_net_dev_init(struct sc_net_dev *d, struct sc_net_port *port, unsigned max_pairs, const uint8_t *mac,
		     uint16_t mtu);

/* The config space a driver reads (link status from the port). Any thread. */
void sc_net_config_space(const struct sc_net_dev *d, struct sc_virtio_net_config *cfg);

/* Counters of one virtqueue, written by its sidecore only. */
struct sc_net_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t rx_no_buffers;      /* dropped: the guest had no rx buffer posted */
	uint64_t rx_too_big;         /* dropped: larger than the guest's buffers can hold */
	uint64_t rx_bad_chains;      /* rx chains with device-readable or too many segments (completed empty) */
	uint64_t tx_packets, tx_bytes;
	uint64_t tx_bad;             /* dropped: malformed (short chain, header fields outside the packet, ...) */
	uint64_t tx_dropped;         /* dropped: no mbuf, or the port did not take it (or not all its segments) */
	uint64_t tx_gso_packets;     /* guest TSO packets segmented on the sidecore (tx_gso) */
	uint64_t tx_gso_segments;    /* their segments the port took */
	uint64_t ctrl_ok, ctrl_err;  /* control commands acked OK / ERR */
};

enum sc_net_qkind { SC_NET_RXQ, SC_NET_TXQ, SC_NET_CTRLQ };

struct sc_net_rx_slot {
	struct sc_vq_elem elem;
	struct iovec iov[SC_NET_RX_IOV];
};

/* One virtqueue of a net device. */
struct sc_net_queue {
	struct sc_vq vq;
	struct sc_pollq pq;          /* attach this to a poller */
	struct sc_net_dev *dev;
	enum sc_net_qkind kind;
	uint16_t port_queue;         /* the port's rx or tx queue of this pair */
	uint16_t hdr_len;            /* 12 with VERSION_1 or MRG_RXBUF, else 10 */
	bool mrg_rxbuf, guest_csum, csum, tso4, tso6;   /* negotiated (and offered) */
	bool gso;                    /* tx: TSO4 packets are segmented here (port->tx_gso) */
	bool in_order;               /* VIRTIO_F_IN_ORDER: chains complete in the order they were popped */
	bool ctrl_rx, ctrl_mac, ctrl_mq;        /* control commands negotiated */
	struct sc_net_stats stats;
	struct iovec *iov;           /* control: one chain's segments; tx: a batch's (2 * SC_NET_TX_IOV) */
	/* rx: popped chains not filled yet, a ring of SC_NET_RX_STASH */
	struct sc_net_rx_slot *stash;
	unsigned stash_first, nstash;
	bool stash_gap;              /* a chain popped after a stashed one was completed */
	struct rte_mbuf *burst[SC_NET_BURST];
	struct rte_mbuf *spare[SC_NET_BURST];   /* tx: empty mbufs allocated in bulk, not used yet */
	unsigned nspare;
	struct rte_gso_ctx *gso_ctx;            /* tx with gso: pools, segment types; gso_size set per packet */
	struct rte_mbuf **gso_out;              /* tx with gso: one packet's segments, SC_NET_GSO_MAX_SEGS */
};

/*
 * Set up vring idx of d (its kind and pair follow from idx) on the rings
 * cfg describes, with the features in cfg->features. Returns 0,
 * sc_vq_init's error, -EINVAL for an idx beyond the device, or -ENOMEM.
 * Control thread, before the queue is attached.
 */
int sc_net_queue_init(struct sc_net_queue *q, struct sc_net_dev *d, unsigned idx, const struct sc_vq_config *cfg,
		      const char *name);

/*
 * One turn: up to budget packets (rx: received; tx: sent) or control
 * commands, then publish. Returns the work done, or the ring's negative
 * errno once broken. Sidecore thread only.
 */
int sc_net_queue_poll(struct sc_net_queue *q, unsigned budget);

/* Give back stashed rx chains (completed empty) and free the queue. Control thread, after detach. */
void sc_net_queue_fini(struct sc_net_queue *q);

#endif
