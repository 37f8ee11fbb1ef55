package bootserver_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/ipxe"
)

func testInventory(t *testing.T) (*bootserver.Backend, *inventory.Store) {
	t.Helper()
	agent := consuldev.T(t)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	// The boot server's key file opens what the CLI sealed (the cluster's
	// agent secrets).
	st := inventory.New(c, inventory.Config{Who: "test", Sealer: inventory.NewSealer([32]byte{7})})
	return &bootserver.Backend{Store: st, DataDir: t.TempDir()}, st
}

// TestInventoryLeases stores 300 leases from 300 goroutines at once (group
// commits), one of them a machine's, and reads them back: every lease is
// in Consul when StoreLease returns, the machine's ip follows its lease,
// and the machine's address is then its reservation.
func TestInventoryLeases(t *testing.T) {
	inv, st := testInventory(t)
	ctx := context.Background()
	m, _, err := st.Enlist(ctx, inventory.Sighting{MACs: []string{"52:54:00:00:00:07"}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac, _ := net.ParseMAC(fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256))
			ip := netip.AddrFrom4([4]byte{192, 0, 2, 0}).Next()
			for range i {
				ip = ip.Next()
			}
			if err := inv.StoreLease(ctx, dhcp.Lease{MAC: mac, IP: ip, Expires: time.Now().Add(time.Hour)}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ls, err := inv.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 300 {
		t.Fatalf("%d leases stored, want 300", len(ls))
	}
	got, err := st.Get(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.IP != "192.0.2.8" {
		t.Errorf("machine ip %q, want its lease's 192.0.2.8", got.IP)
	}
	mac, _ := net.ParseMAC("52:54:00:00:00:07")
	if ip, err := inv.Reservation(ctx, mac); err != nil || ip != netip.MustParseAddr("192.0.2.8") {
		t.Errorf("reservation %v, %v; want 192.0.2.8", ip, err)
	}
	other, _ := net.ParseMAC("52:54:00:00:00:08")
	if ip, err := inv.Reservation(ctx, other); err != nil || ip.IsValid() {
		t.Errorf("reservation of a MAC without machine: %v, %v; want none", ip, err)
	}
}

// TestInventoryBootFlow: an unknown MAC is enlisted when its script is
// asked for and gets a token; the token verifies to the machine, a wrong
// one does not; facts commission it (mem rounded up to whole GiB); events
// and boots land in its history.
func TestInventoryBootFlow(t *testing.T) {
	inv, st := testInventory(t)
	ctx := context.Background()
	mac, _ := net.ParseMAC("52:54:00:aa:bb:01")
	m, err := inv.MachineByMAC(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != ipxe.StateNew || m.ID == "" || m.Token == "" {
		t.Fatalf("script view %+v: want a new machine with a token", m)
	}
	if err := inv.RecordBoot(ctx, m, ipxe.Decide(m)); err != nil {
		t.Fatal(err)
	}
	id, ok, err := inv.VerifyBootToken(ctx, m.Token)
	if err != nil || !ok || id != m.ID {
		t.Fatalf("verify token: %q %v %v", id, ok, err)
	}
	if _, ok, err := inv.VerifyBootToken(ctx, m.ID+".000000000000000000000000000000000000000000000000"); ok || err != nil {
		t.Errorf("a wrong token verified (%v, %v)", ok, err)
	}
	if err := inv.RecordReport(ctx, id, wire.Report{Kind: "event", Event: &wire.Event{Phase: "commission", Status: "started"}}); err != nil {
		t.Fatal(err)
	}
	f := &wire.Facts{MACs: []string{mac.String(), "52:54:00:aa:bb:02"}, CPUs: 4, MemoryBytes: 2*bootserver.GiB - 50<<20,
		Disks: []wire.Disk{{Name: "vda", SizeBytes: 8 << 30}}, Serial: "S-1", Vendor: "QEMU", Product: "Standard PC (i440FX)"}
	if err := inv.RecordReport(ctx, id, wire.Report{Kind: "facts", Facts: f}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != inventory.StateReady || got.Serial != "S-1" || got.CPUCores != 4 || got.MemGB != 2 || len(got.NICs) != 2 || got.Vendor != "QEMU" || got.Model != "" {
		t.Errorf("after facts: %+v", got)
	}
	h, err := st.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var whats []string
	for _, e := range h {
		whats = append(whats, e.What)
	}
	want := map[string]bool{"enlist": false, "boot agent discover": false, "agent commission": false, "commission": false}
	for _, w := range whats {
		if _, ok := want[w]; ok {
			want[w] = true
		}
	}
	for w, seen := range want {
		if !seen {
			t.Errorf("history lacks %q: %q", w, whats)
		}
	}
	// Ready now: standby gets a token; after deploy, no token and the OS.
	m, err = inv.MachineByMAC(ctx, mac)
	if err != nil || m.State != ipxe.StateReady || m.Token == "" {
		t.Errorf("ready machine's script view %+v, %v", m, err)
	}
}

// TestInventoryLeaseAfterEnlist: a DISCOVER's reservation lookup finds no
// machine (and StoreLease may then skip the MAC index read), but a MAC
// enlisted by this server in between is a machine's again: its lease is
// recorded as the machine's ip. A MAC nobody has keeps a plain lease.
func TestInventoryLeaseAfterEnlist(t *testing.T) {
	inv, st := testInventory(t)
	ctx := context.Background()
	pxe, _ := net.ParseMAC("52:54:00:00:10:01")
	plain, _ := net.ParseMAC("52:54:00:00:10:02")
	for _, mac := range []net.HardwareAddr{pxe, plain} {
		if ip, err := inv.Reservation(ctx, mac); err != nil || ip.IsValid() {
			t.Fatalf("reservation of unknown %s: %v %v", mac, ip, err)
		}
	}
	if err := inv.EnlistPXE(ctx, pxe); err != nil {
		t.Fatal(err)
	}
	for i, mac := range []net.HardwareAddr{pxe, plain} {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(50 + i)})
		if err := inv.StoreLease(ctx, dhcp.Lease{MAC: mac, IP: ip, Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := st.Find(ctx, pxe.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.IP != "192.0.2.50" {
		t.Errorf("enlisted machine's ip %q, want its lease's 192.0.2.50", m.IP)
	}
	ls, err := inv.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range ls {
		got[l.MAC.String()] = l.IP.String()
	}
	if got[pxe.String()] != "192.0.2.50" || got[plain.String()] != "192.0.2.51" {
		t.Errorf("leases %v", got)
	}
}
