#!/usr/bin/env bash
# bench/http/run.sh: boot artifact serving, ironrack (`ironrack serve`'s HTTP
# server) against nginx serving the same files, in the same run. Not part
# of CI. Run as root from the repo root:
#
#   bench/http/run.sh                  # 32 connections, 10 s, 3 rounds each
#   CONNS=32 DURATION=10s ROUNDS=3 bench/http/run.sh
#
# Both servers and wrk run in namespace irb-http-<pid> (address
# 198.18.0.1/15 on a veth whose peer is in a second namespace, so nothing
# touches a real interface); wrk's 32 connections each pull the agent's
# kernel and initrd (scripts/boot-artifacts) alternately. ironrack runs the
# real binary with its Consul (dev agent) inside the namespace; nginx 1.22
# runs with sendfile, 2 workers, access log off. Rounds alternate servers;
# each server's figure is its median round. Prints bytes/s, requests/s and
# the ratio ironrack/nginx.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
NS=irb-http-$$
PEER=irb-httpp-$$
WORK=$(mktemp -d /tmp/irb-http.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in wrk nginx curl; do
  command -v "$t" >/dev/null || { echo "needs $t: apt-get install wrk nginx-light curl" >&2; exit 1; }
done
CONSUL_BIN=${IRONRACK_CONSUL_BIN:-${IRONRACK_TOOLS:-$HOME/.cache/ironrack/tools}/consul-v1.22.0/consul}
[[ -x "$CONSUL_BIN" ]] || { echo "needs $CONSUL_BIN (scripts/setup)" >&2; exit 1; }

go build -o "$WORK/ironrack" ./cmd/ironrack
mkdir -p "$WORK/data"
scripts/boot-artifacts --install "$WORK/data" >/dev/null
K=/images/agent/current/vmlinuz
I=/images/agent/current/initrd.img
echo "# files: vmlinuz $(stat -c %s "$WORK/data$K") bytes, initrd.img $(stat -c %s "$WORK/data$I") bytes; $CONNS connections, $DURATION per round"

ip netns add "$NS"; ip netns add "$PEER"
ip link add v0 netns "$NS" type veth peer name p0 netns "$PEER"
ip -n "$NS" addr add 198.18.0.1/15 dev v0
ip -n "$NS" link set lo up; ip -n "$NS" link set v0 up; ip -n "$PEER" link set p0 up

ip netns exec "$NS" "$CONSUL_BIN" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -log-level warn >"$WORK/consul.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  ip netns exec "$NS" curl -sf http://127.0.0.1:8500/v1/status/leader 2>/dev/null | grep -q 127.0.0.1 && break
  sleep 0.2
done
ip netns exec "$NS" "$WORK/ironrack" --consul 127.0.0.1:8500 --log-level error serve --interface v0 \
  --address 198.18.0.1/15 --proxy-dhcp --http-port 8080 --data-dir "$WORK/data" >"$WORK/ironrack.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/nginx.conf" <<NGINX
user root;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types { application/octet-stream img; }
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server { listen 198.18.0.1:8081; root $WORK/data; }
}
NGINX
mkdir -p "$WORK/nginx-tmp"
ip netns exec "$NS" nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

for port in 8080 8081; do
  for _ in $(seq 1 50); do
    ip netns exec "$NS" curl -sf -o /dev/null "http://198.18.0.1:$port$K" && break
    sleep 0.2
  done
  ip netns exec "$NS" curl -sf -o /dev/null "http://198.18.0.1:$port$I" || { echo "port $port does not serve $I" >&2; exit 1; }
done

cat >"$WORK/alt.lua" <<LUA
local paths = {"$K", "$I"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % 2) + 1])
end
LUA

# round SERVER PORT: prints "SERVER bytes_per_s requests_per_s"
round() {
  local out
  out=$(ip netns exec "$NS" wrk -t2 -c"$CONNS" -d"$DURATION" -s "$WORK/alt.lua" "http://198.18.0.1:$2" 2>&1)
  local rps tps
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  tps=$(awk '/^Transfer\/sec:/ {v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
          m = (u=="GB") ? 1e9*1.073741824 : (u=="MB") ? 1e6*1.048576 : (u=="KB") ? 1024 : 1; printf "%.0f", n*m}' <<<"$out")
  echo "$1 $tps $rps"
}

echo "# server bytes/s requests/s"
declare -a IR NG
for r in $(seq 1 "$ROUNDS"); do
  l=$(round ironrack 8080); echo "$l"; IR+=($(awk '{print $2}' <<<"$l"))
  l=$(round nginx 8081); echo "$l"; NG+=($(awk '{print $2}' <<<"$l"))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mi=$(median "${IR[@]}"); mn=$(median "${NG[@]}")
awk -v i="$mi" -v n="$mn" 'BEGIN { printf "# median: ironrack %.2f GB/s, nginx %.2f GB/s, ratio ironrack/nginx %.2f\n", i/1e9, n/1e9, i/n }'
