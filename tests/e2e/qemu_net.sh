#!/usr/bin/env bash
# End to end with a real VMM and a real network stack: sidecored serves a
# virtio-net NIC over vhost-user with a TAP port (net_tap0); QEMU (TCG, no
# MSI-X: QEMU 7.2 under TCG crashes when a vhost-user NIC starts with it)
# boots Debian's kernel, whose own virtio_net driver brings eth0 up. The
# test moves the TAP into a network namespace it creates, addresses both
# ends only there (192.0.2.0/24, TEST-NET-1), pings the guest and sends it
# UDP, and counts on both ends: the guest's /proc/net/dev and Udp counters,
# sidecored's stats socket, and the namespace's `ip -s link`. Namespace,
# QEMU and sidecored are cleaned up by their own names and PIDs, also on
# failure; the whole run is bounded (about 3 minutes at most). TAP output.
# usage: qemu_net.sh SIDECORED_BINARY
set -uo pipefail
sidecored=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
sidecorectl=$(dirname "$sidecored")/sidecorectl
pings=10 udps=50
host_ip=192.0.2.1 guest_ip=192.0.2.2

need_qemu_guest
[ "$(id -u)" -eq 0 ] || skip "needs root (a network namespace, a TAP, DPDK's EAL)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun (the tun module) for DPDK's net_tap"
command -v ip >/dev/null || skip "no ip (iproute2) for the network namespace"
find "/lib/modules/$kver" -name 'virtio_net.ko*' | grep -q . || skip "the guest kernel $kver has no virtio_net module"
/bin/busybox --list | grep -qx nc || skip "busybox has no nc (the guest's end of the test)"

ns=sc-test-$$
tap=sctap$$
work=$(mktemp -d /tmp/sidecore-e2e-net-XXXXXX)
sd_pid= qemu_pid= ns_made=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  [ -n "$sd_pid" ] && kill -TERM "$sd_pid" 2>/dev/null && wait "$sd_pid" 2>/dev/null
  [ -n "$ns_made" ] && ip netns delete "$ns" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns" 2>/dev/null || skip "cannot create a network namespace here (ip netns add $ns)"
ns_made=1

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
dump() {
  echo "# guest console:"; tail -n 30 "$work/guest.log" 2>/dev/null | sed 's/^/#   /'
  echo "# sidecored:"; sed 's/^/#   /' "$work/sidecored.log"
}
bail() { echo "Bail out! $*"; dump; exit 1; }

echo "1..6"
"$here/mkinitramfs.sh" "$kver" "$work/initrd.gz" || bail "cannot build the initramfs"
cat > "$work/sc.conf" <<CONF
[sidecore]
cpus = $(( $(nproc) - 1 ))

[net.n0]
socket = $work/net0.sock
port = net_tap0,iface=$tap
CONF
"$sidecored" --config "$work/sc.conf" > "$work/sidecored.log" 2>&1 &
sd_pid=$!
for _ in $(seq 100); do grep -q ready "$work/sidecored.log" && break; sleep 0.1; done
grep -q ready "$work/sidecored.log" || bail "sidecored did not start"

# The TAP DPDK made goes into the namespace; addresses exist only there.
ip link set "$tap" netns "$ns" || bail "cannot move $tap into $ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$tap.disable_ipv6=1" 2>/dev/null
ip -n "$ns" addr add "$host_ip/24" dev "$tap"
ip -n "$ns" link set "$tap" up

# The guest on cpu 0, away from the sidecore (its receive queue polls without sleeping).
timeout 150 taskset -c 0 qemu-system-x86_64 -machine q35,accel=tcg -m 512M -smp 1 \
  -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
  -chardev socket,id=c0,path="$work/net0.sock" -netdev vhost-user,id=n0,chardev=c0 \
  -device virtio-net-pci,netdev=n0,vectors=0,mac=52:54:00:12:34:56 \
  -kernel "$kernel" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 sc_test=net sc_ip=$guest_ip/24" \
  -nographic -no-reboot -display none -serial stdio -monitor none < /dev/null > "$work/guest.log" 2>&1 &
qemu_pid=$!
for _ in $(seq 900); do grep -qa -e SC-NET-UP -e SC-ERROR "$work/guest.log" && break
  kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
grep -qa SC-NET-UP "$work/guest.log" || bail "the guest did not bring eth0 up within 90 s"
ok "the guest's virtio_net driver brought eth0 up on sidecored's NIC"

# iputils' ping, or busybox's (the guest's busybox, which this test needs anyway).
ping=$(command -v ping || echo "/bin/busybox ping")
got=$(timeout 30 ip netns exec "$ns" $ping -c "$pings" -i 0.2 -W 5 "$guest_ip" 2>&1 |
      sed -n 's/.* \([0-9]*\) \(packets \)\{0,1\}received.*/\1/p')
check "the namespace pinged the guest: ${got:-0} of $pings replies" [ "${got:-0}" -eq "$pings" ]

# The guest has no listener: Udp NoPorts counts the datagrams. Its ICMP port
# unreachable makes the next send on this (connected) socket fail once with
# ECONNREFUSED; that datagram is sent again, so exactly $udps go out.
timeout 30 ip netns exec "$ns" bash -c "exec 3>/dev/udp/$guest_ip/5000
  for i in \$(seq $udps); do
    for t in 1 2 3; do echo sc-udp-\$i 2>/dev/null >&3 && break; done
    sleep 0.01
  done"
for _ in $(seq 20); do
  timeout 5 ip netns exec "$ns" bash -c "echo done > /dev/tcp/$guest_ip/5001" 2>/dev/null && break; sleep 0.5
done
wait "$qemu_pid"; qemu_pid=
grep -qa "SC-NET-DONE done" "$work/guest.log" || bail "the guest did not report its counters"

# Guest: /proc/net/dev eth0 (rx packets: field 2, tx packets: field 10), Udp NoPorts (field 3).
read -r g_rx g_tx <<< "$(sed -n 's/.*SC-NETDEV //p' "$work/guest.log" | tr -d '\r' | awk '{ print $2, $10 }')"
noports=$(sed -n 's/.*SC-UDP Udp: //p' "$work/guest.log" | tr -d '\r' | awk '{ print $2 }')
check "the guest received the $udps UDP datagrams (Udp NoPorts ${noports:-none})" [ "${noports:-0}" -eq "$udps" ]
# sidecored: queue 0 delivered to the guest, queue 1 sent to the port.
"$sidecorectl" --socket "$work/sidecored.sock" stats --json > "$work/stats.json" 2>&1
sd() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(next(q for q in d['devices'][0]['queues'] if q['queue']==int(sys.argv[2]))[sys.argv[3]])" "$work/stats.json" "$1" "$2" 2>/dev/null || echo 0; }
sd_rx=$(sd 0 rx_packets) sd_tx=$(sd 1 tx_packets) sd_nobuf=$(sd 0 rx_no_buffers)
# The namespace's end: TX of the TAP went to sidecored, RX came from it.
read -r ns_rx ns_tx <<< "$(ip -n "$ns" -s link show dev "$tap" | awk '/RX:/ { getline; rx = $2 } /TX:/ { getline; tx = $2 } END { print rx, tx }')"
echo "# namespace $tap: tx $ns_tx rx $ns_rx; sidecored: delivered $sd_rx (no buffers $sd_nobuf), sent $sd_tx; guest eth0: rx $g_rx tx $g_tx"
min=$((pings + udps))
check "host to guest counted on every hop: namespace tx $ns_tx >= sidecored delivered $sd_rx >= guest rx $g_rx >= $min" \
  [ "${ns_tx:-0}" -ge "${sd_rx:-0}" -a "${sd_rx:-0}" -ge "${g_rx:-0}" -a "${g_rx:-0}" -ge "$min" ]
check "guest to host counted on every hop: sidecored sent $sd_tx >= guest tx $g_tx >= $pings, namespace rx $ns_rx >= $pings" \
  [ "${sd_tx:-0}" -ge "${g_tx:-0}" -a "${g_tx:-0}" -ge "$pings" -a "${ns_rx:-0}" -ge "$pings" ]

kill -TERM "$sd_pid"; wait "$sd_pid"; rc=$?; sd_pid=
check "sidecored broke no queue and SIGTERM stopped it cleanly (exit $rc)" \
  [ "$rc" -eq 0 -a -z "$(grep 'queue broken' "$work/sidecored.log")" ]
[ $failed -eq 0 ] || dump
exit $((failed > 0))
