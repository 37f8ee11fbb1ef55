// Package provision owns the operator workflows over the inventory and the
// BMCs: Fleet (bulk power, boot overrides and BMC password rotation, each
// change in the machine's history) and Deployer (deploy and release, shared
// by the CLI and the Pulumi provider, and commission: each boots machines
// into the agent and waits for its report), and the NoCloud seed a deploy
// hands its machine (NoCloudSeed).
//
// The boot server that serves the machines' side of these workflows lives
// in provision/bootserver; this package links none of its protocols, so a
// client of the workflows (the Pulumi provider) does not link DHCP or TFTP.
package provision
