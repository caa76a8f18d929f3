#!/usr/bin/env bash
# Installs what sidecore needs on Debian 12, only what is missing.
# --fuzz: also what scripts/fuzz.sh needs.
set -euo pipefail

PACKAGES=(
  gcc meson ninja-build pkg-config python3
  liburing-dev libhwloc-dev libnuma-dev libinih-dev libjansson-dev
  libsystemd-dev
  # virtio-net: DPDK (ethdev, its vdev ports); dpdk-testpmd (package dpdk-dev) for the net tests and bench
  libdpdk-dev dpdk dpdk-dev
  libcriterion-dev
  gnuplot-nox
  # the end-to-end test: a real VMM and a Linux guest
  qemu-system-x86 linux-image-amd64 busybox-static cpio
  # docs/: systemd-analyze verify (systemd) and virt-xml-validate check the unit and the libvirt XML
  libvirt-clients
)

# scripts/fuzz.sh only: clang and its libFuzzer runtime (the normal builds and the corpus replay use gcc).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  case "$p" in \#*) continue ;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "sidecore: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "sidecore: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
