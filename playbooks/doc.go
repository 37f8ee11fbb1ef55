// Package playbooks will own SSH fan-out across a selection of machines
// (rolling, with failure limits), playbook files, and configuration rendered
// from the inventory, such as firewall rules that admit only cluster members.
//
// Nothing is implemented here yet; it is a later issue.
package playbooks
