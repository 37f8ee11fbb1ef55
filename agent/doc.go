// Package agent is the program that runs on a machine booted into the
// discovery environment (cmd/ironrack-agent, as /init of the initramfs that
// package images builds). It owns collecting the hardware facts from /sys,
// /proc and the SMBIOS table (as pure functions over an fs.FS, so testdata
// trees stand in for a machine), the reports to the boot server's agent API,
// and bringing the machine's own environment up: mounts, kernel modules, DHCP.
//
// Jobs today: discovery (report facts, power off). Commissioning checks,
// deploy and wipe are the images and agent issue's next steps.
package agent
