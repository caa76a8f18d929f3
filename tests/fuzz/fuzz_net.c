/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: virtio-net (devices/net.c) on an in-process DPDK net_ring
 * port, a loopback: what the device sends on the port's tx queue 0 comes
 * back on its rx queue 0, as does what the target injects there. EAL and
 * the port start once per process (as tests/test_net.c does); each input
 * sets up one queue pair (receiveq 0, transmitq 0) and, with CTRL_VQ, the
 * control queue, in the guest memory image (fuzz.h), then runs rounds.
 *
 * Header: u8 log2 size (mod 9: 1..256 entries, all three rings), u16
 * feature selector (bit 0 MRG_RXBUF, 1 CSUM, 2 GUEST_CSUM, 3 HOST_TSO4,
 * 4 HOST_TSO6, 5 CTRL_VQ, 6 MQ, 7 CTRL_RX, 8 CTRL_MAC_ADDR, 9 EVENT_IDX,
 * 10 INDIRECT_DESC; VERSION_1 always), u16 desc, avail, used offsets in
 * the image for rx, tx and control (nine), u8 rounds (mod 16), u8 budget
 * (mod 64). Then chunks (the guest's writes: rings, descriptors, headers,
 * packets, control commands). Each round: u8 packets to inject (mod 5),
 * each u16 length (mod 4096, at least 1), u8 flags (bit 0: the port
 * validated its L4 checksum), the bytes; then the tx, control and rx
 * queues are polled once each; then chunks for the next round.
 *
 * Checks beyond the sanitizers and the double-fetch recorder:
 * - the device writes no byte of the image outside the device-writable
 *   buffers of some descriptor (direct or indirect) and the used rings,
 *   and nothing in read-only memory;
 * - a used entry names a head below the queue size, with a length no
 *   larger than that chain's device-writable bytes (tx: 0);
 * - counters add up: every tx chain popped is sent, bad or dropped; every
 *   control command is acked OK or ERR (one more if it broke the queue);
 *   every packet received from the port is delivered or dropped and
 *   counted; every rx chain popped is used or stashed; the rx used
 *   lengths add up to the packets delivered, each with its header;
 * - no mbuf leaks: the pool holds as many as before the input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "devices/net.h"
#include "tests/fuzz/fuzz.h"
#include "spec/sc_vring.h"

#define PAIRS 2
#define MTU 1500
#define NQ 3   /* rx, tx, control */

static uint8_t image[FZ_IMAGE] __attribute__((aligned(4096)));
static uint8_t ro[FZ_RO] __attribute__((aligned(4096)));
static uint8_t before[FZ_IMAGE] __attribute__((aligned(8)));
static uint8_t writable[FZ_IMAGE];        /* 1: a byte the device may write this input */
static uint32_t max_in[NQ][256];          /* per head: most device-writable bytes its chain had in any round */
static struct sc_net_port port;
static unsigned pool_full;

static void port_drain(void)
{
	struct rte_mbuf *m[32];
	uint16_t n;

	while ((n = rte_eth_rx_burst(port.port_id, 0, m, 32)) > 0)
		rte_pktmbuf_free_bulk(m, n);
}

static void port_open(void)
{
	char err[256];

	if (sc_net_eal_init(0, err, sizeof(err)) < 0) {
		/* As test_net does: a machine where DPDK cannot start skips (77: meson's skip), visibly. */
		fprintf(stderr, "fuzz_net: skipped: DPDK's EAL cannot start here: %s\n", err);
		exit(77);
	}
	if (sc_net_port_open(&port, "net_ring0", PAIRS, -1, MTU, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_net: %s\n", err);
		abort();
	}
	pool_full = rte_mempool_avail_count(port.pool);
}

/*
 * The rx used ring's guest range, and whether a buffer the device may write
 * overlaps it: then the device's own data writes may overwrite used
 * entries before the check reads them back (a hostile layout the device
 * must survive, but one that makes the byte sum unverifiable).
 */
static uint64_t rx_used_lo, rx_used_hi;
static bool rx_used_aliased;

/*
 * The guest-controlled structures the device reads a chain from (descriptor
 * tables, avail rings, indirect tables) may lie under buffers the device
 * writes: then a chain the device pops late in a round can differ from the
 * one round_allow saw, and the per-chain used-length bound is unverifiable
 * (the writes themselves are still checked against what any chain allowed).
 */
#define MAX_READ_RANGES 64
static struct { uint64_t gpa, len; } read_ranges[MAX_READ_RANGES];
static unsigned nread_ranges;
static bool rings_aliased;

static void note_read(uint64_t gpa, uint64_t len)
{
	if (nread_ranges == MAX_READ_RANGES) {
		rings_aliased = true;   /* too many to check: assume the worst */
		return;
	}
	read_ranges[nread_ranges].gpa = gpa;
	read_ranges[nread_ranges++].len = len;
}

static bool any_writable(uint64_t gpa, uint64_t len)
{
	uint64_t top, lo = gpa > FZ_GPA ? gpa : FZ_GPA;
	if (__builtin_add_overflow(gpa, len, &top))
		top = UINT64_MAX;
	uint64_t hi = top < FZ_GPA + FZ_IMAGE ? top : FZ_GPA + FZ_IMAGE;
	/* memchr, not a byte loop: under coverage tracing a byte loop over a ring cost milliseconds. */
	return lo < hi && memchr(writable + (lo - FZ_GPA), 1, hi - lo) != NULL;
}

static void mark(uint64_t gpa, uint64_t len)
{
	if (gpa < rx_used_hi && rx_used_lo < gpa + len)
		rx_used_aliased = true;
	if (gpa < FZ_GPA || gpa >= FZ_GPA + FZ_IMAGE)
		return;
	uint64_t off = gpa - FZ_GPA, end = len > FZ_IMAGE - off ? FZ_IMAGE : off + len;
	memset(writable + off, 1, end - off);
}

/* The descriptor at gpa, copied (an indirect table may sit at any address); false outside the image. */
static bool desc_at(uint64_t gpa, struct sc_vring_desc *d)
{
	if (gpa < FZ_GPA || gpa - FZ_GPA > FZ_IMAGE - sizeof(*d))
		return false;
	memcpy(d, image + (gpa - FZ_GPA), sizeof(*d));
	return true;
}

/* Device-writable bytes of a chain from desc (table of n), as any walk of it could count them; marks them. */
static uint64_t chain_in(uint64_t table, unsigned n, unsigned head, bool indirect_ok)
{
	uint64_t in = 0;
	unsigned i = head;

	for (unsigned hops = 0; hops < n && i < n; hops++) {
		struct sc_vring_desc d;
		if (!desc_at(table + 16ull * i, &d))
			break;
		if ((d.flags & SC_VIRTQ_DESC_F_INDIRECT) && indirect_ok) {
			note_read(d.addr, d.len);
			in += chain_in(d.addr, d.len / 16 > 4096 ? 4096 : d.len / 16, 0, false);
		} else if (d.flags & SC_VIRTQ_DESC_F_WRITE) {
			mark(d.addr, d.len);
			in += d.len;
		}
		if (!(d.flags & SC_VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
	}
	return in;
}

struct fq {
	struct sc_net_queue q;
	bool on;
	uint16_t used0;            /* used_idx after init */
	uint64_t polled;           /* sum of positive poll returns */
	uint64_t used_bytes;       /* sum of the used lengths it published */
};

/*
 * Before a round: the chains each queue may pop in it (its avail entries
 * from last_avail to avail->idx, as the guest left them) and what the
 * device may write for them. Cumulative over the input: rx chains stay
 * stashed across rounds, and the guest may rewrite their descriptors.
 */
static void round_allow(struct fq *qs)
{
	for (unsigned k = 0; k < NQ; k++) {
		struct sc_vq *vq = &qs[k].q.vq;
		if (!qs[k].on)
			continue;
		uint64_t desc = (uint64_t)((uint8_t *)vq->desc - image) + FZ_GPA;
		uint16_t last = vq->last_avail, span = (uint16_t)(vq->avail->idx - last);
		for (unsigned i = 0; i < span && i < vq->size; i++) {
			uint16_t h = vq->avail->ring[(uint16_t)(last + i) & vq->mask];
			if (h >= vq->size)
				continue;
			uint64_t in = chain_in(desc, vq->size, h, vq->indirect);
			if (in > max_in[k][h])
				max_in[k][h] = in > UINT32_MAX ? UINT32_MAX : (uint32_t)in;
		}
		uint64_t used = (uint64_t)((uint8_t *)vq->used - image) + FZ_GPA, used_len = 4 + 8ull * vq->size + 2;
		if (k == 0 && !rx_used_hi) {
			/* Buffers marked so far (rx's own) count too. */
			rx_used_lo = used;
			rx_used_hi = used + used_len;
			if (any_writable(used, used_len))
				rx_used_aliased = true;
		}
		bool was = rx_used_aliased;
		mark(used, used_len);
		if (k == 0)
			rx_used_aliased = was;   /* its own used ring is not an alias of itself */
	}
	/*
	 * An avail ring the device may write (another queue's used ring, or a
	 * buffer, over it): mid-round the device itself can make any head
	 * available to that queue, so every chain of it may be popped and
	 * written. Twice: chains allowed so may cover another avail ring.
	 */
	for (unsigned pass = 0; pass < 2; pass++)
		for (unsigned k = 0; k < NQ; k++) {
			struct sc_vq *vq = &qs[k].q.vq;
			if (!qs[k].on ||
			    !any_writable((uint64_t)((uint8_t *)vq->avail - image) + FZ_GPA, 4 + 2ull * vq->size + 2))
				continue;
			uint64_t desc = (uint64_t)((uint8_t *)vq->desc - image) + FZ_GPA;
			for (unsigned h = 0; h < vq->size; h++)
				chain_in(desc, vq->size, h, vq->indirect);
		}
	for (unsigned k = 0; k < NQ; k++) {
		struct sc_vq *vq = &qs[k].q.vq;
		if (!qs[k].on)
			continue;
		if (any_writable((uint64_t)((uint8_t *)vq->desc - image) + FZ_GPA, 16ull * vq->size) ||
		    any_writable((uint64_t)((uint8_t *)vq->avail - image) + FZ_GPA, 4 + 2ull * vq->size + 2))
			rings_aliased = true;
	}
	for (unsigned i = 0; i < nread_ranges && !rings_aliased; i++)
		if (any_writable(read_ranges[i].gpa, read_ranges[i].len))
			rings_aliased = true;
}

/* Every byte the device changed since before was one it may write. */
static void check_writes(void)
{
	const uint64_t *now = (const uint64_t *)image, *was = (const uint64_t *)before;
	for (size_t w = 0; w < FZ_IMAGE / 8; w++)
		if (now[w] != was[w])
			for (size_t i = 8 * w; i < 8 * w + 8; i++)
				fz_check(image[i] == before[i] || writable[i]);
}

/* The used entries a queue published since used_idx was from. */
static void check_used(struct fq *f, unsigned k, uint16_t from)
{
	struct sc_vq *vq = &f->q.vq;
	for (uint16_t i = from; i != vq->used_published; i++) {
		struct sc_vring_used_elem u = vq->used->ring[i & vq->mask];
		fz_check(u.id < vq->size);
		fz_check(rings_aliased || u.len <= max_in[k][u.id]);
		f->used_bytes += u.len;
		if (f->q.kind == SC_NET_TXQ)
			fz_check(u.len == 0);
	}
}

static void poll_one(struct fq *f, unsigned k, unsigned budget)
{
	if (!f->on)
		return;
	uint16_t from = f->q.vq.used_published;
	int r = sc_net_queue_poll(&f->q, budget);
	if (r > 0)
		f->polled += (unsigned)r;
	check_used(f, k, from);
}

/* Put one packet on the port for the device to receive: fuzzed length and bytes, in as many mbufs as it takes. */
static void inject(struct fz *f)
{
	uint32_t len = fz_u16(f) % 4096 + 1;
	uint8_t flags = fz_u8(f);
	struct rte_mbuf *head = NULL, *last = NULL;

	while (len) {
		struct rte_mbuf *m = rte_pktmbuf_alloc(port.pool);
		fz_check(m);
		uint16_t c = (uint16_t)(len < rte_pktmbuf_tailroom(m) ? len : rte_pktmbuf_tailroom(m));
		fz_bytes(f, rte_pktmbuf_append(m, c), c);
		len -= c;
		if (!head) {
			head = m;
		} else {
			last->next = m;
			head->nb_segs++;
			head->pkt_len += c;
		}
		last = m;
	}
	if (flags & 1)
		head->ol_flags |= RTE_MBUF_F_RX_L4_CKSUM_GOOD;
	if (rte_eth_tx_burst(port.port_id, 0, &head, 1) != 1)
		rte_pktmbuf_free(head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned bits[] = { SC_VIRTIO_NET_F_MRG_RXBUF, SC_VIRTIO_NET_F_CSUM, SC_VIRTIO_NET_F_GUEST_CSUM,
					 SC_VIRTIO_NET_F_HOST_TSO4, SC_VIRTIO_NET_F_HOST_TSO6, SC_VIRTIO_NET_F_CTRL_VQ,
					 SC_VIRTIO_NET_F_MQ, SC_VIRTIO_NET_F_CTRL_RX, SC_VIRTIO_NET_F_CTRL_MAC_ADDR,
					 SC_VIRTIO_F_EVENT_IDX, SC_VIRTIO_F_INDIRECT_DESC };
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	struct fz f = { data, size };
	struct sc_mem mem;
	struct sc_net_dev dev;
	static struct fq qs[NQ];

	if (!port.pairs)
		port_open();
	memset(image, 0, sizeof(image));
	memset(ro, 0, sizeof(ro));
	memset(writable, 0, sizeof(writable));
	rx_used_lo = rx_used_hi = 0;
	rx_used_aliased = false;
	nread_ranges = 0;
	rings_aliased = false;
	memset(max_in, 0, sizeof(max_in));
	fz_mem(&mem, image, ro);

	uint32_t qsize = 1u << (fz_u8(&f) % 9);
	uint16_t sel = fz_u16(&f);
	uint64_t features = 1ull << SC_VIRTIO_F_VERSION_1;
	for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (sel & (1u << i))
			features |= 1ull << bits[i];
	uint16_t rings[NQ][3];
	for (unsigned k = 0; k < NQ; k++)
		for (unsigned j = 0; j < 3; j++)
			rings[k][j] = fz_u16(&f);
	unsigned rounds = fz_u8(&f) % 16 + 1, budget = fz_u8(&f) % 64 + 1;
	fz_chunks(&f, image, NULL, 0);

	unsigned max_pairs = features & (1ull << SC_VIRTIO_NET_F_MQ) ? PAIRS : 1;
	sc_net_dev_init(&dev, &port, max_pairs, mac, MTU);
	const unsigned idx[NQ] = { 0, 1, 2 * max_pairs };
	for (unsigned k = 0; k < NQ; k++) {
		struct sc_vq_config cfg = {
			.size = qsize, .desc_addr = FZ_GPA + rings[k][0], .avail_addr = FZ_GPA + rings[k][1],
			.used_addr = FZ_GPA + rings[k][2], .features = features, .xlate = sc_mem_xlate(&mem),
			.call_fd = -1, .kick_fd = -1, .err_fd = -1, .name = "fuzz net",
		};
		qs[k].on = (k < 2 || (features & (1ull << SC_VIRTIO_NET_F_CTRL_VQ))) &&
			   sc_net_queue_init(&qs[k].q, &dev, idx[k], &cfg, "fuzz net") == 0;
		qs[k].used0 = qs[k].q.vq.used_idx;
		qs[k].polled = qs[k].used_bytes = 0;
	}

	for (unsigned r = 0; r < rounds; r++) {
		unsigned npkt = fz_u8(&f) % 5;
		for (unsigned i = 0; i < npkt; i++)
			inject(&f);
		round_allow(qs);
		memcpy(before, image, sizeof(image));
		poll_one(&qs[1], 1, budget);
		poll_one(&qs[2], 2, budget);
		poll_one(&qs[0], 0, budget);
		check_writes();
		if (!fz_chunks(&f, image, NULL, 0) && !f.n)
			break;
	}

	struct sc_net_queue *rx = &qs[0].q, *tx = &qs[1].q, *ct = &qs[2].q;
	if (qs[1].on)
		fz_check(tx->vq.stats.requests == tx->stats.tx_packets + tx->stats.tx_bad + tx->stats.tx_dropped);
	if (qs[2].on) {
		/* A command with no room for its ack breaks the queue, unacked. */
		uint64_t acked = ct->stats.ctrl_ok + ct->stats.ctrl_err;
		fz_check(ct->vq.stats.requests == acked + (sc_vq_broken(&ct->vq) && ct->vq.stats.requests > acked));
	}
	if (qs[0].on && !sc_vq_broken(&rx->vq)) {
		fz_check(qs[0].polled == rx->stats.rx_packets + rx->stats.rx_no_buffers + rx->stats.rx_too_big);
		fz_check(rx->vq.stats.requests == (uint16_t)(rx->vq.used_idx - qs[0].used0) + rx->nstash);
		/* Each packet delivered is its header and its bytes, no more: bad chains complete with 0. */
		if (!rx_used_aliased && !rings_aliased)
			fz_check(qs[0].used_bytes == rx->stats.rx_bytes + (uint64_t)rx->stats.rx_packets * rx->hdr_len);
	}
	/* fini completes stashed rx chains empty (or rewinds them): its writes are checked too. */
	memcpy(before, image, sizeof(image));
	for (unsigned k = 0; k < NQ; k++) {
		if (qs[k].on) {
			uint16_t from = qs[k].q.vq.used_published;
			sc_net_queue_fini(&qs[k].q);
			check_used(&qs[k], k, from);
		}
	}
	check_writes();
	for (size_t i = 0; i < sizeof(ro); i++)
		fz_check(ro[i] == 0);
	port_drain();
	fz_check(rte_mempool_avail_count(port.pool) == pool_full);
	sc_mem_fini(&mem);
	return 0;
}
