#!/usr/bin/env bash
# Runs every benchmark into results/ (JSON and PNG), then prints the tables
# the README shows. Takes about three minutes; needs /dev/kvm for exits/latency.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
mkdir -p results
b=./build/benches/sidecore-bench
$b roundtrip --json results/roundtrip.json --plot results/roundtrip.png
if [ -c /dev/kvm ]; then
  $b exits --json results/exits.json --plot results/exits.png
  $b latency --json results/latency.json --plot results/latency.png
else
  echo "bench.sh: no /dev/kvm here: skipping exits and latency (they run a KVM guest)"
fi
$b vhost-blk --json results/vhost-blk.json
$b fairness --json results/fairness.json --plot results/fairness.png
$b scale --json results/scale.json --plot results/scale.png
# virtio-net against DPDK's vhost PMD: needs root and dpdk-testpmd (it says so and skips otherwise)
$b net --json results/net.json --plot results/net.png || echo "bench.sh: net skipped or failed (exit $?)"
./build/benches/sidecore-demo --seconds 3 --json results/demo.json
python3 scripts/results-md.py results
