package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/google/go-cmp/cmp"
)

// seedReady writes n ready machines over `racks` racks straight into the
// store (one journaled batch), as commissioning would leave them.
func seedReady(t testing.TB, s *Store, n, racks int) {
	t.Helper()
	ws := make([]*write, n)
	for i := range n {
		m := &Machine{ID: MachineID(fmt.Sprintf("POOL%05d", i)), Serial: fmt.Sprintf("POOL%05d", i),
			Rack: fmt.Sprintf("rk%02d", i%racks), Slot: fmt.Sprint(i/racks + 1), State: StateReady, Source: "import",
			CPUCores: 16 << (i % 3), MemGB: 64 << (i % 3), Vendor: "Dell", Model: "R650"}
		m.normalize()
		ws[i] = &write{next: &record{Machine: *m}, change: Change{What: "seed"}}
		s.plan(ws[i])
	}
	if err := s.writeBatch(context.Background(), "seed", ws, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAllocateDeterministicSpreadAllOrNone(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	seedReady(t, s, 60, 4)
	w, _ := ParseWhere(`mem_gb >= 128`)
	got, err := s.Allocate(ctx, AllocateRequest{Count: 7, Where: w, Spread: "rack", Owner: "alice", Tier: "query"})
	if err != nil {
		t.Fatal(err)
	}
	perRack := map[string]int{}
	for _, m := range got {
		perRack[m.Rack]++
		if m.State != StateAllocated || m.Owner != "alice" || m.Tier != "query" || m.MemGB < 128 {
			t.Errorf("claimed %+v", m)
		}
	}
	if !spreadOK(perRack, 4) {
		t.Errorf("spread = %v", perRack)
	}
	// Deterministic: release and claim again gives the same machines.
	if _, err := s.Release(ctx, got, Change{}); err != nil {
		t.Fatal(err)
	}
	again, err := s.Allocate(ctx, AllocateRequest{Count: 7, Where: w, Spread: "rack", Owner: "alice", Tier: "query"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(got), ids(again)); diff != "" {
		t.Errorf("not deterministic:\n%s", diff)
	}
	// A where that reads non-meta fields goes through the records.
	wt, _ := ParseWhere(`len(nics) == 0 and source == "import"`)
	if ms, err := s.Allocate(ctx, AllocateRequest{Count: 2, Where: wt, Owner: "bob"}); err != nil || len(ms) != 2 {
		t.Fatalf("non-meta where: %v %v", ms, err)
	}
	// Asking for more than the pool claims nothing.
	before := kvSnapshot(t, c)
	_, err = s.Allocate(ctx, AllocateRequest{Count: 52, Owner: "carol"})
	if !errors.Is(err, ErrInsufficient) || !strings.Contains(err.Error(), "only 51 machines are ready") {
		t.Fatalf("over-ask: %v", err)
	}
	if diff := cmp.Diff(before, kvSnapshot(t, c)); diff != "" {
		t.Errorf("refused allocation changed the store")
	}
	// Large claims span several transactions (journal) and still land whole.
	big, err := s.Allocate(ctx, AllocateRequest{Count: 51, Owner: "dave", Spread: "rack"})
	if err != nil || len(big) != 51 {
		t.Fatalf("claim all: %d %v", len(big), err)
	}
	if j := journalKeys(t, s, c); len(j) != 0 {
		t.Errorf("journal left: %v", j)
	}
	for name, req := range map[string]AllocateRequest{
		"zero":       {Count: 0, Owner: "x"},
		"bad owner":  {Count: 1, Owner: "a b"},
		"bad spread": {Count: 1, Owner: "x", Spread: "row"},
	} {
		if _, err := s.Allocate(ctx, req); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func ids(ms []*Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	sort.Strings(out)
	return out
}

// spreadOK: with enough machines in every rack, counts differ by at most 1.
func spreadOK(perRack map[string]int, racks int) bool {
	lo, hi := 1<<30, 0
	total := 0
	for _, n := range perRack {
		lo, hi = min(lo, n), max(hi, n)
		total += n
	}
	if total >= racks && len(perRack) != racks {
		return false
	}
	return hi-lo <= 1
}

// buildCLI builds the ironrack binary once per test binary.
var buildCLI = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "ironrack-cli-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ironrack")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ironrack/ironrack/cmd/ironrack").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// TestAllocateRace16Processes: 16 `ironrack inventory allocate` processes
// against 10,000 machines. Round one: everyone fits, so all 16 claim 200
// each. Round two: they ask for more than is left, so some must fail, and
// those must hold nothing. Never a machine claimed twice; always spread.
func TestAllocateRace16Processes(t *testing.T) {
	if testing.Short() {
		t.Skip("long: 10,000 machines and 16 processes")
	}
	s, c, addr := testStoreAddr(t)
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	const racks = 25
	start := time.Now()
	seedReady(t, s, 10000, racks)
	t.Logf("seeded 10,000 machines in %v", time.Since(start))

	claim := func(round, count int) map[string][]string {
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string][]string{}
		for k := range 16 {
			owner := fmt.Sprintf("r%d-claimer-%02d", round, k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "--consul", addr, "-o", "json", "inventory", "allocate",
					"--count", fmt.Sprint(count), "--spread", "rack", "--owner", owner)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				var ms []*Machine
				if err == nil {
					if jerr := json.Unmarshal(stdout.Bytes(), &ms); jerr != nil {
						t.Errorf("%s: bad JSON: %v", owner, jerr)
					}
				} else if !strings.Contains(stderr.String(), "not enough ready machines") {
					t.Errorf("%s failed for another reason: %v\n%s", owner, err, stderr.String())
				}
				perRack := map[string]int{}
				for _, m := range ms {
					perRack[m.Rack]++
				}
				if len(ms) > 0 && !spreadOK(perRack, racks) {
					t.Errorf("%s: spread %v", owner, perRack)
				}
				mu.Lock()
				got[owner] = ids(ms)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	verify := func(got map[string][]string, count int) (winners int) {
		claimedBy := map[string]string{}
		for owner, list := range got {
			if len(list) != 0 && len(list) != count {
				t.Errorf("%s got %d machines, want all (%d) or none", owner, len(list), count)
			}
			if len(list) == count {
				winners++
			}
			for _, id := range list {
				if prev, dup := claimedBy[id]; dup {
					t.Errorf("machine %s claimed by both %s and %s", id, prev, owner)
				}
				claimedBy[id] = owner
			}
		}
		// Consul agrees with what the processes printed, and losers hold
		// nothing.
		all, err := s.List(context.Background(), Query{State: StateAllocated})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all {
			if _, ours := got[m.Owner]; !ours {
				continue
			}
			if claimedBy[m.ID] != m.Owner {
				t.Errorf("machine %s: owner in Consul %s, printed by %q", m.ID, m.Owner, claimedBy[m.ID])
			}
			delete(claimedBy, m.ID)
		}
		if len(claimedBy) != 0 {
			t.Errorf("%d printed claims not in Consul", len(claimedBy))
		}
		if j := journalKeys(t, s, c); len(j) != 0 {
			t.Errorf("journal left behind: %d keys", len(j))
		}
		return winners
	}
	start = time.Now()
	if w := verify(claim(1, 200), 200); w != 16 {
		t.Errorf("round 1: %d of 16 claimers won, want all", w)
	}
	t.Logf("round 1 (16×200 of 10,000): %v", time.Since(start))
	start = time.Now()
	w := verify(claim(2, 500), 500) // 6,800 left, 8,000 asked
	if w == 0 || w > 13 {
		t.Errorf("round 2: %d claimers won; want 1..13", w)
	}
	t.Logf("round 2 (16×500 of 6,800): %d won in %v", w, time.Since(start))
}

// TestAllocateRingOrder: without a spread, a claim takes the first machines
// on the pool ring from the owner's bucket — by bucket, then by rendezvous
// rank — with or without an expression, across bucket groups and around the
// ring's end; and the count it reports when the pool is short is exact.
func TestAllocateRingOrder(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	seedReady(t, s, 90, 3)
	all, err := s.List(ctx, Query{State: StateReady})
	if err != nil {
		t.Fatal(err)
	}
	want := func(owner string, n int, keep func(*Machine) bool) []string {
		start := int(score(owner, "ring") % poolBuckets)
		var ms []*Machine
		for _, m := range all {
			if keep == nil || keep(m) {
				ms = append(ms, m)
			}
		}
		dist := func(m *Machine) int { return (poolBucket(m.ID) - start + poolBuckets) % poolBuckets }
		sort.Slice(ms, func(i, j int) bool {
			if di, dj := dist(ms[i]), dist(ms[j]); di != dj {
				return di < dj
			}
			si, sj := score(owner, ms[i].ID), score(owner, ms[j].ID)
			if si != sj {
				return si > sj
			}
			return ms[i].ID < ms[j].ID
		})
		out := ids(ms[:n])
		return out
	}
	big, _ := ParseWhere(`mem_gb >= 128 and source == "import"`)
	for _, owner := range []string{"ring-a", "ring-b", "ring-c", "ring-d"} {
		for _, tc := range []struct {
			where *Where
			keep  func(*Machine) bool
		}{{nil, nil}, {big, func(m *Machine) bool { return m.MemGB >= 128 }}} {
			dry, err := s.Allocate(ctx, AllocateRequest{Count: 25, Where: tc.where, Owner: owner, DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want(owner, 25, tc.keep), ids(dry)); diff != "" {
				t.Errorf("%s where=%v: not the ring order:\n%s", owner, tc.where, diff)
			}
		}
	}
	// A real claim takes exactly what the dry run showed.
	dry, _ := s.Allocate(ctx, AllocateRequest{Count: 40, Owner: "ring-e", DryRun: true})
	got, err := s.Allocate(ctx, AllocateRequest{Count: 40, Owner: "ring-e"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids(dry), ids(got)); diff != "" {
		t.Errorf("claim differs from its dry run:\n%s", diff)
	}
	// 50 ready are left, some with mem_gb >= 128: the counts
	// in the refusals are exact.
	left := 0
	for _, m := range all {
		if m.MemGB >= 128 && !slices.Contains(ids(got), m.ID) {
			left++
		}
	}
	if _, err := s.Allocate(ctx, AllocateRequest{Count: 51, Owner: "ring-f"}); err == nil || !strings.Contains(err.Error(), "only 50 machines are ready") {
		t.Errorf("over-ask: %v", err)
	}
	if _, err := s.Allocate(ctx, AllocateRequest{Count: left + 1, Where: big, Owner: "ring-f"}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("only %d machines are ready and", left)) {
		t.Errorf("over-ask with where: %v", err)
	}
}

// TestForeignNodesAreNotMachines: catalog nodes that are not ironrack's
// machines but carry the same meta (another tool's, an OS agent's) are
// never candidates, though a query's filter no longer sends the
// ironrack=machine marker to Consul alongside other pairs.
func TestForeignNodesAreNotMachines(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	seedReady(t, s, 12, 3)
	for i, rack := range []string{"rk00", "rk01", "rk02", "rk09"} {
		_, err := c.Catalog().Register(&api.CatalogRegistration{Node: fmt.Sprintf("foreign-%d", i), Address: "127.0.0.2",
			NodeMeta: map[string]string{"state": "ready", "rack": rack, "vendor": "Dell", "mem_gb": "512"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	// A spread decided on node meta alone: foreign nodes would be picked
	// and then missing, and the claim would retry until it gave up.
	w, _ := ParseWhere(`vendor == "Dell" and mem_gb >= 64`)
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got, err := s.Allocate(ctx2, AllocateRequest{Count: 12, Where: w, Spread: "rack", Owner: "spread"})
	if err != nil || len(got) != 12 {
		t.Fatalf("spread over meta: %d, %v", len(got), err)
	}
	if _, err := s.Release(ctx, got, Change{}); err != nil {
		t.Fatal(err)
	}
	// A query the catalog decides: only machines.
	ms, err := s.List(ctx, Query{Where: w, State: StateReady})
	if err != nil || len(ms) != 12 {
		t.Fatalf("list: %d, %v", len(ms), err)
	}
	for _, m := range ms {
		if !IsID(m.ID) {
			t.Errorf("listed %s", m.ID)
		}
	}
}
