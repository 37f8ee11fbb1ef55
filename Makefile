# Convenience targets. The README's two commands are scripts/demo and
# scripts/test; benchmarks are never part of .ci/run.
.PHONY: demo test bench bench-inventory bench-ipmi bench-dhcp bench-http bench-ssh

demo:
	scripts/demo

test:
	scripts/test

bench: bench-inventory bench-ipmi bench-dhcp bench-http bench-ssh

# Where-queries and allocation against raw Consul calls, in one run.
bench-inventory:
	scripts/setup >/dev/null
	go test -run '^$$' -bench WhereQuery -benchtime 300x ./inventory
	go test -run '^$$' -bench Allocate -benchtime 1x ./inventory

# `ironrack power status` of 200 ipmi_sim BMCs vs ipmipower vs an ipmitool loop.
bench-ipmi:
	scripts/setup >/dev/null
	bench/ipmi/run.sh -runs 5

# DHCP DORA/s with perfdhcp: ironrack serve vs Kea (memfile, persist=true).
bench-dhcp:
	scripts/setup >/dev/null
	bench/dhcp/run.sh

# 32 wrk clients pulling kernel+initrd: ironrack serve vs nginx.
bench-http:
	scripts/setup >/dev/null
	bench/http/run.sh

# `ironrack run` on 100 and 500 sshd hosts vs pdsh -R ssh -f 64 vs an ssh loop.
bench-ssh:
	scripts/setup >/dev/null
	bench/ssh/run.sh
