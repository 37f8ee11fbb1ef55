#!/usr/bin/env bash
# bench/dhcp/run.sh: DHCP DORA/s with Kea's perfdhcp, ironrack (`ironrack serve`,
# leases in Consul) against Kea (kea-dhcp4, memfile persist=true) on the same
# veth, in the same run. Not part of CI. Run as root from the repo root:
#
#   bench/dhcp/run.sh                      # default rate sweep, 10 s per step
#   RATES="2000 4000" PERIOD=5 bench/dhcp/run.sh
#   FAMILY=6 bench/dhcp/run.sh             # DHCPv6 SARR/s: kea-dhcp6 vs serve --address6
#   CONSUL=cluster RATES="2000 3000 4000" OVER=1.3 bench/dhcp/run.sh
#
# Topology: namespace irb-dhcp-s-<pid> holds v0 (198.18.0.1/15, RFC 2544
# benchmark range) and the server; namespace irb-dhcp-c-<pid> holds c0
# (198.18.0.2/15) and perfdhcp, which acts as a relay (giaddr 198.18.0.2),
# as it always does for DHCPv4. Nothing touches a real interface. Each step
# starts the server afresh (empty lease file / fresh Consul), runs perfdhcp
# with 50,000 simulated clients for PERIOD s at one rate, and records the
# completed 4-way exchanges/s and the drop ratios. The server side (Kea, or
# ironrack plus its Consul) is pinned to core 0, perfdhcp to core 1.
#
# Durability: Kea writes each lease to its memfile before the ACK, without
# fsync. ironrack's ACK waits for the lease's Consul transaction, a Raft
# commit. CONSUL=disk (default) runs a one-server Consul with a data dir on
# disk (Raft log fsync'd); CONSUL=dev runs `consul agent -dev` (in memory);
# CONSUL=cluster runs three servers (Raft on disk, 127.0.1.1-3) and a client
# agent on 127.0.0.1 that ironrack talks to: every lease is on a quorum before
# the ACK. The servers share core 0 with ironrack.
#
# FAMILY=6: the same for DHCPv6 (perfdhcp -6: Solicit, Advertise, Request,
# Reply; direct from c0's link-local address, DUID-LLT per simulated
# client): v0 has 2001:db8:b::1/64; Kea's kea-dhcp6 and `ironrack serve
# --address6 2001:db8:b::1/64 --dhcp6-range` (leases6/ in Consul before the
# Reply) hand out the same pool of 2^20 addresses.
#
# Output: one line per step and a summary; the best rate with both drop
# ratios under 1% is each server's figure.
#
# BASE_BIN=PATH: a second ironrack binary (e.g. built from an older commit)
# runs as the server "base" in every step, after "ironrack", for a before/
# after comparison in the same run (it gets no --pprof-address).
#
# SHED=1: ironrack serve runs with --shed (load shedding; not "base").
#
# PPROF=DIR: ironrack serve runs with --pprof-address 127.0.0.1:6060 (in
# the server namespace) and, during each of its steps, a CPU profile of
# the step's middle (PERIOD-4 s) and the block and mutex profiles at its
# end are saved to DIR/<rate>.{cpu,block,mutex}.pb.gz; the Consul
# servers' and agent's CPU seconds per step are printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES=${RATES:-"4000 6000 7000 8000 9000"}
PERIOD=${PERIOD:-10}
CLIENTS=${CLIENTS:-50000}
CONSUL=${CONSUL:-disk}
FAMILY=${FAMILY:-4}
PPROF=${PPROF:-}
KEA=kea-dhcp4; [[ "$FAMILY" == 6 ]] && KEA=kea-dhcp6
SRV=irb-dhcp-s-$$
CLI=irb-dhcp-c-$$
WORK=$(mktemp -d /tmp/irb-dhcp.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in perfdhcp "$KEA" taskset; do
  command -v "$t" >/dev/null || { echo "needs $t: apt-get install kea-admin kea-dhcp4-server kea-dhcp6-server util-linux" >&2; exit 1; }
done
CONSUL_BIN=${IRONRACK_CONSUL_BIN:-${IRONRACK_TOOLS:-$HOME/.cache/ironrack/tools}/consul-v1.22.0/consul}
[[ -x "$CONSUL_BIN" ]] || { echo "needs $CONSUL_BIN (scripts/setup)" >&2; exit 1; }

go build -o "$WORK/ironrack" ./cmd/ironrack

ip netns add "$SRV"; ip netns add "$CLI"
for ns in "$SRV" "$CLI"; do ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0; done
ip link add v0 netns "$SRV" type veth peer name c0 netns "$CLI"
ip -n "$SRV" addr add 198.18.0.1/15 dev v0
ip -n "$CLI" addr add 198.18.0.2/15 dev c0
for ns in "$SRV" "$CLI"; do ip -n "$ns" link set lo up; done
ip -n "$SRV" addr add 2001:db8:b::1/64 dev v0 nodad
ip -n "$SRV" link set v0 up; ip -n "$CLI" link set c0 up

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; PIDS=("${PIDS[@]/$1}"); }

start_kea() {
  mkdir -p "$WORK/kea"; rm -f "$WORK/kea/leases.csv"
  local tmpl=bench/dhcp/kea.json.tmpl; [[ "$FAMILY" == 6 ]] && tmpl=bench/dhcp/kea6.json.tmpl
  sed -e "s#@LEASES@#$WORK/kea/leases.csv#" -e "s#@LOG@#$WORK/kea/kea.log#" "$tmpl" >"$WORK/kea/kea.json"
  KEA_PIDFILE_DIR="$WORK/kea" KEA_LOCKFILE_DIR="$WORK/kea" \
    ip netns exec "$SRV" taskset -c 0 "$KEA" -c "$WORK/kea/kea.json" >"$WORK/kea/out.log" 2>&1 &
  SERVER_PIDS=($!); PIDS+=($!)
  sleep 2
}

V6ARGS=()
PPROFARGS=()
[[ -n "$PPROF" ]] && { mkdir -p "$PPROF"; PPROFARGS=(--pprof-address 127.0.0.1:6060); }
[[ "$FAMILY" == 6 ]] && V6ARGS=(--address6 2001:db8:b::1/64 --dhcp6-range 2001:db8:b::10:0-2001:db8:b::1f:ffff)

start_base() { IRONRACK_EXE=$BASE_BIN NO_PPROF=1 start_ironrack; }

start_ironrack() {
  local exe=${IRONRACK_EXE:-$WORK/ironrack} pp=("${PPROFARGS[@]}")
  [[ -n "${SHED:-}" ]] && pp+=(--shed)
  [[ -n "${NO_PPROF:-}" ]] && pp=()
  local d="$WORK/consul-$RANDOM"; mkdir -p "$d" "$WORK/data"
  local args=(agent -bind 127.0.0.1 -client 127.0.0.1 -log-level warn -data-dir "$d" -hcl 'performance { raft_multiplier = 1 }')
  local spids=()
  if [[ "$CONSUL" == cluster ]]; then
    # Three servers (127.0.1.1-3, Raft on disk) and a client agent on
    # 127.0.0.1 that ironrack talks to, as on a boot server in production.
    local join=(-retry-join 127.0.1.1 -retry-join 127.0.1.2 -retry-join 127.0.1.3)
    for i in 1 2 3; do
      ip netns exec "$SRV" taskset -c 0 "$CONSUL_BIN" agent -server -bootstrap-expect 3 -node "s$i" \
        -bind "127.0.1.$i" -client "127.0.1.$i" -data-dir "$d/s$i" -log-level warn -dns-port -1 -grpc-port -1 \
        -hcl 'performance { raft_multiplier = 1 }' "${join[@]}" >"$d/s$i.log" 2>&1 &
      spids+=($!); PIDS+=($!)
    done
    args=(agent -node client -bind 127.0.0.1 -client 127.0.0.1 -log-level warn -data-dir "$d/client" -dns-port -1 "${join[@]}")
  elif [[ "$CONSUL" == dev ]]; then args=(agent -dev -bind 127.0.0.1 -client 127.0.0.1 -log-level warn); else args+=(-server -bootstrap-expect 1); fi
  ip netns exec "$SRV" taskset -c 0 "$CONSUL_BIN" "${args[@]}" >"$d/consul.log" 2>&1 &
  local cpid=$!; PIDS+=($cpid)
  for _ in $(seq 1 150); do
    ip netns exec "$SRV" curl -sf http://127.0.0.1:8500/v1/status/leader 2>/dev/null | grep -q ':8300' && break
    sleep 0.2
  done
  # the client agent's own node must be in the catalog (sessions need it)
  for _ in $(seq 1 100); do
    ip netns exec "$SRV" curl -sf http://127.0.0.1:8500/v1/catalog/nodes 2>/dev/null | grep -q '"Node"' && break
    sleep 0.2
  done
  ip netns exec "$SRV" taskset -c 0 "$exe" --consul 127.0.0.1:8500 --log-level error serve \
    --interface v0 --address 198.18.0.1/15 --dhcp-range 198.18.1.0-198.19.255.254 --data-dir "$WORK/data" "${V6ARGS[@]}" "${pp[@]}" \
    >"$d/ironrack.log" 2>&1 &
  local ipid=$!; PIDS+=($ipid)
  SERVER_PIDS=($ipid $cpid "${spids[@]}")
  for _ in $(seq 1 50); do
    ip netns exec "$SRV" curl -sf http://198.18.0.1:8080/healthz >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 1
}

# cpu_of PID...: the processes' user+system CPU in clock ticks.
cpu_of() {
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# step SERVER RATE: prints "SERVER RATE achieved do_drop% ra_drop%"
step() {
  local server=$1 rate=$2 out
  "start_$server"
  local prof=() cpu0=0
  if [[ -n "$PPROF" && "$server" == ironrack ]]; then
    cpu0=$(cpu_of "${SERVER_PIDS[@]:1}")
    local secs=$((PERIOD > 5 ? PERIOD - 4 : 1))
    ( sleep 2; ip netns exec "$SRV" curl -sf -o "$PPROF/$rate.cpu.pb.gz" "http://127.0.0.1:6060/debug/pprof/profile?seconds=$secs" ) &
    prof+=($!)
    ( sleep "$((PERIOD - 1))"
      ip netns exec "$SRV" curl -sf -o "$PPROF/$rate.block.pb.gz" "http://127.0.0.1:6060/debug/pprof/block"
      ip netns exec "$SRV" curl -sf -o "$PPROF/$rate.mutex.pb.gz" "http://127.0.0.1:6060/debug/pprof/mutex" ) &
    prof+=($!)
  fi
  out=$(ip netns exec "$CLI" taskset -c 1 perfdhcp -"$FAMILY" -l c0 -r "$rate" -p "$PERIOD" -R "$CLIENTS" 2>&1 || true)
  for p in "${prof[@]}"; do wait "$p" || true; done
  if [[ -n "$PPROF" && "$server" == ironrack ]]; then
    echo "# $rate: CPU s during the step: ironrack $(cpu_of "${SERVER_PIDS[0]}"), Consul agent+servers $(( $(cpu_of "${SERVER_PIDS[@]:1}") - cpu0 )) (ticks of 1/$(getconf CLK_TCK) s; ironrack's since its start)" >&2
  fi
  for p in "${SERVER_PIDS[@]}"; do stop_pid "$p"; done
  local achieved drops
  achieved=$(awk '/^Rate:/ {print $2; exit}' <<<"$out")
  drops=$(awk '/^drops ratio:/ {printf "%s ", $3}' <<<"$out")
  echo "$server $rate ${achieved:-0} $drops"
}

echo "# server offered_rate achieved_exchanges/s first_drop% second_drop%   (DHCPv$FAMILY PERIOD=${PERIOD}s CLIENTS=$CLIENTS CONSUL=$CONSUL; $(cut -d' ' -f1-3 /proc/loadavg) load before)"
SERVERS=(kea ironrack)
[[ -n "${BASE_BIN:-}" ]] && SERVERS+=(base)
declare -A best
for rate in $RATES; do
  for server in "${SERVERS[@]}"; do
    line=$(step "$server" "$rate"); echo "$line"
    read -r s r a d1 d2 <<<"$line"
    if awk -v a="${d1%\%}" -v b="${d2%\%}" 'BEGIN {exit !(a+0 < 1 && b+0 < 1)}'; then
      if awk -v x="$a" -v y="${best[$s]:-0}" 'BEGIN {exit !(x > y)}'; then best[$s]=$a; fi
    fi
  done
done
echo "# best exchanges/s with <1% drops: kea ${best[kea]:-0}  ironrack ${best[ironrack]:-0}${BASE_BIN:+  base ${best[base]:-0}}  (load $(cut -d' ' -f1-3 /proc/loadavg) after)"
awk -v i="${best[ironrack]:-0}" -v k="${best[kea]:-0}" 'BEGIN { if (k > 0) printf "# ratio ironrack/kea: %.2f\n", i / k }'
# Past saturation: each server offered OVER (1.3) × its own best rate; the
# figure is how much of its best rate it still completes. OVER=0 skips it.
OVER=${OVER:-1.3}
if awk -v o="$OVER" 'BEGIN {exit !(o > 0)}'; then
  for server in "${SERVERS[@]}"; do
    b=${best[$server]:-0}
    [[ "$b" == 0 ]] && continue
    rate=$(awk -v b="$b" -v o="$OVER" 'BEGIN {printf "%d", b * o}')
    line=$(step "$server" "$rate"); echo "$line"
    read -r s r a d1 d2 <<<"$line"
    awk -v a="$a" -v b="$b" -v s="$s" -v o="$OVER" 'BEGIN {printf "# %s at %s× its best: %.0f of %.0f DORA/s, holds %.1f %%\n", s, o, a, b, 100 * a / b}'
  done
fi
