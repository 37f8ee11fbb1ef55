#!/usr/bin/env bash
# bench/ssh/run.sh (make bench-ssh): `ironrack run` against `pdsh -R ssh -f 64` and a
# sequential ssh loop, on 100 and 500 real sshd hosts, host keys checked
# strictly by all three, in the same run. Not part of CI. Run as root from
# the repo root:
#
#   bench/ssh/run.sh                       # 100 and 500 hosts, 3 rounds each
#   SIZES="100 500" ROUNDS=3 FANOUT=64 CMD=true bench/ssh/run.sh
#
# Every host is its own OpenSSH sshd (own config and ed25519 host key in a
# temp dir) on a distinct loopback address 127.0.7x.y:22, all inside network
# namespace irb-ssh-<pid> (its own loopback: nothing listens on the test
# machine's addresses; the clients run in it too). One known_hosts lists
# every host's key: ironrack gets it with --known-hosts, ssh and pdsh's ssh
# with UserKnownHostsFile and StrictHostKeyChecking=yes. Rounds alternate
# the clients; each figure is the median round. Every sshd is killed by PID
# at exit. Prints wall time, hosts/s and ironrack's ratio to pdsh.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"100 500"}
ROUNDS=${ROUNDS:-3}
FANOUT=${FANOUT:-64}
CMD=${CMD:-true}
SEQ_MAX=${SEQ_MAX:-500}    # the sequential loop is skipped above this size
NS=irb-ssh-$$
WORK=$(mktemp -d /tmp/irb-ssh.XXXXXX)
PIDS=()
cleanup() {
  [[ -f $WORK/pids ]] && while read -r p; do PIDS+=("$p"); done <"$WORK/pids"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in pdsh ssh ssh-keygen /usr/sbin/sshd; do
  command -v "$t" >/dev/null || { echo "needs $t: scripts/setup installs pdsh openssh-client openssh-server" >&2; exit 1; }
done
MAX=0; for n in $SIZES; do (( n > MAX )) && MAX=$n; done
(( MAX <= 1000 )) || { echo "at most 1000 hosts" >&2; exit 1; }

go build -o "$WORK/ironrack" ./cmd/ironrack
ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p /run/sshd    # sshd's privilege separation directory
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" -C bench
cp "$WORK/id.pub" "$WORK/authorized_keys"
: >"$WORK/known_hosts"
addr() { echo "127.0.$((70 + ($1 - 1) / 250)).$(( ($1 - 1) % 250 + 1 ))"; }
for i in $(seq 1 "$MAX"); do
  a=$(addr "$i"); d="$WORK/h$i"; mkdir "$d"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host" -C "h$i"
  cat >"$d/sshd_config" <<CFG
ListenAddress $a:22
HostKey $d/host
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel ERROR
CFG
  echo "$a $(cut -d' ' -f1,2 "$d/host.pub")" >>"$WORK/known_hosts"
done
for n in $SIZES; do
  : >"$WORK/hosts-$n"; : >"$WORK/addrs-$n"
  for i in $(seq 1 "$n"); do echo "h$i $(addr "$i")" >>"$WORK/hosts-$n"; addr "$i" >>"$WORK/addrs-$n"; done
done
# All sshd run in one mount namespace of their own where /root is an empty
# directory: the hosts' root has no shell start-up files (this machine's
# .bashrc runs pyenv init, about 0.5 s per login, for every client alike).
mkdir "$WORK/root"
CFGS=(); for i in $(seq 1 "$MAX"); do CFGS+=("$WORK/h$i/sshd_config"); done
ip netns exec "$NS" unshare --mount --propagation private sh -c '
  w=$1; shift; mount --bind "$w/root" /root
  for c in "$@"; do /usr/sbin/sshd -D -f "$c" 2>>"$w/sshd.log" & echo $! >>"$w/pids"; done
  wait' sh "$WORK" "${CFGS[@]}" &
PIDS+=($!)
for _ in $(seq 1 300); do
  up=$(ip netns exec "$NS" ss -Hltn 'sport = :22' | wc -l)
  (( up >= MAX )) && break
  sleep 0.1
done
(( up >= MAX )) || { echo "only $up of $MAX sshd listen; log:" >&2; tail "$WORK/sshd.log" >&2; exit 1; }

SSHOPTS=(-F /dev/null -i "$WORK/id" -o UserKnownHostsFile="$WORK/known_hosts" -o GlobalKnownHostsFile=/dev/null
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10)
# Each client prints its output to a file; a round counts only if every host
# answered. Every round is bounded (timeout), so is each ssh of the loop.
ironrack_round() {
  timeout 900 ip netns exec "$NS" "$WORK/ironrack" run --hosts-file "$WORK/hosts-$1" --identity "$WORK/id" \
    --known-hosts "$WORK/known_hosts" --fanout "$FANOUT" --connect-timeout 10s -- "$CMD" >"$WORK/out" 2>&1 \
    || { echo "ironrack run failed:" >&2; tail -5 "$WORK/out" >&2; return 1; }
}
pdsh_round() {
  timeout 900 ip netns exec "$NS" env PDSH_SSH_ARGS_APPEND="${SSHOPTS[*]}" pdsh -R ssh -f "$FANOUT" -l root -w "^$WORK/addrs-$1" "$CMD" >"$WORK/out" 2>&1
  if grep -q 'pdsh@' "$WORK/out"; then echo "pdsh: failures:" >&2; grep 'pdsh@' "$WORK/out" | head -5 >&2; return 1; fi
}
seq_round() {
  local a
  while read -r a; do
    timeout 60 ip netns exec "$NS" ssh "${SSHOPTS[@]}" "root@$a" "$CMD" >>"$WORK/out" 2>&1 </dev/null || { echo "ssh $a failed" >&2; return 1; }
  done <"$WORK/addrs-$1"
}
timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "# $(nproc) cores; ssh: $(ssh -V 2>&1); pdsh $(pdsh -V 2>&1 | head -1); fanout $FANOUT; command: $CMD; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-12s %10s %10s %14s\n' hosts client wall_s hosts/s vs_pdsh
for n in $SIZES; do
  declare -A T=()
  clients=(ironrack pdsh)
  (( n <= SEQ_MAX )) && clients+=(seq)
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${clients[@]}"; do
      [[ $c == seq && $r -gt 1 ]] && continue    # one sequential round: it is the slow baseline
      : >"$WORK/out"
      T[$c]+="$(timed "${c}_round" "$n") "
    done
  done
  pd=$(echo "${T[pdsh]}" | tr ' ' '\n' | grep . | median)
  for c in "${clients[@]}"; do
    m=$(echo "${T[$c]}" | tr ' ' '\n' | grep . | median)
    printf '%-6s %-12s %10.3f %10.1f %13.2fx\n' "$n" "$c" "$m" "$(echo "$n / $m" | bc -l)" "$(echo "$pd / $m" | bc -l)"
  done
  unset T
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg); anchor: sake, 500 hosts in 1.40 s on a 16-thread desktop, host keys not checked"
