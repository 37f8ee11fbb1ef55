package tiers_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
)

// pool is n ready machines over racks r1..rR; every third has 512 GB
// (the "compute" class), the others 64 GB.
func pool(n, racks int) []*inventory.Machine {
	var out []*inventory.Machine
	for i := range n {
		mem := 64
		if i%3 == 0 {
			mem = 512
		}
		out = append(out, &inventory.Machine{ID: fmt.Sprintf("m-%04d", i), Rack: fmt.Sprintf("r%d", i%racks+1),
			State: inventory.StateReady, MemGB: mem, CPUCores: 16})
	}
	return out
}

func where(t *testing.T, expr string) *inventory.Where {
	t.Helper()
	w, err := inventory.ParseWhere(expr)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func prefix(ms []*inventory.Machine, n int) []string { return ids(ms[:n]) }

// Two tiers on one class whose own picks overlap get disjoint machines;
// the first keeps exactly its own pick; the result does not depend on the
// pool's order.
func TestJointPickSharedClassDisjoint(t *testing.T) {
	ready := pool(12, 2) // 4 compute machines, 2 per rack
	compute := where(t, "mem_gb >= 512")
	var cls []*inventory.Machine
	for _, m := range ready {
		if m.MemGB >= 512 {
			cls = append(cls, m)
		}
	}
	wants := []tiers.Want{
		{Tier: "ingestion", Owner: "o/ingestion", Where: compute, Spread: "rack", Count: 2},
		{Tier: "storage", Owner: "o/storage", Where: where(t, "mem_gb < 512"), Spread: "rack", Count: 2},
		{Tier: "query", Owner: "o/query", Where: compute, Spread: "rack", Count: 2},
	}
	// Each tier alone: the first two of its own rendezvous order.
	alone := map[string][]string{}
	for _, w := range []tiers.Want{wants[0], wants[2]} {
		alone[w.Tier] = prefix(inventory.Ranked(cls, w.Owner, true), 2)
	}
	overlap := 0
	for _, id := range alone["ingestion"] {
		if slices.Contains(alone["query"], id) {
			overlap++
		}
	}
	if overlap == 0 {
		t.Fatalf("the test needs overlapping independent picks: ingestion %v, query %v", alone["ingestion"], alone["query"])
	}
	got, err := tiers.JointPick(ready, wants)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for tier, ms := range got {
		if len(ms) != 2 {
			t.Errorf("%s got %d machines, want 2", tier, len(ms))
		}
		racks := map[string]bool{}
		for _, m := range ms {
			if other, ok := seen[m.ID]; ok {
				t.Errorf("machine %s picked for %s and %s", m.ID, other, tier)
			}
			seen[m.ID] = tier
			racks[m.Rack] = true
		}
		if len(racks) != 2 {
			t.Errorf("%s not spread over both racks: %v", tier, ids(ms))
		}
	}
	if diff := cmp.Diff(alone["ingestion"], ids(got["ingestion"])); diff != "" {
		t.Errorf("the first tier should keep its own pick (-alone +joint):\n%s", diff)
	}
	for i := range 5 {
		shuffled := slices.Clone(ready)
		rand.New(rand.NewPCG(uint64(i), 7)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		again, err := tiers.JointPick(shuffled, wants)
		if err != nil {
			t.Fatal(err)
		}
		for tier := range got {
			if diff := cmp.Diff(ids(got[tier]), ids(again[tier])); diff != "" {
				t.Errorf("pool order %d changed %s's pick (-first +again):\n%s", i, tier, diff)
			}
		}
	}
	t.Logf("alone: ingestion %v, query %v; joint: ingestion %v, query %v",
		alone["ingestion"], alone["query"], ids(got["ingestion"]), ids(got["query"]))
}

// A tier that could take any machine passes over those a later, narrower
// tier needs, so the step fits whenever a disjoint assignment exists.
func TestJointPickLeavesNarrowTierItsMachines(t *testing.T) {
	ready := pool(6, 2) // compute: m-0000, m-0003
	wants := []tiers.Want{
		{Tier: "any", Owner: "o/any", Where: where(t, "mem_gb >= 1"), Count: 4},
		{Tier: "big", Owner: "o/big", Where: where(t, "mem_gb >= 512"), Count: 2},
	}
	got, err := tiers.JointPick(ready, wants)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"m-0000", "m-0003"}, ids(got["big"])); diff != "" {
		t.Errorf("big (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"m-0001", "m-0002", "m-0004", "m-0005"}, ids(got["any"])); diff != "" {
		t.Errorf("any (-want +got):\n%s", diff)
	}
	// One more than the pool: refused, naming both tiers.
	wants[0].Count = 5
	_, err = tiers.JointPick(ready, wants)
	var se *tiers.ShortfallError
	if !errors.As(err, &se) || !errors.Is(err, inventory.ErrInsufficient) || strings.Join(se.Tiers, "+") != "any+big" || se.Need != 7 || se.Have != 6 {
		t.Fatalf("5+2 of 6: %v", err)
	}
}

// A spec's Pick is claimed exactly; a pick that is no longer ready fails
// the step naming the machine, and nothing is claimed.
func TestTierPickClaimsExactlyOrNothing(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 9, 3)
	ctx := context.Background()
	r := reconciler(env)
	ready, err := env.Store.List(ctx, inventory.Query{State: inventory.StateReady})
	if err != nil {
		t.Fatal(err)
	}
	// The last three by the tier's own order: not what it would pick.
	own := inventory.Ranked(ready, "t/a", true)
	pick := tiers.IDs(own[len(own)-3:])
	spec := tiers.Spec{Name: "a", Size: 3, Spread: "rack", Pick: pick}
	p, err := r.Plan(ctx, "t/a", spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(own[len(own)-3:]), ids(p.Add)); diff != "" {
		t.Fatalf("plan (-pick +plan):\n%s", diff)
	}
	// Another claimer takes one of them: the step fails, naming it.
	if _, err := env.Store.Allocate(ctx, inventory.AllocateRequest{IDs: pick[:1], Owner: "intruder"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Apply(ctx, "t/a", spec)
	if err == nil || !strings.Contains(err.Error(), pick[0]+" is allocated (owner intruder), not ready") {
		t.Fatalf("apply with a taken pick: %v", err)
	}
	if got := tiertest.Owned(t, env.Store, "t/a"); len(got) != 0 {
		t.Fatalf("a failed pick claimed %v", ids(got))
	}
	// A pick of the wrong size is refused too.
	spec.Pick = pick[1:]
	if _, err := r.Plan(ctx, "t/a", spec); err == nil || !strings.Contains(err.Error(), "the tier changed since the plan") {
		t.Fatalf("plan with 2 picks for 3: %v", err)
	}
	// The right ones are claimed exactly.
	spec.Size = 2
	_, got, err := r.Apply(ctx, "t/a", spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(own[len(own)-2:]), ids(got)); diff != "" {
		t.Errorf("apply (-pick +claimed):\n%s", diff)
	}
}
