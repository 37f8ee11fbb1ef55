// Package playbooks will own SSH fan-out across a selection of machines
// (rolling, with failure limits), playbook files, and configuration rendered
// from the inventory, such as firewall rules that admit only cluster members.
//
// Its first part is hostkeys: the strict SSH host-key trust every
// connection to a machine uses (never trust on first use).
package playbooks
