package ui

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
)

// BenchmarkFilter compares a where-filter over 10,000 machines answered by
// the UI's cache (fed by blocking queries) with the same query through the
// CLI's path (inventory.Store.List against Consul), interleaved in the
// same run. It reports p50 and p99 of each and the ratio cache/store.
//
//	go test -run '^$' -bench Filter -benchtime 200x ./ui
func BenchmarkFilter(b *testing.B) {
	agent := consuldev.T(b)
	s := inventory.New(agent.Client(b), inventory.Config{Who: "bench", Sealer: inventory.NewSealer([32]byte{2})})
	importFleet(b, s, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCache(s, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go c.run(ctx)
	if err := c.waitReady(ctx); err != nil {
		b.Fatal(err)
	}
	for name, src := range map[string]string{
		"rack":      `rack == "rk07" and vendor != "HPE"`,
		"full-scan": `tags.class == "storage" and bmc.port == 623`,
	} {
		b.Run(name, func(b *testing.B) {
			w, err := inventory.ParseWhere(src)
			if err != nil {
				b.Fatal(err)
			}
			var cached, store []time.Duration
			n := 0
			for b.Loop() {
				t0 := time.Now()
				got, err := c.filter(w)
				cached = append(cached, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				t0 = time.Now()
				want, err := s.List(ctx, inventory.Query{Where: w})
				store = append(store, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(want) {
					b.Fatalf("cache %d machines, store %d", len(got), len(want))
				}
				n = len(got)
			}
			cp50, cp99 := pctl(cached, .5), pctl(cached, .99)
			sp50, sp99 := pctl(store, .5), pctl(store, .99)
			b.ReportMetric(float64(n), "machines")
			b.ReportMetric(cp50, "cache-p50-ms")
			b.ReportMetric(cp99, "cache-p99-ms")
			b.ReportMetric(sp50, "store-p50-ms")
			b.ReportMetric(sp99, "store-p99-ms")
			b.ReportMetric(cp99/sp99, "ratio-p99")
			b.Logf("%s: %d machines; cache p50 %.2f ms p99 %.2f ms; store p50 %.2f ms p99 %.2f ms", name, n, cp50, cp99, sp50, sp99)
			// p99 follows the host's load (a loaded 2-core CI machine
			// starves any one evaluation now and then); the goal is the
			// typical answer.
			if cp50 >= 50 {
				b.Errorf("cache p50 %.1f ms, want under 50 ms", cp50)
			}
		})
	}
}

// pctl is the p-th percentile of ds in milliseconds.
func pctl(ds []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return float64(s[int(float64(len(s)-1)*p)]) / 1e6
}
