// Package agent is the program that runs on a machine booted into the
// discovery environment (cmd/ironrack-agent, as /init of the initramfs that
// package images builds). It owns collecting the hardware facts from /sys,
// /proc and the SMBIOS table (as pure functions over an fs.FS, so testdata
// trees stand in for a machine), posting reports to the boot server's agent
// API, and bringing the machine's own environment up: mounts, kernel modules
// (chosen from the initramfs's module index), DHCP. The API's wire types are
// package agent/wire's, shared with the boot server.
//
// Jobs: discovery (report facts, power off), commissioning (checks, then
// facts and the result as events), deploy (stream the image from the boot
// server onto the chosen disk — first fit, or the disk a root-device hint
// chose once the disks it sees are the recorded ones; for a mirrored root,
// RAID 1 over the two chosen disks built with the initramfs's mdadm —
// hashing as it writes, resuming after a broken connection) and wipe at an erase level:
// quick (each disk's first and last MiB: partition tables, the backup GPT,
// file system superblocks), zero (every byte, with progress) or secure
// (the drive's own erase: NVMe format with user data erase, or ATA
// security erase through the initramfs's hdparm with a temporary password
// recorded in the history before it is set; disks without either, and
// frozen or locked ATA drives, refused before anything is written).
package agent
