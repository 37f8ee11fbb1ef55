package provision

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
)

// The workflow tests here use BMCs on 127.0.21.1-127.0.21.99 (the CLI's
// tests use 127.0.21.100 and up).

// fakeFinder is a MachineFinder over a fixed list, for Select's pure logic.
type fakeFinder []*inventory.Machine

func (f fakeFinder) Find(_ context.Context, key string) (*inventory.Machine, error) {
	for _, m := range f {
		if m.ID == key || m.Serial == key || m.PrimaryMAC() == key {
			return m, nil
		}
	}
	return nil, fmt.Errorf("machine %q: %w", key, inventory.ErrNotFound)
}

func (f fakeFinder) List(context.Context, inventory.Query) ([]*inventory.Machine, error) {
	return f, nil
}

func TestSelectByID(t *testing.T) {
	a := &inventory.Machine{ID: inventory.MachineID("A"), Serial: "A", NICs: []inventory.NIC{{MAC: "52:54:00:00:00:0a"}}}
	b := &inventory.Machine{ID: inventory.MachineID("B"), Serial: "B"}
	inv := fakeFinder{a, b}
	type sel struct {
		ID          string
		ByID, Named bool
	}
	tests := map[string]struct {
		keys []string
		want []sel
		err  bool
	}{
		"by ID":                  {keys: []string{a.ID}, want: []sel{{a.ID, true, true}}},
		"by serial is not by ID": {keys: []string{"B"}, want: []sel{{b.ID, false, true}}},
		"by MAC is not by ID":    {keys: []string{"52:54:00:00:00:0a"}, want: []sel{{a.ID, false, true}}},
		"serial then ID collapse, ID wins": {keys: []string{"A", a.ID, "B"},
			want: []sel{{a.ID, true, true}, {b.ID, false, true}}},
		"no keys: the query, never by ID nor named": {want: []sel{{a.ID, false, false}, {b.ID, false, false}}},
		"unknown key fails":                         {keys: []string{"nope"}, err: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Select(context.Background(), inv, tc.keys, inventory.Query{})
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var g []sel
			for _, s := range got {
				g = append(g, sel{s.Machine.ID, s.ByID, s.Named})
			}
			if d := cmp.Diff(tc.want, g); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

// testRack is a real inventory in a Consul dev agent over real sims.
type testRack struct {
	store *inventory.Store
	sims  []*ipmisim.BMC
	ms    []*inventory.Machine
}

// newTestRack starts n powered-on sims from first and imports them. The
// machine at noCred (if >= 0) then names a credential
// reference that was never stored.
func newTestRack(t *testing.T, first string, n, noCred int) *testRack {
	t.Helper()
	ipmisim.Require(t)
	sims := ipmisim.Start(t, ipmisim.Options{N: n, First: netip.MustParseAddr(first), PowerOn: true})
	agent := consuldev.T(t)
	cfg := api.DefaultConfig()
	cfg.Address = agent.Addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], "provision power test key 32 byte")
	s := inventory.New(c, inventory.Config{Sealer: inventory.NewSealer(key), Who: "tester"})
	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,bmc_credential_ref\n")
	for i, b := range sims {
		fmt.Fprintf(&sheet, "rp,%d,P-%d,%s,%s,%s,\n", i+1, i, b.Addr, b.Username, b.Password)
	}
	rows, err := inventory.ParseSheet("rp.csv", strings.NewReader(sheet.String()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Import(ctx, "rp.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	r := &testRack{store: s, sims: sims}
	for i := range sims {
		m, err := s.Find(ctx, fmt.Sprintf("P-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == noCred { // an import checks that a reference exists; a later edit may break it
			m, err = s.Update(ctx, m.ID, inventory.Operator, inventory.Change{What: "test"}, func(m *inventory.Machine) error {
				m.BMC.CredentialRef = "never-stored"
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		r.ms = append(r.ms, m)
	}
	return r
}

func (r *testRack) deploy(t *testing.T, i int) {
	t.Helper()
	for _, st := range []inventory.State{inventory.StateCommissioning, inventory.StateReady, inventory.StateAllocated, inventory.StateDeploying, inventory.StateDeployed} {
		m, err := r.store.SetState(context.Background(), r.ms[i].ID, st, inventory.System, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		r.ms[i] = m
	}
}

func (r *testRack) lastWhat(t *testing.T, i int) (string, int) {
	t.Helper()
	h, err := r.store.History(context.Background(), r.ms[i].ID)
	if err != nil {
		t.Fatal(err)
	}
	return h[len(h)-1].What, len(h)
}

// TestFleetPower covers the rules Fleet adds to ipmi's: deployed machines
// selected by a query are refused before any BMC call, a machine without a
// usable credential fails alone, progress counts every machine, and only
// commands sent are recorded.
func TestFleetPower(t *testing.T) {
	r := newTestRack(t, "127.0.21.1", 4, 3)
	r.deploy(t, 0)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []ipmi.Progress
	f := &Fleet{Inventory: r.store, Who: "fleet-test", Bulk: ipmi.BulkOptions{Progress: func(p ipmi.Progress) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, p)
	}}}
	for _, s := range r.sims {
		s.ClearCalls()
	}
	_, hist0 := r.lastWhat(t, 0)

	sel, err := Select(ctx, r.store, nil, inventory.Query{Rack: "rp"})
	if err != nil {
		t.Fatal(err)
	}
	out := f.Power(ctx, sel, ipmi.Cycle, PowerRequest{AllowReboot: true, Reason: "kernel update"})
	by := map[string]Outcome{}
	for _, o := range out {
		by[o.Machine] = o
	}
	if o := by[r.ms[0].ID]; o.Reason != "deployed" || !errors.Is(o.Err, ErrDeployed) || !errors.Is(o.Err, ipmi.ErrRebootNotAllowed) {
		t.Errorf("deployed machine by query: %+v", o)
	}
	if sets, _ := r.sims[0].Sets(); len(sets) != 0 {
		t.Errorf("the deployed machine's BMC got %q", sets)
	}
	if o := by[r.ms[3].ID]; o.Reason != "credential" || !errors.Is(o.Err, ErrCredential) {
		t.Errorf("machine without a stored credential: %+v", o)
	}
	for _, i := range []int{1, 2} {
		o := by[r.ms[i].ID]
		if !o.OK() || !o.Changed || o.Before != "on" || o.After != "on" {
			t.Errorf("cycle of machine %d: %+v", i, o)
		}
		if what, _ := r.lastWhat(t, i); what != "power cycle" {
			t.Errorf("machine %d history: %q", i, what)
		}
	}
	if _, n := r.lastWhat(t, 0); n != hist0 {
		t.Error("a refused action was recorded")
	}
	if len(seen) != 4 || seen[len(seen)-1].Done != 4 || seen[len(seen)-1].Total != 4 {
		t.Errorf("progress: %+v", seen)
	}

	// Named by ID, the deployed machine may be cycled.
	sel, err = Select(ctx, r.store, []string{r.ms[0].ID}, inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if o := f.Power(ctx, sel, ipmi.Cycle, PowerRequest{AllowReboot: true})[0]; !o.OK() || !o.Changed {
		t.Errorf("cycle of a deployed machine by ID: %+v", o)
	}
	if what, n := r.lastWhat(t, 0); what != "power cycle" || n != hist0+1 {
		t.Errorf("history: %q, %d entries", what, n)
	}

	// Status is read, never recorded.
	_, n1 := r.lastWhat(t, 1)
	sel, _ = Select(ctx, r.store, []string{r.ms[1].ID}, inventory.Query{})
	if o := f.PowerStatus(ctx, sel)[0]; !o.OK() || o.After != "on" {
		t.Errorf("status: %+v", o)
	}
	if _, n := r.lastWhat(t, 1); n != n1 {
		t.Error("status was recorded")
	}
}
