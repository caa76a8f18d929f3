#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite twice: in the
# optimised build and under ASan+UBSan. Ends with "N passed, N failed, N skipped"
# counting individual tests.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh || exit 1
scripts/build.sh --asan || exit 1

# Sanitizer findings fail the test that hit them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for dir in build build-asan; do
  echo "== tests in $dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || status=1
done

python3 scripts/count-tests.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json || status=1
exit $status
