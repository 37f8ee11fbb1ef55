package netpolicy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
)

// fleet is n machines over the three tiers, with 10.x.y.z addresses.
func fleet(n int) []*inventory.Machine {
	tiers := []string{"ingestion", "storage", "query"}
	ms := make([]*inventory.Machine, n)
	for i := range ms {
		ms[i] = &inventory.Machine{ID: fmt.Sprintf("m-%05d", i), IP: fmt.Sprintf("10.%d.%d.%d", 10+i/65536, i/256%256, i%256+0), Tier: tiers[i%3]}
	}
	return ms
}

// BenchmarkRender10k renders the 3-tier policy's rulesets for 10,000
// machines (one Compile, then a Render per machine), per op.
func BenchmarkRender10k(b *testing.B) {
	p := loadThreeTier(b)
	ms := fleet(10000)
	for b.Loop() {
		c := Compile(p, ms)
		for _, m := range ms {
			_ = c.Render(m)
		}
	}
}

// BenchmarkSetUpdate20k: in a namespace of its own, a storage machine's
// ruleset whose ingestion set holds 20,000 addresses. Per op, one of:
// full-reload replaces the whole table (nft -f of the rendered ruleset);
// set-flush-fill replaces the 20,000 elements of the set (SetUpdate, what
// the watcher's first push does); set-delta adds one joining machine and
// removes one leaving (SetDelta, what the watcher pushes on a change).
// Each reloads or updates through real nft -f.
func BenchmarkSetUpdate20k(b *testing.B) {
	netns.Require(b, "nft")
	ns := netns.New(b)
	p := loadThreeTier(b)
	tiers := fleet(60000) // 20,000 per tier
	ms := append(threeTier(), tiers...)
	var sto *inventory.Machine
	for _, m := range ms {
		if m.ID == "m-sto1" {
			sto = m
		}
	}
	rs := Compile(p, ms).Render(sto)
	var ing Set
	for _, s := range rs.Sets {
		if s.Name == "tier_ingestion_v4" {
			ing = s
		}
	}
	if len(ing.Elements) < 20000 {
		b.Fatalf("ingestion set has %d elements", len(ing.Elements))
	}
	dir := b.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	full := write("full.nft", rs.Text)
	fill := write("fill.nft", SetUpdate([]Set{ing}))
	moved := append(append([]string(nil), ing.Elements[1:]...), "10.200.0.1")
	fwd := write("fwd.nft", SetDelta(ing.Name, ing.Elements, moved))
	back := write("back.nft", SetDelta(ing.Name, moved, ing.Elements))
	nft := func(path string) {
		if out, err := ns.Output(time.Minute, "nft", "-f", path); err != nil {
			b.Fatalf("%v %s", err, out)
		}
	}
	nft(full)
	b.Logf("ruleset: %d sets, %d elements in all, %d bytes", len(rs.Sets), strings.Count(rs.Text, ","), len(rs.Text))
	b.Run("full-reload", func(b *testing.B) {
		for b.Loop() {
			nft(full)
		}
	})
	b.Run("set-flush-fill", func(b *testing.B) {
		for b.Loop() {
			nft(fill)
		}
	})
	b.Run("set-delta", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if i%2 == 0 {
				nft(fwd)
			} else {
				nft(back)
			}
			i++
		}
	})
}
