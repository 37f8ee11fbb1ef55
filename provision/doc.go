// Package provision owns the boot server's wiring and the workflows over the
// inventory: Inventory adapts *inventory.Store to the narrow interfaces that
// the protocol sub-packages declare (dhcp, httpboot), and BootServer puts
// DHCP, TFTP, iPXE-over-HTTP and IPv6 RA together on one interface, as
// `ironrack serve` runs them.
//
// The protocol sub-packages never reach a BMC; only workflows here may.
package provision
