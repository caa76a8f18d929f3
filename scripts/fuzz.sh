#!/usr/bin/env bash
# Build one fuzz target with clang and libFuzzer (address and undefined
# sanitizers, double-fetch detection) and run it for SECONDS at the lowest
# priority, one process. Prints executions, coverage and crashes.
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]    TARGET: vring blk viommu vu net
#
# Builds into build-fuzz/ (its own directory: the meson builds use gcc).
# The run starts from tests/fuzz/corpus/TARGET and keeps what it finds in
# build-fuzz/corpus-TARGET; crashes go to build-fuzz/crash-TARGET/. To
# replay one: build-fuzz/fuzz_TARGET FILE (or the gcc build's
# build/tests/fuzz/fuzz_TARGET FILE, which names the input it runs).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
seconds=${2:-}
case "$target" in vring|blk|viommu|vu|net) ;; *)
  echo "usage: scripts/fuzz.sh vring|blk|viommu|vu|net SECONDS [libFuzzer flags]" >&2; exit 2 ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number, not '$seconds'" >&2; exit 2; }
shift 2
./scripts/deps.sh --fuzz

out=build-fuzz
mkdir -p "$out/corpus-$target" "$out/crash-$target"
bin="$out/fuzz_$target"
mapfile -t srcs < tests/fuzz/sources.txt
# virtio-net is on DPDK: only its target compiles devices/net.c and links libdpdk.
extra=()
if [ "$target" = net ]; then
  read -ra dpdk <<<"$(pkg-config --cflags --libs libdpdk)"
  extra=(devices/net.c "${dpdk[@]}")
fi
# -O1 -g: fast enough and readable stacks; SC_FUZZ turns the double-fetch recorder on.
clang -std=gnu11 -O1 -g -fno-omit-frame-pointer -D_GNU_SOURCE -DSC_FUZZ -DSC_VERSION='"fuzz"' -I. \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -o "$bin" "tests/fuzz/fuzz_$target.c" "${srcs[@]}" ${extra[@]+"${extra[@]}"} -luring -lpthread

log="$out/fuzz_$target.log"
: >"$log"
marker="$out/.start-$target"   # crash files newer than it are this run's (the log is written all along: no marker)
touch "$marker"
# -close_fd_mask=2: the target's own stderr (broken-queue lines) is dropped; sanitizer and crash reports are not.
# -timeout=120: the timeout is wall-clock and the fuzzer runs at the lowest priority: on a busy machine
# an input of milliseconds waited 11 s for the cpu and was reported as a hang.
set +e
t0=$(date +%s)
# Lowest priority for real: with autogroups (Linux's default) nice ranks a process only within its
# session, so the fuzzer gets a session of its own and that session's nice is 19 too.
# The new session (setsid) sets its own autogroup's nice before it becomes the fuzzer.
setsid -w sh -c 'echo 19 >/proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"' sh \
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -close_fd_mask=2 -timeout=120 \
  -artifact_prefix="$out/crash-$target/" "$@" "$out/corpus-$target" "tests/fuzz/corpus/$target" >"$log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - t0 ))
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
# slow-unit-*: inputs that took over 10 s of wall time (at the lowest priority, mostly waiting for the cpu): not failures.
crashes=$(find "$out/crash-$target" -type f -newer "$marker" ! -name 'slow-unit-*' | wc -l)
slow=$(find "$out/crash-$target" -type f -newer "$marker" -name 'slow-unit-*' | wc -l)
echo "fuzz $target: ${execs:-?} executions in ${elapsed} s (of ${seconds}), cov ${cov:-?}, ft ${ft:-?}, new crash files ${crashes}, slow inputs ${slow} (exit $rc)"
echo "fuzz $target: log $log; corpus $out/corpus-$target; crashes $out/crash-$target/"
if [ "$rc" -ne 0 ]; then
  grep -E 'ERROR|double fetch|fuzz check failed|SUMMARY|Test unit written' "$log" | head -20
  exit 1
fi
