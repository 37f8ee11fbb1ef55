package inventory

// Benchmarks against raw Consul calls doing the same work, in the same run.
// Run them (not part of .ci/run) with:
//
//	go test -run '^$' -bench . -benchtime 300x ./inventory
//
// Each reports ironrack's and the baseline's latency percentiles and their
// ratio as custom metrics.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/internal/consuldev"
)

type benchFixture struct {
	s     *Store
	c     *api.Client
	agent *consuldev.Agent
}

var (
	fixtureMu sync.Mutex
	fixtures  = map[bool]benchFixture{}
)

// benchStore is one dev Consul agent with 10,000 ready machines in 25
// racks, shared by every benchmark of this run.
func benchStore(b *testing.B) benchFixture { return benchFixtureOf(b, false) }

// benchFixtureOf is the shared fixture on a dev agent (server false) or on
// a production-shaped single server (Raft log on disk, compact responses).
func benchFixtureOf(b *testing.B, server bool) benchFixture {
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if f, ok := fixtures[server]; ok {
		return f
	}
	opts := consuldev.Options{Server: server}
	if os.Getenv("IRONRACK_BENCH_PPROF") != "" {
		opts.ExtraHCL = "enable_debug = true\n"
	}
	agent := consuldev.TWith(&keepAlive{b}, opts)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		b.Fatal(err)
	}
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	s := New(c, Config{Sealer: NewSealer(key), Who: "bench"})
	seedReady(b, s, 10000, 25)
	f := benchFixture{s, c, agent}
	fixtures[server] = f
	return f
}

// keepAlive lets the shared agent outlive the first benchmark: its Cleanup
// is never run (the process exit stops the agent via Pdeathsig).
type keepAlive struct{ testing.TB }

func (keepAlive) Cleanup(func()) {}

func pct(ds []time.Duration, p float64) float64 {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p)
	return float64(ds[i].Microseconds()) / 1000
}

// rawQuery is the baseline: what a client of Consul alone does for the same
// query — the node-meta filtered catalog read, the filter on meta
// hand-coded, then the records of the matches in batched read transactions
// (8 at once), with no decoding.
func rawQuery(ctx context.Context, c *api.Client, meta map[string]string, keep func(map[string]string) bool) (int, error) {
	nodes, _, err := c.Catalog().Nodes((&api.QueryOptions{NodeMeta: meta}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	var ids []string
	for _, n := range nodes {
		if keep == nil || keep(n.Meta) {
			ids = append(ids, n.Node)
		}
	}
	return rawRecords(ctx, c, ids)
}

// rawIndexQuery does ironrack's own reads raw: the rack's key index, then
// every record of the rack, without decoding or evaluating. Against it,
// the ratio is ironrack's pure overhead (decoding, the expression, sorting).
func rawIndexQuery(ctx context.Context, c *api.Client, rack string) (int, error) {
	prefix := "ironrack/by/rack/" + rack + "/"
	keys, _, err := c.KV().Keys(prefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k[len(prefix):]
	}
	return rawRecords(ctx, c, ids)
}

func rawRecords(ctx context.Context, c *api.Client, ids []string) (int, error) {
	var total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for start := 0; start < len(ids); start += getBatch {
		batch := ids[start:min(start+getBatch, len(ids))]
		g.Go(func() error {
			ops := make(api.TxnOps, len(batch))
			for i, id := range batch {
				ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: "ironrack/machines/" + id}}
			}
			_, resp, _, err := c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return err
			}
			for _, r := range resp.Results {
				total.Add(int64(len(r.KV.Value)))
			}
			return nil
		})
	}
	return len(ids), g.Wait()
}

// benchQuery runs ironrack's List and the raw baseline(s) interleaved.
// `same` (may be nil) is a second baseline doing ironrack's own reads raw.
func benchQuery(b *testing.B, where string, meta map[string]string, keep func(map[string]string) bool, same func(context.Context, *api.Client) (int, error)) {
	f := benchStore(b)
	ctx := context.Background()
	w, err := ParseWhere(where)
	if err != nil {
		b.Fatal(err)
	}
	var ours, raw, own []time.Duration
	var n int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ms, err := f.s.List(ctx, Query{Where: w})
		t1 := time.Now()
		rn, rerr := rawQuery(ctx, f.c, meta, keep)
		t2 := time.Now()
		if err != nil || rerr != nil {
			b.Fatal(err, rerr)
		}
		if len(ms) != rn {
			b.Fatalf("ironrack selected %d, baseline %d", len(ms), rn)
		}
		n = len(ms)
		ours, raw = append(ours, t1.Sub(t0)), append(raw, t2.Sub(t1))
		if same != nil {
			t3 := time.Now()
			if _, err := same(ctx, f.c); err != nil {
				b.Fatal(err)
			}
			own = append(own, time.Since(t3))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "machines")
	b.ReportMetric(pct(ours, 0.5), "ironrack-p50-ms")
	b.ReportMetric(pct(ours, 0.99), "ironrack-p99-ms")
	b.ReportMetric(pct(raw, 0.5), "raw-p50-ms")
	b.ReportMetric(pct(raw, 0.99), "raw-p99-ms")
	b.ReportMetric(pct(ours, 0.99)/pct(raw, 0.99), "p99-ratio")
	if same != nil {
		b.ReportMetric(pct(own, 0.99), "same-reads-p99-ms")
		b.ReportMetric(pct(ours, 0.99)/pct(own, 0.99), "p99-ratio-same-reads")
	}
}

// BenchmarkWhereQuery: `rack == "rk07" and mem_gb >= 128` over 10,000
// machines: 267 of the rack's 400 match. The raw baseline filters the
// catalog by node meta and reads the 267 records; ironrack walks the rack's
// key index and reads the rack's 400 records.
func BenchmarkWhereQuery(b *testing.B) {
	benchQuery(b, `rack == "rk07" and mem_gb >= 128`,
		map[string]string{"ironrack": "machine", "rack": "rk07"},
		func(m map[string]string) bool { v, _ := strconv.Atoi(m["mem_gb"]); return v >= 128 },
		func(ctx context.Context, c *api.Client) (int, error) { return rawIndexQuery(ctx, c, "rk07") })
}

// BenchmarkWhereQueryMeta: an equality on a meta field without a key
// index (serial), decided in the catalog: one machine of 10,000. The raw
// baseline reads the catalog filtered by that pair alone.
func BenchmarkWhereQueryMeta(b *testing.B) {
	benchQuery(b, `serial == "POOL04242" and mem_gb >= 64`,
		map[string]string{"serial": "POOL04242"},
		func(m map[string]string) bool { v, _ := strconv.Atoi(m["mem_gb"]); return v >= 64 }, nil)
}

// BenchmarkWhereQueryFullScan: an expression on a field that is not in
// NodeMeta, so every one of the 10,000 records is read and evaluated.
func BenchmarkWhereQueryFullScan(b *testing.B) {
	benchQuery(b, `source == "import" and len(disks) == 0 and mem_gb >= 256`,
		map[string]string{"ironrack": "machine"},
		func(m map[string]string) bool { v, _ := strconv.Atoi(m["mem_gb"]); return v >= 256 }, nil)
}

// BenchmarkAllocate: 16 claimers, each with its own client, making
// allocations of `count` machines (3,200 in all per phase, a third of the pool) with a distinct owner; against 16 raw
// writers, each with its own client, doing single-key CAS writes on
// distinct keys for the same wall time. The two phases alternate five
// times (each claim phase starts from a full pool of 10,000), so drifting
// background load hits both alike. Reported: machines claimed per second,
// CAS writes per second, the ratio of the totals and the median of the
// per-phase ratios; and Consul's CPU time per claimed machine and per raw
// write (read from /proc), which a shared machine disturbs less than
// rates, and this process's own (client-µs/...). IRONRACK_BENCH_PPROF=DIR
// saves CPU profiles of Consul and of the claimers for every phase. consul=server is a production-shaped single server (Raft log
// fsync'd on disk, compact responses); consul=dev is `consul agent -dev`
// (in memory, every response pretty-printed).
func BenchmarkAllocate(b *testing.B) {
	for _, server := range []bool{true, false} {
		name := map[bool]string{true: "server", false: "dev"}[server]
		for _, per := range []int{1, 10, 20} {
			b.Run(fmt.Sprintf("consul=%s/count=%d", name, per), func(b *testing.B) { benchAllocate(b, server, per) })
		}
	}
}

// benchClient is a client of its own, configured as the CLI's (cmd/ironrack
// asks Consul for uncompressed responses).
func benchClient(b *testing.B, addr string) *api.Client {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Transport.DisableCompression = true
	c, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// procCPU is the user+system CPU time a process has used so far.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	st := string(raw)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// consulProfile saves a 1 s CPU profile of the agent (enable_debug) to
// file: about one claim phase. Set IRONRACK_BENCH_PPROF=DIR to take them.
func consulProfile(b *testing.B, addr, file string) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=1")
	if err != nil {
		b.Log(err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(file)
	if err != nil {
		b.Log(err)
		return
	}
	defer out.Close()
	io.Copy(out, resp.Body)
}

func benchAllocate(b *testing.B, server bool, per int) {
	f := benchFixtureOf(b, server)
	allocPhases(b, allocTarget{s: f.s, addr: f.agent.Addr, pid: f.agent.PID(),
		name: map[bool]string{true: "server", false: "dev"}[server]}, per, 5)
}

// allocTarget is the Consul that allocPhases runs against: a store on it,
// the HTTP address for the claimers' and raw writers' own clients, and the
// PID whose CPU time is counted (the agent, or a cluster's leader).
type allocTarget struct {
	s    *Store
	addr string
	pid  int
	name string
}

// allocPhases alternates claim phases (16 claimers, count per) and raw CAS
// phases of the same wall time, phases times, and reports the rates.
func allocPhases(b *testing.B, f allocTarget, per, phases int) {
	ctx := context.Background()
	const claimers = 16
	rounds := 3200 / (claimers * per) // each phase claims 3,200 of the 10,000, as in earlier sessions
	pid := f.pid
	var claimed, writes int64
	var total, claimCPU, rawCPU, claimSelf, rawSelf time.Duration
	var ratios []float64
	for i := 0; i < b.N*phases; i++ {
		// Release everything claimed so far, so each phase starts full.
		all, _ := f.s.List(ctx, Query{State: StateAllocated})
		if len(all) > 0 {
			if _, err := f.s.Release(ctx, all, Change{}); err != nil {
				b.Fatal(err)
			}
		}
		stores := make([]*Store, claimers)
		raws := make([]*api.Client, claimers)
		for k := range claimers {
			stores[k], raws[k] = New(benchClient(b, f.addr), Config{}), benchClient(b, f.addr)
		}
		var got atomic.Int64
		name := fmt.Sprintf("%s-%d-%d", f.name, per, i)
		dir := os.Getenv("IRONRACK_BENCH_PPROF")
		if dir != "" {
			// Per phase: Consul's CPU profile of the claims' first second,
			// and this process's of all the claims.
			go consulProfile(b, f.addr, fmt.Sprintf("%s/consul-%s-claim.pb.gz", dir, name))
			if pf, err := os.Create(fmt.Sprintf("%s/client-%s-claim.pb.gz", dir, name)); err == nil {
				pprof.StartCPUProfile(pf)
				defer pf.Close()
			}
		}
		cpu0, self0 := procCPU(b, pid), procCPU(b, os.Getpid())
		start := time.Now()
		var g errgroup.Group
		for k := range claimers {
			g.Go(func() error {
				for r := 0; r < rounds; r++ {
					ms, err := stores[k].Allocate(ctx, AllocateRequest{Count: per, Owner: fmt.Sprintf("bench-%d-%d-%d", i, k, r)})
					if err != nil {
						return err
					}
					got.Add(int64(len(ms)))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		pprof.StopCPUProfile()
		cpu1, self1 := procCPU(b, pid), procCPU(b, os.Getpid())

		var n atomic.Int64
		if dir != "" {
			go consulProfile(b, f.addr, fmt.Sprintf("%s/consul-%s-raw.pb.gz", dir, name))
		}
		deadline := time.Now().Add(elapsed)
		var rg errgroup.Group
		for k := range claimers {
			rg.Go(func() error {
				for j := 0; time.Now().Before(deadline) && j < 100000; j++ {
					key := fmt.Sprintf("bench/raw/%s/%d/%d/%d/%d", f.name, per, i, k, j)
					ok, _, err := raws[k].KV().CAS(&api.KVPair{Key: key, Value: []byte("claimed"), ModifyIndex: 0}, nil)
					if err != nil || !ok {
						return fmt.Errorf("raw CAS %s: %v %v", key, ok, err)
					}
					n.Add(1)
				}
				return nil
			})
		}
		if err := rg.Wait(); err != nil {
			b.Fatal(err)
		}
		rawElapsed := time.Since(deadline.Add(-elapsed))
		cpu2, self2 := procCPU(b, pid), procCPU(b, os.Getpid())
		claimed += got.Load()
		writes += n.Load()
		total += elapsed
		claimCPU += cpu1 - cpu0
		rawCPU += cpu2 - cpu1
		claimSelf += self1 - self0
		rawSelf += self2 - self1
		ratios = append(ratios, (float64(got.Load())/elapsed.Seconds())/(float64(n.Load())/rawElapsed.Seconds()))
	}
	sort.Float64s(ratios)
	ours := float64(claimed) / total.Seconds()
	raw := float64(writes) / total.Seconds()
	b.ReportMetric(ours, "claims/s")
	b.ReportMetric(raw, "raw-cas/s")
	b.ReportMetric(ours/raw, "ratio")
	b.ReportMetric(ratios[len(ratios)/2], "median-phase-ratio")
	b.ReportMetric(float64(claimCPU.Microseconds())/float64(claimed), "consul-µs/claim")
	b.ReportMetric(float64(rawCPU.Microseconds())/float64(writes), "consul-µs/raw")
	b.ReportMetric(float64(claimSelf.Microseconds())/float64(claimed), "client-µs/claim")
	b.ReportMetric(float64(rawSelf.Microseconds())/float64(writes), "client-µs/raw")
}
