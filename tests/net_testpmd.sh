#!/usr/bin/env bash
# DPDK's virtio-user PMD (dpdk-testpmd) as the driver of a sidecored NIC,
# counted on both ends (TAP output):
#   txonly: testpmd sends to a net_ring port (a loopback); every packet
#           testpmd sent is in sidecored's tx counters;
#   rxonly: a net_null port makes packets; testpmd receives what sidecored
#           delivered (up to a ring's worth still in flight).
# Bounded: each testpmd runs SECONDS (3) plus its start-up; sidecored and testpmd are killed
# by their own PIDs. No network namespace, TAP or address is touched.
# Usage: net_testpmd.sh SIDECORED [SECONDS]
set -u
sidecored=$1
secs=${2:-3}
sidecorectl=$(dirname "$sidecored")/sidecorectl
skip() { echo "1..0 # SKIP $*"; exit 0; }   # TAP: a plan of 0 with SKIP, and success
command -v dpdk-testpmd >/dev/null || skip "dpdk-testpmd not installed (scripts/deps.sh installs it: package dpdk-dev)"
[ "$(id -u)" -eq 0 ] || skip "DPDK's EAL needs root here"
work=$(mktemp -d /tmp/sidecore-net.XXXXXX)
sd_pid=
cleanup() {
  [ -n "$sd_pid" ] && kill "$sd_pid" 2>/dev/null && wait "$sd_pid" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
# Two cpus: testpmd on cpu 0, the sidecore on cpu 1.
ncpu=$(nproc)
sc_cpu=$((ncpu > 1 ? 1 : 0))
echo "1..4"

# run_case N MODE PORT: sidecored on PORT, testpmd in MODE; leaves counts in $work/N.*
run_case() {
  local n=$1 mode=$2 port=$3
  cat > "$work/$n.ini" <<EOF
[sidecore]
cpus = $sc_cpu
idle = spin
stats_socket = $work/$n.stats
[net.n0]
socket = $work/$n.sock
port = $port
EOF
  timeout 60 "$sidecored" --config "$work/$n.ini" > "$work/$n.sd.log" 2>&1 &
  sd_pid=$!
  for _ in $(seq 100); do grep -q "ready" "$work/$n.sd.log" && break; sleep 0.1; done
  if ! grep -q ready "$work/$n.sd.log"; then
    sed 's/^/# /' "$work/$n.sd.log"
    return 1
  fi
  # testpmd (with --stats-period; without it, it sent one ring's worth here and stopped) runs until SIGINT,
  # then prints its totals and quits; sidecored's counters stay after its rings stop.
  timeout -s INT -k 20 $((secs + 2)) taskset -c 0 dpdk-testpmd --no-huge -m 1024 --no-pci --no-shconf \
        --no-telemetry --file-prefix "sc-net-$$-$n" --lcores '0@0,1@0' \
        --vdev "net_virtio_user0,path=$work/$n.sock,queues=1" -- --forward-mode="$mode" --nb-cores=1 --stats-period 1 \
        --total-num-mbufs=8192 < /dev/null > "$work/$n.tp.log" 2>&1
  "$sidecorectl" --socket "$work/$n.stats" stats --json > "$work/$n.sd.json" 2>&1
  kill "$sd_pid" 2>/dev/null; wait "$sd_pid" 2>/dev/null; sd_pid=
  return 0
}

# A counter of queue Q of device n0 from sidecored's JSON.
sd_count() {
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['devices'][0]['queues'][int(sys.argv[2])][sys.argv[3]])" \
    "$1" "$2" "$3" 2>/dev/null || echo -1
}
# testpmd's "Forward statistics for port 0" totals: RX-packets / TX-packets.
tp_count() {
  awk -v key="$2" '/Forward statistics for port 0/ { f = 1 } f && index($0, key) {
      for (i = 1; i <= NF; i++) if ($i == key) { print $(i + 1); exit } }' "$1"
}

# ---- txonly ----
if run_case 1 txonly net_ring0; then
  tp_tx=$(tp_count "$work/1.tp.log" "TX-packets:")
  sd_tx=$(sd_count "$work/1.sd.json" 1 tx_packets)
  sd_drop=$(sd_count "$work/1.sd.json" 1 tx_dropped)
  sd_bad=$(sd_count "$work/1.sd.json" 1 tx_bad)
  echo "# txonly: testpmd sent ${tp_tx:-?}; sidecored sent $sd_tx to the port, dropped $sd_drop (port full), bad $sd_bad;" \
       "$(awk -v n="${tp_tx:-0}" -v s="$secs" 'BEGIN { printf "%.2f Mpps over about %d s", n / s / 1e6, s }')"
  # What testpmd queued after sidecored's last poll stays in the ring it stopped: at most a ring (256).
  if [ -n "$tp_tx" ] && [ "$tp_tx" -gt 0 ] && [ "$((sd_tx + sd_drop))" -le "$tp_tx" ] &&
     [ "$((tp_tx - sd_tx - sd_drop))" -le 256 ] && [ "$sd_bad" -eq 0 ]; then
    echo "ok 1 - txonly: the packets testpmd sent reached sidecored's port ($((sd_tx + sd_drop)) of $tp_tx)"
  else
    echo "not ok 1 - txonly: testpmd sent ${tp_tx:-nothing}, sidecored counts $sd_tx + $sd_drop dropped + $sd_bad bad"
    tail -5 "$work/1.tp.log" | sed 's/^/# /'
  fi
  sd_rx=$(sd_count "$work/1.sd.json" 0 rx_packets)
  sd_nobuf=$(sd_count "$work/1.sd.json" 0 rx_no_buffers)
  # The ring loops back: what testpmd never takes off its rx ring is dropped and counted, and the sidecore goes on.
  if [ "$sd_rx" -gt 0 ] && [ "$sd_nobuf" -gt 0 ] && [ "$((sd_rx + sd_nobuf))" -le "$sd_tx" ]; then
    echo "ok 2 - txonly: looped-back packets fill testpmd's rx ring ($sd_rx), the rest are counted as no buffers ($sd_nobuf)"
  else
    echo "not ok 2 - txonly loopback: rx_packets $sd_rx, rx_no_buffers $sd_nobuf, tx_packets $sd_tx"
  fi
else
  echo "not ok 1 - txonly: sidecored did not start"; echo "not ok 2 - txonly loopback # no run"
fi

# ---- rxonly ----
if run_case 2 rxonly "net_null0"; then
  tp_rx=$(tp_count "$work/2.tp.log" "RX-packets:")
  sd_rx=$(sd_count "$work/2.sd.json" 0 rx_packets)
  echo "# rxonly: sidecored delivered $sd_rx; testpmd received ${tp_rx:-?};" \
       "$(awk -v n="${tp_rx:-0}" -v s="$secs" 'BEGIN { printf "%.2f Mpps over about %d s", n / s / 1e6, s }')"
  # Counted at stop; what sidecored delivered after testpmd's last poll is what testpmd's rx ring and bursts
  # still held (seen up to 2 * 256 + 32 here): at most 1024.
  if [ -n "$tp_rx" ] && [ "$tp_rx" -gt 0 ] && [ "$sd_rx" -ge "$tp_rx" ] && [ "$((sd_rx - tp_rx))" -le 1024 ]; then
    echo "ok 3 - rxonly: testpmd received what sidecored delivered ($tp_rx of $sd_rx)"
  else
    echo "not ok 3 - rxonly: testpmd received ${tp_rx:-nothing}, sidecored delivered $sd_rx"
    tail -5 "$work/2.tp.log" | sed 's/^/# /'
  fi
  if grep -q "stopped cleanly" "$work/2.sd.log" && ! grep -q "queue broken" "$work/2.sd.log"; then
    echo "ok 4 - sidecored broke no queue and stopped cleanly"
  else
    echo "not ok 4 - sidecored's log:"; sed 's/^/# /' "$work/2.sd.log"
  fi
else
  echo "not ok 3 - rxonly: sidecored did not start"; echo "not ok 4 - no run"
fi
