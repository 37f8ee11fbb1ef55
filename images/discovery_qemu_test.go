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
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
)

// TestDiscoveryQEMU network-boots, in internal/labtest (the real discovery
// environment built by images.Discovery — the Go agent as /init, Debian's
// kernel —, bootserver.Server and a real Consul in a namespace of the
// test's own), two machines the inventory has never seen, one by BIOS and
// one by UEFI (QEMU's iPXE ROM), and one known machine set to
// commissioning, under TCG. Each must land in Consul as ready with the -smp,
// -m, -smbios serial and uuid, -drive size QEMU was given, memory taken
// from the SMBIOS memory devices, and its CPU model, firmware, disk models
// and NIC drivers. Then the first one boots again, ready, with changed
// hardware, and the boot server flags the drift (driftAfterReady).
func TestDiscoveryQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{})
	if _, err := os.Stat(labtest.OVMFCode); err != nil {
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
		// A rotational SATA disk on AHCI and an e1000e NIC besides the
		// virtio ones: the real-hardware drivers load, in dependency order.
		{MAC: "52:54:00:50:00:01", Serial: "AGENT-BIOS-1", MemMiB: 2048, CPUs: 2, DiskGB: 3,
			UUID: "6a1c58f2-0b7e-4d1a-9f3c-2e5b8d7c4a01", SATAModel: "IRONRACK HDD", SATARPM: 7200,
			ExtraNIC: "e1000e", ExtraMAC: "52:54:00:50:10:01"},
		{MAC: "52:54:00:50:00:02", Serial: "AGENT-UEFI-2", UEFI: true, MemMiB: 1024, CPUs: 1, DiskGB: 2,
			UUID: "6a1c58f2-0b7e-4d1a-9f3c-2e5b8d7c4a02"},
		// Known and set to commissioning: it boots the agent in commission
		// mode, which runs the hardware checks (both disks read) before it
		// reports.
		{MAC: "52:54:00:50:00:03", Serial: "AGENT-COMM-3", MemMiB: 1024, CPUs: 1, DiskGB: 1, Commissioning: true,
			SATAModel: "IRONRACK SSD", SATARPM: 1},
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
	started := make([]*labtest.VM, len(vms))
	for i, v := range vms {
		started[i] = l.Start(labtest.VMSpec{MAC: v.MAC, Serial: v.Serial, UEFI: v.UEFI, MemMiB: v.MemMiB, CPUs: v.CPUs, DiskGB: v.DiskGB,
			UUID: v.UUID, SATAModel: v.SATAModel, SATARPM: v.SATARPM, ExtraNIC: v.ExtraNIC, ExtraMAC: v.ExtraMAC})
		consoles[i] = started[i].SerialLog
	}
	deadline := time.Now().Add(300 * time.Second)
	for i, v := range vms {
		m, err := waitReady(store, v.MAC, deadline)
		// The boot server commits the facts before it answers the agent,
		// so the agent's "facts reported" line may reach the console a
		// moment after the machine is ready.
		started[i].WaitConsole("ironrack-agent: facts reported", time.Now().Add(30*time.Second))
		console, _ := os.ReadFile(consoles[i])
		if err != nil {
			t.Errorf("%s: %v; console:\n%s", v.MAC, err, labtest.Tail(string(console), 30))
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
			checks := fmt.Sprintf("agent commission: done: %d checks passed", len(m.Disks)+2) // each disk, link, memory
			for _, want := range []string{"boot agent commission", "agent commission: started", checks} {
				if !strings.Contains(all, want) {
					t.Errorf("%s: history lacks %q:\n%s", v.MAC, want, all)
				}
			}
		}
		// Only the drivers for the VM's devices load, not all 46.
		var loaded, all int
		for _, line := range strings.Split(string(console), "\n") {
			if strings.Contains(line, "ironrack-agent: modules loaded") || strings.Contains(line, "ironrack-agent: load module") {
				t.Logf("%s: %s", v.MAC, strings.TrimSpace(line))
			}
			if _, rest, ok := strings.Cut(line, "ironrack-agent: modules loaded in "); ok {
				_, rest, _ = strings.Cut(rest, ": ")
				fmt.Sscanf(rest, "%d of %d", &loaded, &all)
			}
		}
		if loaded == 0 || loaded >= all {
			t.Errorf("%s: loaded %d of %d modules; want only those for the VM's devices", v.MAC, loaded, all)
		}
		for _, want := range []string{"ironrack-agent: facts reported", `"memory_source":"smbios"`} {
			if !bytes.Contains(console, []byte(want)) {
				t.Errorf("%s: console lacks %q:\n%s", v.MAC, want, labtest.Tail(string(console), 30))
			}
		}
	}
	if !t.Failed() {
		driftAfterReady(t, l, started[0], vms[0])
	}
}

// driftAfterReady boots the first machine again, now ready, with more
// memory and without its e1000e NIC: the agent in standby mode reports its
// facts, and the boot server flags both differences as drift without
// changing the machine's facts or state.
func driftAfterReady(t *testing.T, l *labtest.Lab, old *labtest.VM, v vmSpec) {
	t.Helper()
	if !old.WaitOff(time.Now().Add(60 * time.Second)) {
		t.Fatalf("%s: still running after its report", v.MAC)
	}
	spec := old.Spec
	spec.MemMiB += 1024
	spec.ExtraNIC, spec.ExtraMAC = "", ""
	vm := l.Start(spec)
	deadline := time.Now().Add(300 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := l.Store.Find(ctx, v.MAC)
		cancel()
		if err == nil && len(m.Drift) > 0 {
			var got []string
			for _, d := range m.Drift {
				got = append(got, d.Field+": "+d.Recorded+" > "+d.Reported)
			}
			t.Logf("%s drift after a standby boot:\n%s", v.MAC, strings.Join(got, "\n"))
			want := []string{fmt.Sprintf("mem_gb: %d > %d", v.MemMiB/1024, spec.MemMiB/1024), "nics/" + v.ExtraMAC + ": " + v.ExtraMAC + " > "}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: drift\n%s\nwant\n%s", v.MAC, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if m.State != inventory.StateReady || m.MemGB != v.MemMiB/1024 || len(m.NICs) != 2 {
				t.Errorf("%s: drift changed the record: state %s, mem_gb %d, nics %+v", v.MAC, m.State, m.MemGB, m.NICs)
			}
			if !l.HistoryHas(m.ID, "drift") {
				t.Errorf("%s: no drift entry in the history:\n%s", v.MAC, strings.Join(l.History(m.ID), "\n"))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no drift after a standby boot with changed hardware (%v); console:\n%s", v.MAC, err, labtest.Tail(vm.Console(), 30))
		}
		time.Sleep(time.Second)
	}
}

type vmSpec struct {
	MAC, Serial string
	UEFI        bool
	UUID        string
	// SATAModel adds an AHCI disk (sda) with SATARPM (1: solid state).
	SATAModel string
	SATARPM   int
	// ExtraNIC adds a NIC of that QEMU model with ExtraMAC.
	ExtraNIC, ExtraMAC string
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
	disks := map[string]inventory.Disk{}
	for _, d := range m.Disks {
		disks[d.Name] = d
	}
	// virtio-blk has no model in sysfs, and Linux calls it rotational.
	if d := disks["vda"]; d.SizeBytes != int64(v.DiskGB)<<30 || d.Model != "" || !d.Rotational {
		t.Errorf("%s: disk vda %+v, want %d bytes (-drive), no model, rotational; disks %+v", v.MAC, d, int64(v.DiskGB)<<30, m.Disks)
	}
	wantDisks := 1
	if v.SATAModel != "" {
		wantDisks++
		if d := disks["sda"]; d.SizeBytes != 64<<20 || d.Model != v.SATAModel || d.Rotational != (v.SATARPM != 1) {
			t.Errorf("%s: disk sda %+v, want 64 MiB, model %q, rotational %v (ide-hd rotation_rate=%d)", v.MAC, d, v.SATAModel, v.SATARPM != 1, v.SATARPM)
		}
	}
	if len(m.Disks) != wantDisks {
		t.Errorf("%s: %d disks %+v, want %d", v.MAC, len(m.Disks), m.Disks, wantDisks)
	}
	nics := map[string]inventory.NIC{}
	for _, n := range m.NICs {
		nics[n.MAC] = n
	}
	if n, ok := nics[v.MAC]; !ok || n.Driver != "virtio_net" || !n.Primary {
		t.Errorf("%s: boot NIC %+v (found %v), want primary, driver virtio_net; NICs %+v", v.MAC, n, ok, m.NICs)
	}
	if v.ExtraNIC != "" {
		if n, ok := nics[v.ExtraMAC]; !ok || n.Driver != v.ExtraNIC {
			t.Errorf("%s: NIC %s %+v (found %v), want driver %s; NICs %+v", v.MAC, v.ExtraMAC, n, ok, v.ExtraNIC, m.NICs)
		}
	}
	if m.Vendor != "QEMU" {
		t.Errorf("%s: vendor %q, want QEMU (SMBIOS type 1)", v.MAC, m.Vendor)
	}
	if m.CPUModel == "" {
		t.Errorf("%s: no cpu_model", v.MAC)
	}
	wantFW := inventory.FirmwareBIOS
	if v.UEFI {
		wantFW = inventory.FirmwareUEFI
	}
	if m.Firmware != wantFW {
		t.Errorf("%s: firmware %q, want %q", v.MAC, m.Firmware, wantFW)
	}
	if m.UUID != v.UUID {
		t.Errorf("%s: uuid %q, want %q (-smbios type=1,uuid=; none given reads as unset)", v.MAC, m.UUID, v.UUID)
	}
}

// TestCommissionFailsQEMU: a machine set to commissioning whose second disk
// fails every read (QEMU blkdebug) boots the agent in commission mode; the
// disk check fails, the agent reports only the failure, and the boot server
// moves the machine to failed_commissioning with the agent's reason in its
// history. Its facts are not applied.
func TestCommissionFailsQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{})
	ctx := context.Background()
	const mac, serial = "52:54:00:50:00:21", "AGENT-FAIL-21"
	m, _, err := l.Store.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Store.SetState(ctx, m.ID, inventory.StateCommissioning, inventory.Operator, inventory.Change{What: "state", Why: "test: commission"}); err != nil {
		t.Fatal(err)
	}
	vm := l.Start(labtest.VMSpec{MAC: mac, Serial: serial, MemMiB: 1024, CPUs: 1, DiskGB: 1, FailingDisk: true})
	got, err := l.WaitState(vm, inventory.StateFailedCommissioning, time.Now().Add(300*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	hist := strings.Join(l.History(got.ID), "\n")
	t.Logf("history:\n%s", hist)
	if !strings.Contains(hist, "agent commission: failed: disk vdb readable: ") {
		t.Errorf("history lacks the failed disk check:\n%s", hist)
	}
	if strings.Contains(hist, "disk vda readable") {
		t.Errorf("history blames the good disk:\n%s", hist)
	}
	if got.CPUCores != 0 || len(got.Disks) != 0 {
		t.Errorf("the failed machine's facts were applied: %d cores, disks %+v", got.CPUCores, got.Disks)
	}
	if !vm.WaitConsole("commissioning failed: reported", time.Now().Add(30*time.Second)) {
		t.Errorf("console lacks the agent's report:\n%s", labtest.Tail(vm.Console(), 30))
	}
}
