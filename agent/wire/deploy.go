package wire

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Instructions are what the agent writes, as GET DeployPath returns them.
type Instructions struct {
	Image   string `json:"image"`
	Version string `json:"version"`
	// URL is the image file's path on the boot server
	// (/images/<name>/<version>/<file>); the agent joins it to ironrack.url.
	URL string `json:"url"`
	// SHA256 (hex) and Size are the file's, from the version's manifest.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Disk says which disk to write.
	Disk DiskRule `json:"disk"`
}

// DiskRule chooses the target disk.
type DiskRule struct {
	// Rule is FirstFit, the only rule so far.
	Rule     string `json:"rule"`
	MinBytes int64  `json:"min_bytes"`
}

// FirstFit is the disk rule that picks the first disk in kernel name order
// (sda before sdb, vda before vdb, nvme0n1 …) that is not removable,
// read-only or a loop/ram device, and holds at least MinBytes.
const FirstFit = "first-fit"

// Validate checks what the agent relies on: a sha256 of 64 hex digits, a
// positive size, a URL under /images/ and a disk rule it knows.
func (in Instructions) Validate() error {
	if _, err := hex.DecodeString(in.SHA256); err != nil || len(in.SHA256) != 64 {
		return fmt.Errorf("instructions: sha256 %q is not 64 hex digits", in.SHA256)
	}
	if in.Size <= 0 {
		return fmt.Errorf("instructions: size %d", in.Size)
	}
	if !strings.HasPrefix(in.URL, "/images/") {
		return fmt.Errorf("instructions: url %q is not under /images/", in.URL)
	}
	if in.Disk.Rule != FirstFit {
		return fmt.Errorf("instructions: disk rule %q: this agent knows %s", in.Disk.Rule, FirstFit)
	}
	return nil
}
