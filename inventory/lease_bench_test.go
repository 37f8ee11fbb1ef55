package inventory

// What the address key (addrs/<ip>) costs per lease (issue #19), on a
// 3-server cluster with Raft on disk, through the client agent, as the boot
// server writes leases:
//
//	go test -run '^$' -bench LeaseClaim -benchtime 1x -timeout 10m -v ./inventory
//
// Four phases, alternating, IRONRACK_BENCH_ROUNDS (4) times, each with
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
// Reported per phase: leases/s, the three Consul servers' CPU per lease
// and this process's (ironrack's client side, or the raw client's). Every
// key written is deleted after each round (untimed). The host is shared:
// read the same-round ratios and the CPU per lease, not single rates.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
	batches := envInt("IRONRACK_BENCH_BATCHES", 60)
	rounds := envInt("IRONRACK_BENCH_ROUNDS", 4)
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
	self := os.Getpid()
	// wipe removes every lease and address key written (untimed), so
	// each round starts from the same state.
	wipe := func() {
		for _, p := range []string{claim.key("leases") + "/", claim.key("addrs") + "/", "rawlease/"} {
			if _, err := raw.KV().DeleteTree(p, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	rates := map[string][]float64{}
	cpus := map[string][]float64{} // servers' µs per lease, per round
	cpu := map[string]time.Duration{}
	ccpu := map[string]time.Duration{}
	count := map[string]int{}
	b.Logf("%d writers × %d batches of %d leases per phase, %d rounds; load %s", writers, batches, MaxLeaseBatch, rounds, loadavg())
	b.ResetTimer()
	for r := range rounds {
		for pi := range phases {
			// Rotate the order each round, so no phase always follows the
			// same one (Raft's log compaction, the GC of the one before).
			p := phases[(pi+r)%len(phases)]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			c0, cc0 := serversCPU(), procCPU(b, self)
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
			sc := serversCPU() - c0
			rates[p.name] = append(rates[p.name], float64(n)/d.Seconds())
			cpus[p.name] = append(cpus[p.name], float64(sc.Microseconds())/float64(n))
			cpu[p.name] += sc
			ccpu[p.name] += procCPU(b, self) - cc0
			count[p.name] += n
			b.Logf("round %d %-11s %6d leases in %6.2fs: %6.0f leases/s, servers' CPU %4.0f µs/lease; load %s",
				r, p.name, n, d.Seconds(), float64(n)/d.Seconds(), float64(sc.Microseconds())/float64(n), loadavg())
		}
		wipe()
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
		cus := float64(ccpu[p.name].Microseconds()) / float64(count[p.name])
		b.Logf("%-11s median %6.0f leases/s (%v); Consul servers' CPU %.0f µs per lease (%v), this process's %.0f µs", p.name, m, fmtRates(rates[p.name]), us, fmtRates(cpus[p.name]), cus)
		b.ReportMetric(m, p.name+"-leases/s")
		b.ReportMetric(us, p.name+"-server-µs/lease")
		b.ReportMetric(cus, p.name+"-client-µs/lease")
	}
	b.Logf("servers' CPU per lease, claim / noclaim %.2f, raw-claim / raw-noclaim %.2f",
		float64(cpu["claim"])/float64(cpu["noclaim"]), float64(cpu["raw-claim"])/float64(cpu["raw-noclaim"]))
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
