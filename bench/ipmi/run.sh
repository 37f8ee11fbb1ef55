#!/usr/bin/env bash
# Power status of N (200) ipmi_sim BMCs (127.0.9.1 upwards): the real
# `ironrack power status --all` CLI (inventory and sealed credentials in a dev
# Consul) vs FreeIPMI ipmipower --stat vs a sequential ipmitool loop, in one
# run. Needs root, the openipmi, freeipmi-tools and ipmitool packages, and the
# consul binary (scripts/setup). Not part of CI. Extra flags go to the
# program (-runs, -warmup, -concurrency, -bulk, -phases, -skip-ipmitool).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/ironrack" ./cmd/ironrack
go build -o "$tmp/ipmibench" ./bench/ipmi
"$tmp/ipmibench" -n "${N:-200}" -ironrack "$tmp/ironrack" "$@"
