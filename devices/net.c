/* SPDX-License-Identifier: MIT */
#include "devices/net.h"
#include "common/fetch.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_gso.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_prefetch.h>

#define ETH_HLEN 14u
#define VLAN_HLEN 4u
#define PORT_DESCS 1024
#define POOL_MBUFS 16383             /* per NUMA node: 2^n - 1 is the ring's best size */
#define POOL_CACHE 256

/* ---- EAL, once per process ---- */

static pthread_once_t eal_once = PTHREAD_ONCE_INIT;
static int eal_ret;
static char eal_err[256];
static unsigned eal_mem_mb;

static void eal_init_once(void)
{
	cpu_set_t saved;
	char mem[16], prefix[48], lcores[32];
	bool have_aff = sched_getaffinity(0, sizeof(saved), &saved) == 0;

	snprintf(mem, sizeof(mem), "%u", eal_mem_mb ? eal_mem_mb : 256);
	/* Our own prefix: several sidecoreds (and test processes) on one host never share EAL files. */
	snprintf(prefix, sizeof(prefix), "sidecore-%d", (int)getpid());
	/*
	 * Lcore 0 is the calling thread; sidecores join as they start
	 * (rte_thread_register). No hugepages on our machines, so --no-huge
	 * (and --in-memory does not work without them); no shared config: one
	 * process. EAL pins lcore 0's thread: we put its affinity back below.
	 */
	snprintf(lcores, sizeof(lcores), "0@%d", sched_getcpu() >= 0 ? sched_getcpu() : 0);
	char *argv[] = { "sidecored", "--no-huge", "-m", mem, "--no-pci", "--no-shconf", "--no-telemetry",
			 "--file-prefix", prefix, "--lcores", lcores, "--log-level", "lib.eal:warning", NULL };
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	int r = rte_eal_init(argc, argv);
	if (have_aff)
		sched_setaffinity(0, sizeof(saved), &saved);
	if (r < 0) {
		eal_ret = rte_errno ? -rte_errno : -EINVAL;
		snprintf(eal_err, sizeof(eal_err), "DPDK EAL init failed (%s); run as root, or see DPDK's messages above",
			 rte_strerror(rte_errno));
		return;
	}
	/*
	 * With --no-shconf and --no-telemetry EAL keeps nothing in its runtime
	 * directory (no config file, no mp or telemetry socket), but creates
	 * it: removed, or every process leaves an empty /run/dpdk/sidecore-PID.
	 */
	rmdir(rte_eal_get_runtime_dir());
}

int sc_net_eal_init(unsigned mem_mb, char *err, size_t errlen)
{
	eal_mem_mb = mem_mb;
	pthread_once(&eal_once, eal_init_once);
	if (eal_ret < 0)
		snprintf(err, errlen, "%s", eal_err);
	return eal_ret;
}

void sc_net_thread_register(void)
{
	static __thread bool tried;

	if (tried || rte_lcore_id() != LCORE_ID_ANY)
		return;
	tried = true;
	/* Without an lcore id the thread still works, only without mempool caches: not worth a failure. */
	if (rte_thread_register() < 0)
		fprintf(stderr, "sidecore: net: a sidecore could not register with DPDK (%s); it runs without mbuf caches\n",
			rte_strerror(rte_errno));
}

/* ---- ports and pools ---- */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* One pool of each kind per NUMA node, shared by the ports there; last slot: SOCKET_ID_ANY. */
struct pool_kind {
	const char *prefix;
	uint16_t data_room;
	struct rte_mempool *of[RTE_MAX_NUMA_NODES + 1];
};

static struct pool_kind packet_pools = { "sc_mbuf", RTE_MBUF_DEFAULT_BUF_SIZE, { NULL } };
/*
 * Mbufs without data room: a GSO segment's payload is an indirect mbuf
 * attached to the guest packet's own data, so it needs no buffer of its
 * own (one of packet_pools' would tie up 2 KiB each, from the pool rx
 * shares).
 */
static struct pool_kind indirect_pools = { "sc_gso", 0, { NULL } };

/* k's pool of node (-1: any), made on first use; without hugepages EAL may have memory on one node only. */
static struct rte_mempool *pool_get(struct pool_kind *k, int node)
{
	unsigned slot = node >= 0 && node < RTE_MAX_NUMA_NODES ? (unsigned)node : RTE_MAX_NUMA_NODES;
	char name[32];

	pthread_mutex_lock(&pool_lock);
	if (!k->of[slot]) {
		snprintf(name, sizeof(name), "%s_%u", k->prefix, slot);
		k->of[slot] = rte_pktmbuf_pool_create(name, POOL_MBUFS, POOL_CACHE, 0, k->data_room,
						      slot == RTE_MAX_NUMA_NODES ? SOCKET_ID_ANY : node);
	}
	struct rte_mempool *mp = k->of[slot];
	pthread_mutex_unlock(&pool_lock);
	return mp || slot == RTE_MAX_NUMA_NODES ? mp : pool_get(k, -1);
}

/* "net_tap0,iface=x" names the device "net_tap0". */
static void vdev_name(const char *vdev, char *name, size_t len)
{
	snprintf(name, len, "%.*s", (int)strcspn(vdev, ","), vdev);
}

int sc_net_port_open(struct sc_net_port *p, const char *vdev, unsigned pairs, int numa_node, uint16_t mtu,
		     char *err, size_t errlen)
{
	char name[RTE_DEV_NAME_MAX_LEN];
	struct rte_eth_dev_info info;
	int r;

	memset(p, 0, sizeof(*p));
	snprintf(p->vdev, sizeof(p->vdev), "%s", vdev);
	p->numa_node = numa_node;
	r = sc_net_eal_init(0, err, errlen);
	if (r < 0)
		return r;
	vdev_name(vdev, name, sizeof(name));
	r = rte_dev_probe(vdev);
	if (r < 0) {
		snprintf(err, errlen, "port '%s': DPDK cannot create it (%s); check the vdev string (net_tap0,iface=NAME, "
			 "net_af_packet0,iface=NAME, net_ring0, net_null0) and that each port's name is unique", vdev,
			 strerror(-r));
		return -EINVAL;
	}
	if (rte_eth_dev_get_port_by_name(name, &p->port_id) != 0 || rte_eth_dev_info_get(p->port_id, &info) != 0) {
		snprintf(err, errlen, "port '%s': created, but it is not an ethdev port; give a net_* vdev", vdev);
		rte_eal_hotplug_remove("vdev", name);
		return -EINVAL;
	}
	if (pairs > info.max_rx_queues || pairs > info.max_tx_queues) {
		snprintf(err, errlen, "port '%s' has at most %u rx and %u tx queues, fewer than queues = %u; lower queues",
			 vdev, info.max_rx_queues, info.max_tx_queues, pairs);
		r = -ERANGE;
		goto fail;
	}
	if (mtu < info.min_mtu || mtu > info.max_mtu) {
		snprintf(err, errlen, "port '%s' takes an mtu of %u..%u, not %u; change mtu", vdev, info.min_mtu,
			 info.max_mtu, mtu);
		r = -ERANGE;
		goto fail;
	}
	struct rte_eth_conf conf = { 0 };
	uint64_t tx_want = RTE_ETH_TX_OFFLOAD_MULTI_SEGS | RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM |
			   RTE_ETH_TX_OFFLOAD_TCP_TSO | RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	uint64_t rx_want = RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
	conf.txmode.offloads = info.tx_offload_capa & tx_want;
	conf.rxmode.offloads = info.rx_offload_capa & rx_want;
	conf.rxmode.mtu = mtu;
	uint64_t csum = RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	p->tx_csum = (conf.txmode.offloads & csum) == csum;
	/* TSO of IPv4 has the port fill each segment's IP checksum (RTE_MBUF_F_TX_IP_CKSUM). */
	uint64_t tso = RTE_ETH_TX_OFFLOAD_TCP_TSO | RTE_ETH_TX_OFFLOAD_MULTI_SEGS | RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	/*
	 * DPDK 22.11's net_tap takes a TSO packet only if its segments'
	 * frames (Ethernet header included) fit the MTU, so it drops every
	 * full-sized one a guest sends (MSS = mtu - 40): its TSO is not used,
	 * the device segments for it (tx_gso).
	 */
	p->tx_tso = p->tx_csum && (conf.txmode.offloads & tso) == tso && strcmp(info.driver_name, "net_tap") != 0;
	p->tx_ip_csum = conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	p->tx_multi_segs = conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	/*
	 * Elsewhere TSO4 is done here, with librte_gso: its segments are a
	 * header mbuf and indirect payload mbufs, chained; a port that takes
	 * no chains gets each segment copied into its header mbuf (2 KiB of
	 * data room), which a frame must then fit.
	 */
	p->tx_gso = !p->tx_tso && (p->tx_multi_segs || mtu + ETH_HLEN + VLAN_HLEN <= RTE_MBUF_DEFAULT_DATAROOM);
	p->rx_csum = conf.rxmode.offloads == rx_want;
	p->pool = pool_get(&packet_pools, numa_node);
	p->indirect_pool = p->tx_gso ? pool_get(&indirect_pools, numa_node) : NULL;
	if (!p->pool || (p->tx_gso && !p->indirect_pool)) {
		snprintf(err, errlen, "port '%s': no memory for its %s pool (%s)", vdev, p->pool ? "GSO mbuf" : "mbuf",
			 rte_strerror(rte_errno));
		r = -ENOMEM;
		goto fail;
	}
	r = rte_eth_dev_configure(p->port_id, (uint16_t)pairs, (uint16_t)pairs, &conf);
	uint16_t nrx = PORT_DESCS, ntx = PORT_DESCS;
	if (r == 0)
		r = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nrx, &ntx);
	int sock = numa_node >= 0 ? numa_node : SOCKET_ID_ANY;
	for (unsigned i = 0; r == 0 && i < pairs; i++) {
		r = rte_eth_rx_queue_setup(p->port_id, (uint16_t)i, nrx, (unsigned)sock, NULL, p->pool);
		if (r == 0)
			r = rte_eth_tx_queue_setup(p->port_id, (uint16_t)i, ntx, (unsigned)sock, NULL);
	}
	if (r == 0)
		r = rte_eth_dev_start(p->port_id);
	if (r < 0) {
		snprintf(err, errlen, "port '%s': cannot configure and start %u queue pair%s: %s", vdev, pairs,
			 pairs == 1 ? "" : "s", strerror(-r));
		goto fail;
	}
	p->pairs = (uint16_t)pairs;
	return 0;
fail:
	rte_eal_hotplug_remove("vdev", name);
	return r;
}

void sc_net_port_close(struct sc_net_port *p)
{
	char name[RTE_DEV_NAME_MAX_LEN];

	if (!p->pairs)
		return;
	vdev_name(p->vdev, name, sizeof(name));
	rte_eth_dev_stop(p->port_id);
	/* Removing the vdev closes the port and frees its name for a later open (a reload). */
	if (rte_eal_hotplug_remove("vdev", name) != 0)
		rte_eth_dev_close(p->port_id);
	p->pairs = 0;
}

/* ---- the device ---- */

void sc_net_dev_init(struct sc_net_dev *d, struct sc_net_port *port, unsigned max_pairs, const uint8_t *mac,
		     uint16_t mtu)
{
	uint64_t m = 0;

	memset(d, 0, sizeof(*d));
	d->port = port;
	d->max_pairs = (uint16_t)max_pairs;
	d->active_pairs = 1;
	d->mtu = mtu;
	for (int i = 0; i < 6; i++)
		m |= (uint64_t)mac[i] << (8 * i);
	d->mac = m;
	d->features = (1ull << SC_VIRTIO_F_VERSION_1) | (1ull << SC_VIRTIO_F_EVENT_IDX) | (1ull << SC_VIRTIO_F_INDIRECT_DESC) |
		      (1ull << SC_VIRTIO_NET_F_MAC) | (1ull << SC_VIRTIO_NET_F_STATUS) | (1ull << SC_VIRTIO_NET_F_MTU) |
		      (1ull << SC_VIRTIO_NET_F_MRG_RXBUF) | (1ull << SC_VIRTIO_NET_F_CTRL_VQ) |
		      (1ull << SC_VIRTIO_NET_F_CTRL_RX) | (1ull << SC_VIRTIO_NET_F_CTRL_MAC_ADDR) |
		      /*
		       * Every queue completes chains in the order it popped them
		       * anyway; saying so lets DPDK's virtio PMD take its in-order
		       * paths (tx cleanup reads only used->idx, rx refills in bulk).
		       */
		      (1ull << SC_VIRTIO_F_IN_ORDER);
	if (max_pairs > 1)
		d->features |= 1ull << SC_VIRTIO_NET_F_MQ;
	/*
	 * TSO where the port does it (v4 and v6), else TSO4 segmented here
	 * (DPDK 22.11's librte_gso cuts TCP/IPv4 only). HOST_TSO* requires
	 * CSUM (virtio 1.2 §5.1.3.1): with TSO offered, CSUM is too, and a
	 * checksum the port cannot fill is done here. Without TSO, CSUM only
	 * where the port does checksums: a guest then does its own.
	 */
	if (port && (port->tx_csum || port->tx_tso || port->tx_gso))
		d->features |= 1ull << SC_VIRTIO_NET_F_CSUM;
	if (port && (port->tx_tso || port->tx_gso))
		d->features |= 1ull << SC_VIRTIO_NET_F_HOST_TSO4;
	if (port && port->tx_tso)
		d->features |= 1ull << SC_VIRTIO_NET_F_HOST_TSO6;
	if (port && port->rx_csum)
		d->features |= 1ull << SC_VIRTIO_NET_F_GUEST_CSUM;
}

void sc_net_config_space(const struct sc_net_dev *d, struct sc_virtio_net_config *cfg)
{
	uint64_t m = __atomic_load_n(&d->mac, __ATOMIC_RELAXED);
	struct rte_eth_link link = { 0 };

	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < 6; i++)
		cfg->mac[i] = (uint8_t)(m >> (8 * i));
	if (d->port && d->port->pairs && rte_eth_link_get_nowait(d->port->port_id, &link) == 0 &&
	    link.link_status == RTE_ETH_LINK_UP)
		cfg->status = SC_VIRTIO_NET_S_LINK_UP;
	cfg->max_virtqueue_pairs = d->max_pairs;
	cfg->mtu = d->mtu;
}

static inline bool has(uint64_t features, unsigned bit)
{
	return features & (1ull << bit);
}

/* ---- tx: guest chain -> mbuf ---- */

/* An empty mbuf for a tx packet: from the queue's spares, refilled in bulk from the pool. NULL if the pool is dry. */
static struct rte_mbuf *tx_mbuf_get(struct sc_net_queue *q)
{
	if (!q->nspare) {
		if (rte_pktmbuf_alloc_bulk(q->dev->port->pool, q->spare, SC_NET_BURST) != 0)
			return rte_pktmbuf_alloc(q->dev->port->pool);   /* fewer than a burst left */
		q->nspare = SC_NET_BURST;
	}
	return q->spare[--q->nspare];
}

/* Copy len bytes at off of the chain's readable part into a new mbuf chain; NULL without mbufs. */
static struct rte_mbuf *mbuf_from_iov(struct sc_net_queue *q, const struct iovec *iov, unsigned n, size_t off,
				      uint32_t len)
{
	struct rte_mbuf *head = NULL, *last = NULL;
	uint32_t done = 0;

	/*
	 * The usual layouts, header and packet in one descriptor or the header
	 * in one and the packet in the next, fit one mbuf: one copy of known
	 * contiguous bytes.
	 */
	const struct iovec *seg = n && iov[0].iov_len >= off + len ? &iov[0]
				  : n > 1 && iov[0].iov_len == off && iov[1].iov_len >= len ? &iov[1] : NULL;
	if (seg && len <= RTE_MBUF_DEFAULT_DATAROOM) {
		struct rte_mbuf *m = tx_mbuf_get(q);
		if (!m || rte_pktmbuf_tailroom(m) < len) {
			rte_pktmbuf_free(m);
			return NULL;
		}
		SC_FETCH(SC_FETCH_REQ, off, len);   /* fuzz builds: the same bytes sc_iov_copy_from would have noted */
		rte_memcpy(rte_pktmbuf_mtod(m, void *), (const uint8_t *)seg->iov_base + (seg == iov ? off : 0), len);
		m->data_len = (uint16_t)len;
		m->pkt_len = len;
		return m;
	}
	do {
		struct rte_mbuf *m = tx_mbuf_get(q);
		if (!m) {
			rte_pktmbuf_free(head);
			return NULL;
		}
		uint32_t chunk = len - done < rte_pktmbuf_tailroom(m) ? len - done : rte_pktmbuf_tailroom(m);
		sc_iov_copy_from(iov, n, off + done, rte_pktmbuf_mtod(m, void *), chunk);
		m->data_len = (uint16_t)chunk;
		done += chunk;
		if (!head) {
			head = m;
		} else {
			last->next = m;
			head->nb_segs++;
		}
		last = m;
	} while (done < len);
	head->pkt_len = len;
	return head;
}

/* Write len bytes at off of an mbuf chain (a checksum field may straddle two segments). */
static void mbuf_write(struct rte_mbuf *m, uint32_t off, const void *buf, uint32_t len)
{
	const uint8_t *b = buf;
	for (; m && len; m = m->next) {
		if (off >= m->data_len) {
			off -= m->data_len;
			continue;
		}
		uint32_t c = m->data_len - off < len ? m->data_len - off : len;
		memcpy(rte_pktmbuf_mtod_offset(m, uint8_t *, off), b, c);
		b += c;
		len -= c;
		off = 0;
	}
}

static uint8_t mbuf_byte(const struct rte_mbuf *m, uint32_t off)
{
	uint8_t b = 0;
	const uint8_t *p = rte_pktmbuf_read(m, off, 1, &b);
	return p ? *p : 0;
}

/*
 * Where the L3 and L4 headers are, for the port's offloads: l2_len and
 * l3_len, the L4 protocol, and the IP version. false if the packet is not
 * plain (or single-VLAN) Ethernet with IPv4 or IPv6 and TCP or UDP
 * starting at csum_start.
 */
static bool l4_layout(const struct rte_mbuf *m, uint32_t csum_start, uint32_t *l2, uint32_t *l3, uint8_t *proto,
		      bool *v4)
{
	uint32_t len = m->pkt_len, off = 12;
	uint16_t type = (uint16_t)(mbuf_byte(m, off) << 8 | mbuf_byte(m, off + 1));
	if (type == RTE_ETHER_TYPE_VLAN) {
		off += VLAN_HLEN;
		type = (uint16_t)(mbuf_byte(m, off) << 8 | mbuf_byte(m, off + 1));
	}
	*l2 = off + 2;
	if (type == RTE_ETHER_TYPE_IPV4 && *l2 + 20 <= len) {
		*v4 = true;
		*l3 = (uint32_t)(mbuf_byte(m, *l2) & 0xf) * 4;
		*proto = mbuf_byte(m, *l2 + 9);
	} else if (type == RTE_ETHER_TYPE_IPV6 && *l2 + 40 <= len) {
		*v4 = false;
		*l3 = 40;   /* extension headers: not offloaded (software checksum) */
		*proto = mbuf_byte(m, *l2 + 6);
	} else {
		return false;
	}
	return *l3 >= 20 && *l2 + *l3 == csum_start && (*proto == IPPROTO_TCP || *proto == IPPROTO_UDP);
}

/*
 * DPDK's TSO contract (rte_mbuf_core.h, RTE_MBUF_F_TX_TCP_SEG): the TCP
 * checksum field holds the pseudo-header sum without the length, and an
 * IPv4 header's checksum is 0 for the port to fill per segment. A virtio
 * driver leaves the sum with the whole packet's length in it (Linux does)
 * and the IPv4 checksum of the unsegmented packet, so both are redone
 * here; l4_layout checked that the IP header at l2 is inside the packet.
 */
static void tso_seed(struct rte_mbuf *m, uint32_t l2, uint32_t tcp, bool v4)
{
	union {
		struct rte_ipv4_hdr v4;
		struct rte_ipv6_hdr v6;
	} copy;
	const void *ip = rte_pktmbuf_read(m, l2, v4 ? sizeof(copy.v4) : sizeof(copy.v6), &copy);
	uint16_t seed = v4 ? rte_ipv4_phdr_cksum(ip, RTE_MBUF_F_TX_TCP_SEG) : rte_ipv6_phdr_cksum(ip, RTE_MBUF_F_TX_TCP_SEG);
	const uint16_t zero = 0;

	mbuf_write(m, tcp + 16, &seed, 2);
	if (v4)
		mbuf_write(m, l2 + offsetof(struct rte_ipv4_hdr, hdr_checksum), &zero, 2);
}

/*
 * Check the header's offload fields against the packet (len bytes) and the
 * negotiated features, and set m's offload flags (or checksum in software
 * where the port cannot). 0, or -EINVAL: the packet is dropped.
 */
static int tx_offload(struct sc_net_queue *q, const struct sc_virtio_net_hdr *h, struct rte_mbuf *m, uint32_t len)
{
	uint8_t gso = h->gso_type & (uint8_t)~SC_VIRTIO_NET_HDR_GSO_ECN;
	uint32_t start = h->csum_start, field = (uint32_t)h->csum_start + h->csum_offset;
	uint32_t l2 = 0, l3 = 0;
	uint8_t proto = 0;
	bool v4 = false;

	if (h->gso_type & SC_VIRTIO_NET_HDR_GSO_ECN)
		return -EINVAL;   /* HOST_ECN is never offered */
	if (gso != SC_VIRTIO_NET_HDR_GSO_NONE) {
		bool ok = (gso == SC_VIRTIO_NET_HDR_GSO_TCPV4 && q->tso4) || (gso == SC_VIRTIO_NET_HDR_GSO_TCPV6 && q->tso6);
		/* A TSO packet has its TCP checksum partial, and its TCP header inside the packet. */
		if (!ok || !(h->flags & SC_VIRTIO_NET_HDR_F_NEEDS_CSUM) || h->gso_size == 0 || h->csum_offset != 16)
			return -EINVAL;
	}
	if (!(h->flags & SC_VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return 0;
	if (!q->csum || field + 2 > len || start < ETH_HLEN)
		return -EINVAL;
	bool layout = l4_layout(m, start, &l2, &l3, &proto, &v4);
	if (gso != SC_VIRTIO_NET_HDR_GSO_NONE) {
		if (!layout || proto != IPPROTO_TCP || v4 != (gso == SC_VIRTIO_NET_HDR_GSO_TCPV4))
			return -EINVAL;
		uint32_t l4 = (uint32_t)(mbuf_byte(m, start + 12) >> 4) * 4;
		if (l4 < 20 || start + l4 >= len)
			return -EINVAL;
		/* Every segment the port cuts must fit the MTU (a guest's MSS is mtu - l3 - l4); larger ones no wire takes. */
		if (l3 + l4 + h->gso_size > q->dev->mtu)
			return -EINVAL;
		/* Work and mbufs grow with the segments: a tiny gso_size on a large packet is refused (SC_NET_GSO_MAX_SEGS). */
		if ((len - start - l4 + h->gso_size - 1) / h->gso_size > SC_NET_GSO_MAX_SEGS)
			return -EINVAL;
		/* A fragment is not segmented (librte_gso would pass it on whole, over the MTU). */
		if (v4 && ((mbuf_byte(m, l2 + 6) & 0x3f) || mbuf_byte(m, l2 + 7)))
			return -EINVAL;
		m->l2_len = l2;
		m->l3_len = l3;
		m->l4_len = l4;
		m->tso_segsz = h->gso_size;
		if (q->gso) {
			/* Cut here (tx_gso), each segment's checksums done then: what librte_gso needs to know. */
			m->ol_flags |= RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4;
			return 0;
		}
		m->ol_flags |= RTE_MBUF_F_TX_TCP_SEG | (v4 ? RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM : RTE_MBUF_F_TX_IPV6);
		tso_seed(m, l2, start, v4);
		return 0;
	}
	bool tcp = layout && proto == IPPROTO_TCP && h->csum_offset == 16;
	bool udp = layout && proto == IPPROTO_UDP && h->csum_offset == 6;
	if ((tcp || udp) && q->dev->port->tx_csum) {
		/* The guest left the pseudo-header sum in the field, as DPDK wants it. */
		m->l2_len = l2;
		m->l3_len = l3;
		m->ol_flags |= (tcp ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM) |
			       (v4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6);
		return 0;
	}
	/* Anything else (SCTP-style offsets, IP options the port cannot parse): the partial checksum in software. */
	uint16_t sum = 0;
	if (rte_raw_cksum_mbuf(m, start, len - start, &sum) != 0)
		return -EINVAL;
	sum = (uint16_t)~sum;
	mbuf_write(m, field, &sum, 2);
	return 0;
}

/* One popped tx chain into an mbuf; NULL if dropped (counted). */
static struct rte_mbuf *tx_packet(struct sc_net_queue *q, const struct sc_vq_elem *e)
{
	struct sc_virtio_net_hdr h = { 0 };
	uint32_t len, max;

	if (e->oversized || e->out_len < q->hdr_len + ETH_HLEN)
		goto bad;
	/*
	 * Copied once: the header may be split anywhere across descriptors.
	 * Read only if the driver may ask for an offload (CSUM; TSO comes with
	 * it): otherwise §5.1.6.2 has it send zeros, taken as read. Not
	 * touching it keeps its line in the driver's cache, where the virtio
	 * PMD writes it again for the next packet (as DPDK's vhost does).
	 */
	if (q->csum)
		sc_iov_copy_from(e->iov, e->out_num, 0, &h, q->hdr_len);
	len = e->out_len - q->hdr_len;
	max = h.gso_type != SC_VIRTIO_NET_HDR_GSO_NONE ? SC_NET_MAX_TSO : (uint32_t)q->dev->mtu + ETH_HLEN + VLAN_HLEN;
	if (len > max)
		goto bad;
	struct rte_mbuf *m = mbuf_from_iov(q, e->iov, e->out_num, q->hdr_len, len);
	if (!m) {
		q->stats.tx_dropped++;
		return NULL;
	}
	if (tx_offload(q, &h, m, len) < 0) {
		rte_pktmbuf_free(m);
		goto bad;
	}
	return m;
bad:
	q->stats.tx_bad++;
	return NULL;
}

static void tx_send(struct sc_net_queue *q, unsigned n)
{
	uint64_t bytes = 0;

	if (!n)
		return;
	/* Counted before the burst: a sent mbuf is the port's (net_null frees it at once). */
	for (unsigned i = 0; i < n; i++)
		bytes += q->burst[i]->pkt_len;
	uint16_t sent = rte_eth_tx_burst(q->dev->port->port_id, q->port_queue, q->burst, (uint16_t)n);
	q->stats.tx_packets += sent;
	if (sent < n) {
		/* The port is full: drop, as a NIC does; the guest's buffers are already back. */
		q->stats.tx_dropped += n - sent;
		for (unsigned i = sent; i < n; i++)
			bytes -= q->burst[i]->pkt_len;
		rte_pktmbuf_free_bulk(q->burst + sent, n - sent);
	}
	q->stats.tx_bytes += bytes;
}

/*
 * Each checksum of a segment librte_gso cut (an IPv4/TCP packet whose
 * headers are in its first mbuf; gso set their lengths, ids and sequence
 * numbers, and leaves the checksums as they were in the guest's packet):
 * by the port where it can, else here.
 */
static void gso_seg_csum(const struct sc_net_port *port, struct rte_mbuf *s)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(s, struct rte_ipv4_hdr *, s->l2_len);
	uint32_t tcp = (uint32_t)s->l2_len + s->l3_len;
	uint16_t sum;

	s->ol_flags &= ~RTE_MBUF_F_TX_OFFLOAD_MASK;
	ip->hdr_checksum = 0;
	if (port->tx_ip_csum)
		s->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
	else
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	/* The pseudo-header sum with the segment's length: what the port wants in the field, or where ours starts. */
	sum = rte_ipv4_phdr_cksum(ip, 0);
	mbuf_write(s, tcp + 16, &sum, 2);
	if (port->tx_csum) {
		s->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM;
		return;
	}
	if (rte_raw_cksum_mbuf(s, tcp, s->pkt_len - tcp, &sum) == 0) {
		sum = (uint16_t)~sum;
		mbuf_write(s, tcp + 16, &sum, 2);
	}
}

/*
 * Segment TSO packet m (tx_offload checked it) with librte_gso and send
 * the segments, after what came before it. m is consumed. The guest's
 * packet counts as sent (tx_packets, tx_bytes) only if the port took
 * every segment, else as dropped.
 */
static void tx_gso(struct sc_net_queue *q, struct rte_mbuf *m)
{
	const struct sc_net_port *port = q->dev->port;
	struct rte_mbuf **out = q->gso_out;
	uint32_t len = m->pkt_len;

	/* gso_size is a segment's size, headers included: l2 + l3 + l4 + MSS <= l2 + mtu (tx_offload). */
	q->gso_ctx->gso_size = (uint16_t)(m->l2_len + m->l3_len + m->l4_len + m->tso_segsz);
	int n = rte_gso_segment(m, q->gso_ctx, out, SC_NET_GSO_MAX_SEGS);
	if (n < 0) {
		/* -ENOMEM: a pool is dry (the out array holds the most tx_offload lets through) */
		rte_pktmbuf_free(m);
		q->stats.tx_dropped++;
		return;
	}
	if (n == 0) {
		out[0] = m;   /* the payload fits one segment: it goes as it is, checksums finished */
		n = 1;
	}
	bool cut = out[0] != m;
	if (cut) {
		q->stats.tx_gso_packets++;
		rte_pktmbuf_free(m);   /* each segment's payload holds a reference to m's data */
	}
	for (int i = 0; i < n; i++) {
		/* A port without chained mbufs: the segment into its header mbuf (offered only if a frame fits). */
		if (!port->tx_multi_segs && rte_pktmbuf_linearize(out[i]) < 0) {
			rte_pktmbuf_free_bulk(out, (unsigned)n);
			q->stats.tx_dropped++;
			return;
		}
		gso_seg_csum(port, out[i]);
	}
	uint16_t sent = rte_eth_tx_burst(port->port_id, q->port_queue, out, (uint16_t)n);
	if (cut)
		q->stats.tx_gso_segments += sent;
	if (sent < n) {
		/* The port is full: the rest is dropped, as a NIC does; the guest's TCP sends it again. */
		rte_pktmbuf_free_bulk(out + sent, (unsigned)(n - sent));
		q->stats.tx_dropped++;
		return;
	}
	q->stats.tx_packets++;
	q->stats.tx_bytes += len;
}

/*
 * The descriptors of the next chains, up to max of those the driver made
 * available, on their way while the first is walked. A driver that keeps
 * IN_ORDER (DPDK's virtio PMD) hands out its descriptors in ring order,
 * one a small packet, so slot s's descriptor is desc[s]: that is only a
 * guess (no guest value is read for it, and a prefetch never faults), right
 * for such a driver and a few wasted lines for another. Lines only the
 * driver has written, never ones it may be writing: the slots are available.
 */
static void tx_prefetch_descs(const struct sc_vq *vq, unsigned max)
{
	uint16_t avail = (uint16_t)(vq->avail_seen - vq->last_avail);
	unsigned n = avail < max ? avail : max;
	const unsigned per_line = RTE_CACHE_LINE_SIZE / sizeof(vq->desc[0]);

	/*
	 * From the first slot that starts a line (the one before it was just
	 * walked, its line is here), whole lines of available slots only: a
	 * line with a slot the driver has yet to fill may be one it is writing.
	 */
	for (unsigned i = (per_line - (vq->last_avail & (per_line - 1))) & (per_line - 1); i + per_line <= n;
	     i += per_line)
		rte_prefetch0(&vq->desc[(uint16_t)(vq->last_avail + i) & vq->mask]);
}

/*
 * Pop up to max chains into e, their segments in q->iov; each pop may
 * use SC_NET_TX_IOV segments, so the batch ends early only behind a chain
 * with many. Each chain's first bytes (header and frame start) are
 * prefetched: the driver's cpu wrote them, and waiting for each line in
 * turn while copying was most of a small frame's cost; asked for
 * together, the misses overlap. Returns the number popped; *r is the last
 * pop's result.
 */
static unsigned tx_pop_batch(struct sc_net_queue *q, struct sc_vq_elem *e, unsigned max, int *r)
{
	unsigned n = 0, used = 0;

	*r = 0;
	while (n < max && used <= SC_NET_TX_IOV) {
		e[n].iov = q->iov + used;
		e[n].iov_max = SC_NET_TX_IOV;
		*r = sc_vq_pop(&q->vq, &e[n]);
		if (*r <= 0)
			break;
		if (n == 0 && q->in_order)
			tx_prefetch_descs(&q->vq, max - 1);
		if (e[n].out_num) {
			/*
			 * What tx_packet reads first: the header only where it is read
			 * at all, then the frame's start; two lines, as a small frame
			 * straddles them wherever it starts. A prefetch never faults.
			 */
			const struct iovec *v = e[n].iov;
			size_t skip = q->csum ? 0 : q->hdr_len;
			if (v[0].iov_len <= skip && e[n].out_num > 1)
				skip = 0, v++;   /* the header alone in the first descriptor */
			if (v->iov_len > skip) {
				const char *b = (const char *)v->iov_base + skip;
				size_t len = v->iov_len - skip;
				rte_prefetch0(b);
				rte_prefetch0(b + (len < 2 * RTE_CACHE_LINE_SIZE ? len : 2 * RTE_CACHE_LINE_SIZE) - 1);
			}
			if (v == e[n].iov && e[n].out_num > 1)
				rte_prefetch0(e[n].iov[1].iov_base);
		}
		used += e[n].out_num + e[n].in_num;   /* the next chain's segments go after all of this one's */
		n++;
	}
	return n;
}

static int tx_poll(struct sc_net_queue *q, unsigned budget)
{
	struct sc_vq_elem e[SC_NET_BURST];
	unsigned n = 0;
	int r = 0;

	while (n < budget) {
		unsigned want = budget - n < SC_NET_BURST ? budget - n : SC_NET_BURST, nb = 0;
		unsigned got = tx_pop_batch(q, e, want, &r);
		for (unsigned i = 0; i < got; i++) {
			SC_FETCH_BEGIN();   /* fuzz builds: the chains were popped together; each one's bytes are its own request */
			struct rte_mbuf *m = tx_packet(q, &e[i]);
			/* Copied: the buffer goes back now; the used length of a tx buffer is 0 (nothing written). */
			sc_vq_push(&q->vq, e[i].head, 0);
			if (m && q->gso && (m->ol_flags & RTE_MBUF_F_TX_TCP_SEG)) {
				tx_send(q, nb);   /* in order: the packets before it go first */
				nb = 0;
				tx_gso(q, m);
			} else if (m) {
				q->burst[nb++] = m;
			}
		}
		tx_send(q, nb);
		n += got;
		if (r <= 0)
			break;
	}
	sc_vq_flush(&q->vq);
	return r < 0 && r != -EAGAIN ? r : (int)n;
}

/* ---- rx: mbuf -> guest buffers ---- */

static struct sc_net_rx_slot *stash_at(struct sc_net_queue *q, unsigned i)
{
	return &q->stash[(q->stash_first + i) % SC_NET_RX_STASH];
}

/* stash_fill: the stash was completed empty and filled again; a packet being placed starts over. */
#define STASH_REFILLED 2

/*
 * Make sure the stash has at least i + 1 chains: pop one more. 1 if there
 * is, 0 if the guest has none, a negative errno if the ring broke.
 * Chains a receive queue cannot use are completed empty and counted. With
 * VIRTIO_F_IN_ORDER the chains stashed before such a chain complete first,
 * empty (§2.7.9: used in the order made available; the driver finds its
 * buffers by position): then the result is STASH_REFILLED, and chains
 * 0..i are new ones.
 */
static int stash_fill(struct sc_net_queue *q, unsigned i)
{
	bool refilled = false;

	while (q->nstash <= i) {
		if (q->nstash == SC_NET_RX_STASH)
			return 0;
		struct sc_net_rx_slot *s = stash_at(q, q->nstash);
		s->elem.iov = s->iov;
		s->elem.iov_max = SC_NET_RX_IOV;
		int r = sc_vq_pop(&q->vq, &s->elem);
		if (r <= 0)
			return r == -EAGAIN ? 0 : r;
		if (s->elem.oversized || s->elem.out_num || s->elem.in_len < q->hdr_len) {
			q->stats.rx_bad_chains++;
			if (q->in_order && q->nstash) {
				/* Only a driver that breaks the rules pays: its good buffers come back unused. */
				for (unsigned k = 0; k < q->nstash; k++)
					sc_vq_push(&q->vq, stash_at(q, k)->elem.head, 0);
				q->stash_first = (q->stash_first + q->nstash) % SC_NET_RX_STASH;
				q->nstash = 0;
				refilled = true;
				s = stash_at(q, 0);   /* the same slot: the bad chain was popped into slot nstash */
			}
			sc_vq_push(&q->vq, s->elem.head, 0);
			/* Completed behind stashed chains: they are no longer the last ones popped (see fini). */
			q->stash_gap |= q->nstash > 0;
			continue;
		}
		q->nstash++;
	}
	return refilled ? STASH_REFILLED : 1;
}

/*
 * Copy one packet into the guest's buffers. 0 (delivered or dropped and
 * counted), 1 (dropped and counted: the guest has no buffer posted at all),
 * or the ring's errno.
 */
static int rx_packet(struct sc_net_queue *q, struct rte_mbuf *m)
{
	uint64_t need = (uint64_t)q->hdr_len + m->pkt_len, space = 0;
	unsigned nbuf = 0;

	while (space < need) {
		int r = stash_fill(q, nbuf);
		if (r < 0)
			return r;
		if (r == 0) {
			/* No buffer now: a full stash means the packet is larger than any it can hold. */
			if (q->nstash == SC_NET_RX_STASH)
				q->stats.rx_too_big++;
			else
				q->stats.rx_no_buffers++;
			return q->nstash ? 0 : 1;
		}
		if (r == STASH_REFILLED) {
			space = 0;
			nbuf = 0;
		}
		space += stash_at(q, nbuf)->elem.in_len;
		nbuf++;
		if (!q->mrg_rxbuf && space < need) {
			/* Without mergeable buffers a packet takes one chain; this one stays for a smaller packet. */
			q->stats.rx_too_big++;
			return 0;
		}
	}

	struct sc_virtio_net_hdr h = { .num_buffers = (uint16_t)nbuf };
	if (q->guest_csum && (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
		h.flags = SC_VIRTIO_NET_HDR_F_DATA_VALID;
	struct sc_net_rx_slot *s = stash_at(q, 0);
	if (!m->next && s->elem.iov[0].iov_len >= need) {
		/* The usual case: one segment into the first buffer of one chain, header and packet together. */
		uint8_t *dst = s->elem.iov[0].iov_base;
		/*
		 * Stored only if it differs: a driver that recycles its buffers
		 * (DPDK's virtio PMD) finds last lap's header there, the same
		 * one, and its read of num_buffers then hits a line still in its
		 * cache instead of missing on one our store took away (that miss
		 * was most of the 10-30% more cycles per packet it spent receiving
		 * from us than from DPDK's vhost, which compares too). What the guest
		 * may have written there only decides whether we store. Constant
		 * sizes: a couple of loads and stores, not calls into libc.
		 */
		if (q->hdr_len == SC_VIRTIO_NET_HDR_LEN) {
			if (memcmp(dst, &h, SC_VIRTIO_NET_HDR_LEN))
				memcpy(dst, &h, SC_VIRTIO_NET_HDR_LEN);
		} else if (memcmp(dst, &h, SC_VIRTIO_NET_HDR_LEN_LEGACY)) {
			memcpy(dst, &h, SC_VIRTIO_NET_HDR_LEN_LEGACY);
		}
		rte_memcpy(dst + q->hdr_len, rte_pktmbuf_mtod(m, const void *), m->data_len);
		sc_vq_push(&q->vq, s->elem.head, (uint32_t)need);
		q->stash_first = (q->stash_first + 1) % SC_NET_RX_STASH;
		q->nstash--;
		q->stats.rx_packets++;
		q->stats.rx_bytes += m->pkt_len;
		return 0;
	}
	sc_iov_copy_to(s->elem.iov, s->elem.in_num, 0, &h, q->hdr_len);
	uint32_t off = q->hdr_len;   /* in the current chain */
	unsigned j = 0;
	for (const struct rte_mbuf *seg = m; seg; seg = seg->next) {
		const uint8_t *src = rte_pktmbuf_mtod(seg, const uint8_t *);
		uint32_t left = seg->data_len;
		while (left) {
			if (off == s->elem.in_len) {
				sc_vq_push(&q->vq, s->elem.head, off);
				s = stash_at(q, ++j);
				off = 0;
			}
			uint32_t room = s->elem.in_len - off, c = left < room ? left : room;
			sc_iov_copy_to(s->elem.iov, s->elem.in_num, off, src, c);
			src += c;
			left -= c;
			off += c;
		}
	}
	sc_vq_push(&q->vq, s->elem.head, off);
	q->stash_first = (q->stash_first + j + 1) % SC_NET_RX_STASH;
	q->nstash -= j + 1;
	if (!q->nstash)
		q->stash_gap = false;
	q->stats.rx_packets++;
	q->stats.rx_bytes += m->pkt_len;
	return 0;
}

static int rx_poll(struct sc_net_queue *q, unsigned budget)
{
	unsigned want = budget < SC_NET_BURST ? budget : SC_NET_BURST;
	int r = 0;

	if (!want)
		return 0;
	/* The guest's buffers first (a packet a chain, as usual): they say how many packets to take. */
	r = stash_fill(q, want - 1);
	if (r < 0) {
		sc_vq_flush(&q->vq);   /* chains completed empty before the ring broke */
		return r;
	}
	/*
	 * Only as many packets as the guest has buffers for: the rest stay in
	 * the port, whose ring drops what overflows and counts it (imissed), as
	 * a NIC does when its driver is behind; taking them only to free them
	 * cost the sidecore an mbuf allocation and free each, for nothing,
	 * whenever the guest was the slower side.
	 * A guest with no buffer at all still has a burst taken, dropped and
	 * counted (rx_no_buffers): the port never backs up behind a guest that
	 * stopped, and the counter says what that guest lost.
	 */
	unsigned take = q->nstash ? (q->nstash < want ? q->nstash : want) : want;
	uint16_t n = rte_eth_rx_burst(q->dev->port->port_id, q->port_queue, q->burst, (uint16_t)take);
	if (!q->nstash) {
		q->stats.rx_no_buffers += n;
		if (n)
			rte_pktmbuf_free_bulk(q->burst, n);
		sc_vq_flush(&q->vq);
		return n;
	}
	/*
	 * The first buffers of the chains this burst fills, on their way into
	 * our cache while we copy: the driver's cpu touched them last. A small
	 * frame straddles two lines wherever it starts; a prefetch never
	 * faults. (rte_prefetch0_write is still experimental in DPDK 22.11.)
	 */
	for (unsigned i = 0; i < n && i < q->nstash; i++) {
		const char *b = stash_at(q, i)->elem.iov[0].iov_base;
		__builtin_prefetch(b, 0, 3);   /* the header: read first, and often left as it is (rx_packet) */
		__builtin_prefetch(b + q->hdr_len, 1, 3);
		__builtin_prefetch(b + q->hdr_len + 63, 1, 3);
	}
	r = 0;
	for (uint16_t i = 0; i < n && r == 0; i++) {
		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(q->burst[i + 1], void *));
		r = rx_packet(q, q->burst[i]);
		if (r == 1) {
			/*
			 * Packets took more buffers than counted (mergeable buffers):
			 * the rest of the burst is dropped too, without asking the
			 * ring (a cache line the driver writes) once more per packet.
			 */
			q->stats.rx_no_buffers += (uint64_t)(n - i - 1);
			r = 0;
			break;
		}
	}
	if (n)
		rte_pktmbuf_free_bulk(q->burst, n);
	sc_vq_flush(&q->vq);
	return r < 0 ? r : n;
}

/* ---- the control queue ---- */

/* Apply one command; OK or ERR (§5.1.6.5). */
static uint8_t ctrl_command(struct sc_net_queue *q, const struct sc_vq_elem *e)
{
	struct sc_virtio_net_ctrl_hdr c;
	struct sc_net_dev *d = q->dev;
	uint32_t n = e->out_len;
	uint8_t data[8];

	if (e->oversized || n < sizeof(c))
		return SC_VIRTIO_NET_ERR;
	sc_iov_copy_from(e->iov, e->out_num, 0, &c, sizeof(c));
	n -= sizeof(c);
	/* MAC_TABLE_SET reads its tables itself: copying them here too would read the guest's bytes twice. */
	bool table = c.class == SC_VIRTIO_NET_CTRL_MAC && c.cmd == SC_VIRTIO_NET_CTRL_MAC_TABLE_SET;
	if (n <= sizeof(data) && !table)
		sc_iov_copy_from(e->iov, e->out_num, sizeof(c), data, n);

	switch (c.class) {
	case SC_VIRTIO_NET_CTRL_RX:
		if (!q->ctrl_rx || n != 1 || c.cmd > SC_VIRTIO_NET_CTRL_RX_ALLMULTI)
			return SC_VIRTIO_NET_ERR;
		/* A port that cannot filter (-ENOTSUP) passes everything: promiscuous and all-multicast already. */
		int r;
		if (c.cmd == SC_VIRTIO_NET_CTRL_RX_PROMISC)
			r = data[0] ? rte_eth_promiscuous_enable(d->port->port_id) : rte_eth_promiscuous_disable(d->port->port_id);
		else
			r = data[0] ? rte_eth_allmulticast_enable(d->port->port_id)
				    : rte_eth_allmulticast_disable(d->port->port_id);
		if (r < 0 && r != -ENOTSUP)
			return SC_VIRTIO_NET_ERR;
		__atomic_store_n(c.cmd == SC_VIRTIO_NET_CTRL_RX_PROMISC ? &d->promisc : &d->allmulti, data[0] != 0,
				 __ATOMIC_RELAXED);
		return SC_VIRTIO_NET_OK;
	case SC_VIRTIO_NET_CTRL_MAC:
		if (c.cmd == SC_VIRTIO_NET_CTRL_MAC_ADDR_SET) {
			if (!q->ctrl_mac || n != 6)
				return SC_VIRTIO_NET_ERR;
			uint64_t m = 0;
			for (int i = 0; i < 6; i++)
				m |= (uint64_t)data[i] << (8 * i);
			__atomic_store_n(&d->mac, m, __ATOMIC_RELAXED);
			return SC_VIRTIO_NET_OK;
		}
		if (c.cmd == SC_VIRTIO_NET_CTRL_MAC_TABLE_SET && q->ctrl_rx) {
			/* Two tables, unicast then multicast: le32 entries, then 6 bytes each. Checked, not kept: we do not filter. */
			uint64_t off = sizeof(c);
			for (int t = 0; t < 2; t++) {
				uint32_t entries = 0;
				if (off + 4 > e->out_len)
					return SC_VIRTIO_NET_ERR;
				sc_iov_copy_from(e->iov, e->out_num, off, &entries, 4);
				off += 4 + 6ull * entries;
			}
			return off == e->out_len ? SC_VIRTIO_NET_OK : SC_VIRTIO_NET_ERR;
		}
		return SC_VIRTIO_NET_ERR;
	case SC_VIRTIO_NET_CTRL_MQ: {
		uint16_t pairs;
		if (!q->ctrl_mq || c.cmd != SC_VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || n != 2)
			return SC_VIRTIO_NET_ERR;
		memcpy(&pairs, data, 2);
		if (pairs < SC_VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || pairs > d->max_pairs)
			return SC_VIRTIO_NET_ERR;
		/* Every pair's queues are polled anyway; the number is what the guest uses, for the stats. */
		__atomic_store_n(&d->active_pairs, pairs, __ATOMIC_RELAXED);
		return SC_VIRTIO_NET_OK;
	}
	default:
		return SC_VIRTIO_NET_ERR;
	}
}

static int ctrl_poll(struct sc_net_queue *q, unsigned budget)
{
	struct sc_vq_elem e;
	unsigned n = 0;
	int r = 0;

	while (n < budget) {
		e.iov = q->iov;
		e.iov_max = SC_NET_TX_IOV;
		r = sc_vq_pop(&q->vq, &e);
		if (r <= 0)
			break;
		n++;
		if (!e.in_len) {
			sc_vq_set_broken(&q->vq, -EPROTO, "control command (head %u) has no device-writable byte for its ack",
					 e.head);
			r = -EPROTO;
			break;
		}
		uint8_t ack = ctrl_command(q, &e);
		if (ack == SC_VIRTIO_NET_OK)
			q->stats.ctrl_ok++;
		else
			q->stats.ctrl_err++;
		sc_iov_copy_to(e.iov + e.out_num, e.in_num, 0, &ack, 1);
		sc_vq_push(&q->vq, e.head, 1);
	}
	sc_vq_flush(&q->vq);
	return r < 0 && r != -EAGAIN ? r : (int)n;
}

/* ---- queues on a poller ---- */

int sc_net_queue_poll(struct sc_net_queue *q, unsigned budget)
{
	if (sc_vq_broken(&q->vq))
		return q->vq.broken_err;
	sc_net_thread_register();
	switch (q->kind) {
	case SC_NET_RXQ:
		return rx_poll(q, budget);
	case SC_NET_TXQ:
		return tx_poll(q, budget);
	default:
		return ctrl_poll(q, budget);
	}
}

static int pq_poll(struct sc_pollq *pq, unsigned budget)
{
	return sc_net_queue_poll(pq->ctx, budget);
}

static bool pq_notify_enable(struct sc_pollq *pq)
{
	struct sc_net_queue *q = pq->ctx;
	/* Packets come from the port, not with a kick: a receive queue always may have work. */
	if (q->kind == SC_NET_RXQ)
		return true;
	return sc_vq_notify_enable(&q->vq);
}

static void pq_notify_disable(struct sc_pollq *pq)
{
	sc_vq_notify_disable(&((struct sc_net_queue *)pq->ctx)->vq);
}

static void pq_fault(struct sc_pollq *pq, const char *reason)
{
	sc_vq_set_broken(&((struct sc_net_queue *)pq->ctx)->vq, -EFAULT, "%s", reason);
}

static const struct sc_pollq_ops net_pollq_ops = { pq_poll, pq_notify_enable, pq_notify_disable, pq_fault };

int sc_net_queue_init(struct sc_net_queue *q, struct sc_net_dev *d, unsigned idx, const struct sc_vq_config *cfg,
		      const char *name)
{
	uint64_t f = cfg->features;
	int ret;

	memset(q, 0, sizeof(*q));
	if (idx > 2u * d->max_pairs)
		return -EINVAL;
	q->dev = d;
	q->kind = idx == 2u * d->max_pairs ? SC_NET_CTRLQ : idx % 2 ? SC_NET_TXQ : SC_NET_RXQ;
	q->port_queue = (uint16_t)(idx / 2);
	q->mrg_rxbuf = has(f, SC_VIRTIO_NET_F_MRG_RXBUF);
	q->in_order = has(f, SC_VIRTIO_F_IN_ORDER);
	q->hdr_len = has(f, SC_VIRTIO_F_VERSION_1) || q->mrg_rxbuf ? SC_VIRTIO_NET_HDR_LEN : SC_VIRTIO_NET_HDR_LEN_LEGACY;
	q->guest_csum = has(f, SC_VIRTIO_NET_F_GUEST_CSUM);
	q->csum = has(f, SC_VIRTIO_NET_F_CSUM);
	/* Only what the device offered: TSO6 is never taken where only TSO4 is segmented here. */
	q->tso4 = q->csum && has(f, SC_VIRTIO_NET_F_HOST_TSO4) && has(d->features, SC_VIRTIO_NET_F_HOST_TSO4);
	q->tso6 = q->csum && has(f, SC_VIRTIO_NET_F_HOST_TSO6) && has(d->features, SC_VIRTIO_NET_F_HOST_TSO6);
	q->gso = q->kind == SC_NET_TXQ && q->tso4 && d->port && d->port->tx_gso;
	q->ctrl_rx = has(f, SC_VIRTIO_NET_F_CTRL_RX);
	q->ctrl_mac = has(f, SC_VIRTIO_NET_F_CTRL_MAC_ADDR);
	q->ctrl_mq = has(f, SC_VIRTIO_NET_F_MQ);
	/*
	 * A receive queue's work comes from the port: no kick fd, so its
	 * sidecore never sleeps while it is attached (polling.h).
	 */
	q->pq = (struct sc_pollq){ .ops = &net_pollq_ops, .ctx = q, .name = name, .turn_cycles = UINT64_MAX,
				   .kick_fd = q->kind == SC_NET_RXQ ? -1 : cfg->kick_fd };
	ret = sc_vq_init(&q->vq, cfg);
	if (ret < 0)
		return ret;
	if (q->kind == SC_NET_RXQ)
		q->stash = calloc(SC_NET_RX_STASH, sizeof(*q->stash));
	else
		q->iov = calloc(q->kind == SC_NET_TXQ ? 2 * SC_NET_TX_IOV : SC_NET_TX_IOV, sizeof(*q->iov));
	if (q->gso) {
		q->gso_ctx = calloc(1, sizeof(*q->gso_ctx));
		q->gso_out = calloc(SC_NET_GSO_MAX_SEGS, sizeof(*q->gso_out));
		if (q->gso_ctx)
			*q->gso_ctx = (struct rte_gso_ctx){ .direct_pool = d->port->pool, .indirect_pool = d->port->indirect_pool,
							    .gso_types = RTE_ETH_TX_OFFLOAD_TCP_TSO,
							    .gso_size = RTE_GSO_SEG_SIZE_MIN + 1 };   /* set per packet */
	}
	if ((!q->stash && !q->iov) || (q->gso && (!q->gso_ctx || !q->gso_out))) {
		free(q->stash);
		free(q->iov);
		free(q->gso_ctx);
		free(q->gso_out);
		sc_vq_fini(&q->vq);
		return -ENOMEM;
	}
	return 0;
}

void sc_net_queue_fini(struct sc_net_queue *q)
{
	if (q->nstash && !sc_vq_broken(&q->vq)) {
		/*
		 * Chains popped for packets that never came: without an inflight
		 * region they go back to the avail ring (the next back end pops
		 * them again), if they are the last ones popped; with one, or
		 * with a chain completed after them, they complete empty (a
		 * rewind would hand out that completed chain again).
		 */
		if (!q->vq.inflight && !q->stash_gap) {
			q->vq.last_avail = (uint16_t)(q->vq.last_avail - q->nstash);
		} else {
			for (unsigned i = 0; i < q->nstash; i++)
				sc_vq_push(&q->vq, stash_at(q, i)->elem.head, 0);
			sc_vq_flush(&q->vq);
		}
	}
	q->nstash = 0;
	if (q->nspare)
		rte_pktmbuf_free_bulk(q->spare, q->nspare);
	q->nspare = 0;
	free(q->stash);
	free(q->iov);
	free(q->gso_ctx);
	free(q->gso_out);
	q->stash = NULL;
	q->iov = NULL;
	q->gso_ctx = NULL;
	q->gso_out = NULL;
	sc_vq_fini(&q->vq);
}
