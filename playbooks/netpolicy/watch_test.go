package netpolicy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
)

// TestWatchAdmitsJoiningMachine: with the firewall applied on three tiers
// and the watcher running against a real Consul, a ready machine put into
// the ingestion tier reaches storage's port within 2s, with no operator
// action: the watcher's blocking query wakes and storage's set gains it.
func TestWatchAdmitsJoiningMachine(t *testing.T) {
	newcomer := &inventory.Machine{ID: "ing2", IP: "10.77.0.12"}
	ms := append(lanMachines(), newcomer)
	l := newLAN(t, ms...)
	agent := consuldev.T(t)
	client := agent.Client(t)
	store := inventory.New(client, inventory.Config{Who: "test"})
	ctx := context.Background()
	ids := map[string]string{}
	for i, m := range ms {
		got, _, err := store.Enlist(ctx, inventory.Sighting{Serial: "SN-" + m.ID, MACs: []string{"52:54:00:00:00:0" + string(rune('1'+i))}}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		ids[m.ID] = got.ID
		if _, err := store.Update(ctx, got.ID, inventory.Operator, inventory.Change{What: "test"}, func(x *inventory.Machine) error {
			x.IP, x.Tier = m.IP, m.Tier
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The test hosts are keyed by the inventory's IDs from here on.
	for name, id := range ids {
		h := l.hosts[name]
		h.m.ID = id
		l.hosts[id] = h
	}
	inv, err := store.List(ctx, inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPolicy(t, lanPolicy, inv)
	fw := &Firewall{Dial: l.dialer(t), Records: &Records{Client: client, Who: "test"}, ConfirmWithin: 20 * time.Second}
	c := Compile(p, inv)
	for _, m := range inv {
		if m.Tier == "" {
			continue // the newcomer runs no firewall: it only connects
		}
		if _, err := fw.Apply(ctx, m, c.Render(m), true); err != nil {
			t.Fatal(err)
		}
	}
	sto := l.hosts["sto"]
	sto.listenTCP(t, 9100)
	ing2 := l.hosts["ing2"]
	if reach(ing2.ns, "tcp", "10.77.0.21:9100") {
		t.Fatal("a machine in no tier reaches storage before it joins")
	}
	w := &Watcher{Inventory: store, Policy: p, Firewall: fw}
	servetest.Run(t, 5*time.Second, w.Serve)
	time.Sleep(500 * time.Millisecond) // the first sync (same elements) lands
	start := time.Now()
	if _, err := store.Update(ctx, ids["ing2"], inventory.Operator, inventory.Change{What: "tier"}, func(x *inventory.Machine) error {
		x.Tier = "ingestion"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(sto.table(t), "10.77.0.12") {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the joining machine is not in storage's sets 2s after the change; storage:\n%s", sto.table(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("in storage's sets %v after the inventory change", time.Since(start).Round(time.Millisecond))
	if !reachSoon(ing2.ns, "tcp", "10.77.0.21:9100") {
		t.Fatal("the joining machine is in storage's sets but not admitted")
	}
	// The rules were not reloaded: the version and the rule count stay.
	hs, err := fw.Read(ctx, sto.m)
	if err != nil || hs.Version != c.Render(sto.m).Version {
		t.Fatalf("storage runs %+v (%v)", hs, err)
	}
	if !strings.Contains(strings.Join(hs.Sets["tier_ingestion_v4"], " "), "10.77.0.12") {
		t.Errorf("storage's ingestion set: %v", hs.Sets["tier_ingestion_v4"])
	}
	// Query's rules do not name ingestion: its sets did not change beyond members.
	if reach(ing2.ns, "tcp", "10.77.0.31:22") {
		t.Error("the newcomer reaches query's SSH")
	}
}
