package provision_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/provision/bootserver"
)

// agents plays the discovery agent of each machine: once the machine's BMC
// was set to network boot and last powered on, and the machine is
// commissioning (what the boot server would boot into the agent in
// commission mode), it sends the agent's facts report through the boot
// server's backend. Machines marked silent never report.
type agents struct {
	mu     sync.Mutex
	silent map[int]bool
}

func (a *agents) setSilent(i int, s bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.silent[i] = s
}

func (a *agents) isSilent(i int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.silent[i]
}

// playAgents runs the agents until the test ends.
func playAgents(t *testing.T, st *inventory.Store, sims []*ipmisim.BMC, ms []*inventory.Machine) *agents {
	be := &bootserver.Backend{Store: st, DataDir: t.TempDir()}
	a := &agents{silent: map[int]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for i, s := range sims {
				sets, _ := s.Sets()
				if a.isSilent(i) || len(sets) == 0 || sets[len(sets)-1] != "set power 1" || !strings.Contains(strings.Join(sets, "|"), "set boot pxe") {
					continue
				}
				m, err := st.Get(ctx, ms[i].ID)
				if err != nil || m.State != inventory.StateCommissioning {
					continue
				}
				f := &wire.Facts{Serial: m.Serial, CPUs: 4, MemoryBytes: 8 * bootserver.GiB, Firmware: "bios",
					MACs:  []string{fmt.Sprintf("52:54:00:21:60:%02x", i)},
					Disks: []wire.Disk{{Name: "vda", SizeBytes: 20e9}}}
				if err := be.RecordReport(ctx, m.ID, wire.Report{Kind: "facts", Facts: f}); err != nil && ctx.Err() == nil {
					t.Errorf("agent report of %s: %v", m.ID, err)
				}
			}
		}
	}()
	return a
}

// TestCommission runs the commission workflow against a real Consul and
// real ipmi_sim BMCs, playing the agent through the boot server's backend:
// machines that are on are refused without allow-reboot and left as they
// were; machines that are off are set to network boot, powered on and
// commissioned by their report; a machine whose BMC is dead ends in
// failed_commissioning at once, the BMC named, while the others go on; a
// machine whose agent never reports ends in failed_commissioning at the
// deadline; a selection skips ready machines, a name refuses them, and a
// failed machine is commissioned again.
func TestCommission(t *testing.T) {
	st, sims, ms := provision.NewTestRack(t, "127.0.21.60", 4)
	ctx := context.Background()
	agents := playAgents(t, st, sims, ms)
	d := &provision.Deployer{Store: st, Who: "commission-test", WatchWait: time.Second,
		Fleet: &provision.Fleet{Inventory: st, Who: "commission-test", Bulk: ipmi.BulkOptions{CallTimeout: 2 * time.Second, Retries: -1}}}
	named := func(keys ...string) []provision.Selected {
		t.Helper()
		sel, err := provision.Select(ctx, st, keys, inventory.Query{})
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	all := func() []provision.Selected {
		t.Helper()
		sel, err := provision.Select(ctx, st, nil, inventory.Query{Rack: "rp"})
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	byID := func(res []provision.Result) map[string]provision.Result {
		out := map[string]provision.Result{}
		for _, r := range res {
			out[r.Machine] = r
		}
		return out
	}
	history := func(i int) []inventory.HistoryEntry {
		t.Helper()
		h, err := st.History(ctx, ms[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	clearCalls := func() {
		for _, s := range sims {
			s.ClearCalls()
		}
	}

	// 1. Every sim starts on: refused without allow-reboot, nothing changed.
	clearCalls()
	before := make([]int, len(ms))
	for i := range ms {
		before[i] = len(history(i))
	}
	for _, r := range d.Commission(ctx, all(), provision.CommissionRequest{Timeout: 5 * time.Second}) {
		if r.OK() || r.Step != "power" || !strings.Contains(r.Error, "allow-reboot") || r.State != inventory.StateNew {
			t.Errorf("commission of a running machine without allow-reboot: %+v", r)
		}
	}
	for i, s := range sims {
		if sets, _ := s.Sets(); len(sets) != 0 {
			t.Errorf("BMC %s got %q", s.Addr, sets)
		}
		if n := len(history(i)); n != before[i] {
			t.Errorf("machine %d: %d history entries, was %d", i, n, before[i])
		}
	}

	// 2. Two machines off, named: both ready, every step in their history.
	sims[0].SetPower(false)
	sims[1].SetPower(false)
	var mu sync.Mutex
	var evs []provision.Event
	res := d.Commission(ctx, named(ms[0].ID, ms[1].Serial), provision.CommissionRequest{Timeout: 30 * time.Second, Reason: "rack r1 arrived",
		Progress: func(e provision.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() }})
	for i, r := range res {
		if !r.OK() || r.Result != "ok" || r.State != inventory.StateReady || r.Serial != ms[i].Serial || r.BMC != sims[i].Addr.String()+":623" {
			t.Errorf("commission of machine %d: %+v", i, r)
		}
	}
	var whats []string
	for _, e := range history(0) {
		whats = append(whats, fmt.Sprintf("%s %s→%s %s %s", e.What, e.From, e.To, e.Who, e.Why))
	}
	for _, w := range []string{"commission new→commissioning commission-test rack r1 arrived", "boot pxe persistent", "power on",
		"commission commissioning→ready boot-server facts from the discovery agent"} {
		if !strings.Contains(strings.Join(whats, "|"), w) {
			t.Errorf("history %q lacks %q", whats, w)
		}
	}
	mu.Lock()
	if len(evs) == 0 || evs[len(evs)-1].State != inventory.StateReady {
		t.Errorf("progress events %+v, want the last one ready", evs)
	}
	mu.Unlock()

	// 3. The whole rack: the ready machines are skipped, machine 3's BMC is
	// dead (it fails at once, naming the BMC), machine 2's agent never
	// reports (it fails at the deadline).
	clearCalls()
	sims[2].SetPower(false)
	sims[3].SetPower(false)
	if err := sims[3].Stop(); err != nil {
		t.Fatal(err)
	}
	agents.setSilent(2, true)
	const timeout = 6 * time.Second
	got := byID(d.Commission(ctx, all(), provision.CommissionRequest{Timeout: timeout}))
	for _, i := range []int{0, 1} {
		if r := got[ms[i].ID]; !r.OK() || r.Result != "skipped" || !strings.Contains(r.Note, "name it by its ID") || r.State != inventory.StateReady {
			t.Errorf("ready machine %d in a selection: %+v", i, r)
		}
		if sets, _ := sims[i].Sets(); len(sets) != 0 {
			t.Errorf("skipped machine %d's BMC got %q", i, sets)
		}
	}
	dead := sims[3].Addr.String() + ":623"
	r3 := got[ms[3].ID]
	if r3.OK() || r3.State != inventory.StateFailedCommissioning || r3.Step != "power" || !strings.Contains(r3.Error, "BMC "+dead) || r3.Elapsed >= timeout {
		t.Errorf("machine with a dead BMC: %+v", r3)
	}
	if last := history(3)[len(history(3))-1]; last.To != inventory.StateFailedCommissioning || !strings.Contains(last.Why, "BMC "+dead) || last.Who != "commission-test" {
		t.Errorf("dead BMC's machine: last history entry %+v, want failed_commissioning naming BMC %s", last, dead)
	}
	r2 := got[ms[2].ID]
	if r2.OK() || r2.State != inventory.StateFailedCommissioning || r2.Step != "timeout" || r2.Elapsed < timeout {
		t.Errorf("machine whose agent never reports: %+v", r2)
	}
	if last := history(2)[len(history(2))-1]; last.To != inventory.StateFailedCommissioning || !strings.Contains(last.Why, "timeout: no report from the discovery agent") {
		t.Errorf("silent machine: last history entry %+v", last)
	}
	if sets, _ := sims[2].Sets(); strings.Join(sets, "|") != "set boot pxe|set power 1" {
		t.Errorf("silent machine's BMC got %q, want network boot and power on", sets)
	}

	// 4. A ready machine named by serial is refused; the failed machine
	// (now on: its agent never powered it off) is commissioned again with
	// allow-reboot, by a power cycle.
	clearCalls()
	agents.setSilent(2, false)
	got = byID(d.Commission(ctx, named(ms[0].Serial, ms[2].Serial), provision.CommissionRequest{Timeout: 30 * time.Second, AllowReboot: true}))
	if r := got[ms[0].ID]; r.OK() || r.Step != "select" || !strings.Contains(r.Error, "name it by its ID") || r.State != inventory.StateReady {
		t.Errorf("ready machine named by serial: %+v", r)
	}
	if r := got[ms[2].ID]; !r.OK() || r.State != inventory.StateReady {
		t.Errorf("re-commission of a failed machine: %+v", r)
	}
	if sets, _ := sims[2].Sets(); !strings.Contains(strings.Join(sets, "|"), "set power 0|set power 1") {
		t.Errorf("re-commission of a machine that is on: BMC got %q, want a cycle", sets)
	}
}
