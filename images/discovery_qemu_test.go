package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/lab"
	"github.com/ironrack/ironrack/inventory"
)

// TestDiscoveryQEMU network-boots, in internal/lab (the real discovery
// environment built by images.Discovery — the Go agent as /init, Debian's
// kernel —, provision.BootServer and a real Consul in a namespace of the
// test's own), two machines the inventory has never seen, one by BIOS and
// one by UEFI (QEMU's iPXE ROM), and one known machine set to
// commissioning, under TCG. Each must land in Consul as ready with the -smp,
// -m, -smbios serial and -drive size QEMU was given, memory taken from the
// SMBIOS memory devices.
func TestDiscoveryQEMU(t *testing.T) {
	l := lab.New(t, lab.Config{})
	if _, err := os.Stat(lab.OVMFCode); err != nil {
		t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
	}
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(l.Discovery, images.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var man images.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	if man.Name != images.AgentImage || filepath.Base(l.Discovery) != man.Version {
		t.Fatalf("lab's discovery image %s has manifest %s/%s", l.Discovery, man.Name, man.Version)
	}
	t.Logf("built agent/%s", man.Version)
	store := l.Store

	vms := []vmSpec{
		{MAC: "52:54:00:50:00:01", Serial: "AGENT-BIOS-1", MemMiB: 2048, CPUs: 2, DiskGB: 3},
		{MAC: "52:54:00:50:00:02", Serial: "AGENT-UEFI-2", UEFI: true, MemMiB: 1024, CPUs: 1, DiskGB: 2},
		// Known and set to commissioning: it boots the agent in commission
		// mode, which runs the hardware checks before it reports.
		{MAC: "52:54:00:50:00:03", Serial: "AGENT-COMM-3", MemMiB: 1024, CPUs: 1, DiskGB: 1, Commissioning: true},
	}
	for _, v := range vms {
		if !v.Commissioning {
			continue
		}
		m, _, err := store.Enlist(ctx, inventory.Sighting{Serial: v.Serial, MACs: []string{v.MAC}, Source: "pxe"}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.SetState(ctx, m.ID, inventory.StateCommissioning, inventory.Operator, inventory.Change{What: "state", Why: "test: commission"}); err != nil {
			t.Fatal(err)
		}
	}
	consoles := make([]string, len(vms))
	for i, v := range vms {
		consoles[i] = l.Start(lab.VMSpec{MAC: v.MAC, Serial: v.Serial, UEFI: v.UEFI, MemMiB: v.MemMiB, CPUs: v.CPUs, DiskGB: v.DiskGB}).SerialLog
	}
	deadline := time.Now().Add(300 * time.Second)
	for i, v := range vms {
		m, err := waitReady(store, v.MAC, deadline)
		console, _ := os.ReadFile(consoles[i])
		if err != nil {
			t.Errorf("%s: %v; console:\n%s", v.MAC, err, lab.Tail(string(console), 30))
			continue
		}
		checkFacts(t, v, m)
		if v.Commissioning {
			hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := store.History(hctx, m.ID)
			hcancel()
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, e := range h {
				lines = append(lines, e.What+": "+e.Why)
			}
			all := strings.Join(lines, "\n")
			t.Logf("%s history:\n%s", v.MAC, all)
			for _, want := range []string{"boot agent commission", "agent commission: started", "agent commission: done: 3 checks passed"} {
				if !strings.Contains(all, want) {
					t.Errorf("%s: history lacks %q:\n%s", v.MAC, want, all)
				}
			}
		}
		for _, want := range []string{"ironrack-agent: facts reported", `"memory_source":"smbios"`} {
			if !bytes.Contains(console, []byte(want)) {
				t.Errorf("%s: console lacks %q:\n%s", v.MAC, want, lab.Tail(string(console), 30))
			}
		}
		want := "bios"
		if v.UEFI {
			want = "uefi"
		}
		if !bytes.Contains(console, []byte(`"firmware":"`+want+`"`)) {
			t.Errorf("%s: console's facts lack firmware %s:\n%s", v.MAC, want, lab.Tail(string(console), 30))
		}
	}
}

type vmSpec struct {
	MAC, Serial string
	UEFI        bool
	// Commissioning: the machine is enlisted and set to commissioning first.
	Commissioning bool
	MemMiB        int
	CPUs          int
	DiskGB        int
}

// waitReady polls the inventory (bounded by deadline) until the machine
// with mac is ready.
func waitReady(store *inventory.Store, mac string, deadline time.Time) (*inventory.Machine, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := store.Find(ctx, mac)
		cancel()
		if err == nil && m.State == inventory.StateReady {
			return m, nil
		}
		if time.Now().After(deadline) {
			state := "not enlisted"
			if m != nil {
				state = string(m.State)
			} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
				state = err.Error()
			}
			return nil, fmt.Errorf("still %s, want ready", state)
		}
		time.Sleep(time.Second)
	}
}

func checkFacts(t *testing.T, v vmSpec, m *inventory.Machine) {
	t.Helper()
	if m.Serial != v.Serial {
		t.Errorf("%s: serial %q, want %q (-smbios)", v.MAC, m.Serial, v.Serial)
	}
	if m.CPUCores != v.CPUs {
		t.Errorf("%s: cpu_cores %d, want %d (-smp)", v.MAC, m.CPUCores, v.CPUs)
	}
	if m.MemGB != v.MemMiB/1024 {
		t.Errorf("%s: mem_gb %d, want %d (-m %d)", v.MAC, m.MemGB, v.MemMiB/1024, v.MemMiB)
	}
	var disk int64
	for _, d := range m.Disks {
		if d.Name == "vda" {
			disk = d.SizeBytes
		}
	}
	if disk != int64(v.DiskGB)<<30 {
		t.Errorf("%s: disk vda %d bytes, want %d (-drive); disks %+v", v.MAC, disk, int64(v.DiskGB)<<30, m.Disks)
	}
	found := false
	for _, n := range m.NICs {
		found = found || n.MAC == v.MAC
	}
	if !found {
		t.Errorf("%s: not among the machine's NICs %+v", v.MAC, m.NICs)
	}
	if m.Vendor != "QEMU" {
		t.Errorf("%s: vendor %q, want QEMU (SMBIOS type 1)", v.MAC, m.Vendor)
	}
}

