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
	// Rule is FirstFit or Hint.
	Rule     string `json:"rule"`
	MinBytes int64  `json:"min_bytes"`
	// Hint is the root-device hint the boot server applied (for messages);
	// Rule Hint only, as are the fields below.
	Hint string `json:"hint,omitempty"`
	// Layout is "flat" (or empty) or "mirror".
	Layout string `json:"layout,omitempty"`
	// Disks are the disks the hint chose, by the machine's recorded facts:
	// one, or two for a mirror.
	Disks []Disk `json:"disks,omitempty"`
	// Known are all the machine's disks as the record holds them, the disks
	// the hint was applied to. An agent that sees other disks (one gone,
	// added, or changed) fails the deploy as drift: the hint's answer over
	// what it sees could differ.
	Known []Disk `json:"known,omitempty"`
}

// FirstFit is the disk rule that picks the first disk in kernel name order
// (sda before sdb, vda before vdb, nvme0n1 …) that is not removable,
// read-only or a loop/ram device, and holds at least MinBytes.
const FirstFit = "first-fit"

// Hint is the disk rule that writes the disks the boot server names
// (DiskRule.Disks, chosen by a root-device hint), after checking that the
// disks the agent sees are DiskRule.Known.
const Hint = "hint"

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
	switch in.Disk.Rule {
	case FirstFit:
	case Hint:
		return in.Disk.validateHint()
	default:
		return fmt.Errorf("instructions: disk rule %q: this agent knows %s and %s", in.Disk.Rule, FirstFit, Hint)
	}
	return nil
}

// validateHint checks a Hint rule: one chosen disk (two for a mirror),
// each of them known.
func (r DiskRule) validateHint() error {
	want := 1
	switch r.Layout {
	case "", "flat":
	case "mirror":
		want = 2
	default:
		return fmt.Errorf("instructions: root layout %q: want flat or mirror", r.Layout)
	}
	if len(r.Disks) != want {
		return fmt.Errorf("instructions: root disk hint %q names %d disks, layout %s needs %d", r.Hint, len(r.Disks), r.Layout, want)
	}
	known := map[string]Disk{}
	for _, d := range r.Known {
		known[d.Name] = d
	}
	for _, d := range r.Disks {
		if k, ok := known[d.Name]; !ok || k != d {
			return fmt.Errorf("instructions: root disk %s is not among the known disks", d.Name)
		}
	}
	if r.Layout == "mirror" && r.Disks[0].Name == r.Disks[1].Name {
		return fmt.Errorf("instructions: mirror over %s twice", r.Disks[0].Name)
	}
	return nil
}
