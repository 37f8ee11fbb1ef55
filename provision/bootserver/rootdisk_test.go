package bootserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// TestDeployRootDiskHint: a deploy with a root-disk hint chooses from the
// record's disks in StartDeploy's transaction (recorded in the spec and the
// history), and the agent's instructions carry the chosen disk and every
// recorded disk (wire.Hint); a hint matching nothing fails StartDeploy
// before anything is written (no spec, still allocated).
func TestDeployRootDiskHint(t *testing.T) {
	f := startDeployServer(t, "127.0.31.22:18080")
	ctx := context.Background()
	root := []byte(strings.Repeat("ironrack root image\n", 500))
	writeImage(t, f.inv.DataDir, "debian", "1", root)
	disks := []inventory.Disk{
		{Name: "sda", SizeBytes: 8 << 40, Model: "HDD", Serial: "HDD-1", Rotational: true},
		{Name: "sdb", SizeBytes: 480 << 30, Model: "SSD", Serial: "SSD-1", WWN: "naa.5000c500a1b2c3d4"},
		{Name: "sdc", SizeBytes: 960 << 30, Model: "SSD", Serial: "SSD-2"},
	}
	allocated := func(mac, serial string) string {
		m, _, err := f.store.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Commission(ctx, m.ID, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, Disks: disks, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.Claim(ctx, m.ID, "alice", "", inventory.Change{}); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	spec := inventory.DeploySpec{Image: "debian", ImageVersion: "1", Hostname: "db-1",
		SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, RootDisk: "not rotational"}

	id := allocated("52:54:00:31:00:22", "HINT-1")
	_, stored, err := f.store.StartDeploy(ctx, id, spec, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]inventory.Disk{disks[1]}, stored.RootDisks); d != "" {
		t.Errorf("chosen disks (-want +got):\n%s", d)
	}
	back, err := f.store.Deploy(ctx, id)
	if err != nil || back.RootDisk != "not rotational" || len(back.RootDisks) != 1 || back.RootDisks[0].Name != "sdb" {
		t.Errorf("stored spec: %+v, %v; want root disk sdb by hint", back, err)
	}
	h := historyLines(t, f.store, id)
	if last := h[len(h)-1]; !strings.Contains(last, `root disk sdb (flat, hint "not rotational")`) {
		t.Errorf("history's deploy entry %q does not name the root disk", last)
	}
	in, err := f.inv.DeployInstructions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.DiskRule{Rule: wire.Hint, MinBytes: int64(len(root)), Hint: "not rotational",
		Disks: []wire.Disk{{Name: "sdb", SizeBytes: 480 << 30, Model: "SSD", Serial: "SSD-1", WWN: "naa.5000c500a1b2c3d4"}},
		Known: []wire.Disk{
			{Name: "sda", SizeBytes: 8 << 40, Model: "HDD", Serial: "HDD-1", Rotational: true},
			{Name: "sdb", SizeBytes: 480 << 30, Model: "SSD", Serial: "SSD-1", WWN: "naa.5000c500a1b2c3d4"},
			{Name: "sdc", SizeBytes: 960 << 30, Model: "SSD", Serial: "SSD-2"},
		}}
	if d := cmp.Diff(want, in.Disk); d != "" {
		t.Errorf("instructions' disk rule (-want +got):\n%s", d)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("instructions do not validate: %v", err)
	}
	if b, _ := json.Marshal(in); !strings.Contains(string(b), `"rule":"hint"`) {
		t.Errorf("instructions JSON %s", b)
	}

	// No match: nothing written.
	id2 := allocated("52:54:00:31:00:23", "HINT-2")
	bad := spec
	bad.RootDisk = `serial == "NOPE"`
	_, _, err = f.store.StartDeploy(ctx, id2, bad, inventory.Change{})
	if err == nil || !strings.Contains(err.Error(), `root disk hint "serial == \"NOPE\"" matches 0`) || !strings.Contains(err.Error(), "sda (") || !strings.Contains(err.Error(), "serial SSD-2") {
		t.Errorf("no-match error %v: want the hint and every disk named", err)
	}
	if _, err := f.store.Deploy(ctx, id2); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("a failed hint left a deploy spec: %v", err)
	}
	if m, _ := f.store.Get(ctx, id2); m.State != inventory.StateAllocated {
		t.Errorf("state %s after a failed hint, want allocated", m.State)
	}
}

// TestWipeEraseLevel: a releasing machine's boot carries its release's
// erase level to the agent (ironrack.erase= on the wipe's command line).
func TestWipeEraseLevel(t *testing.T) {
	f := startDeployServer(t, "127.0.31.23:18080")
	ctx := context.Background()
	writeImage(t, f.inv.DataDir, "debian", "1", []byte("root"))
	id, _, _ := deployingMachine(t, f.store, "52:54:00:31:00:24", "ERASE-BS-1")
	if _, err := f.store.FinishDeploy(ctx, id, nil, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.StartReleaseErase(ctx, id, inventory.EraseZero, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:31:00:24")
	m, err := f.inv.MachineByMAC(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	if m.Erase != inventory.EraseZero {
		t.Errorf("erase level %q, want zero", m.Erase)
	}
	if s := ipxe.Script(m, ipxe.Env{BaseURL: f.base}); !strings.Contains(s, "ironrack.mode=wipe ") || !strings.Contains(s, " ironrack.erase=zero ") {
		t.Errorf("wipe script:\n%s", s)
	}
}
