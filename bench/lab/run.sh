#!/usr/bin/env bash
# bench/lab/run.sh: rack to ready on the virtual rack, for 1, 4 and 8
# machines (or the counts given): ironrack lab up, inventory import of the
# lab's sheet, ironrack commission (power on over IPMI, PXE, discovery)
# until every machine is ready; then lab down. Prints each count's times and
# the ratio to one machine's. TCG on 2 cores is CPU-bound: the goal is 8
# machines in at most 5x one machine's time (docs/benchmarks.md).
#
#   bench/lab/run.sh [COUNT...]      (default: 1 4 8)
#
# Not part of .ci/run. Needs root; scripts/setup first.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNTS=("$@")
((${#COUNTS[@]})) || COUNTS=(1 4 8)
TOOLS=$(scripts/setup)
WORK=$(mktemp -d /tmp/ironrack-bench-lab.XXXXXX)
IR=$WORK/ironrack
NAME=bench$$
cleanup() { "$IR" lab down --name "$NAME" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
go build -o "$IR" ./cmd/ironrack
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags '-s -w' -o "$WORK/agent" ./cmd/ironrack-agent
"$IR" images build discovery --register=false --data-dir "$WORK/data" --kernel-dir "$(scripts/boot-artifacts)" --agent "$WORK/agent" >/dev/null

declare -A UP RTR
for n in "${COUNTS[@]}"; do
  echo "== $n machine(s): load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  t0=$(date +%s.%N)
  eval "$("$IR" lab up --name "$NAME" --machines "$n" --racks 2 --uefi 0 --data-dir "$WORK/data" --consul-binary "$TOOLS/consul-v1.22.0/consul")"
  t1=$(date +%s.%N)
  "$IR" inventory import "$IRONRACK_LAB_SHEET" >/dev/null
  "$IR" commission --all --yes --timeout 20m >&2
  t2=$(date +%s.%N)
  UP[$n]=$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }') RTR[$n]=$(awk -v a="$t2" -v b="$t0" 'BEGIN { print a - b }')
  "$IR" lab down --name "$NAME" >/dev/null
done
one=${RTR[${COUNTS[0]}]}
printf '\n%-9s %-10s %-15s %s\n' machines "lab up s" "rack→ready s" "ratio to ${COUNTS[0]}"
for n in "${COUNTS[@]}"; do
  printf '%-9s %-10.1f %-15.1f %.2fx\n' "$n" "${UP[$n]}" "${RTR[$n]}" "$(awk -v a="${RTR[$n]}" -v b="$one" 'BEGIN { print a / b }')"
done
