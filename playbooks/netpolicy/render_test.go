package netpolicy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/inventory"
)

// threeTier is the inventory the golden files are rendered from.
func threeTier() []*inventory.Machine {
	return []*inventory.Machine{
		{ID: "m-ing1", IP: "10.77.0.11", Tier: "ingestion", Tags: map[string]string{"role": "consul"}},
		{ID: "m-ing2", IP: "fd77::12", Tier: "ingestion"},
		{ID: "m-sto1", IP: "10.77.0.21", Tier: "storage"},
		{ID: "m-sto2", IP: "10.77.0.22", Tier: "storage"},
		{ID: "m-qry1", IP: "10.77.0.31", Tier: "query"},
		{ID: "m-bast", IP: "10.77.0.5", Tags: map[string]string{"role": "bastion"}},
	}
}

var tierNames = []string{"ingestion", "storage", "query"}

func loadThreeTier(t testing.TB) *Policy {
	t.Helper()
	p, warn, err := Load("testdata/three-tier.yaml", Known{Tiers: tierNames, Machines: threeTier()})
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) > 0 {
		t.Fatalf("unexpected warnings: %v", warn)
	}
	return p
}

// TestRenderGolden pins the rulesets of the 3-tier policy, one per tier
// (and the bastion, which no rule targets). UPDATE_GOLDEN=1 rewrites them.
func TestRenderGolden(t *testing.T) {
	p := loadThreeTier(t)
	ms := threeTier()
	for _, m := range ms {
		got := Render(p, ms, m).Text
		// Deterministic: a second render, with the machines in another
		// order, is the same text.
		rev := append([]*inventory.Machine(nil), ms...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		if again := Render(p, rev, m).Text; again != got {
			t.Fatalf("%s: render is not deterministic:\n%s", m.ID, cmp.Diff(got, again))
		}
		path := filepath.Join("testdata", m.ID+".nft")
		if os.Getenv("UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
		}
		if d := cmp.Diff(string(want), got); d != "" {
			t.Errorf("%s ruleset differs from %s (-want +got):\n%s", m.ID, path, d)
		}
	}
}

// TestVersionIgnoresMembership: a machine joining a tier changes set
// elements, never the version (the rules); a policy change does.
func TestVersionIgnoresMembership(t *testing.T) {
	p := loadThreeTier(t)
	ms := threeTier()
	before := Render(p, ms, ms[2])
	ms = append(ms, &inventory.Machine{ID: "m-ing3", IP: "10.77.0.13", Tier: "ingestion"})
	after := Render(p, ms, ms[2])
	if before.Version != after.Version {
		t.Errorf("version changed with membership: %s -> %s", before.Version, after.Version)
	}
	if before.Text == after.Text || !strings.Contains(after.Text, "10.77.0.13") {
		t.Errorf("new member not in the sets:\n%s", after.Text)
	}
	p.Rules[0].Ports = append(p.Rules[0].Ports, Port{9102, "tcp"})
	if v := Render(p, ms, ms[2]).Version; v == after.Version {
		t.Errorf("version did not change with the rules: %s", v)
	}
}
