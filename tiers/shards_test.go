package tiers_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/placement"
)

func TestSpecValidateShards(t *testing.T) {
	for name, tc := range map[string]struct {
		size   int
		shards *tiers.Shards
		want   []string
	}{
		"unsharded":          {size: 0},
		"ok":                 {size: 3, shards: &tiers.Shards{Count: 256, Replicas: 3}},
		"no shards":          {size: 3, shards: &tiers.Shards{Count: 0, Replicas: 1}, want: []string{"shards.count: 0 is out of range (1 to 4096)"}},
		"too many shards":    {size: 3, shards: &tiers.Shards{Count: 5000, Replicas: 1}, want: []string{"shards.count: 5000 is out of range (1 to 4096)"}},
		"no replicas":        {size: 3, shards: &tiers.Shards{Count: 8, Replicas: -1}, want: []string{"shards.replicas: -1 is out of range (0 for the default, 1 to 16)"}},
		"default replicas":   {size: 1, shards: &tiers.Shards{Count: 8}},
		"size 0":             {size: 0, shards: &tiers.Shards{Count: 8, Replicas: 3}},
		"replicas over size": {size: 2, shards: &tiers.Shards{Count: 8, Replicas: 3}, want: []string{"shards.replicas: 3 replicas need 3 machines in 3 racks, the tier's size is 2"}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, fe := range (tiers.Spec{Name: "storage", Size: tc.size, Shards: tc.shards}).Validate() {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// journal records, in order, what the deployer and the shard store did.
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, fmt.Sprintf(format, args...))
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.log
	j.log = nil
	return out
}

type loggedDeployer struct {
	tiers.Deployer
	j *journal
}

func (d loggedDeployer) Deploy(ctx context.Context, ms []*inventory.Machine, spec tiers.Spec) ([]*inventory.Machine, error) {
	d.j.add("deploy %d", len(ms))
	return d.Deployer.Deploy(ctx, ms, spec)
}

func (d loggedDeployer) Release(ctx context.Context, ms []*inventory.Machine, spec tiers.Spec) error {
	d.j.add("release %d", len(ms))
	return d.Deployer.Release(ctx, ms, spec)
}

type loggedShards struct {
	*placement.Store
	j *journal
}

func (s loggedShards) Update(ctx context.Context, tier string, shards, replicas int, nodes []placement.Node) (placement.Step, error) {
	st, err := s.Store.Update(ctx, tier, shards, replicas, nodes)
	s.j.add("shards %d nodes", len(nodes))
	return st, err
}

func TestTierStateDeployerShardsStepUpDownDestroy(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 3)
	ctx := context.Background()
	j := &journal{}
	r := reconciler(env)
	r.Deployer = loggedDeployer{Deployer: r.Deployer, j: j}
	store := placement.NewStore(env.Client, placement.StoreConfig{})
	r.Shards = loggedShards{Store: store, j: j}
	const S, R = 64, 3
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::storage"
	spec := tiers.Spec{Name: "storage", Size: 4, Spread: "rack", Services: []inventory.DeployService{{Name: "storage", Port: 9100}},
		Shards: &tiers.Shards{Count: S, Replicas: R}}

	step, ms, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if step.Shards == nil || step.Shards.Moves != S*R {
		t.Fatalf("first map: step %+v", step.Shards)
	}
	if diff := cmp.Diff([]string{"deploy 4", "shards 4 nodes"}, j.take()); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	old, idx, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, old, ms, S, R)

	// Step up 4 → 5: the preview's moves are placement.Moves(old, new),
	// within the bound, and nothing is written.
	spec.Size = 5
	plan, err := r.Plan(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Shards == nil {
		t.Fatal("plan of a sharded tier has no shard step")
	}
	moves := plan.Shards.Moves
	share := float64(R*S) / 5
	if want := placement.Moves(old, plan.Shards.New); moves != want || moves == 0 || float64(moves) > math.Max(1.25*share, math.Ceil(share)) {
		t.Fatalf("preview 4→5 moves %d (placement.Moves %d, fair share %.1f)", moves, want, share)
	}
	t.Logf("4 → 5 machines, S=%d R=%d: preview moves %d replicas (fair share R·S/5 = %.1f)", S, R, moves, share)
	if _, idx2, err := store.Get(ctx, "storage"); err != nil || idx2 != idx {
		t.Fatalf("preview wrote the map: index %d → %d (%v)", idx, idx2, err)
	}
	step, ms5, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"deploy 1", "shards 5 nodes"}, j.take()); diff != "" {
		t.Errorf("order: the map must be written after the deploy (-want +got):\n%s", diff)
	}
	m5, _, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, m5, ms5, S, R)
	if diff := cmp.Diff(plan.Shards.New, m5); diff != "" || step.Shards.Moves != moves {
		t.Errorf("stored map differs from the preview's (moves %d, previewed %d):\n%s", step.Shards.Moves, moves, diff)
	}

	// Step down 5 → 3: the map moves off the removed machines before they
	// are released (wiped).
	spec.Size = 3
	step, ms3, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"shards 3 nodes", "release 2"}, j.take()[:2]); diff != "" {
		t.Errorf("order: the map must be written before the release (-want +got):\n%s", diff)
	}
	m3, _, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}
	tiertest.CheckShards(t, m3, ms3, S, R)
	removed := map[string]bool{}
	for _, m := range step.Remove {
		removed[m.ID] = true
	}
	held := m5.Load()
	want := 0
	for id := range removed {
		want += held[id]
	}
	if step.Shards == nil || step.Shards.Moves < want {
		t.Errorf("5→3 moved %+v, the removed machines held %d", step.Shards, want)
	}

	// Destroy removes the map.
	if err := r.Destroy(ctx, owner, spec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get(ctx, "storage"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("map after destroy: %v", err)
	}
}

func TestTierShardsRackShortfallRefusedNothingClaimed(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 3)
	ctx := context.Background()
	r := reconciler(env)
	r.Shards = placement.NewStore(env.Client, placement.StoreConfig{})
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::storage"
	spec := tiers.Spec{Name: "storage", Size: 4, Spread: "rack", Selector: `rack != "r3"`,
		Shards: &tiers.Shards{Count: 16, Replicas: 3}}
	for name, run := range map[string]func() error{
		"plan":  func() error { _, err := r.Plan(ctx, owner, spec); return err },
		"apply": func() error { _, _, err := r.Apply(ctx, owner, spec); return err },
	} {
		err := run()
		if err == nil || !strings.Contains(err.Error(), "tier storage: shards.replicas: the tier's 4 machines after the step") ||
			!strings.Contains(err.Error(), "span 2 (r1, r2): 1 rack(s) short") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := tiertest.Owned(t, env.Store, owner); len(got) != 0 {
		t.Errorf("claimed %v", ids(got))
	}
}

// shardedStorage applies a 3-machine storage tier of `count` shards ×
// `replicas` over 6 ready machines in 3 racks, with a real shard store.
func shardedStorage(t *testing.T, count, replicas int) (*tiers.Reconciler, *placement.Store, string, tiers.Spec) {
	t.Helper()
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 6, 3)
	r := reconciler(env)
	store := placement.NewStore(env.Client, placement.StoreConfig{})
	r.Shards = store
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::storage"
	spec := tiers.Spec{Name: "storage", Size: 3, Spread: "rack", Shards: &tiers.Shards{Count: count, Replicas: replicas}}
	if _, _, err := r.Apply(context.Background(), owner, spec); err != nil {
		t.Fatal(err)
	}
	return r, store, owner, spec
}

func TestTierStateDeployerShardsStepToZeroDeletesMap(t *testing.T) {
	ctx := context.Background()
	r, store, owner, spec := shardedStorage(t, 32, 3)
	if _, _, err := store.Get(ctx, "storage"); err != nil {
		t.Fatal(err)
	}
	spec.Size = 0
	if _, _, err := r.Apply(ctx, owner, spec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get(ctx, "storage"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("map of a tier stepped to 0: %v", err)
	}
}

func TestTierStateDeployerShardsDefaultReplicasKept(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 3)
	ctx := context.Background()
	r := reconciler(env)
	store := placement.NewStore(env.Client, placement.StoreConfig{})
	r.Shards = store
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::storage"
	// Two machines span two racks: the first map gets R = 2, and keeps it
	// when a third rack joins.
	spec := tiers.Spec{Name: "storage", Size: 2, Spread: "rack", Shards: &tiers.Shards{Count: 32}}
	for _, size := range []int{2, 3, 6} {
		spec.Size = size
		_, ms, err := r.Apply(ctx, owner, spec)
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := store.Get(ctx, "storage")
		if err != nil {
			t.Fatal(err)
		}
		tiertest.CheckShards(t, m, ms, 32, 2)
	}
}

// TestTierUnshardRemovesMap: a tier whose shards are removed keeps its
// machines and loses its map; the preview says so and writes nothing.
func TestTierUnshardRemovesMap(t *testing.T) {
	ctx := context.Background()
	r, store, owner, spec := shardedStorage(t, 8, 2)
	old, idx, err := store.Get(ctx, "storage")
	if err != nil {
		t.Fatal(err)
	}

	spec.Shards = nil
	plan, err := r.Plan(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Shards == nil || !plan.Shards.Removed || plan.Shards.Old == nil || len(plan.Shards.Old.Shards) != 8 {
		t.Fatalf("preview of unsharding: step %+v, want the old map removed", plan.Shards)
	}
	if _, idx2, err := store.Get(ctx, "storage"); err != nil || idx2 != idx {
		t.Fatalf("preview touched the map: index %d → %d (%v)", idx, idx2, err)
	}
	step, ms, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || len(step.Add)+len(step.Remove) != 0 {
		t.Errorf("unsharding changed the machines: %d kept, +%d -%d", len(ms), len(step.Add), len(step.Remove))
	}
	if step.Shards == nil || !step.Shards.Removed {
		t.Errorf("apply's step %+v, want the map removed", step.Shards)
	}
	if _, _, err := store.Get(ctx, "storage"); !errors.Is(err, placement.ErrNotFound) {
		t.Fatalf("map after unsharding: %v (old had %d shards), want none", err, len(old.Shards))
	}
	// Once gone, a plan of the unsharded tier has no shard step at all.
	if plan, err := r.Plan(ctx, owner, spec); err != nil || plan.Shards != nil {
		t.Errorf("plan after: %+v, %v", plan.Shards, err)
	}
}
