#!/usr/bin/env bash
# Power status of 200 ipmi_sim BMCs (127.0.9.1-200): ironrack's bulk path vs
# FreeIPMI ipmipower --stat vs a sequential ipmitool loop, in one run.
# Needs root and the openipmi, freeipmi-tools and ipmitool packages
# (scripts/setup). Not part of CI. Extra flags go to the program
# (-runs, -warmup, -concurrency, -skip-ipmitool, -cpuprofile).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)/ipmibench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/ipmi
"$bin" -n 200 "$@"
