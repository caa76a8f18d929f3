#!/usr/bin/env bash
# End to end with a real VMM and a real network stack: sidecored serves a
# virtio-net NIC over vhost-user with a TAP port (net_tap0); QEMU (TCG, no
# MSI-X: QEMU 7.2 under TCG crashes when a vhost-user NIC starts with it)
# boots Debian's kernel, whose own virtio_net driver brings eth0 up. The
# test moves the TAP into a network namespace it creates, addresses both
# ends only there (192.0.2.0/24, TEST-NET-1), pings the guest and sends it
# UDP, and counts on both ends: the guest's /proc/net/dev and Udp counters,
# sidecored's stats socket, and the namespace's `ip -s link`. Then the
# guest sends a TCP stream to a listener in the namespace, compared byte
# for byte: sidecored offers TSO4 on net_tap and cuts the guest's TSO
# packets itself (tx_gso_packets). Namespace,
# QEMU and sidecored are cleaned up by their own names and PIDs, also on
# failure; the whole run is bounded (about 3 minutes at most). TAP output.
# usage: [TCP_KB=4096] qemu_net.sh SIDECORED_BINARY
set -uo pipefail
sidecored=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
sidecorectl=$(dirname "$sidecored")/sidecorectl
pings=10 udps=50 tcp_kb=${TCP_KB:-4096}
host_ip=192.0.2.1 guest_ip=192.0.2.2

need_qemu_guest
[ "$(id -u)" -eq 0 ] || skip "needs root (a network namespace, a TAP, DPDK's EAL)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun (the tun module) for DPDK's net_tap"
command -v ip >/dev/null || skip "no ip (iproute2) for the network namespace"
# grep without -q in these pipes: under pipefail, grep -q quitting at its match can leave the writer
# a SIGPIPE, and the pipe fails (a skip, seen once in the ASan run for busybox's nc).
find "/lib/modules/$kver" -name 'virtio_net.ko*' | grep . >/dev/null || skip "the guest kernel $kver has no virtio_net module"
/bin/busybox --list | grep -x nc >/dev/null || skip "busybox has no nc (the guest's end of the test)"

ns=sc-test-$$
tap=sctap$$
work=$(mktemp -d /tmp/sidecore-e2e-net-XXXXXX)
sd_pid= qemu_pid= ns_made= nc_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  [ -n "$nc_pid" ] && kill "$nc_pid" 2>/dev/null && wait "$nc_pid" 2>/dev/null
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

echo "1..9"
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
  -append "console=ttyS0 quiet panic=-1 sc_test=net sc_ip=$guest_ip/24 sc_host=$host_ip sc_tcp_kb=$tcp_kb" \
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
# The listener for the guest's TCP stream, up before the guest hears "done" and connects: one
# connection read to its end (not busybox's nc -l, whose stdin's end would half-close the socket,
# and its nc client stops sending when it sees that).
ip netns exec "$ns" timeout 90 python3 -c '
import socket, sys
s = socket.socket()
s.bind(("", 5002)); s.listen(1); s.settimeout(80)
c, _ = s.accept(); c.settimeout(30)
with open(sys.argv[1], "wb") as f:
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        f.write(b)
' "$work/tcp.out" &
nc_pid=$!
for _ in $(seq 50); do ip netns exec "$ns" ss -Hltn 'sport = :5002' | grep . >/dev/null && break; sleep 0.1; done
for _ in $(seq 20); do
  timeout 5 ip netns exec "$ns" bash -c "echo done > /dev/tcp/$guest_ip/5001" 2>/dev/null && break; sleep 0.5
done
wait "$qemu_pid"; qemu_pid=
wait "$nc_pid"; nc_pid=
grep -qa "SC-NET-DONE done" "$work/guest.log" || bail "the guest did not report its counters"
got=$(stat -c %s "$work/tcp.out" 2>/dev/null || echo 0)
# The namespace's counters of what its stack dropped for a wrong checksum: a segment with a bad one
# is lost there, and the guest's TCP sends its bytes again, so the stream alone would not tell.
snmp() { ip netns exec "$ns" awk -v p="$1:" -v k="$2" '$1 == p { if (!h) { for (i = 2; i <= NF; i++) if ($i == k) c = i; h = 1 } else print $c }' /proc/net/snmp; }
ip_bad=$(snmp Ip InHdrErrors) tcp_bad=$(snmp Tcp InCsumErrors)
check "the guest's TCP stream reached the namespace byte for byte ($got of $((tcp_kb * 1024)) bytes)" \
  bash -c "grep -qa SC-TCP-SENT '$work/guest.log' && yes sidecore-tcp | head -c $((tcp_kb * 1024)) | cmp -s - '$work/tcp.out'"

# Guest: /proc/net/dev eth0 (rx packets: field 2, tx packets: field 10), Udp NoPorts (field 3).
read -r g_rx g_tx <<< "$(sed -n 's/.*SC-NETDEV //p' "$work/guest.log" | tr -d '\r' | awk '{ print $2, $10 }')"
noports=$(sed -n 's/.*SC-UDP Udp: //p' "$work/guest.log" | tr -d '\r' | awk '{ print $2 }')
check "the guest received the $udps UDP datagrams (Udp NoPorts ${noports:-none})" [ "${noports:-0}" -eq "$udps" ]
# sidecored: queue 0 delivered to the guest, queue 1 sent to the port.
"$sidecorectl" --socket "$work/sidecored.sock" stats --json > "$work/stats.json" 2>&1
sd() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(next(q for q in d['devices'][0]['queues'] if q['queue']==int(sys.argv[2]))[sys.argv[3]])" "$work/stats.json" "$1" "$2" 2>/dev/null || echo 0; }
sd_rx=$(sd 0 rx_packets) sd_tx=$(sd 1 tx_packets) sd_nobuf=$(sd 0 rx_no_buffers)
sd_gso=$(sd 1 tx_gso_packets) sd_segs=$(sd 1 tx_gso_segments) sd_bad=$(sd 1 tx_bad)
check "sidecored cut the guest's TSO packets: $sd_gso into $sd_segs segments, tx_bad $sd_bad" \
  [ "${sd_gso:-0}" -gt 0 -a "${sd_segs:-0}" -gt "${sd_gso:-0}" -a "${sd_bad:-1}" -eq 0 ]
check "the namespace found no wrong checksum: IPv4 header ${ip_bad:-?}, TCP ${tcp_bad:-?}" \
  [ "${ip_bad:-1}" -eq 0 -a "${tcp_bad:-1}" -eq 0 ]
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
