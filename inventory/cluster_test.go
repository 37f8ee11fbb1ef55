package inventory

// Drills on a 3-server Consul cluster (consuldev.StartCluster): what the
// inventory promises while servers die, stall and are cut off. Each drill
// is bounded in load and time; see docs/operations.md "Running at scale".

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
)

// clusterStore is a Store on the cluster's client agent, with ironrack's
// retry policy (NewConsulClient), as every ironrack process builds it.
func clusterStore(t testing.TB, addr string) *Store {
	t.Helper()
	c, err := NewConsulClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	return New(c, Config{Sealer: NewSealer(key), Who: "drill"})
}

// outcome is one call's result as its caller saw it.
type outcome struct {
	what string
	took time.Duration
	err  error
	ids  []string // machines a successful claim returned
}

// TestDrillKillLeader: the leader is killed while 16 claimers, a
// 2,000-machine import and lease writes for 200 clients run at once.
// Afterwards no machine is claimed twice, every caller's answer matches
// Consul (no orphaned claim, no "failed" claim that happened), every record
// decodes and its history ends in its state, no address is leased to two
// MACs, every call returned within its deadline, and at least 90% of the
// calls succeeded.
//
// The leases go through Store.StoreLeases, the DHCP server's group commit,
// not through DHCP itself (TestDrillTwoBootServers, when it exists, does).
func TestDrillKillLeader(t *testing.T) {
	cl := consuldev.StartCluster(t, consuldev.ClusterOptions{})
	s := clusterStore(t, cl.Client)
	seedReady(t, s, 400, 8)
	ctx := context.Background()
	if err := s.SetCredential(ctx, "shared/bmc", "secret"); err != nil {
		t.Fatal(err)
	}
	const (
		claimers  = 16
		rounds    = 6
		leasers   = 200
		deadline  = 45 * time.Second // per call: an election plus the retries
		importRow = 2000
	)
	var mu sync.Mutex
	var outs []outcome
	record := func(o outcome) { mu.Lock(); outs = append(outs, o); mu.Unlock() }
	call := func(what string, fn func(ctx context.Context) ([]string, error)) {
		cctx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		start := time.Now()
		ids, err := fn(cctx)
		record(outcome{what: what, took: time.Since(start), err: err, ids: ids})
	}

	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_credential_ref\n")
	for i := range importRow {
		fmt.Fprintf(&sheet, "imp%02d,%d,IMP%05d,10.66.%d.%d,admin,shared/bmc\n", i%20, i/20+1, i, i/250, i%250+1)
	}
	rows, err := ParseSheet("drill.csv", strings.NewReader(sheet.String()))
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	killed := make(chan struct{})
	for c := range claimers {
		wg.Go(func() {
			for r := range rounds {
				owner := fmt.Sprintf("claimer%02d-%d", c, r)
				call("allocate "+owner, func(ctx context.Context) ([]string, error) {
					ms, err := s.Allocate(ctx, AllocateRequest{Count: 3, Owner: owner})
					var ids []string
					for _, m := range ms {
						ids = append(ids, m.ID)
					}
					return ids, err
				})
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		call("import", func(ctx context.Context) ([]string, error) {
			_, err := s.Import(ctx, "drill.csv", rows, Change{})
			return nil, err
		})
	})
	for g := range 4 { // 4 lease batchers, 50 clients each, renewing
		wg.Go(func() {
			for r := range 8 {
				var ls []Lease
				for i := g * leasers / 4; i < (g+1)*leasers/4; i++ {
					ls = append(ls, Lease{MAC: fmt.Sprintf("02:dd:00:00:%02x:%02x", i/256, i%256), IP: fmt.Sprintf("10.99.%d.%d", i/250, i%250+10),
						Expires: time.Now().Add(time.Hour), NoMachine: true})
				}
				call(fmt.Sprintf("leases %d/%d", g, r), func(ctx context.Context) ([]string, error) {
					return nil, errors.Join(s.StoreLeases(ctx, ls)...)
				})
				time.Sleep(300 * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		time.Sleep(700 * time.Millisecond)
		l, err := cl.Leader(ctx)
		if err != nil {
			t.Error(err)
			close(killed)
			return
		}
		t.Logf("killing the leader %s (pid %d)", l.Name, l.PID())
		cl.Kill(l)
		close(killed)
		time.Sleep(5 * time.Second)
		cl.Restart(l)
	})
	wg.Wait()
	<-killed
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cl.WaitHealthy(hctx); err != nil {
		t.Fatal(err)
	}

	// What Consul holds.
	all, err := s.List(ctx, Query{})
	if err != nil {
		t.Fatalf("list after the drill: %v", err)
	}
	byOwner := map[string][]string{}
	for _, m := range all {
		if m.Owner != "" {
			byOwner[m.Owner] = append(byOwner[m.Owner], m.ID)
		}
	}
	ok, claimedBy := 0, map[string]string{}
	var slowest outcome
	for _, o := range outs {
		if o.took > slowest.took {
			slowest = o
		}
		if o.took > deadline+time.Second {
			t.Errorf("%s took %s, past its deadline %s", o.what, o.took, deadline)
		}
		if o.err == nil {
			ok++
		} else {
			t.Logf("%s failed after %s: %v", o.what, o.took.Round(time.Millisecond), o.err)
		}
		owner, isClaim := strings.CutPrefix(o.what, "allocate ")
		if !isClaim {
			continue
		}
		held := byOwner[owner]
		switch {
		case o.err == nil && len(held) != 3:
			t.Errorf("%s succeeded with %v, but Consul holds %v for it", o.what, o.ids, held)
		case o.err != nil && len(held) != 0:
			t.Errorf("%s reported failure (%v), but Consul holds %v for it: an orphaned claim", o.what, o.err, held)
		}
		for _, id := range o.ids {
			if prev, dup := claimedBy[id]; dup {
				t.Errorf("machine %s claimed twice: by %s and %s", id, prev, owner)
			}
			claimedBy[id] = owner
		}
	}
	imported := 0
	for _, m := range all {
		if strings.HasPrefix(m.Serial, "IMP") {
			imported++
		}
	}
	if imported != 0 && imported != importRow {
		t.Errorf("the import left %d of %d machines: not all or nothing", imported, importRow)
	}
	// Every record's history agrees with its state.
	for _, m := range all {
		h, err := s.History(ctx, m.ID)
		if err != nil {
			t.Fatalf("history of %s: %v", m.ID, err)
		}
		last := State("")
		for _, e := range h {
			if e.To != "" {
				last = e.To
			}
		}
		if last != m.State {
			t.Errorf("machine %s is %s, but its history ends in %q", m.ID, m.State, last)
		}
	}
	leases, err := s.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	macOf := map[string]string{}
	for _, l := range leases {
		if prev, dup := macOf[l.IP]; dup && prev != l.MAC {
			t.Errorf("address %s leased to %s and %s", l.IP, prev, l.MAC)
		}
		macOf[l.IP] = l.MAC
	}
	rate := float64(ok) / float64(len(outs))
	t.Logf("%d calls, %d succeeded (%.1f%%); slowest %s took %s; import: %d machines; %d leases", len(outs), ok, 100*rate, slowest.what, slowest.took.Round(time.Millisecond), imported, len(leases))
	if rate < 0.9 {
		t.Errorf("only %.1f%% of the calls succeeded through the election, want at least 90%%", 100*rate)
	}
}

// TestDrillCutLeader: the leader is cut off from the other servers. Writes
// sent to its side fail with a clear error; writes through the client
// agent go on once the majority has elected a new leader; after the heal
// every acknowledged write is there.
func TestDrillCutLeader(t *testing.T) {
	cl := consuldev.StartCluster(t, consuldev.ClusterOptions{})
	ctx := context.Background()
	s := clusterStore(t, cl.Client)
	seedReady(t, s, 60, 4)
	l, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A store on the old leader's side of the cut: its own HTTP API.
	cut := clusterStore(t, l.HTTP)
	cut.cfg.RetryFor = 5 * time.Second
	cut.cfg.OpTimeout = 5 * time.Second
	cl.Cut(l)
	t.Logf("cut off the leader %s", l.Name)

	var acked []string
	cutAt := time.Now()
	for i := range 8 {
		owner := fmt.Sprintf("majority-%d", i)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ms, err := s.Allocate(cctx, AllocateRequest{Count: 2, Owner: owner})
		cancel()
		if err != nil {
			t.Errorf("allocate %s on the majority's side: %v", owner, err)
			continue
		}
		acked = append(acked, owner)
		_ = ms
	}
	t.Logf("8 claims on the majority's side took %s", time.Since(cutAt).Round(100*time.Millisecond))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	start := time.Now()
	_, err = cut.Allocate(cctx, AllocateRequest{Count: 2, Owner: "minority"})
	cancel()
	var nl *NoLeaderError
	switch {
	case err == nil:
		t.Errorf("an allocation on the cut-off side succeeded")
	case !errors.As(err, &nl) || strings.Count(err.Error(), "\n") > 0:
		t.Errorf("the cut-off side's failure is not one clear no-leader line: %v", err)
	default:
		t.Logf("the cut-off side failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	cl.Heal(l)
	healAt := time.Now()
	hctx, hcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer hcancel()
	if err := cl.WaitHealthy(hctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("healthy %s after the heal", time.Since(healAt).Round(100*time.Millisecond))
	all, err := s.List(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	for _, m := range all {
		held[m.Owner]++
	}
	for _, o := range acked {
		if held[o] != 2 {
			t.Errorf("acknowledged claim of %s: Consul holds %d machines after the heal, want 2", o, held[o])
		}
	}
	if held["minority"] != 0 {
		t.Errorf("the cut-off side's failed claim holds %d machines", held["minority"])
	}
}

// TestDrillStallFollower: a follower is stalled (SIGSTOP) for 30 s. The
// p99 latency of an allocation and of a where-query stays within 2x of the
// same test's unfaulted baseline, and nothing fails.
func TestDrillStallFollower(t *testing.T) {
	cl := consuldev.StartCluster(t, consuldev.ClusterOptions{})
	ctx := context.Background()
	s := clusterStore(t, cl.Client)
	seedReady(t, s, 200, 8)
	w, err := ParseWhere(`rack == "rk03" and mem_gb >= 64`)
	if err != nil {
		t.Fatal(err)
	}
	// One phase: a claimer (allocate 1, release it) and a querier, each in
	// a loop, for d. Returns the latencies.
	phase := func(name string, d time.Duration) (alloc, query []time.Duration) {
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				ms, err := s.Allocate(cctx, AllocateRequest{Count: 1, Owner: fmt.Sprintf("%s-%d", name, i)})
				alloc = append(alloc, time.Since(start))
				if err == nil {
					_, err = s.Release(cctx, ms, Change{})
				}
				cancel()
				if err != nil {
					t.Errorf("%s: claim %d: %v", name, i, err)
					return
				}
			}
		})
		wg.Go(func() {
			for time.Now().Before(end) {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				ms, err := s.List(cctx, Query{Where: w})
				query = append(query, time.Since(start))
				cancel()
				if err != nil || len(ms) == 0 {
					t.Errorf("%s: where-query: %d machines, %v", name, len(ms), err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		wg.Wait()
		return alloc, query
	}
	phase("warm-up", 2*time.Second)
	ba, bq := phase("baseline", 15*time.Second)
	fs, err := cl.Followers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	t.Logf("stalling follower %s (pid %d) for 30s", f.Name, f.PID())
	cl.Stop(f)
	sa, sq := phase("stalled", 30*time.Second)
	cl.Cont(f)
	for _, c := range []struct {
		what         string
		base, faulty []time.Duration
	}{{"allocate", ba, sa}, {"where-query", bq, sq}} {
		pb, pf := p99(c.base), p99(c.faulty)
		t.Logf("%s p99: baseline %s (%d calls), follower stalled %s (%d calls), ratio %.2f", c.what, pb, len(c.base), pf, len(c.faulty), float64(pf)/float64(pb))
		if pf > 2*pb {
			t.Errorf("%s p99 with a stalled follower is %s, more than 2x the baseline %s", c.what, pf, pb)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cl.WaitHealthy(hctx); err != nil {
		t.Fatal(err)
	}
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*99)/100]
}
