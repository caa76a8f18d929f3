#!/usr/bin/env python3
"""Prints the README's benchmark tables (markdown) from results/*.json."""
import json
import os
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "results"


def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None


def head(r):
    return (f"Measured {r['date'][:10]} on {r['machine']}, kernel {r['kernel']}, "
            f"TSC {r['tsc_hz'] / 1e9:.2f} GHz; guest/driver on cpu {r['guest_cpu']}, "
            f"sidecore on cpu {r['sidecore_cpu']}.\n")


r = load("roundtrip")
if r:
    m = r["modes"]
    fl, ev = m["floor"]["latency"]["cycles"]["p50"], m["eventfd"]["latency"]["cycles"]["p50"]
    print("### roundtrip\n\n" + head(r))
    print("| mode | p50 cycles | p99 | p99.9 | p50 ns | requests/s | kicks/request | p50 ÷ floor | p50 ÷ eventfd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, label in (("floor", "floor: two cache lines"), ("polling", "sidecore polling"),
                     ("eventfd", "eventfd (vhost model)")):
        c = m[k]["latency"]["cycles"]
        print(f"| {label} | {c['p50']} | {c['p99']} | {c['p99_9']} | {m[k]['latency']['ns']['p50']:.0f} | "
              f"{m[k]['req_per_s'] / 1e6:.2f} M | {m[k]['kicks_per_req']:.2f} | {c['p50'] / fl:.2f}× | {c['p50'] / ev:.3f}× |")
    print()

r = load("exits")
if r:
    ops = r["ops"]
    side = next(o for o in ops if "sidecore" in o["op"])
    s50 = side["latency"]["cycles"]["p50"]
    print("### exits\n\n" + head(r))
    print("| operation | p50 cycles | mean | p99 | p50 ns | VM exits/op (KVM stats) | p50 ÷ sidecore |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in ops:
        if "unavailable" in o:
            print(f"| {o['op']} | n/a: {o['unavailable']} | | | | | |")
            continue
        c = o["latency"]["cycles"]
        print(f"| {o['op']} | {c['p50']} | {c['mean']:.0f} | {c['p99']} | {o['latency']['ns']['p50']:.0f} | "
              f"{o['exits_per_op']:.2f} | {c['p50'] / s50:.1f}× |")
    print()

r = load("latency")
if r:
    print("### latency\n\n" + head(r))
    print("| served by | QD | p50 cycles | p99 | p99.9 | p50 µs | requests/s | VM exits/req | kicks/req | device cpu ns/req | p50 ÷ sidecore |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    side = {c["queue_depth"]: c["latency"]["cycles"]["p50"] for c in r["modes"]["sidecore"]}
    for mode in ("sidecore", "eventfd", "user-exit"):
        for c in r["modes"][mode]:
            l = c["latency"]["cycles"]
            print(f"| {mode} | {c['queue_depth']} | {l['p50']} | {l['p99']} | {l['p99_9']} | "
                  f"{c['latency']['ns']['p50'] / 1000:.2f} | {c['req_per_s'] / 1e6:.2f} M | {c['exits_per_req']:.2f} | "
                  f"{c['kicks_per_req']:.2f} | {c['device_cpu_ns_per_req']:.0f} | {l['p50'] / side[c['queue_depth']]:.1f}× |")
    print()

r = load("vhost-blk")
if r:
    print("### vhost-blk (sidecored vs qemu-storage-daemon)\n\n" + head(r))
    print("| server | QD | p50 µs | p99 µs | IOPS | host cpu | IOPS per host cpu |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for x in r["runs"]:
        ns = x["latency"]["ns"]
        eff = x["iops"] / x["host_cpu"] if x["host_cpu"] else 0
        print(f"| {x['server']} | {x['queue_depth']} | {ns['p50'] / 1000:.1f} | {ns['p99'] / 1000:.1f} | "
              f"{x['iops']:.0f} | {x['host_cpu']:.2f} | {eff:.0f} |")
    q = r["ratios"]
    print(f"\nQD1 p50: qemu-storage-daemon ÷ sidecored = {q['qd1_p50_qsd_over_sidecored']:.2f}×; "
          f"IOPS per host cpu at QD32: sidecored ÷ qemu-storage-daemon = {q['qd32_iops_per_cpu_sidecored_over_qsd']:.2f}×.\n")

r = load("demo")
if r:
    print(f"### demo (queue depth {r['queue_depth']})\n\n" + head(r))
    print("| served by | I/O per s | p50 latency | p99 latency | VM exits per I/O |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for p in r["phases"]:
        print(f"| {p['served_by']} | {p['iops'] / 1e6:.2f} M | {p['p50_ns'] / 1000:.2f} µs | "
              f"{p['p99_ns'] / 1000:.2f} µs | {p['exits_per_io']:.2f} |")
