#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/TARGET/seed-*).

Each seed is a small, well-formed input in the target's format (see the
comment at the top of tests/fuzz/fuzz_TARGET.c): working rings with one
request of each kind, so the fuzzer starts past the layout checks.
Inputs the fuzzer found (crashes fixed, coverage) sit beside them as
found-* files and are not written here.

  tests/fuzz/make_seeds.py        (run from anywhere; rewrites seed-* only)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
GPA = 0x10000          # FZ_GPA
RO_GPA = 0x100000      # FZ_RO_GPA
NEXT, WRITE, INDIRECT = 1, 2, 4
END = b"\xff"          # a chunk target of 2+: ends the chunk list (starts a round)


def chunk(off, data, target=0):
    out = b""
    while data:  # a chunk carries at most 255 bytes
        out += struct.pack("<BHB", target, off, min(len(data), 255)) + data[:255]
        off, data = off + 255, data[255:]
    return out


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def avail(heads, flags=0):
    return struct.pack("<HH", flags, len(heads)) + b"".join(struct.pack("<H", h) for h in heads)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# Ring layout shared by the seeds: descriptors, avail, used, buffers.
D, A, U, B = 0x0000, 0x1000, 0x2000, 0x3000


def chain_simple():
    return desc(GPA + B, 16, NEXT, 1) + desc(GPA + B + 0x100, 1, WRITE)


def vring_seeds():
    def hdr(log2=2, flags=1, last=0, rounds=2, budget=8, d=D, a=A, u=U):
        return struct.pack("<BBHHHHBB", log2, flags, d, a, u, last, rounds, budget)
    write("vring", "simple", hdr() + chunk(D, chain_simple()) + chunk(A, avail([0])) + END)
    # Two chains, the second through an indirect table.
    ind = desc(GPA + B, 16, NEXT, 1) + desc(GPA + B + 0x200, 512, WRITE)
    write("vring", "indirect", hdr() + chunk(D, chain_simple() + desc(GPA + 0x4000, 32, INDIRECT))
          + chunk(0x4000, ind) + chunk(A, avail([0, 2])) + END)
    # A buffer that crosses from one region to the next, and one in read-only memory.
    cross = desc(GPA + 0x7ff8, 16, NEXT, 1) + desc(RO_GPA, 64, NEXT, 2) + desc(GPA + B, 8, WRITE)
    write("vring", "cross-region", hdr() + chunk(D, cross) + chunk(A, avail([0])) + END)
    # A writable buffer in read-only memory (refused), and a long chain over a small iovec.
    write("vring", "ro-write", hdr() + chunk(D, desc(RO_GPA, 8, WRITE)) + chunk(A, avail([0])) + END)
    longc = b"".join(desc(GPA + B + 32 * i, 16, NEXT, i + 1) for i in range(7)) + desc(GPA + B + 0x400, 4, WRITE)
    write("vring", "oversized", hdr(log2=3, flags=1 | 8) + chunk(D, longc) + chunk(A, avail([0])) + END)
    # EVENT_IDX, then a second round in which the guest offers another chain.
    write("vring", "event-idx-rounds", hdr(flags=1 | 2 | 16) + chunk(D, chain_simple() * 2)
          + chunk(A, avail([0])) + END + chunk(A, avail([0, 2])) + END)
    # An inflight region with head 0 in flight (counter 1), used idx 0: it is served again first.
    infl = struct.pack("<QHHHH", 0, 1, 4, 0, 0) + struct.pack("<B5xHQ", 1, 0, 1) + bytes(16 * 3)
    write("vring", "inflight", hdr(flags=1 | 4, last=1) + chunk(D, chain_simple()) + chunk(A, avail([0]))
          + chunk(0, infl, target=1) + END)
    # A loop and a descriptor out of range.
    write("vring", "loop", hdr() + chunk(D, desc(GPA + B, 16, NEXT, 1) + desc(GPA + B, 16, NEXT, 0))
          + chunk(A, avail([0])) + END)
    write("vring", "avail-jump", hdr() + chunk(D, chain_simple()) + chunk(A, struct.pack("<HH", 0, 9)) + END)


def blk_seeds():
    def hdr(log2=2, flags=1, cap=512, size_max=1 << 19, seg_max=16, rounds=3, budget=8):
        return struct.pack("<BBHHHHIBBB", log2, flags, D, A, U, cap, size_max, seg_max, rounds, budget)

    def req(kind, sector=0, data=0, data_write=False, extra=b""):
        h = struct.pack("<IIQ", kind, 0, sector) + extra
        ds = desc(GPA + B, len(h), NEXT, 1)
        if data:
            ds += desc(GPA + 0x4000, data, NEXT | (0 if data_write else WRITE), 2)
            ds += desc(GPA + B + 0x100, 1, WRITE)
        else:
            ds += desc(GPA + B + 0x100, 1 if kind != 8 else 21, WRITE)
        return chunk(D, ds) + chunk(B, h) + chunk(A, avail([0]))
    write("blk", "read", hdr() + req(0, 2, 4096) + END)
    write("blk", "write", hdr() + req(1, 8, 1024, True) + END)
    write("blk", "flush", hdr() + req(4) + END)
    write("blk", "get-id", hdr() + req(8) + END)
    write("blk", "discard", hdr() + req(11, extra=struct.pack("<QII", 4, 8, 0)) + END)
    write("blk", "write-zeroes", hdr() + req(13, extra=struct.pack("<QII", 4, 8, 1)) + END)
    write("blk", "unsupported", hdr() + req(99) + END)
    write("blk", "read-only-write", hdr(flags=1 | 4) + req(1, 0, 512, True) + END)
    write("blk", "out-of-range", hdr(cap=8) + req(0, 7, 4096) + END)
    write("blk", "big-read", hdr(cap=512, size_max=1 << 19) + req(0, 0, 0xc000) + END + END + END)
    write("blk", "segment-too-big", hdr(size_max=512) + req(0, 0, 4096) + END)


def viommu_seeds():
    R = (0x0000, 0x1000, 0x2000)
    E = (0x5000, 0x6000, 0x7000)

    def hdr(flags=0x3f, endpoints=2, rounds=3, budget=8):
        return struct.pack("<BBB", 2, 2, flags) + struct.pack("<HHH", *R) + struct.pack("<HHH", *E) \
            + struct.pack("<BBBBB", 4, 8, endpoints, rounds, budget)

    def req(body, in_len=4):
        return chunk(R[0], desc(GPA + B, len(body), NEXT, 1) + desc(GPA + B + 0x200, in_len, WRITE)) \
            + chunk(B, body) + chunk(R[1], avail([0]))

    def round_(iova=0x1000, length=16, perm=1):
        return struct.pack("<QHB", iova, length, perm)
    attach = struct.pack("<B3xIII4x", 1, 1, 1, 0)
    mp = struct.pack("<B3xIQQQI", 3, 1, 0x1000, 0x1fff, GPA + 0x8000, 3)
    unmap = struct.pack("<B3xIQQ4x", 4, 1, 0x1000, 0x1fff)
    detach = struct.pack("<B3xII8x", 2, 1, 1)
    probe = struct.pack("<B3xI64x", 5, 1)
    evt = chunk(E[0], desc(GPA + 0x9000, 64, WRITE)) + chunk(E[1], avail([0]))
    def then(body, heads, in_len=4):
        """The guest's next request in the same descriptors, offered in slot len(heads) - 1."""
        return chunk(R[0], desc(GPA + B, len(body), NEXT, 1) + desc(GPA + B + 0x200, in_len, WRITE)) \
            + chunk(B, body) + chunk(R[1], avail(heads))
    write("viommu", "attach", hdr() + req(attach) + evt + END + round_())
    write("viommu", "attach-map", hdr() + req(attach) + END + round_() + then(mp, [0, 0]) + END + round_(0x1000, 64, 3))
    write("viommu", "map-unmap-strict", hdr() + req(attach) + END + round_() + then(mp, [0, 0]) + END + round_()
          + then(unmap, [0, 0, 0]) + END + round_() + END + round_())
    write("viommu", "map-unmap-optimistic", hdr(flags=0x3f | 64) + req(attach) + END + round_() + then(mp, [0, 0])
          + END + round_() + then(unmap, [0, 0, 0]) + END + round_() + END + round_())
    write("viommu", "detach", hdr() + req(attach) + END + round_() + then(detach, [0, 0]) + END + round_())
    write("viommu", "probe", hdr() + req(probe, 64 + 4) + END + round_())
    write("viommu", "fault-event", hdr() + req(attach) + evt + END + round_(0x5000, 8, 2) + END + round_(0x5000, 8, 2))
    write("viommu", "bypass", hdr(flags=0x3f | 128) + req(attach) + END + round_(GPA + 0x100, 8, 1))


def vu_seeds():
    MSG, RAW, WRITE_OP, POLL = 0, 1, 2, 3
    V = 1  # VHOST_USER_VERSION

    def msg(req, payload=b"", fds=(), flags=V):
        out = struct.pack("<BBBH", MSG, req, flags, len(payload)) + payload + struct.pack("<B", len(fds))
        for kind, n in fds:
            out += struct.pack("<BH", kind, n)
        return out

    def u64(v):
        return struct.pack("<Q", v)

    def state(i, n):
        return struct.pack("<II", i, n)

    def gw(addr, data, which=0):
        return struct.pack("<BBHHB", WRITE_OP, which, addr >> 12, addr & 0xfff, len(data)) + data
    feats = (1 << 28) | (1 << 29) | (1 << 32) | (1 << 30)
    UVA = 0x7f0000000000
    region = struct.pack("<QQQQ", 0, 16 * 4096, UVA, 0)
    setup = (msg(1) + msg(2, u64(feats)) + msg(15) + msg(16, u64(0x1ffff)) + msg(3)
             + msg(5, struct.pack("<II", 1, 0) + region, [(1, 15)]))
    ring = (msg(8, state(0, 4)) + msg(9, struct.pack("<IIQQQQ", 0, 0, UVA + D, UVA + U, UVA + A, 0))
            + msg(10, state(0, 0)) + msg(12, u64(0), [(0, 0)]) + msg(13, u64(0), [(0, 0)])
            + msg(14, u64(0), [(0, 0)]) + msg(18, state(0, 1)))
    guest = (gw(D, desc(B, 16, NEXT, 1) + desc(B + 0x100, 1, WRITE))
             + gw(B, struct.pack("<IIQ", 0, 0, 0)) + gw(A, avail([0])) + struct.pack("<B", POLL))
    write("vu", "handshake", setup + msg(17) + msg(36) + msg(24, struct.pack("<III", 0, 8, 0) + bytes(8)))
    write("vu", "ring-runs", setup + ring + guest + msg(11, state(0, 0)) + msg(40))
    write("vu", "inflight", setup + msg(31, struct.pack("<QQHH4x", 0, 0, 2, 4)) + ring + guest
          + msg(32, struct.pack("<QQHH4x", 4096, 0, 2, 4), [(1, 0)]))
    write("vu", "mem-regions", setup + msg(37, u64(0) + struct.pack("<QQQQ", 0x100000, 4096, UVA + 0x100000, 0), [(1, 0)])
          + msg(38, u64(0) + struct.pack("<QQQQ", 0x100000, 4096, UVA + 0x100000, 0)) + ring + guest)
    write("vu", "unsealed-memfd", msg(5, struct.pack("<II", 1, 0) + region, [(2, 15)]))
    write("vu", "short-memfd", msg(5, struct.pack("<II", 1, 0) + region, [(3, 100)]))
    write("vu", "pipe-as-kick", setup + msg(12, u64(0), [(4, 0)]))
    write("vu", "reset", setup + ring + guest + msg(34) + msg(4) + msg(40))
    write("vu", "need-reply", setup + msg(8, state(0, 4), flags=V | 4) + msg(8, state(5, 4), flags=V | 4))
    write("vu", "raw-cut", setup + struct.pack("<BB", RAW, 6) + struct.pack("<IH", 1, 0))
    write("vu", "running-ring-changed", setup + ring + guest + msg(8, state(0, 8)) + msg(9, bytes(40)))

    # IOMMU: ACCESS_PLATFORM, protocol features with REPLY_ACK, BACKEND_REQ and IOTLB,
    # a back-end channel, ring and buffers at IOVAs the IOTLB maps (IOVA = GPA + 1 GiB).
    IOVA = 1 << 30
    pfeats = 0x1ffff | (1 << 3) | (1 << 5) | (1 << 11)

    def iotlb(typ, iova=0, size=0, uaddr=0, perm=3, flags=V | 4):
        return msg(22, struct.pack("<QQQBB6x", iova, size, uaddr, perm, typ), flags=flags)
    isetup = (msg(1) + msg(2, u64(feats | (1 << 33))) + msg(15) + msg(16, u64(pfeats)) + msg(3)
              + msg(5, struct.pack("<II", 1, 0) + region, [(1, 15)]) + msg(21, b"", [(7, 0)]))
    iring = (msg(8, state(0, 4)) + msg(9, struct.pack("<IIQQQQ", 0, 0, IOVA + D, IOVA + U, IOVA + A, 0))
             + msg(10, state(0, 0)) + msg(12, u64(0), [(0, 0)]) + msg(13, u64(0), [(0, 0)])
             + msg(14, u64(0), [(0, 0)]) + msg(18, state(0, 1)))
    iguest = (gw(D, desc(IOVA + B, 16, NEXT, 1) + desc(IOVA + B + 0x100, 1, WRITE))
              + gw(B, struct.pack("<IIQ", 0, 0, 0)) + gw(A, avail([0])) + struct.pack("<B", POLL))
    mapped = iotlb(2, IOVA, 16 * 4096, UVA)
    write("vu", "iotlb-runs", isetup + mapped + iring + iguest)
    write("vu", "iotlb-miss-then-update", isetup + iring + iguest + mapped + struct.pack("<B", POLL))
    write("vu", "iotlb-invalidate-running", isetup + mapped + iring + iguest + iotlb(3, IOVA, 16 * 4096)
          + struct.pack("<B", POLL))
    write("vu", "iotlb-batch", isetup + iotlb(5, flags=V) + iotlb(2, IOVA, 4096, UVA) + iotlb(2, IOVA + 4096, 15 * 4096, UVA + 4096)
          + iotlb(6, flags=V) + iring + iguest)
    write("vu", "iotlb-read-only-buffer", isetup + iotlb(2, IOVA, 3 * 4096, UVA) + iotlb(2, IOVA + B, 4096, UVA + B, perm=1)
          + iring + iguest)
    write("vu", "iotlb-bad", isetup + iotlb(2, IOVA, 0, UVA) + iotlb(2, (1 << 64) - 4096, 8192, UVA) + iotlb(9)
          + iotlb(2, IOVA, 4096, UVA + (1 << 40)) + iotlb(2, IOVA, 4096, UVA, perm=7) + iotlb(1, IOVA, 4096, UVA))


def net_seeds():
    # Rings of 16 entries: rx, tx and control, each desc / avail / used; buffers above.
    RX, TX, CT, BUF = 0x0000, 0x1000, 0x2000, 0x3000
    MRG, CSUM, GCSUM, TSO4, TSO6, CTRLVQ, MQ, CTRLRX, CTRLMAC, EVIDX, INDIR = (1 << i for i in range(11))

    def hdr(sel, rounds=3, budget=16):
        return struct.pack("<BH9HBB", 4, sel, RX, RX + 0x400, RX + 0x600, TX, TX + 0x400, TX + 0x600,
                           CT, CT + 0x400, CT + 0x600, rounds, budget)

    def vhdr(flags=0, gso=0, hdr_len=0, gso_size=0, start=0, off=0, nbuf=0):
        return struct.pack("<BBHHHHH", flags, gso, hdr_len, gso_size, start, off, nbuf)

    def ip4(proto, payload):
        l4 = 20 if proto == 6 else 8
        eth = bytes.fromhex("525400aabbcc525400123456") + b"\x08\x00"
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + l4 + payload, 0, 0, 64, proto, 0, bytes([10, 0, 0, 1]),
                         bytes([10, 0, 0, 2]))
        if proto == 6:
            l4h = struct.pack(">HHIIBBHHH", 1234, 80, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
        else:
            l4h = struct.pack(">HHHH", 12345, 53, 8 + payload, 0)
        return eth + ip + l4h + bytes((i * 7 + 1) & 0xff for i in range(payload))

    def rx_bufs(n, size):
        # n rx chains of one device-writable buffer each, posted.
        return (chunk(RX, b"".join(desc(GPA + BUF + 0x800 * i, size, WRITE) for i in range(n)))
                + chunk(RX + 0x400, avail(list(range(n)))))

    def tx(segs):
        # One tx chain over segs (bytes each), laid out from 0x8000.
        out, ds, at = b"", b"", 0x8000
        for i, seg in enumerate(segs):
            ds += desc(GPA + at, len(seg), NEXT if i + 1 < len(segs) else 0, i + 1)
            out += chunk(at, seg)
            at += (len(seg) + 63) & ~63
        return chunk(TX, ds) + out + chunk(TX + 0x400, avail([0]))

    no_pkt = b"\x00"
    # A UDP packet whose 12-byte header is split 5 + 7 across descriptors, the payload in a third; it loops back
    # through the port into the posted rx buffers.
    pkt = vhdr() + ip4(17, 100)
    write("net", "tx-split-header", hdr(0) + rx_bufs(2, 2048) + tx([pkt[:5], pkt[5:40], pkt[40:]]) + END
          + no_pkt + END + no_pkt + END)
    # TSO: a 3000-byte TCP payload cut at an MSS of 1000, checksum partial at the TCP header.
    pkt = vhdr(1, 1, 54, 1000, 34, 16) + ip4(6, 3000)
    write("net", "tx-tso4", hdr(CSUM | TSO4 | TSO6) + rx_bufs(4, 2048) + tx([pkt[:12], pkt[12:]]) + END + no_pkt + END)
    # The same where the port does TSO itself (selector bit 12): the packet goes to it whole, with DPDK's TSO flags.
    PORT_TSO = 1 << 12
    write("net", "tx-tso4-port-tso", hdr(CSUM | TSO4 | TSO6 | PORT_TSO) + rx_bufs(4, 2048) + tx([pkt[:12], pkt[12:]])
          + END + no_pkt + END)
    # Checksum offload of a UDP packet (csum_offset 6 in the UDP header).
    pkt = vhdr(1, 0, 0, 0, 34, 6) + ip4(17, 300)
    write("net", "tx-csum", hdr(CSUM) + rx_bufs(2, 2048) + tx([pkt]) + END + no_pkt + END)
    # A 1500-byte packet from the port into four 512-byte mergeable buffers, checksum validated by the port.
    inject = b"\x01" + struct.pack("<HB", 1500, 1) + ip4(17, 1500 - 42)
    write("net", "rx-mergeable", hdr(MRG | GCSUM) + rx_bufs(4, 512) + END + inject + END + no_pkt + END)

    def ctrl(name, cls, cmd, data):
        # The command (class, cmd, data) in one device-readable buffer, the ack byte in a writable one.
        body = bytes([cls, cmd]) + data
        ring = (chunk(CT, desc(GPA + 0x9000, len(body), NEXT, 1) + desc(GPA + 0x9800, 1, WRITE))
                + chunk(0x9000, body) + chunk(CT + 0x400, avail([0])))
        write("net", "ctrl-" + name, hdr(CTRLVQ | CTRLRX | CTRLMAC | MQ) + ring + END + no_pkt + END)
    ctrl("rx-promisc", 0, 0, b"\x01")
    ctrl("rx-allmulti", 0, 1, b"\x01")
    ctrl("mac-addr-set", 1, 1, bytes.fromhex("525400abcdef"))
    ctrl("mac-table-set", 1, 0, struct.pack("<I", 1) + bytes.fromhex("525400000001") + struct.pack("<I", 0))
    ctrl("mac-table-set-empty", 1, 0, struct.pack("<II", 0, 0))
    ctrl("mq-pairs-set", 4, 0, struct.pack("<H", 2))

    # Interrupts: two tx chains (the UDP packet twice), published by one flush as used entries 0 and 1, into
    # rings whose used_event (after the avail ring) or NO_INTERRUPT flag says whether the driver wants it.
    IDLE = 1 << 11  # not a feature: the target's idle cycle (re-arm after each round)
    pkt = vhdr() + ip4(17, 100)
    two = chunk(TX, desc(GPA + 0x8000, len(pkt)) * 2) + chunk(0x8000, pkt)
    used_event = TX + 0x400 + 4 + 2 * 16
    for name, ev in (("before", 1), ("at", 2), ("after", 3)):
        # used_event 1 lies among the new entries (interrupt); 2 (the new index) and 3 do not (suppressed).
        write("net", "event-idx-used-event-" + name + "-new-idx", hdr(EVIDX) + rx_bufs(2, 2048) + two
              + chunk(TX + 0x400, avail([0, 1])) + chunk(used_event, struct.pack("<H", ev)) + END + no_pkt + END)
    write("net", "no-interrupt", hdr(0) + rx_bufs(2, 2048) + two + chunk(TX + 0x400, avail([0, 1], flags=1))
          + END + no_pkt + END)
    # The idle cycle: queues re-armed after each round (avail_event with EVENT_IDX, used->flags without),
    # the guest publishes two more chains while tx is armed (a kick); a budget of 1 leaves one waiting at the
    # re-arm (the race), then nothing.
    for name, sel in (("event-idx", EVIDX | CTRLVQ), ("flags", CTRLVQ)):
        write("net", "idle-rearm-" + name, hdr(sel | IDLE, rounds=3, budget=0) + rx_bufs(2, 2048) + two
              + chunk(TX + 0x400, avail([0])) + END + no_pkt + END + no_pkt
              + chunk(TX + 0x400, avail([0, 1, 0])) + END + no_pkt + END + no_pkt + END)
    # A control command with no byte for its ack breaks the queue; re-arming a broken queue finds no work.
    body = bytes([0, 0, 1])
    write("net", "idle-rearm-broken-ctrl", hdr(CTRLVQ | CTRLRX | IDLE) + chunk(CT, desc(GPA + 0x9000, len(body)))
          + chunk(0x9000, body) + chunk(CT + 0x400, avail([0])) + END + no_pkt + END)


vring_seeds()
blk_seeds()
viommu_seeds()
vu_seeds()
net_seeds()
