// Package netpolicy owns the firewall ironrack renders from the inventory:
// the policy file (which tiers, tags or where-expressions reach which ports
// on which tiers; admin sources and admin ports) with its failsafe rules no
// policy removes, the per-machine nftables ruleset in the table inet
// ironrack with tier membership in named sets, and the host side: plan
// (diff against `nft -j list ruleset`), apply with a rollback armed on the
// host, confirm, status, and the watcher that follows Consul membership and
// updates set elements without reloading rules.
//
// Host operations run shell commands through Runner, a one-method interface
// that an SSH client satisfies; the last apply per machine is recorded in
// Consul KV under the inventory's prefix (fw/applied/ID), the only state
// this package keeps. See docs/network-policy.md.
package netpolicy
