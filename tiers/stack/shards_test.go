package stack_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"
	"github.com/ironrack/ironrack/tiers/stack"
)

func TestEngineStateDeployerStorageShards(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 24, 3)
	ctx := context.Background()
	const S, R = 64, 3
	o := options(t, env, [3]int{1, 3, 1})
	o.Config[stack.Project+":storageShards"] = "64"
	o.Config[stack.Project+":storageReplicas"] = "3"
	store := placement.NewStore(env.Client, placement.StoreConfig{})
	storage := func() []*inventory.Machine { return tiertest.Owned(t, env.Store, owner("storage")) }

	steps, err := stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := step(t, steps, "storage"); s.ShardMoves == nil || *s.ShardMoves != S*R {
		t.Fatalf("create: storage step %+v", s)
	}
	old, idx, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, old, storage(), S, R)

	// 3 → 4: the preview's shardMoves are placement.Moves(old, new) for
	// the previewed machines, within the bound; nothing is written.
	o.Config[stack.Project+":storageSize"] = "4"
	steps, err = stack.Preview(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pre := step(t, steps, "storage")
	if len(pre.Add) != 1 || pre.ShardMoves == nil {
		t.Fatalf("preview 3→4: %+v", pre)
	}
	var nodes []placement.Node
	for i, id := range pre.MachineIDs {
		nodes = append(nodes, placement.Node{ID: id, Rack: pre.Racks[i]})
	}
	want, err := placement.Rebalance(old, nodes)
	if err != nil {
		t.Fatal(err)
	}
	share := float64(R*S) / 4
	moves := *pre.ShardMoves
	t.Logf("storage 3 → 4, S=%d R=%d: preview shardMoves %d (R·S/(N+1) = %.1f)", S, R, moves, share)
	if moves != placement.Moves(old, want) || moves == 0 || float64(moves) > math.Max(1.25*share, math.Ceil(share)) {
		t.Fatalf("preview shardMoves %d, placement.Moves %d, bound %.1f", moves, placement.Moves(old, want), 1.25*share)
	}
	if _, idx2, err := store.Get(ctx, "storage"); err != nil || idx2 != idx {
		t.Fatalf("the preview wrote the map: index %d → %d (%v)", idx, idx2, err)
	}
	steps, err = stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := step(t, steps, "storage"); s.ShardMoves == nil || *s.ShardMoves != moves || !cmp.Equal(s.Add, pre.Add) {
		t.Errorf("apply 3→4: %+v, previewed %d moves adding %v", s, moves, pre.Add)
	}
	m4, _, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, m4, storage(), S, R)
	if diff := cmp.Diff(want, m4); diff != "" {
		t.Errorf("stored map is not the previewed one (-preview +stored):\n%s", diff)
	}

	// 4 → 3: no shard stays on the removed machine.
	o.Config[stack.Project+":storageSize"] = "3"
	steps, err = stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	down := step(t, steps, "storage")
	if len(down.Remove) != 1 || down.ShardMoves == nil || *down.ShardMoves < m4.Load()[down.Remove[0]] {
		t.Fatalf("apply 4→3: %+v; the removed machine held %v", down, m4.Load())
	}
	m3, _, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, m3, storage(), S, R)
	if n := m3.Load()[down.Remove[0]]; n != 0 {
		t.Errorf("removed %s still holds %d replicas", down.Remove[0], n)
	}

	// Destroy removes the map.
	r, err := stack.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get(ctx, "storage"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("map after destroy: %v", err)
	}
	if got := storage(); len(got) != 0 {
		t.Errorf("storage machines after destroy: %d", len(got))
	}
}

func TestEngineStateDeployerStorageShardsRackShortfall(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 2)
	ctx := context.Background()
	o := options(t, env, [3]int{1, 4, 1})
	o.Config[stack.Project+":storageReplicas"] = "3"
	_, err := stack.Preview(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "shards.replicas") || !strings.Contains(err.Error(), "1 rack(s) short") {
		t.Fatalf("R=3 on 2 racks: %v", err)
	}
	if _, err := stack.Apply(ctx, o); err == nil {
		t.Fatal("apply of R=3 on 2 racks succeeded")
	}
	if got := tiertest.Owned(t, env.Store, owner("storage")); len(got) != 0 {
		t.Errorf("storage claimed %d machines", len(got))
	}
	if _, _, err := placement.NewStore(env.Client, placement.StoreConfig{}).Get(ctx, "storage"); err == nil {
		t.Error("a map was stored")
	}
}
