// Package tiertest is the tiers tests' harness: a real Consul dev agent on
// the tiers tests' loopback range (127.0.33.0/24) with an inventory, and a
// ready pool built the way operators build it (a rack sheet imported, then
// each machine commissioned with hand-entered facts).
package tiertest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"
)

// Bind is the loopback address the tiers tests' Consul agents listen on.
const Bind = "127.0.33.1"

// Env is a Consul agent with an inventory on it.
type Env struct {
	Addr   string
	Client *api.Client
	Store  *inventory.Store
	Sealer *inventory.Sealer
}

// Start starts a Consul dev agent for the test (stopped when it ends).
// Under -short the test is skipped; a missing consul fails it.
func Start(t testing.TB) *Env {
	t.Helper()
	a := consuldev.TWith(t, consuldev.Options{Bind: Bind}) // TWith logs with IRONRACK_CONSUL_LOG
	c := a.Client(t)
	var key [32]byte
	copy(key[:], "tiers-test-key-0123456789abcdef!")
	sealer := inventory.NewSealer(key)
	return &Env{Addr: a.Addr, Client: c, Sealer: sealer, Store: inventory.New(c, inventory.Config{Sealer: sealer, Who: "test"})}
}

// SeedReady imports n machines over `racks` racks (r1, r2, ...) and
// commissions them: they end up ready. Every third machine is big
// (mem_gb 512, cpu_cores 64); the others have 128 GB and 16 cores.
// BMC addresses are 127.0.34.x (nothing listens; power is not used).
func SeedReady(t testing.TB, s *inventory.Store, n, racks int) []*inventory.Machine {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,vendor,model\n")
	for i := range n {
		fmt.Fprintf(&b, "r%d,%d,TS%05d,127.0.34.%d,admin,pw%d,Dell,R650\n", i%racks+1, i/racks+1, i, i%250+1, i)
	}
	rows, err := inventory.ParseSheet("pool.csv", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "pool.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	var out []*inventory.Machine
	for i := range n {
		serial := fmt.Sprintf("TS%05d", i)
		mem, cores := 128, 16
		if i%3 == 0 {
			mem, cores = 512, 64
		}
		m, err := s.Commission(ctx, inventory.MachineID(serial), inventory.Facts{Serial: serial, CPUCores: cores, MemGB: mem}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Owned lists the machines whose owner is owner, by ID.
func Owned(t testing.TB, s *inventory.Store, owner string) []*inventory.Machine {
	t.Helper()
	w, err := inventory.ParseWhere(fmt.Sprintf("owner == %q", owner))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.List(context.Background(), inventory.Query{Where: w})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// CheckShards checks a stored shard map against a tier's machines: S shards,
// each with R replicas on R distinct racks, all on those machines.
func CheckShards(t testing.TB, m placement.Map, tier []*inventory.Machine, S, R int) {
	t.Helper()
	rack := map[string]string{}
	for _, x := range tier {
		rack[x.ID] = x.Rack
	}
	if len(m.Shards) != S || m.Replicas != R {
		t.Fatalf("map has %d shards × %d replicas, want %d × %d", len(m.Shards), m.Replicas, S, R)
	}
	for s, holders := range m.Shards {
		racks := map[string]bool{}
		for _, id := range holders {
			r, ok := rack[id]
			if !ok {
				t.Fatalf("shard %d on %s, not a machine of the tier", s, id)
			}
			racks[r] = true
		}
		if len(holders) != R || len(racks) != R {
			t.Fatalf("shard %d on %v: %d racks, want %d", s, holders, len(racks), R)
		}
	}
}
