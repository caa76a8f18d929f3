# Shared by the e2e scripts (sourced): helpers that need $sidecored and $work.

# TAP: a plan of 0 with SKIP, and success (meson counts exit 77 under TAP as an ERROR).
skip() { echo "1..0 # SKIP $*"; exit 0; }

# Skip, visibly, unless QEMU, a kernel and a static busybox are installed;
# sets kernel and kver for the guest.
need_qemu_guest() {
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (scripts/deps.sh installs it)"
  kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
  [ -n "$kernel" ] || skip "no kernel in /boot (linux-image-amd64)"
  [ -x /bin/busybox ] || skip "no static busybox (busybox-static)"
  kver=${kernel#/boot/vmlinuz-}
}

# Wait until sidecored's stats socket ($work/sidecored.sock) reports requests
# popped and not yet completed (queue depth > 0), or until the guest's write
# is done (SC-WRITE-DONE in $work/guest.log), at most 60 s. Prints the
# depth seen as a TAP comment: a kill right after it catches requests in flight.
wait_in_flight() {
  local depth=0
  for _ in $(seq 1200); do
    depth=$("$(dirname "$sidecored")/sidecorectl" --socket "$work/sidecored.sock" stats --prometheus 2>/dev/null |
            awk '/^sidecore_queue_depth[{ ]/ { n += $NF } END { print n + 0 }')
    [ "$depth" -gt 0 ] && break
    grep -qa SC-WRITE-DONE "$work/guest.log" && break
    sleep 0.05
  done
  echo "# sidecored reports $depth request(s) in flight; killing it"
}
