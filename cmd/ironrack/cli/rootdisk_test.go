package cli

import (
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// TestRootDiskText: what `inventory show` prints for a deploy record's
// root disk.
func TestRootDiskText(t *testing.T) {
	for want, spec := range map[string]inventory.DeploySpec{
		"": {},
		`sdb (serial S1), flat, hint "not rotational"`: {RootDisk: "not rotational", RootDisks: []inventory.Disk{{Name: "sdb", Serial: "S1"}}},
		`sdb + sdc, mirror, hint "size_bytes < 1e12"`:  {RootDisk: "size_bytes < 1e12", RootLayout: inventory.LayoutMirror, RootDisks: []inventory.Disk{{Name: "sdb"}, {Name: "sdc"}}},
	} {
		if got := rootDiskText(&spec); got != want {
			t.Errorf("rootDiskText(%+v) = %q, want %q", spec, got, want)
		}
	}
}
