package capacity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
)

// exampleStore imports docs/examples/rack-sheet.csv into a real Consul
// dev agent and commissions the machines with docs/examples/facts.json:
// 40 ready machines in racks r1 and r2 (per rack 8 storage, 8 compute, 4
// edge).
func exampleStore(t *testing.T) *inventory.Store {
	t.Helper()
	c := consuldev.TWith(t, consuldev.Options{Bind: "127.0.35.2"}).Client(t)
	var key [32]byte
	s := inventory.New(c, inventory.Config{Sealer: inventory.NewSealer(key), Who: "test"})
	ctx := context.Background()
	dir := filepath.Join("..", "..", "docs", "examples")
	f, err := os.Open(filepath.Join(dir, "rack-sheet.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := inventory.ParseSheet("rack-sheet.csv", f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "rack-sheet.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	ff, err := os.Open(filepath.Join(dir, "facts.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	facts, err := inventory.ParseFactsFile("facts.json", ff)
	if err != nil {
		t.Fatal(err)
	}
	for _, fa := range facts {
		m, err := s.Find(ctx, fa.Serial)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commission(ctx, m.ID, fa, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestReadPoolFromInventory reads the ready pool per class of the default
// model through inventory.Store, then plans against it: the default model's
// replication factor 3 needs three racks and the example has two, so the
// plan is refused naming that; a claimed machine leaves the pool.
func TestReadPoolFromInventory(t *testing.T) {
	s := exampleStore(t)
	ctx := context.Background()
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := ReadPool(ctx, s, m)
	if err != nil {
		t.Fatal(err)
	}
	for class, want := range map[string]int{"storage-dense": 16, "compute": 16, "edge": 8} {
		racks := map[string]int{}
		for _, c := range pool[class] {
			racks[c.Rack]++
		}
		if len(pool[class]) != want || racks["r1"] != want/2 || racks["r2"] != want/2 {
			t.Errorf("class %s: %d ready %v, want %d over r1 and r2", class, len(pool[class]), racks, want)
		}
	}
	in := Input{EventsPerSec: 50000, RetentionDays: 7, BytesPerEvent: 200, QueriesPerSec: 100, Headroom: DefaultHeadroom}
	_, err = m.Plan(in, nil, pool)
	if err == nil || !strings.Contains(err.Error(), "class storage-dense (mem_gb >= 256 and cpu_cores >= 32 and len(disks) >= 6): storage needs its 3 replicas on 3 racks, ready machines span 2 (r1, r2): 1 rack(s) short") {
		t.Fatalf("plan on two racks with R=3: %v", err)
	}

	// With R=2 it fits: ingestion 50000·1.3/100000 → 1 compute; storage
	// 50000·200·86400·7·2·1.3 = 1.57e13 bytes / 3.6e13 → 2 (the minimum R);
	// query 130/200 → 1 compute.
	m.ReplicationFactor = 2
	p, err := m.Plan(in, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tp := range p.Tiers {
		got[tp.Tier] = tp.Class
		if tp.Add != tp.Target {
			t.Errorf("%s: add %d, target %d", tp.Tier, tp.Add, tp.Target)
		}
	}
	if got[Ingestion] != "compute" || got[Storage] != "storage-dense" || got[Query] != "compute" || p.Tiers[1].Target != 2 {
		t.Errorf("plan: %+v", p.Tiers)
	}

	// A claimed machine is no longer ready.
	w, _ := inventory.ParseWhere(m.Class("edge").Where)
	if _, err := s.Allocate(ctx, inventory.AllocateRequest{Count: 3, Where: w, Owner: "test"}); err != nil {
		t.Fatal(err)
	}
	pool, err = ReadPool(ctx, s, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(pool["edge"]) != 5 {
		t.Errorf("edge after claiming 3: %d ready, want 5", len(pool["edge"]))
	}
}
