package tiers_test

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
)

func reconciler(env *tiertest.Env) *tiers.Reconciler {
	return &tiers.Reconciler{
		Store:    env.Store,
		Deployer: &tiers.StateDeployer{Store: env.Store, Client: env.Client, Who: "test"},
		Health:   &tiers.ConsulHealth{Client: env.Client, Poll: 50e6},
		Who:      "test",
	}
}

func ids(ms []*inventory.Machine) []string {
	out := tiers.IDs(ms)
	sort.Strings(out)
	return out
}

// passing lists the machine IDs serving svc with passing checks.
func passing(t *testing.T, c *api.Client, svc string) []string {
	t.Helper()
	es, _, err := c.Health().Service(svc, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Node.Node)
	}
	sort.Strings(out)
	return out
}

func TestTierStateDeployerStepUpDownDestroy(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 3)
	ctx := context.Background()
	r := reconciler(env)
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::ingestion"
	spec := tiers.Spec{Name: "ingestion", Size: 2, Spread: "rack", Services: []inventory.DeployService{{Name: "ingest", Port: 9000}}}

	_, ms, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(ms), passing(t, env.Client, "ingest")); diff != "" {
		t.Errorf("healthy instances vs tier (-tier +consul):\n%s", diff)
	}

	// Step up: the plan names 3 machines; applying claims exactly those,
	// and the two members stay.
	spec.Size = 5
	plan, err := r.Plan(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Add) != 3 || len(plan.Remove) != 0 {
		t.Fatalf("plan 2→5: add %v remove %v", ids(plan.Add), ids(plan.Remove))
	}
	if got := len(tiertest.Owned(t, env.Store, owner)); got != 2 {
		t.Fatalf("plan claimed machines: owner holds %d", got)
	}
	step, ms5, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(plan.Add), ids(step.Add)); diff != "" {
		t.Errorf("claimed other machines than planned (-plan +claimed):\n%s", diff)
	}
	if diff := cmp.Diff(append(ids(ms), ids(plan.Add)...), ids(ms5), cmp.Transformer("sort", func(s []string) []string {
		s = append([]string(nil), s...)
		sort.Strings(s)
		return s
	})); diff != "" {
		t.Errorf("tier after 2→5 (-want +got):\n%s", diff)
	}
	perRack := map[string]int{}
	for _, m := range ms5 {
		perRack[m.Rack]++
		if m.State != inventory.StateDeployed || m.Tier != "ingestion" {
			t.Errorf("machine %s: %s tier %q", m.ID, m.State, m.Tier)
		}
	}
	if len(perRack) != 3 {
		t.Errorf("spread over racks: %v", perRack)
	}

	// Step down: two drained (out of the service), released and wiped.
	spec.Size = 3
	plan, err = r.Plan(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Remove) != 2 {
		t.Fatalf("plan 5→3 removes %v", ids(plan.Remove))
	}
	_, ms3, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(ms3), passing(t, env.Client, "ingest")); diff != "" {
		t.Errorf("healthy instances after 5→3 (-tier +consul):\n%s", diff)
	}
	for _, m := range plan.Remove {
		got, err := env.Store.Get(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != inventory.StateReady || got.Owner != "" {
			t.Errorf("removed %s is %s owned by %q", m.ID, got.State, got.Owner)
		}
		h, err := env.Store.History(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		var whats []string
		for _, e := range h {
			whats = append(whats, e.What)
		}
		if len(whats) < 2 || whats[len(whats)-2] != "wipe" || whats[len(whats)-1] != "released" {
			t.Errorf("history of %s does not end with the release path (wipe, released): %v", m.ID, whats)
		}
	}

	// Destroy: everything back in the pool, nothing registered.
	if err := r.Destroy(ctx, owner, spec); err != nil {
		t.Fatal(err)
	}
	if left := tiertest.Owned(t, env.Store, owner); len(left) != 0 {
		t.Errorf("after destroy the owner holds %v", ids(left))
	}
	if got := passing(t, env.Client, "ingest"); len(got) != 0 {
		t.Errorf("after destroy still serving: %v", got)
	}
}

func TestTierStateDeployerAdoptsInterruptedClaims(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 9, 3)
	ctx := context.Background()
	r := reconciler(env)
	owner := "urn:pulumi:t::ironrack-tiers::ironrack:index:Tier::query"
	spec := tiers.Spec{Name: "query", Size: 4}
	// An earlier run claimed 3 and deployed one halfway, then died.
	claimed, err := env.Store.Allocate(ctx, inventory.AllocateRequest{Count: 3, Owner: owner, Tier: "query"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.SetState(ctx, claimed[0].ID, inventory.StateDeploying, inventory.System, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	plan, ms, err := r.Apply(ctx, owner, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Add) != 1 || len(ms) != 4 {
		t.Fatalf("adopt 3, add %v: tier %v", ids(plan.Add), ids(ms))
	}
	for _, m := range tiertest.Owned(t, env.Store, owner) {
		if m.State != inventory.StateDeployed {
			t.Errorf("%s is %s", m.ID, m.State)
		}
	}
}

func TestTierPlanLargerThanPoolRefusedNothingClaimed(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 9, 3)
	ctx := context.Background()
	r := reconciler(env)
	_, _, err := r.Apply(ctx, "o1", tiers.Spec{Name: "storage", Size: 4, Selector: "mem_gb >= 512"})
	if !errors.Is(err, inventory.ErrInsufficient) {
		t.Fatalf("4 big machines of 3: %v", err)
	}
	// Two tiers that fit together, then two that each fit alone but not
	// together.
	if err := tiers.CheckPool(ctx, env.Store, []tiers.Demand{
		{Tier: "storage", Selector: "mem_gb >= 512", Count: 2},
		{Tier: "query", Count: 7},
	}); err != nil {
		t.Fatalf("2 big + 7 of 9: %v", err)
	}
	err = tiers.CheckPool(ctx, env.Store, []tiers.Demand{
		{Tier: "storage", Selector: "mem_gb >= 512", Count: 2},
		{Tier: "query", Count: 8},
	})
	var se *tiers.ShortfallError
	if !errors.As(err, &se) || se.Need != 10 || se.Have != 9 || !errors.Is(err, inventory.ErrInsufficient) {
		t.Fatalf("2 big + 8 of 9: %v", err)
	}
	for _, m := range tiertest.Owned(t, env.Store, "o1") {
		t.Errorf("refused step claimed %s", m.ID)
	}
	t.Log(err)
}

func TestSpecValidateNamesInputs(t *testing.T) {
	cases := map[string]struct {
		spec  tiers.Spec
		field string
	}{
		"name":                  {tiers.Spec{Name: "Bad Name", Size: 1}, "name"},
		"size":                  {tiers.Spec{Name: "q", Size: -1}, "size"},
		"selector":              {tiers.Spec{Name: "q", Size: 1, Selector: "memory >= 3"}, "selector"},
		"spread":                {tiers.Spec{Name: "q", Size: 1, Spread: "row"}, "spread"},
		"rootDisk":              {tiers.Spec{Name: "q", Size: 1, RootDisk: "mem_gb > 1"}, "rootDisk"},
		"layout":                {tiers.Spec{Name: "q", Size: 1, RootDisk: "not rotational", RootLayout: "raid5"}, "rootLayout"},
		"mirror without a hint": {tiers.Spec{Name: "q", Size: 1, RootLayout: "mirror"}, "rootLayout"},
		"port":                  {tiers.Spec{Name: "q", Size: 1, Services: []inventory.DeployService{{Name: "a", Port: 0}}}, "services[0].port"},
		"check":                 {tiers.Spec{Name: "q", Size: 1, Services: []inventory.DeployService{{Name: "a", Port: 1, Check: "http:x"}}}, "services[0].check"},
		"dup":                   {tiers.Spec{Name: "q", Size: 1, Services: []inventory.DeployService{{Name: "a", Port: 1}, {Name: "a", Port: 2}}}, "services[1].name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			errs := tc.spec.Validate()
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("errors %v, want one on %s", errs, tc.field)
			}
		})
	}
	if errs := (tiers.Spec{Name: "ingestion", Size: 3, Selector: "mem_gb >= 256", Spread: "rack", RootDisk: "not rotational"}).Validate(); len(errs) > 0 {
		t.Errorf("good spec: %v", errs)
	}
	for _, layout := range []string{"", "flat", "mirror"} {
		if errs := (tiers.Spec{Name: "storage", Size: 2, RootDisk: "size_bytes >= 2e9", RootLayout: layout}).Validate(); len(errs) > 0 {
			t.Errorf("good spec with root layout %q: %v", layout, errs)
		}
	}
}

func TestOwnerFromURN(t *testing.T) {
	short := "urn:pulumi:dev::ironrack-tiers::ironrack:index:Tier::ingestion"
	if got := tiers.Owner(short); got != short {
		t.Errorf("Owner(%s) = %s", short, got)
	}
	long := "urn:pulumi:dev::ironrack-tiers::my:comp$ironrack:index:Tier::" + string(make([]byte, 0)) + "a-very-long-name-" + "0123456789012345678901234567890123456789012345678901234567890123456789"
	got := tiers.Owner(long)
	if got == long || len(got) > 128 || got != tiers.Owner(long) {
		t.Errorf("Owner(long) = %s", got)
	}
	if _, err := inventory.ParseWhere("owner == \"" + got + "\""); err != nil {
		t.Error(err)
	}
}
