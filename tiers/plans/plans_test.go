package plans

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/capacity"
	"github.com/ironrack/ironrack/tiers/placement"
)

func TestSaveLatestAndShardMoves(t *testing.T) {
	client := consuldev.T(t).Client(t)
	ctx := context.Background()
	inv := inventory.New(client, inventory.Config{Sealer: inventory.NewSealer([32]byte{5}), Who: "test"})
	rows, err := inventory.ParseSheet("s.csv", strings.NewReader("rack,slot,serial,bmc_address,bmc_username,bmc_password\n"+
		"r1,1,P1,127.0.53.1,a,pw\nr2,1,P2,127.0.53.2,a,pw\nr3,1,P3,127.0.53.3,a,pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Import(ctx, "s.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	ms, err := inv.List(ctx, inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	shards := placement.NewStore(client, placement.StoreConfig{})
	plan := &capacity.Plan{Tiers: []capacity.TierPlan{{Tier: capacity.Storage, Current: 2, Target: 3, Add: 1, Machines: []string{ms[2].ID}}}}

	if n, note, err := ShardMoves(ctx, shards, inv, plan); err != nil || n != 0 || !strings.Contains(note, "no shard map yet") {
		t.Errorf("no map: %d %q %v", n, note, err)
	}
	nodes := []placement.Node{{ID: ms[0].ID, Rack: ms[0].Rack}, {ID: ms[1].ID, Rack: ms[1].Rack}}
	old, err := placement.Place(32, 2, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if err := shards.Put(ctx, capacity.Storage, old, 0); err != nil {
		t.Fatal(err)
	}
	want, err := placement.Rebalance(old, append(nodes, placement.Node{ID: ms[2].ID, Rack: ms[2].Rack}))
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := ShardMoves(ctx, shards, inv, plan)
	if err != nil || n != placement.Moves(old, want) || n == 0 {
		t.Errorf("step up: %d moves (%v), want %d", n, err, placement.Moves(old, want))
	}
	plan.Tiers[0] = capacity.TierPlan{Tier: capacity.Storage, Current: 2, Target: 1, Remove: 1}
	if n, _, err := ShardMoves(ctx, shards, inv, plan); err != nil || n != -1 {
		t.Errorf("step down: %d %v, want -1 (left to scale preview)", n, err)
	}

	st := NewStore(client, "")
	if r, err := st.Latest(ctx); err != nil || r != nil {
		t.Fatalf("Latest before any Save: %v %v", r, err)
	}
	if err := st.Save(ctx, Record{At: time.Now(), Stack: "prod", Plan: *plan, ShardMoves: -1}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Latest(ctx); err != nil || r == nil || r.Stack != "prod" || r.Plan.Tiers[0].Remove != 1 {
		t.Errorf("Latest: %+v %v", r, err)
	}
}
