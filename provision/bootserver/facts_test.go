package bootserver_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
)

func richFacts(mac string) *wire.Facts {
	return &wire.Facts{MACs: []string{mac, "52:54:00:cc:00:02"}, CPUs: 8, MemoryBytes: 16 * bootserver.GiB,
		Disks: []wire.Disk{{Name: "sda", SizeBytes: 480e9, Serial: "S-A", Model: "SAMSUNG MZ7LH480", Rotational: false},
			{Name: "sdb", SizeBytes: 8e12, Serial: "S-B", Model: "ST8000NM0055\x7f", Rotational: true}},
		Serial: "F-1", Vendor: "Dell Inc.", Product: "PowerEdge R740xd",
		CPUModel: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", UUID: "4C4C4544-0047-3510-8051-B4C04F4E3332", Firmware: "uefi",
		NICs: []wire.NIC{{MAC: mac, Name: "eth0", SpeedMbps: 25000, Driver: "mlx5_core"}}}
}

// TestInventoryFactsAndDrift (real Consul, through the boot server's
// adapter): a discovery report commissions the machine with every fact;
// a later report of the deployed machine that differs is drift, selectable
// with `drift`, and a matching one clears it; odd strings are dropped, not
// stored.
func TestInventoryFactsAndDrift(t *testing.T) {
	inv, st := testInventory(t)
	ctx := context.Background()
	mac, _ := net.ParseMAC("52:54:00:cc:00:01")
	m, err := inv.MachineByMAC(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID
	report := func(f *wire.Facts) {
		t.Helper()
		if err := inv.RecordReport(ctx, id, wire.Report{Kind: "facts", Facts: f}); err != nil {
			t.Fatal(err)
		}
	}
	report(richFacts(mac.String()))
	got, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := &inventory.Machine{Serial: "F-1", UUID: "4c4c4544-0047-3510-8051-b4c04f4e3332", Firmware: "uefi",
		CPUModel: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", CPUCores: 8, MemGB: 16, Model: "PowerEdge R740xd",
		Disks: []inventory.Disk{{Name: "sda", SizeBytes: 480e9, Serial: "S-A", Model: "SAMSUNG MZ7LH480"},
			{Name: "sdb", SizeBytes: 8e12, Serial: "S-B", Model: "", Rotational: true}}, // the DEL is dropped
		NICs: []inventory.NIC{{MAC: mac.String(), Name: "eth0", Primary: true, SpeedMbps: 25000, Driver: "mlx5_core"},
			{MAC: "52:54:00:cc:00:02"}},
		State: inventory.StateReady, HostKeys: []string{}, HostCerts: []string{}}
	// Vendor "Dell Inc." passes inventoryText; the comparison leaves out
	// what the record adds (ids, times, source).
	opt := cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".ID", ".Vendor", ".Source", ".CreatedAt", ".UpdatedAt", ".Tags", ".Drift", ".IP":
			return true
		}
		return false
	}, cmp.Ignore())
	if diff := cmp.Diff(want, got, opt); diff != "" {
		t.Errorf("commissioned record (-want +got):\n%s", diff)
	}

	for _, to := range []inventory.State{inventory.StateAllocated, inventory.StateDeploying, inventory.StateDeployed} {
		if _, err := st.SetState(ctx, id, to, inventory.System, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
	}
	swapped := richFacts(mac.String())
	swapped.MACs[1] = "52:54:00:cc:00:09"
	swapped.Disks = swapped.Disks[:1]
	swapped.MemoryBytes = 12 * bootserver.GiB
	report(swapped)
	got, _ = st.Get(ctx, id)
	var fields []string
	for _, d := range got.Drift {
		fields = append(fields, d.Field+"="+d.Recorded+">"+d.Reported)
	}
	wantFields := []string{"mem_gb=16>12", "disks/sdb=sdb 8000000000000 bytes serial S-B>", "nics/52:54:00:cc:00:02=52:54:00:cc:00:02>52:54:00:cc:00:09"}
	if diff := cmp.Diff(wantFields, fields); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
	if got.State != inventory.StateDeployed || got.MemGB != 16 {
		t.Errorf("drift changed state or facts: %s, %d GiB", got.State, got.MemGB)
	}
	w, _ := inventory.ParseWhere(`drift and state == "deployed"`)
	if ms, err := st.List(ctx, inventory.Query{Where: w}); err != nil || len(ms) != 1 || ms[0].ID != id {
		t.Errorf("where drift: %d machines, %v", len(ms), err)
	}
	h, _ := st.History(ctx, id)
	if last := h[len(h)-1]; last.What != "drift" || last.Who != "boot-server" || !strings.Contains(last.Why, "in state deployed") {
		t.Errorf("last history entry %+v", last)
	}

	report(richFacts(mac.String()))
	if got, _ = st.Get(ctx, id); len(got.Drift) != 0 {
		t.Errorf("matching report left drift %+v", got.Drift)
	}

	// Facts the inventory cannot take (no serial) are noted, not retried:
	// the agent's deploy or wipe goes on.
	noSerial := richFacts(mac.String())
	noSerial.Serial = ""
	report(noSerial)
	h, _ = st.History(ctx, id)
	if last := h[len(h)-1]; last.What != "facts" || !strings.Contains(last.Why, "not compared with the record: serial: is empty") {
		t.Errorf("last history entry %+v", last)
	}
}

// TestInventoryCommissionFailed (real Consul): a failed commission event
// moves a commissioning machine to failed_commissioning with the agent's
// reason in the history; in another state it is only noted; other phases
// are noted as before.
func TestInventoryCommissionFailed(t *testing.T) {
	inv, st := testInventory(t)
	ctx := context.Background()
	mac, _ := net.ParseMAC("52:54:00:cc:01:01")
	m, err := inv.MachineByMAC(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID
	event := func(phase, status, msg string) {
		t.Helper()
		if err := inv.RecordReport(ctx, id, wire.Report{Kind: "event", Event: &wire.Event{Phase: phase, Status: status, Message: msg}}); err != nil {
			t.Fatal(err)
		}
	}
	// In state new, a failed event changes nothing.
	event("commission", "failed", "disk vda: read: EIO")
	if got, _ := st.Get(ctx, id); got.State != inventory.StateNew {
		t.Fatalf("state %s after a failed event in new", got.State)
	}
	if _, err := st.SetState(ctx, id, inventory.StateCommissioning, inventory.System, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	event("commission", "started", "hardware checks")
	event("commission", "failed", "disk vda: read: EIO; link: no NIC has carrier")
	got, err := st.Get(ctx, id)
	if err != nil || got.State != inventory.StateFailedCommissioning {
		t.Fatalf("state %s, %v; want failed_commissioning", got.State, err)
	}
	h, _ := st.History(ctx, id)
	last := h[len(h)-1]
	if last.What != "agent commission" || last.From != inventory.StateCommissioning || last.To != inventory.StateFailedCommissioning ||
		last.Why != "failed: disk vda: read: EIO; link: no NIC has carrier" {
		t.Errorf("history entry %+v", last)
	}
	// Another phase is noted, state unchanged.
	event("wipe", "progress", "x")
	if got, _ := st.Get(ctx, id); got.State != inventory.StateFailedCommissioning {
		t.Errorf("state %s after a wipe event", got.State)
	}
	// A machine that failed commissioning is commissioned by a good report.
	if err := inv.RecordReport(ctx, id, wire.Report{Kind: "facts", Facts: richFacts(mac.String())}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, id); got.State != inventory.StateReady {
		t.Errorf("state %s after facts", got.State)
	}
}
