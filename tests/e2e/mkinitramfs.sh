#!/usr/bin/env bash
# Builds a tiny initramfs for the e2e guest: static busybox, the virtio-blk
# and virtio-net modules of Debian's kernel, and an /init that runs the test
# the kernel command line names (sc_test=write|check|net) and powers off. With sc_direct=1
# the write makes the pattern in memory first, then writes it with O_DIRECT,
# so the disk sees one write after the other for the whole write (the kill
# test needs requests at the disk all along: not one burst at the fsync, nor
# gaps while this slow guest makes the next MiB).
# usage: mkinitramfs.sh KERNEL_VERSION OUT.cpio.gz
set -euo pipefail
kver=$1 out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,proc,sys,dev,lib,tmp}
cp /bin/busybox "$work/bin/busybox"
# In load order (virtio_net needs failover and net_failover).
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net"
for m in $mods; do
  f=$(find "/lib/modules/$kver" -name "$m.ko*" | head -n1)
  [ -n "$f" ] || { echo "mkinitramfs: module $m not found under /lib/modules/$kver" >&2; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$work/lib/$m.ko" ;;
    *.zst) zstd -dc "$f" > "$work/lib/$m.ko" ;;
    *) cp "$f" "$work/lib/$m.ko" ;;
  esac
done
echo "$mods" > "$work/lib/modules.list"
cat > "$work/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules.list); do
  insmod /lib/$m.ko 2>&1 | sed "s/^/SC-INSMOD $m: /"
done
case "$(cat /proc/cmdline)" in
  *sc_test=net*)
    # The NIC up at sc_ip; the host pings it and sends UDP to a closed port
    # (counted in Udp NoPorts), then says "done" on TCP port 5001; with
    # sc_host, the guest then sends sc_tcp_kb KiB of `yes sidecore-tcp`
    # to sc_host's TCP port 5002 (large writes: TSO packets, where the NIC
    # offers TSO); it prints its counters and powers off.
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    [ -e /sys/class/net/eth0 ] || echo "SC-ERROR no eth0"
    ip link set lo up
    ip link set eth0 up
    ip addr add "$(sed -n 's/.*sc_ip=\([0-9./]*\).*/\1/p' /proc/cmdline)" dev eth0
    echo "SC-NET-UP"
    timeout 120 nc -l -p 5001 > /tmp/done
    host=$(sed -n 's/.*sc_host=\([0-9.]*\).*/\1/p' /proc/cmdline)
    kb=$(sed -n 's/.*sc_tcp_kb=\([0-9]*\).*/\1/p' /proc/cmdline)
    if [ -n "$host" ] && [ -n "$kb" ]; then
      yes sidecore-tcp | head -c $((kb * 1024)) > /tmp/stream
      timeout 60 nc "$host" 5002 < /tmp/stream && echo "SC-TCP-SENT"
    fi
    echo "SC-NETDEV $(grep eth0: /proc/net/dev | sed 's/.*eth0://')"
    echo "SC-UDP $(grep '^Udp:' /proc/net/snmp | tail -n1)"
    echo "SC-NET-DONE $(cat /tmp/done)"
    poweroff -f ;;
esac
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || echo "SC-ERROR no /dev/vda"
mb=$(sed -n 's/.*sc_mb=\([0-9]*\).*/\1/p' /proc/cmdline)
pat=$(sed -n 's/.*sc_pat=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
[ -n "$pat" ] || pat=sidecore-e2e
direct=
case "$(cat /proc/cmdline)" in *sc_direct=1*) direct=1 ;; esac
case "$(cat /proc/cmdline)" in
  *sc_test=write*)
    # A known pattern across the disk, synced; then read back what the disk holds.
    if [ -n "$direct" ]; then
      yes "$pat" | head -c $((mb * 1048576)) > /tmp/pattern
      echo "SC-WRITE-START"
      dd if=/tmp/pattern of=/dev/vda bs=1M oflag=direct conv=fsync 2>/dev/null && echo "SC-WRITE-DONE"
      rm -f /tmp/pattern
    else
      echo "SC-WRITE-START"
      yes "$pat" | head -c $((mb * 1048576)) | dd of=/dev/vda bs=1M conv=fsync 2>/dev/null && echo "SC-WRITE-DONE"
    fi
    echo 3 > /proc/sys/vm/drop_caches
    echo "SC-READBACK $(dd if=/dev/vda bs=1M count=$mb 2>/dev/null | md5sum | cut -d' ' -f1)" ;;
  *sc_test=check*)
    echo "SC-READBACK $(dd if=/dev/vda bs=1M count=$mb 2>/dev/null | md5sum | cut -d' ' -f1)" ;;
esac
sync
poweroff -f
INIT
chmod +x "$work/init"
(cd "$work" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out"
