#!/usr/bin/env bash
# The systemd unit and the libvirt domain XML in docs/ are what their tools
# accept: `systemd-analyze verify` (with ExecStart pointing at the sidecored
# just built) and `virt-xml-validate ... domain`. Each skips, visibly, when
# its tool is absent. TAP. Usage: check_docs.sh SIDECORED SOURCE_ROOT
set -u
bin=$1
src=$2
tmp=$(mktemp -d /tmp/sidecore-docs-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "1..2"

if ! command -v systemd-analyze > /dev/null; then
  echo "ok 1 - docs/sidecored.service # SKIP systemd-analyze is not installed (package systemd)"
else
  sed "s|/usr/local/bin/sidecored|$bin|g" "$src/docs/sidecored.service" > "$tmp/sidecored.service"
  if out=$(systemd-analyze verify "$tmp/sidecored.service" 2>&1) && [ -z "$out" ]; then
    echo "ok 1 - docs/sidecored.service passes systemd-analyze verify"
  else
    echo "not ok 1 - docs/sidecored.service: systemd-analyze verify says:"
    printf '%s\n' "$out" | sed 's/^/# /'
  fi
fi

if ! command -v virt-xml-validate > /dev/null; then
  echo "ok 2 - docs/libvirt-disk.xml # SKIP virt-xml-validate is not installed (package libvirt-clients)"
elif out=$(virt-xml-validate "$src/docs/libvirt-disk.xml" domain 2>&1); then
  echo "ok 2 - docs/libvirt-disk.xml is a valid libvirt domain"
else
  echo "not ok 2 - docs/libvirt-disk.xml: virt-xml-validate says:"
  printf '%s\n' "$out" | sed 's/^/# /'
fi
