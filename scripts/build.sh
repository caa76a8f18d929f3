#!/usr/bin/env bash
# Configures and builds build/ (optimised) and, with --asan, build-asan/ (ASan+UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."

setup() { # dir, options...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir" >/dev/null || { ninja -C "$dir"; exit 1; }
}

setup build --buildtype=release -Db_ndebug=false
if [ "${1:-}" = "--asan" ]; then
  # b_lundef=false: sanitizer runtimes and -Wl,--no-undefined do not mix.
  setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
fi
