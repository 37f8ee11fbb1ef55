package inventory

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

const sheet3 = `rack,slot,serial,bmc_address,bmc_username,bmc_password,macs,tags,vendor,model
r1,1,S1,127.0.20.1,admin,pw1,52:54:00:00:00:01,role=db;zone=a,Dell,R650
r1,2,S2,127.0.20.2,admin,pw2,52:54:00:00:00:02,,Dell,R650
r2,1,S3,127.0.20.3,admin,pw3,52:54:00:00:00:03;52:54:00:00:01:03,role=web,HPE,DL360
`

func TestImportAndGet(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	res := mustImport(t, s, sheet3)
	if len(res.Created) != 3 || len(res.Updated) != 0 {
		t.Fatalf("first import: %+v", res)
	}
	m, err := s.Find(ctx, "S3")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != MachineID("S3") || m.Rack != "r2" || len(m.NICs) != 2 || m.Tags["role"] != "web" || m.State != StateNew {
		t.Fatalf("S3 = %+v", m)
	}
	node, _, err := c.Catalog().Node(m.ID, nil)
	if err != nil || node == nil {
		t.Fatalf("catalog node: %v %v", node, err)
	}
	if node.Node.Meta["rack"] != "r2" || node.Node.Meta["serial"] != "S3" || node.Node.Meta["state"] != "new" {
		t.Fatalf("meta = %v", node.Node.Meta)
	}
	cred, err := s.Credential(ctx, m)
	if err != nil || cred.Password != "pw3" || cred.Username != "admin" {
		t.Fatalf("credential = %v, %v", cred, err)
	}
	if m2, err := s.Find(ctx, "52:54:00:00:01:03"); err != nil || m2.ID != m.ID {
		t.Fatalf("find by MAC: %v %v", m2, err)
	}
	if _, err := s.Find(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("find nope: %v", err)
	}
	// Idempotent.
	res = mustImport(t, s, sheet3)
	if len(res.Created) != 0 || len(res.Updated) != 0 || res.Unchanged != 3 {
		t.Fatalf("re-import: %+v", res)
	}
	h, err := s.History(ctx, m.ID)
	if err != nil || len(h) != 1 {
		t.Fatalf("history after re-import = %v, %v", h, err)
	}
}

func TestFindAmbiguous(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	// A serial that reads as another machine's MAC, and one that is
	// another machine's ID.
	other := `rack,slot,serial,bmc_address,bmc_username,bmc_password
r7,1,52:54:00:00:00:02,127.0.20.7,admin,pw
r7,2,` + MachineID("S3") + `,127.0.20.8,admin,pw
`
	mustImport(t, s, other)
	for _, key := range []string{"52:54:00:00:00:02", MachineID("S3")} {
		_, err := s.Find(ctx, key)
		if !errors.Is(err, ErrAmbiguous) {
			t.Errorf("Find(%s) = %v, want ErrAmbiguous", key, err)
		}
	}
	if m, err := s.Find(ctx, MachineID("S2")); err != nil || m.Serial != "S2" {
		t.Errorf("unambiguous ID: %v %v", m, err)
	}
}

func TestEnlistMerges(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	// PXE first: only a MAC.
	m, created, err := s.Enlist(ctx, Sighting{MACs: []string{"52:54:00:aa:00:01"}}, Change{})
	if err != nil || !created || m.Source != "pxe" || m.State != StateNew || m.Rack != "" {
		t.Fatalf("enlist by MAC: %+v %v %v", m, created, err)
	}
	id := m.ID
	// The agent reports the serial: same machine.
	m, created, err = s.Enlist(ctx, Sighting{Serial: "PXE1", MACs: []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02"}}, Change{})
	if err != nil || created || m.ID != id || m.Serial != "PXE1" || len(m.NICs) != 2 {
		t.Fatalf("enlist with serial: %+v %v %v", m, created, err)
	}
	// The rack sheet fills in rack, slot and BMC by serial.
	mustImport(t, s, "rack,slot,serial,bmc_address,bmc_username,bmc_password\nr4,9,PXE1,127.0.20.40,admin,pw\n")
	m, _ = s.Find(ctx, "PXE1")
	if m.ID != id || m.Rack != "r4" || m.BMC.Address != "127.0.20.40" || m.Source != "pxe" {
		t.Fatalf("after sheet: %+v", m)
	}
	// A serial and a MAC of two different machines conflict.
	mustImport(t, s, sheet3)
	if _, _, err := s.Enlist(ctx, Sighting{Serial: "PXE1", MACs: []string{"52:54:00:00:00:01"}}, Change{}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflicting sighting: %v", err)
	}
}

// A rack sheet without the booting MAC, then a PXE boot from that MAC: the
// facts report names the sheet's serial, and the PXE-only machine is folded
// into the sheet's machine.
func TestCommissionMergesPXEMachine(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	mustImport(t, s, "rack,slot,serial,bmc_address,bmc_username,bmc_password\nr1,1,SER9,127.0.20.90,admin,pw\n")
	p, created, err := s.Enlist(ctx, Sighting{MACs: []string{"52:54:00:99:00:01"}}, Change{})
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if err := s.StoreLease(ctx, Lease{MAC: "52:54:00:99:00:01", IP: "192.0.2.50"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Commission(ctx, p.ID, Facts{Serial: "SER9", CPUCores: 4, MemGB: 8}, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != MachineID("SER9") || m.State != StateReady || !hasMAC(m, "52:54:00:99:00:01") || m.IP != "192.0.2.50" || m.Rack != "r1" {
		t.Fatalf("merged machine = %+v", m)
	}
	if _, err := s.Get(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("PXE machine still there: %v", err)
	}
	if node, _, _ := c.Catalog().Node(p.ID, nil); node != nil {
		t.Errorf("PXE machine's catalog node still there")
	}
	if f, err := s.Find(ctx, "52:54:00:99:00:01"); err != nil || f.ID != m.ID {
		t.Errorf("MAC now finds %v, %v", f, err)
	}
	h, _ := s.History(ctx, m.ID)
	found := false
	for _, e := range h {
		found = found || e.What == "merge"
	}
	if !found {
		t.Errorf("no merge in history: %+v", h)
	}
	// Enlist takes the same path: serial of one machine, MAC of a PXE-only one.
	p2, _, _ := s.Enlist(ctx, Sighting{MACs: []string{"52:54:00:99:00:02"}}, Change{})
	got, created, err := s.Enlist(ctx, Sighting{Serial: "SER9", MACs: []string{"52:54:00:99:00:02"}}, Change{})
	if err != nil || created || got.ID != m.ID || !hasMAC(got, "52:54:00:99:00:02") {
		t.Fatalf("enlist merge: %+v %v %v", got, created, err)
	}
	if _, err := s.Get(ctx, p2.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second PXE machine still there")
	}
}

// TestScanTimeout: a query's catalog read (every machine's node when no
// key index narrows it) and the list of every record are bounded by
// ScanTimeout, not OpTimeout, and their failure says which deadline ran out.
func TestScanTimeout(t *testing.T) {
	_, c := testStore(t)
	fast := New(c, Config{Who: "test", OpTimeout: time.Nanosecond, ScanTimeout: time.Minute})
	if fast.cfg.ScanTimeout != time.Minute {
		t.Fatalf("ScanTimeout %v", fast.cfg.ScanTimeout)
	}
	if d := New(c, Config{OpTimeout: 3 * time.Second}).cfg.ScanTimeout; d != 18*time.Second {
		t.Errorf("default ScanTimeout with a 3s OpTimeout: %v, want 18s", d)
	}
	w, err := ParseWhere(`vendor == "Dell"`)
	if err != nil {
		t.Fatal(err)
	}
	// OpTimeout of 1ns does not touch the catalog read (no machines: no
	// record read follows).
	if _, err := fast.candidates(context.Background(), Query{Where: w}); err != nil {
		t.Fatalf("catalog read under a 1ns OpTimeout and a 1m ScanTimeout: %v", err)
	}
	slow := New(c, Config{Who: "test", ScanTimeout: time.Nanosecond})
	_, err = slow.List(context.Background(), Query{Where: w})
	if err == nil || !strings.Contains(err.Error(), "read catalog: no complete answer within 1ns (the store's ScanTimeout") {
		t.Fatalf("List under a 1ns ScanTimeout: %v", err)
	}
	// The list of every record (no where, no index) is a scan too.
	if _, err := slow.List(context.Background(), Query{}); err == nil || !strings.Contains(err.Error(), "read machines: no complete answer within 1ns (the store's ScanTimeout") {
		t.Fatalf("List of everything under a 1ns ScanTimeout: %v", err)
	}
	if _, err := fast.List(context.Background(), Query{}); err != nil {
		t.Fatalf("List of everything under a 1ns OpTimeout and a 1m ScanTimeout: %v", err)
	}
}
