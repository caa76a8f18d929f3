#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demo: a KVM
# guest driving a null virtio-blk device served by a sidecore, printing the
# I/O rate, latency and VM exits per I/O every second, then the same guest on
# the classic notification paths for comparison. Without /dev/kvm the demo
# says so and runs the driver as a host thread instead.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
scripts/build.sh
mkdir -p results
exec ./build/benches/sidecore-demo --json results/demo.json "$@"
