package inventory

// What the address key (addrs/<ip>) costs per lease (issue #19), on a
// 3-server cluster with Raft on disk, through the client agent, as the boot
// server writes leases:
//
//	go test -run '^$' -bench LeaseClaim -benchtime 1x -timeout 10m -v ./inventory
//
// Four phases, alternating, IRONRACK_BENCH_ROUNDS (3) times, each with
// IRONRACK_BENCH_WRITERS (4) writers doing IRONRACK_BENCH_BATCHES (30)
// batches of MaxLeaseBatch (64) new leases (distinct MACs and addresses,
// NoMachine as the boot server's MAC index replica sets it):
//
//   - claim: Store.StoreLeases as it runs in production: one read
//     transaction of the 64 address keys, then one write transaction of
//     64 lease sets and 64 address CAS ops (128, Consul's limit);
//   - noclaim: the same Store path with the address key turned off
//     (Store.noAddrClaim, set only here): no read, 64 lease sets;
//   - raw-claim: the same Consul work done raw (a read transaction of 64
//     keys, then 64 sets and 64 CAS ops), no ironrack code;
//   - raw-noclaim: one raw transaction of 64 sets.
//
// Reported per phase: leases/s and the Consul servers' CPU per lease.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/internal/consuldev"
)

func BenchmarkLeaseClaim(b *testing.B) {
	cl := consuldev.StartCluster(b, consuldev.ClusterOptions{})
	writers := envInt("IRONRACK_BENCH_WRITERS", 4)
	batches := envInt("IRONRACK_BENCH_BATCHES", 30)
	rounds := envInt("IRONRACK_BENCH_ROUNDS", 3)
	claim := clusterStore(b, cl.Client)
	noclaim := clusterStore(b, cl.Client)
	noclaim.noAddrClaim = true
	raw, err := NewConsulClient(&api.Config{Address: cl.Client})
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64 // a fresh MAC and address per lease
	next := func() (mac, ip string) {
		n := seq.Add(1)
		return fmt.Sprintf("02:10:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n)),
			fmt.Sprintf("10.%d.%d.%d", byte(n>>16), byte(n>>8), byte(n))
	}
	expires := time.Now().Add(time.Hour)
	leases := func() []Lease {
		ls := make([]Lease, MaxLeaseBatch)
		for i := range ls {
			mac, ip := next()
			ls[i] = Lease{MAC: mac, IP: ip, Expires: expires, NoMachine: true}
		}
		return ls
	}
	storeBatch := func(s *Store) func(context.Context) error {
		return func(ctx context.Context) error {
			for i, err := range s.StoreLeases(ctx, leases()) {
				if err != nil {
					return fmt.Errorf("lease %d: %w", i, err)
				}
			}
			return nil
		}
	}
	// rawBatch does raw what StoreLeases does for ls: the lease values are
	// the same JSON, the keys the same shape.
	rawBatch := func(withClaim bool) func(context.Context) error {
		return func(ctx context.Context) error {
			ls := leases()
			var reads, writes api.TxnOps
			for _, l := range ls {
				l.MAC, _ = NormalizeMAC(l.MAC)
				val, _ := json.Marshal(l)
				writes = append(writes, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "rawlease/leases/" + l.MAC, Value: val}})
				if withClaim {
					reads = append(reads, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: "rawlease/addrs/" + l.IP}})
					writes = append(writes, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "rawlease/addrs/" + l.IP, Value: []byte(l.MAC), Index: 0}})
				}
			}
			q := (&api.QueryOptions{}).WithContext(ctx)
			if len(reads) > 0 {
				if ok, resp, _, err := raw.Txn().Txn(reads, q); err != nil || !ok {
					return fmt.Errorf("raw read txn: ok %v, %v, %v", ok, err, resp)
				}
			}
			ok, resp, _, err := raw.Txn().Txn(writes, q)
			if err != nil || !ok {
				return fmt.Errorf("raw write txn: ok %v, %v, %v", ok, err, resp)
			}
			return nil
		}
	}
	phases := []struct {
		name string
		do   func(context.Context) error
	}{
		{"claim", storeBatch(claim)},
		{"noclaim", storeBatch(noclaim)},
		{"raw-claim", rawBatch(true)},
		{"raw-noclaim", rawBatch(false)},
	}
	serversCPU := func() time.Duration {
		var t time.Duration
		for _, sv := range cl.Servers {
			t += procCPU(b, sv.PID())
		}
		return t
	}
	rates := map[string][]float64{}
	cpu := map[string]time.Duration{}
	count := map[string]int{}
	b.Logf("%d writers × %d batches of %d leases per phase, %d rounds; load %s", writers, batches, MaxLeaseBatch, rounds, loadavg())
	b.ResetTimer()
	for r := range rounds {
		for pi := range phases {
			// Rotate the order each round, so no phase always follows the
			// same one (Raft's log compaction, the GC of the one before).
			p := phases[(pi+r)%len(phases)]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			c0 := serversCPU()
			t0 := time.Now()
			var g errgroup.Group
			for range writers {
				g.Go(func() error {
					for range batches {
						if err := p.do(ctx); err != nil {
							return err
						}
					}
					return nil
				})
			}
			err := g.Wait()
			d := time.Since(t0)
			cancel()
			if err != nil {
				b.Fatalf("round %d, %s: %v", r, p.name, err)
			}
			n := writers * batches * MaxLeaseBatch
			rates[p.name] = append(rates[p.name], float64(n)/d.Seconds())
			cpu[p.name] += serversCPU() - c0
			count[p.name] += n
			b.Logf("round %d %-11s %6d leases in %6.2fs: %6.0f leases/s; load %s", r, p.name, n, d.Seconds(), float64(n)/d.Seconds(), loadavg())
		}
	}
	b.StopTimer()
	med := func(xs []float64) float64 {
		ys := append([]float64(nil), xs...)
		sort.Float64s(ys)
		return ys[len(ys)/2]
	}
	for _, p := range phases {
		m := med(rates[p.name])
		us := float64(cpu[p.name].Microseconds()) / float64(count[p.name])
		b.Logf("%-11s median %6.0f leases/s (%v); Consul servers' CPU %.0f µs per lease", p.name, m, fmtRates(rates[p.name]), us)
		b.ReportMetric(m, p.name+"-leases/s")
		b.ReportMetric(us, p.name+"-server-µs/lease")
	}
	// Same-round ratios, so a load change between rounds cancels out.
	var withKey, raws []float64
	for r := range rounds {
		withKey = append(withKey, rates["claim"][r]/rates["noclaim"][r])
		raws = append(raws, rates["claim"][r]/rates["raw-claim"][r])
	}
	b.Logf("claim / noclaim per round %v (median %.2f): the address key costs %.0f %% of the lease rate", fmtRates(withKey), med(withKey), 100*(1-med(withKey)))
	b.Logf("claim / raw-claim per round %v (median %.2f); raw-claim / raw-noclaim median %.2f; load %s",
		fmtRates(raws), med(raws), med(rates["raw-claim"])/med(rates["raw-noclaim"]), loadavg())
	b.ReportMetric(med(withKey), "claim/noclaim")
	b.ReportMetric(med(raws), "claim/raw-claim")
}

func fmtRates(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		if x < 10 {
			s += fmt.Sprintf("%.2f", x)
		} else {
			s += fmt.Sprintf("%.0f", x)
		}
	}
	return s
}
