#!/usr/bin/env bash
# End to end with a real VMM: sidecored serves a disk over vhost-user; QEMU
# (TCG: this machine's KVM cannot boot a stock kernel) boots Debian's kernel
# with a busybox initramfs whose /init writes a known pattern across the disk
# with the guest's own virtio_blk driver, syncs, and reads it back. The host
# then checks the backing file, stops sidecored with SIGTERM, starts it again
# and boots a second guest that reads the same data. Last, it kills sidecored
# (SIGKILL) while requests are provably in flight (a delay_us disk holds each
# one for a while), checks that the restarted sidecored served them again and
# that nothing acknowledged was lost. Reports TAP.
# usage: qemu_blk.sh SIDECORED_BINARY
set -uo pipefail
sidecored=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
mb=64

need_qemu_guest

work=$(mktemp -d /tmp/sidecore-e2e-XXXXXX)
sd_pid=
cleanup() {
  [ -n "$sd_pid" ] && kill -TERM "$sd_pid" 2>/dev/null && wait "$sd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

echo "1..8"
"$here/mkinitramfs.sh" "$kver" "$work/initrd.gz" || { echo "Bail out! cannot build the initramfs"; exit 1; }
truncate -s 64M "$work/disk.img"
cat > "$work/sc.conf" <<CONF
[sidecore]
cpus = $(( $(nproc) - 1 ))

[blk.disk0]
socket = $work/disk0.sock
backing = $work/disk.img
CONF

start_sidecored() { # [config]; the log of every start is kept, each after a "=== start" line
  echo "=== start with ${1:-$work/sc.conf}" >> "$work/sidecored.log"
  "$sidecored" --config "${1:-$work/sc.conf}" >> "$work/sidecored.log" 2>&1 &
  sd_pid=$!
  for _ in $(seq 50); do [ -S "$work/disk0.sock" ] && return 0; sleep 0.1; done
  echo "# sidecored did not create its socket:"; sed 's/^/#   /' "$work/sidecored.log"
  return 1
}

boot_guest() { # test name [MiB [pattern [more kernel args]]] -> guest console in $work/guest.log
  local size=${2:-$mb} pat=${3:-sidecore-e2e} more=${4:-}
  timeout 240 qemu-system-x86_64 -machine q35,accel=tcg -m 512M -smp 1 \
    -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
    -chardev socket,id=c0,path="$work/disk0.sock",reconnect=1 -device vhost-user-blk-pci,chardev=c0,num-queues=1 \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 sc_test=$1 sc_mb=$size sc_pat=$pat $more" \
    -nographic -no-reboot -display none -serial stdio -monitor none < /dev/null > "$work/guest.log" 2>&1
}

expected=$(yes sidecore-e2e | head -c $((mb * 1048576)) | md5sum | cut -d' ' -f1)
readback() { sed -n 's/.*SC-READBACK \([0-9a-f]*\).*/\1/p' "$work/guest.log" | tail -n1; }

start_sidecored || { echo "Bail out! sidecored did not start"; exit 1; }
boot_guest write
grep -a "SC-ERROR" "$work/guest.log" | sed 's/^/# /'
check "guest wrote $mb MiB through sidecored and read back what it wrote" \
  [ "$(readback)" = "$expected" ]
check "the backing file holds the guest's pattern (checked from the host)" \
  [ "$(head -c $((mb * 1048576)) "$work/disk.img" | md5sum | cut -d' ' -f1)" = "$expected" ]

kill -TERM "$sd_pid"; wait "$sd_pid"; rc=$?; sd_pid=
check "SIGTERM stops sidecored cleanly (exit 0)" [ "$rc" -eq 0 ]
check "the socket is removed on stop" [ ! -e "$work/disk0.sock" ]

start_sidecored || { echo "Bail out! sidecored did not restart"; exit 1; }
boot_guest check
check "after a restart of sidecored a new guest reads the same data" [ "$(readback)" = "$expected" ]

# Kill sidecored (SIGKILL) in the middle of a 64 MiB write, start it again;
# QEMU reconnects, the inflight region brings back what was in flight, and
# the guest's write must finish with nothing it was told is written lost. A
# new pattern, so a lost write cannot hide behind the first run's data.
# Requests are provably in flight at the kill: the guest writes with O_DIRECT
# (one 1 MiB write after the other reaches the disk), and the killed
# sidecored holds each request delay_us before completing it, so at any
# moment of the write some are held. The restarted one runs without the delay.
# A whole second: a request seen in flight stays so for far longer than
# sidecorectl and kill take on a loaded machine (at 50 ms the request the
# stats named had completed by the kill in one ASan run), and only the
# requests before the kill pay it.
kill -TERM "$sd_pid"; wait "$sd_pid"; sd_pid=
delay_us=1000000
sed "/^backing = /a delay_us = $delay_us" "$work/sc.conf" > "$work/sc-delay.conf"
start_sidecored "$work/sc-delay.conf" || { echo "Bail out! sidecored did not start with delay_us"; exit 1; }
big=64
big_expected=$(yes sidecore-kill | head -c $((big * 1048576)) | md5sum | cut -d' ' -f1)
boot_guest write $big sidecore-kill sc_direct=1 &
qemu_pid=$!
for _ in $(seq 600); do grep -qa SC-WRITE-START "$work/guest.log" 2>/dev/null && break; sleep 0.1; done
# Kill at a moment when sidecored itself says it holds requests: the
# queue's depth (popped, not yet completed) from its stats socket.
wait_in_flight
grep -qa SC-WRITE-DONE "$work/guest.log" && echo "# the guest's write finished before the kill"
kill -KILL "$sd_pid"; wait "$sd_pid" 2>/dev/null; sd_pid=
echo "# sidecored killed with SIGKILL during the guest's write; restarting it"
start_sidecored || { echo "Bail out! sidecored did not restart after the kill"; exit 1; }
wait "$qemu_pid"
grep -a "serving again" "$work/sidecored.log" | sed 's/^/# /'
# N of "serving again N requests a previous back end left in flight", summed over queues, since the last start.
replayed=$(awk '/^=== start/ { n = 0 }
  match($0, /serving again [0-9]+ requests a previous back end left in flight/) { split(substr($0, RSTART), w, " "); n += w[3] }
  END { print n + 0 }' "$work/sidecored.log")
check "the restarted sidecored served again the $replayed requests the killed one had in flight (> 0)" \
  [ "$replayed" -gt 0 ]
check "killed and restarted in the middle of writes, the guest's write completes" grep -qa SC-WRITE-DONE "$work/guest.log"
check "no acknowledged write is lost (guest read-back and backing file match)" \
  [ "$(readback)" = "$big_expected" -a "$(head -c $((big * 1048576)) "$work/disk.img" | md5sum | cut -d' ' -f1)" = "$big_expected" ]
[ $failed -eq 0 ] || { echo "# guest console:"; tail -n 20 "$work/guest.log" | sed 's/^/#   /'; echo "# sidecored:"; sed 's/^/#   /' "$work/sidecored.log"; }
exit $((failed > 0))
