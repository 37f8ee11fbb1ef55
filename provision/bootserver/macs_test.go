package bootserver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// TestMACReplica: with the replica running, a MAC no machine has is known
// as such without a read; a MAC another writer gives a machine is seen
// within moments; a MAC this server enlists counts as owned at once, so its
// lease becomes the machine's ip; and without Consul the replica forgets,
// so lookups fall back to reading.
func TestMACReplica(t *testing.T) {
	agent := consuldev.T(t)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	st := inventory.New(c, inventory.Config{Who: "test"})
	inv := &Backend{Store: st, DataDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	inv.init() // the test reads inv.macs while the replica serves
	go func() { done <- inv.ServeMACReplica(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("replica Serve: %v", err)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stranger := "52:54:00:00:20:01"
	waitFor("the first read", func() bool { _, known := inv.macs.owned(stranger); return known })
	if owned, _ := inv.macs.owned(stranger); owned {
		t.Fatal("an unknown MAC counts as owned")
	}

	// Another writer (an import, another boot server) adds a machine.
	other := "52:54:00:00:20:02"
	if _, _, err := st.Enlist(ctx, inventory.Sighting{MACs: []string{other}, Source: "pxe"}, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the replica to see "+other, func() bool { owned, _ := inv.macs.owned(other); return owned })

	// This server enlists a MAC it had just looked up: owned at once, and
	// its lease is recorded on the machine.
	pxe, _ := net.ParseMAC("52:54:00:00:20:03")
	if ip, err := inv.Reservation(ctx, pxe); err != nil || ip.IsValid() {
		t.Fatalf("reservation of unknown %s: %v %v", pxe, ip, err)
	}
	if err := inv.EnlistPXE(ctx, pxe); err != nil {
		t.Fatal(err)
	}
	if owned, known := inv.macs.owned(pxe.String()); !owned || !known {
		t.Fatalf("enlisted MAC: owned %v known %v", owned, known)
	}
	ip := netip.MustParseAddr("192.0.2.70")
	if err := inv.StoreLease(ctx, dhcp.Lease{MAC: pxe, IP: ip, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	m, err := st.Find(ctx, pxe.String())
	if err != nil || m.IP != ip.String() {
		t.Fatalf("enlisted machine: %+v %v; want ip %s", m, err, ip)
	}
	if got, err := inv.Reservation(ctx, pxe); err != nil || got != ip {
		t.Errorf("reservation of the enlisted machine: %v %v; want %s", got, err, ip)
	}

	// Consul goes away: the replica forgets and lookups read (and fail).
	agent.Stop()
	waitFor("the replica to forget", func() bool { _, known := inv.macs.owned(stranger); return !known })
	if _, err := inv.Reservation(ctx, net.HardwareAddr{0x52, 0x54, 0, 0, 0x20, 0x09}); err == nil {
		t.Error("a lookup without Consul and without a replica succeeded")
	}
}
