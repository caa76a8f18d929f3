#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demo.
# Until the microvm guest lands, the demo is the two-thread round trip: a
# driver thread on one cpu, a sidecore polling a null virtio-blk on another.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
scripts/build.sh
mkdir -p results
exec ./build/benches/sidecore-bench roundtrip --json results/roundtrip.json --plot results/roundtrip.png "$@"
