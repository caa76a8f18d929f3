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
    if "polling_p50_minus_floor_p50_cycles" in r:
        print(f"\nPolled round trip: floor + {r['polling_p50_minus_floor_p50_cycles']} cycles "
              f"({m['polling']['latency']['cycles']['p50'] / fl:.2f}× the floor of {fl}).")
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
    print("### vhost-blk (sidecored vs qemu-storage-daemon and SPDK)\n\n" + head(r))
    # c2c: the cpus' cache-line round trip before the server started and after it stopped (older runs lack it).
    c2c = "c2c_ns" in r["runs"][0]
    print("| server | QD | p50 µs | p99 µs | IOPS | host cpu | IOPS per host cpu |" + (" c2c ns |" if c2c else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if c2c else ""))
    for x in r["runs"]:
        ns = x["latency"]["ns"]
        eff = x["iops"] / x["host_cpu"] if x["host_cpu"] else 0
        place = f" {x['c2c_ns']:.0f}/{x['c2c_after_ns']:.0f} |" if c2c else ""
        print(f"| {x['server']} | {x['queue_depth']} | {ns['p50'] / 1000:.1f} | {ns['p99'] / 1000:.1f} | "
              f"{x['iops']:.0f} | {x['host_cpu']:.2f} | {eff:.0f} |{place}")
    if c2c:
        print("\nc2c: a cache line's round trip between the two cpus before each server started and after it "
              "stopped; this VM's host moves its vCPUs between placements, and every rate moves with them.")
    q = r["ratios"]
    print(f"\nQD1 p50: qemu-storage-daemon ÷ sidecored = {q['qd1_p50_qsd_over_sidecored']:.2f}×; "
          f"IOPS per host cpu at QD32: sidecored ÷ qemu-storage-daemon = {q['qd32_iops_per_cpu_sidecored_over_qsd']:.2f}×.\n")
    if "qd32_iops_per_cpu_sidecored_over_spdk_best" in q:
        print(f"Against SPDK: IOPS per host cpu at QD32, sidecored ÷ SPDK malloc = "
              f"{q['qd32_iops_per_cpu_sidecored_over_spdk_malloc']:.2f}×, ÷ SPDK aio on the same file = "
              f"{q['qd32_iops_per_cpu_sidecored_over_spdk_aio']:.2f}×; QD1 SPDK's best ÷ sidecored: p50 "
              f"{q['qd1_p50_spdk_best_over_sidecored']:.2f}×, p99 {q['qd1_p99_spdk_best_over_sidecored']:.2f}× "
              f"(above 1: sidecored lower).\n")
    else:
        print("SPDK was not built on this machine, so its rows are missing (see ../shared/anchors/spdk).\n")

r = load("fairness")
if r:
    st, hg, t = r["setup"], r["huge_read"], r["targets"]
    print("### fairness (four tenants on one sidecore)\n\n" + head(r))
    turn = f", a turn of at most {st['turn_us']:g} µs" if "turn_us" in st else ""
    print(f"Load average {r.get('loadavg_1min', -1):.2f}; budget {st['budget']} per queue per round{turn}; "
          f"{st['seconds_per_scenario']:.1f} s per scenario. Alone: {st['alone_means']}. Shared: tenants 1-3 quiet, "
          f"tenant 0 idle.\n")
    print("| scenario | tenant | role | QD | request | p50 µs | p99 µs | p99.9 µs | IOPS | p50 ÷ alone | p99 ÷ alone | IOPS ÷ alone "
          "| p50 ÷ shared | p99 ÷ shared | IOPS ÷ shared |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sc in r["scenarios"]:
        for x in sc["tenants"]:
            size = x["request_bytes"]
            size = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size} B"
            lat = x.get("latency_ns")
            cells = (f"{lat['p50'] / 1000:.1f} | {lat['p99'] / 1000:.1f} | {lat['p99_9'] / 1000:.1f}"
                     if lat else " | | ")
            ra = x.get("ratio_to_alone")
            ratios = f"{ra['p50']:.2f}× | {ra['p99']:.2f}× | {ra['iops']:.2f}×" if ra else " | | "
            rs = x.get("ratio_to_shared")
            ratios += f" | {rs['p50']:.2f}× | {rs['p99']:.2f}× | {rs['iops']:.2f}×" if rs else " | | | "
            print(f"| {sc['scenario']} | {x['tenant']} | {x['role']} | {x['queue_depth']} | {size} | {cells} | "
                  f"{x['iops']:.0f} | {ratios} |")
    print(f"\nBeside the flood, the quiet tenants' worst ratio to alone is {t['flood_worst_ratio_to_alone']:.2f}× "
          f"(bar: 1.10×, {'met' if t['flood_within_10pct'] else 'missed'}); the three quiet tenants sharing the "
          f"sidecore already cost {t['shared_worst_ratio_to_alone']:.2f}×, and the flood {t['flood_worst_ratio_to_shared']:.2f}× "
          f"on top of that. Beside {hg['bytes'] / 2**20:.1f} MiB reads ({hg['segments']} segments; "
          f"seg_max {hg['seg_max']}, size_max {hg['size_max'] or 'not offered'}), the worst quiet p99 is "
          f"{t['huge_worst_quiet_p99_ns'] / 1000:.0f} µs (bar: under 1 ms, {'met' if t['huge_p99_under_1ms'] else 'missed'}).\n")

r = load("scale")
if r:
    st = r["setup"]
    print("### scale (queues on one sidecore)\n\n" + head(r))
    print(f"Null virtio-blk queues, budget {st['budget']}, busy queues at QD{st['busy_queue_depth']}, "
          f"{st['seconds_per_run']:.1f} s per run; the sidecore never sleeps. Load average {r.get('loadavg_1min', -1):.2f}.\n")
    print("| queues | mode | driven | IOPS | ns per round | requests per round | sidecore busy | p50 µs | p99 µs | ns per idle queue |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for x in r["runs"]:
        lat = x.get("latency")
        cells = f"{lat['ns']['p50'] / 1000:.2f} | {lat['ns']['p99'] / 1000:.2f}" if lat else " | "
        idle = f"{x['idle_queue_ns']:.1f}" if "idle_queue_ns" in x else ""
        print(f"| {x['queues']} | {x['mode']} | {x['driven_queues']} | {x['iops']:.0f} | {x['round_ns']:.0f} | "
              f"{x['requests_per_round']:.2f} | {x['sidecore_busy'] * 100:.0f}% | {cells} | {idle} |")
    print("\nidle: one queue driven at QD1, the rest attached and empty; its last column is (round(N) − round(1)) ÷ (N − 1). "
          "empty: nothing driven; round ÷ N.\n")

r = load("net")
if r:
    print("### net (sidecored vs DPDK's vhost PMD)\n\n" + head(r))
    runs = {(x["server"], x["mode"], x["frame_bytes"]): x for x in r["runs"]}
    print("| mode | frame | direction | sidecored Mpps | DPDK vhost Mpps | ratio | within each round | sidecored cpu | DPDK vhost cpu |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for q in r["ratios"]:
        a = runs.get(("sidecored", q["mode"], q["frame_bytes"]), {})
        b = runs.get(("DPDK vhost PMD", q["mode"], q["frame_bytes"]), {})
        cell = lambda x, k, f: format(x[k], f) if k in x else "n/a"
        rng = (f"{q['paired_min']:.2f}-{q['paired_max']:.2f}× ({q['paired_rounds']})" if q.get("paired_rounds")
               else "n/a")
        print(f"| {q['mode']} | {q['frame_bytes']} B | {a.get('direction', b.get('direction', ''))} | "
              f"{cell(a, 'mpps', '.2f')} | {cell(b, 'mpps', '.2f')} | {q['sidecored_over_dpdk_vhost']:.2f}× | {rng} | "
              f"{cell(a, 'server_cpu', '.2f')} | {cell(b, 'server_cpu', '.2f')} |")
    c2c = [x[k] for x in r["runs"] for k in ("c2c_ns", "c2c_after_ns") if x.get(k, -1) > 0]
    c2c_txt = f"; a cache line's round trip between the cpus {min(c2c):.0f}-{max(c2c):.0f} ns" if c2c else ""
    print(f"\n{r['setup']['seconds_per_point']:g} s per point, each on a fresh server, the best of "
          f"{r['setup'].get('rounds', 1)} rounds; within each round: the range of the ratio over the rounds whose two "
          f"halves saw the same placement and full cpus (how many){c2c_txt}; load average {r.get('loadavg_1min', -1):.2f}; "
          "Mpps from the driver's port counters (io: received + sent); cpu: each server process's cpu time over the window.\n")

r = load("demo")
if r:
    print(f"### demo (queue depth {r['queue_depth']})\n\n" + head(r))
    print("| served by | I/O per s | p50 latency | p99 latency | VM exits per I/O |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for p in r["phases"]:
        print(f"| {p['served_by']} | {p['iops'] / 1e6:.2f} M | {p['p50_ns'] / 1000:.2f} µs | "
              f"{p['p99_ns'] / 1000:.2f} µs | {p['exits_per_io']:.2f} |")
