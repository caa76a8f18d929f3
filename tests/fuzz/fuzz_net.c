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
 * 10 INDIRECT_DESC; VERSION_1 always; bit 11: the idle cycle, below;
 * bit 12: the port does TSO itself, else the device segments TSO4 packets
 * with librte_gso, as on net_ring, and TSO6 is not offered),
 * u16 desc, avail, used offsets in the image for rx, tx and control
 * (nine), u8 rounds (mod 16), u8 budget (mod 64). Then chunks (the
 * guest's writes: rings, descriptors, headers, packets, control
 * commands). Each round: u8 packets to inject (mod 5), each u16 length
 * (mod 4096, at least 1), u8 flags (bit 0: the port validated its L4
 * checksum), the bytes; then the tx, control and rx queues are polled
 * once each; then chunks for the next round.
 *
 * Notifications: each queue has an interrupt eventfd (made once per
 * process, drained after each input), so every flush decides on the
 * avail ring's used_event (EVENT_IDX) or NO_INTERRUPT flag as the fuzzer
 * wrote them. With bit 11 the target runs each queue as an idle sidecore
 * would if the queue were its only one (polling.c): notifications off
 * once at attach; after each round's polls, re-armed (notify_enable; on
 * work found, off again at once: the re-arm race); a queue left armed
 * has them turned off at the next round, as after the guest's kick,
 * which the next round's chunks stand for.
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
 * - no mbuf leaks: the pool (and GSO's pool of indirect mbufs) holds as
 *   many as before the input;
 * - interrupts: a poll (net.c flushes once, at its end) that published
 *   used entries [old, new) wrote the queue's eventfd once if the driver
 *   asked for it (used_event in [old, new) with EVENT_IDX, else
 *   NO_INTERRUPT clear), else counted it suppressed; one that published
 *   nothing did neither; each eventfd holds as many as its queue counted;
 * - re-arm: notify_enable / notify_disable write nothing but their own
 *   queue's used->flags (without EVENT_IDX) or avail_event (with; disable
 *   writes nothing then), and leave there 0 / NO_NOTIFY / the next avail
 *   index; notify_enable says work is waiting iff avail->idx is past the
 *   last entry popped (a receive queue: always; a broken queue: never).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
static unsigned pool_full, indirect_full;
static int call_fd[NQ];                   /* the queues' interrupt eventfds, for the whole process */
static bool event_idx;                    /* this input negotiated EVENT_IDX */

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
	if (!port.indirect_pool) {
		fprintf(stderr, "fuzz_net: net_ring has no GSO pool: the device does not segment TSO packets there\n");
		abort();
	}
	indirect_full = rte_mempool_avail_count(port.indirect_pool);
	for (unsigned k = 0; k < NQ; k++) {
		/* Nonblocking: the drain after an input reads 0 as EAGAIN. */
		call_fd[k] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (call_fd[k] < 0) {
			perror("fuzz_net: eventfd for a queue's interrupts");
			abort();
		}
	}
}

/*
 * Each queue's used ring (guest range), and whether a buffer of its own
 * chains overlaps it: then the queue's data writes in a poll (rx packets,
 * control acks) may overwrite used entries it published before the check
 * reads them back (a hostile layout the device must survive, but one that
 * makes those entries, and the rx byte sum, unverifiable). Other queues'
 * writes come in their own polls, before or after the check.
 */
static uint64_t used_lo[NQ], used_hi[NQ];
static bool used_aliased[NQ];
#define NO_QUEUE NQ   /* mark: bytes of no queue's chains (a used ring) */

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

/* Bytes the device may write, for queue k's chains (or NO_QUEUE). */
static void mark(uint64_t gpa, uint64_t len, unsigned k)
{
	if (k < NQ && gpa < used_hi[k] && used_lo[k] < gpa + len)
		used_aliased[k] = true;
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

/* Device-writable bytes of a chain from desc (table of n), as any walk of it could count them; marks them for queue k. */
static uint64_t chain_in(uint64_t table, unsigned n, unsigned head, bool indirect_ok, unsigned k)
{
	uint64_t in = 0;
	unsigned i = head;

	for (unsigned hops = 0; hops < n && i < n; hops++) {
		struct sc_vring_desc d;
		if (!desc_at(table + 16ull * i, &d))
			break;
		if ((d.flags & SC_VIRTQ_DESC_F_INDIRECT) && indirect_ok) {
			note_read(d.addr, d.len);
			in += chain_in(d.addr, d.len / 16 > 4096 ? 4096 : d.len / 16, 0, false, k);
		} else if (d.flags & SC_VIRTQ_DESC_F_WRITE) {
			mark(d.addr, d.len, k);
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
			uint64_t in = chain_in(desc, vq->size, h, vq->indirect, k);
			if (in > max_in[k][h])
				max_in[k][h] = in > UINT32_MAX ? UINT32_MAX : (uint32_t)in;
		}
		mark(used_lo[k], used_hi[k] - used_lo[k], NO_QUEUE);
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
				chain_in(desc, vq->size, h, vq->indirect, k);
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
		f->used_bytes += u.len;
		if (used_aliased[k])
			continue;
		fz_check(u.id < vq->size);
		fz_check(rings_aliased || u.len <= max_in[k][u.id]);
		if (f->q.kind == SC_NET_TXQ)
			fz_check(u.len == 0);
	}
}

/*
 * The flush that ended a poll (or fini) published [from, used_published):
 * it interrupted once if the driver asked for it, else counted it
 * suppressed. The avail ring is read now: the device read it last, after
 * all its writes, so this is what it saw, its own writes there included.
 */
static void check_interrupt(struct fq *f, uint16_t from, const struct sc_vq_stats *was)
{
	struct sc_vq *vq = &f->q.vq;
	uint64_t irq = vq->stats.interrupts - was->interrupts;
	uint64_t quiet = vq->stats.interrupts_suppressed - was->interrupts_suppressed;
	uint16_t to = vq->used_published;

	if (to == from) {
		fz_check(irq == 0 && quiet == 0);
		return;
	}
	bool want;
	if (event_idx) {
		uint16_t ev;
		memcpy(&ev, &vq->avail->ring[vq->size], sizeof(ev));
		want = (uint16_t)(ev - from) < (uint16_t)(to - from);   /* §2.7.10: the driver's entry is among the new */
	} else {
		want = !(vq->avail->flags & SC_VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	fz_check(irq + quiet == 1 && irq == want);
}

static void poll_one(struct fq *f, unsigned k, unsigned budget)
{
	if (!f->on)
		return;
	uint16_t from = f->q.vq.used_published;
	struct sc_vq_stats was = f->q.vq.stats;
	int r = sc_net_queue_poll(&f->q, budget);
	if (r > 0)
		f->polled += (unsigned)r;
	check_used(f, k, from);
	check_interrupt(f, from, &was);
}

/* Since before was taken the image changed at most in the len bytes at at (in the image); before takes them. */
static void check_wrote_only(const void *at, size_t len)
{
	size_t off = (size_t)((const uint8_t *)at - image);
	fz_check(memcmp(image, before, off) == 0);
	fz_check(memcmp(image + off + len, before + off + len, FZ_IMAGE - off - len) == 0);
	memcpy(before + off, image + off, len);
}

/* One queue's notify_disable through the poller's ops (idle cycle, header comment). */
static void notify_stop(struct fq *f)
{
	struct sc_net_queue *q = &f->q;
	bool was_on = q->vq.notify_on;

	q->pq.ops->notify_disable(&q->pq);
	if (event_idx) {
		check_wrote_only(image, 0);   /* a stale avail_event stops kicks by itself */
		return;
	}
	check_wrote_only(&q->vq.used->flags, 2);
	if (was_on)
		fz_check(q->vq.used->flags == SC_VIRTQ_USED_F_NO_NOTIFY);
}

/* One queue's notify_enable; true if it found work waiting. */
static bool notify_rearm(struct fq *f)
{
	struct sc_net_queue *q = &f->q;
	struct sc_vq *vq = &q->vq;
	bool was_on = vq->notify_on, broken = sc_vq_broken(vq);
	uint16_t *field = event_idx ? sc_vring_avail_event(vq->used, vq->size) : &vq->used->flags;

	bool work = q->pq.ops->notify_enable(&q->pq);
	check_wrote_only(field, 2);
	if (q->kind == SC_NET_RXQ) {
		fz_check(work);   /* its packets come from the port */
		return work;
	}
	if (broken) {
		fz_check(!work);
		return work;
	}
	if (!was_on)
		fz_check(*field == (event_idx ? vq->last_avail : 0));
	fz_check(work == (vq->avail->idx != vq->last_avail));
	return work;
}

/*
 * The idle cycle's notification calls, in a window of their own: enable
 * re-arms every queue (one that finds work turns them off again at once),
 * !enable turns them off on the queues left armed.
 */
static void notify_round(struct fq *qs, bool *armed, bool enable)
{
	memcpy(before, image, sizeof(image));
	for (unsigned k = 0; k < NQ; k++) {
		if (!qs[k].on)
			continue;
		if (!enable) {
			if (armed[k])
				notify_stop(&qs[k]);
			armed[k] = false;
		} else if (notify_rearm(&qs[k])) {
			notify_stop(&qs[k]);   /* the re-arm race: work is waiting, poll on */
		} else {
			armed[k] = true;
		}
	}
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
	memset(used_aliased, 0, sizeof(used_aliased));
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
	bool idle = sel & (1u << 11);
	event_idx = features & (1ull << SC_VIRTIO_F_EVENT_IDX);
	fz_chunks(&f, image, NULL, 0);

	unsigned max_pairs = features & (1ull << SC_VIRTIO_NET_F_MQ) ? PAIRS : 1;
	/* net_ring carries DPDK's TSO flags as they are: it stands for a port with TSO as well as for one without. */
	port.tx_tso = sel & (1u << 12);
	port.tx_gso = !port.tx_tso;
	sc_net_dev_init(&dev, &port, max_pairs, mac, MTU);
	const unsigned idx[NQ] = { 0, 1, 2 * max_pairs };
	for (unsigned k = 0; k < NQ; k++) {
		struct sc_vq_config cfg = {
			.size = qsize, .desc_addr = FZ_GPA + rings[k][0], .avail_addr = FZ_GPA + rings[k][1],
			.used_addr = FZ_GPA + rings[k][2], .features = features, .xlate = sc_mem_xlate(&mem),
			.call_fd = call_fd[k], .kick_fd = -1, .err_fd = -1, .name = "fuzz net",
		};
		qs[k].on = (k < 2 || (features & (1ull << SC_VIRTIO_NET_F_CTRL_VQ))) &&
			   sc_net_queue_init(&qs[k].q, &dev, idx[k], &cfg, "fuzz net") == 0;
		qs[k].used0 = qs[k].q.vq.used_idx;
		qs[k].polled = qs[k].used_bytes = 0;
		used_lo[k] = used_hi[k] = 0;
		if (qs[k].on) {
			used_lo[k] = (uint64_t)((uint8_t *)qs[k].q.vq.used - image) + FZ_GPA;
			used_hi[k] = used_lo[k] + 4 + 8ull * qsize + 2;
		}
	}
	bool armed[NQ] = { true, true, true };   /* at init; a poller turns them off when it takes the queue */

	for (unsigned r = 0; r < rounds; r++) {
		unsigned npkt = fz_u8(&f) % 5;
		for (unsigned i = 0; i < npkt; i++)
			inject(&f);
		if (idle)
			notify_round(qs, armed, false);
		round_allow(qs);
		memcpy(before, image, sizeof(image));
		poll_one(&qs[1], 1, budget);
		poll_one(&qs[2], 2, budget);
		poll_one(&qs[0], 0, budget);
		check_writes();
		if (idle)
			notify_round(qs, armed, true);
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
		if (!used_aliased[0] && !rings_aliased)
			fz_check(qs[0].used_bytes == rx->stats.rx_bytes + (uint64_t)rx->stats.rx_packets * rx->hdr_len);
	}
	/* fini completes stashed rx chains empty (or rewinds them): its writes are checked too. */
	memcpy(before, image, sizeof(image));
	for (unsigned k = 0; k < NQ; k++) {
		if (qs[k].on) {
			uint16_t from = qs[k].q.vq.used_published;
			struct sc_vq_stats was = qs[k].q.vq.stats;
			sc_net_queue_fini(&qs[k].q);
			check_used(&qs[k], k, from);
			check_interrupt(&qs[k], from, &was);
		}
	}
	check_writes();
	/* Each eventfd holds the interrupts its queue counted this input (its counter reads 0 as EAGAIN). */
	for (unsigned k = 0; k < NQ; k++) {
		uint64_t n = 0;
		if (read(call_fd[k], &n, sizeof(n)) != (ssize_t)sizeof(n))
			n = 0;
		fz_check(n == (qs[k].on ? qs[k].q.vq.stats.interrupts : 0));
	}
	for (size_t i = 0; i < sizeof(ro); i++)
		fz_check(ro[i] == 0);
	port_drain();
	fz_check(rte_mempool_avail_count(port.pool) == pool_full);
	fz_check(rte_mempool_avail_count(port.indirect_pool) == indirect_full);
	sc_mem_fini(&mem);
	return 0;
}
