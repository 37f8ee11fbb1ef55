package stack_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/stack"
)

// The repro: replication factor 2, three tiers 0 → 2 each, where
// ingestion and query share the compute class and their own picks
// overlap. Through the real engine, the preview lists disjoint machines
// and the apply claims exactly those; when the pool changes between a
// preview and the apply, the apply refuses (nothing claimed) until told
// to re-plan.
func TestEngineStateDeployerJointPickPreviewEqualsApply(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 21, 2) // 7 compute (512 GB): 4 on r1, 3 on r2
	ctx := context.Background()
	o := options(t, env, [3]int{2, 2, 2})
	const compute = "mem_gb >= 512"
	o.Config[stack.Project+":ingestionSelector"] = compute
	o.Config[stack.Project+":querySelector"] = compute
	o.Config[stack.Project+":storageSelector"] = "mem_gb < 512"
	o.Config[stack.Project+":storageReplicas"] = "2"

	// Each tier on its own would pick overlapping machines.
	w, err := inventory.ParseWhere(compute)
	if err != nil {
		t.Fatal(err)
	}
	alone := map[string][]string{}
	for _, tier := range []string{"ingestion", "query"} {
		ms, err := env.Store.Allocate(ctx, inventory.AllocateRequest{Count: 2, Where: w, Spread: "rack", Owner: owner(tier), DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			alone[tier] = append(alone[tier], m.ID)
		}
	}
	if !slices.ContainsFunc(alone["ingestion"], func(id string) bool { return slices.Contains(alone["query"], id) }) {
		t.Fatalf("the test needs overlapping independent picks: ingestion %v, query %v", alone["ingestion"], alone["query"])
	}

	steps, err := stack.Preview(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pre := map[string][]string{}
	seen := map[string]string{}
	for _, tier := range []string{"ingestion", "storage", "query"} {
		s := step(t, steps, tier)
		if len(s.Add) != 2 || s.From != 0 || s.To != 2 {
			t.Fatalf("preview %s: %+v", tier, s)
		}
		for _, id := range s.Add {
			if other, ok := seen[id]; ok {
				t.Errorf("preview lists %s under %s and %s", id, other, tier)
			}
			seen[id] = tier
		}
		pre[tier] = s.Add
	}
	if n := len(tiertest.Owned(t, env.Store, owner("ingestion"))); n != 0 {
		t.Fatalf("the preview claimed %d machines", n)
	}
	steps, err = stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tier := range []string{"ingestion", "storage", "query"} {
		if diff := cmp.Diff(pre[tier], step(t, steps, tier).Add); diff != "" {
			t.Errorf("%s: apply added other machines than previewed (-preview +apply):\n%s", tier, diff)
		}
		if diff := cmp.Diff(pre[tier], owned(t, env, tier)); diff != "" {
			t.Errorf("%s: holds other machines than previewed (-preview +held):\n%s", tier, diff)
		}
	}
	t.Logf("alone: ingestion %v, query %v; previewed and applied: ingestion %v, query %v",
		alone["ingestion"], alone["query"], pre["ingestion"], pre["query"])

	// 2 → 3 for both compute tiers, previewed; then another claimer takes
	// one of the previewed machines.
	o.Config[stack.Project+":ingestionSize"] = "3"
	o.Config[stack.Project+":querySize"] = "3"
	steps, err = stack.Preview(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	stolen := step(t, steps, "query").Add[0]
	if _, err := env.Store.Allocate(ctx, inventory.AllocateRequest{IDs: []string{stolen}, Owner: "intruder"}); err != nil {
		t.Fatal(err)
	}
	_, err = stack.Apply(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "refused, nothing claimed") || !strings.Contains(err.Error(), "differs from the last preview") ||
		!strings.Contains(err.Error(), stolen) {
		t.Fatalf("apply after the pool changed: %v", err)
	}
	for _, tier := range []string{"ingestion", "query"} {
		if got := owned(t, env, tier); len(got) != 2 {
			t.Errorf("a refused apply changed %s: %v", tier, got)
		}
	}
	t.Logf("refused: %v", err)
	// Re-planned on purpose: the step planned now, still disjoint.
	o.Replan = true
	steps, err = stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	ing, qry := owned(t, env, "ingestion"), owned(t, env, "query")
	if len(ing) != 3 || len(qry) != 3 || slices.ContainsFunc(ing, func(id string) bool { return slices.Contains(qry, id) }) ||
		slices.Contains(qry, stolen) {
		t.Errorf("after the re-planned apply: ingestion %v, query %v (stolen %s)", ing, qry, stolen)
	}
}
