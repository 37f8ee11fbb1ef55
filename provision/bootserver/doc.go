// Package bootserver owns the network boot server's wiring, as `ironrack
// serve` runs it: Server puts DHCP, TFTP, iPXE-over-HTTP and IPv6 RA
// together on one interface, and Backend adapts *inventory.Store to the
// narrow interfaces that the protocol sub-packages declare (dhcp, httpboot),
// with the MAC index replica and the lease and reservation batchers. It
// is the machines' side of the workflows in provision: it hands out deploy
// instructions and NoCloud seeds, and the agent's reports commission
// machines and end deploys and releases.
//
// Neither this package nor the protocol sub-packages reach a BMC; only the
// workflows in provision do.
package bootserver
