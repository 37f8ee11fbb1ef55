package stack_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/internal/tools"
	"github.com/ironrack/ironrack/inventory"
)

// BenchmarkScaleStep20 measures a +20-machine step of the ingestion tier
// as an operator takes it — `ironrack scale preview`, then `ironrack scale
// apply` (in-process plan and pool check, then the engine's up), with the
// state-level deployer — against a direct `ironrack inventory allocate
// --count 20`, all three the CLI binary, interleaved in the same run. Each
// iteration steps the tier up by 20 and claims (then releases) 20
// directly. Reported per step: preview_s, apply_s, allocate_s,
// ratio = (preview+apply)/allocate and overhead_s = preview+apply-allocate.
//
//	go test -run '^$' -bench ScaleStep20 -benchtime 5x ./tiers/stack
func BenchmarkScaleStep20(b *testing.B) {
	env := tiertest.Start(b)
	tiertest.SeedReady(b, env.Store, 20*(b.N+2)+20, 4)
	pulumiDir, binDir := engineB(b)
	bin := filepath.Join(binDir, "ironrack")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ironrack/ironrack/cmd/ironrack").CombinedOutput(); err != nil {
		b.Fatalf("build ironrack: %v\n%s", err, out)
	}
	dir := b.TempDir()
	b.Setenv("BENCH_PASSPHRASE", "bench")
	run := func(args ...string) (string, time.Duration) {
		start := time.Now()
		out, err := exec.Command(bin, append([]string{"--consul", env.Addr}, args...)...).CombinedOutput()
		if err != nil {
			b.Fatalf("ironrack %v: %v\n%s", args, err, out)
		}
		return string(out), time.Since(start)
	}
	scale := func(verb string, size int) (string, time.Duration) {
		os.WriteFile(filepath.Join(dir, "Pulumi.bench.yaml"), []byte(fmt.Sprintf(
			"config:\n  ironrack-tiers:ingestionSize: %d\n  ironrack-tiers:storageSize: 0\n  ironrack-tiers:querySize: 0\n", size)), 0o600)
		return run("scale", verb, "--stack", "bench", "--project-dir", dir, "--backend", "file://"+filepath.Join(dir, "state"),
			"--passphrase-env", "BENCH_PASSPHRASE", "--pulumi-dir", pulumiDir, "--deployer", "state", "--drain-seconds", "0")
	}
	scale("apply", 0) // the empty stack
	var pre, app, alloc time.Duration
	b.ResetTimer()
	for i := range b.N {
		owner := fmt.Sprintf("bench-%d", i)
		_, d := run("inventory", "allocate", "--count", "20", "--spread", "rack", "--owner", owner)
		alloc += d
		b.StopTimer()
		run("inventory", "release", "--owner", owner)
		b.StartTimer()
		out, d := scale("preview", 20*(i+1))
		pre += d
		if n := strings.Count(out, "+ ingestion "); n != 20 {
			b.Fatalf("preview lists %d added machines, want 20:\n%s", n, out)
		}
		_, d = scale("apply", 20*(i+1))
		app += d
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(pre.Seconds()/n, "preview_s")
	b.ReportMetric(app.Seconds()/n, "apply_s")
	b.ReportMetric(alloc.Seconds()/n, "allocate_s")
	b.ReportMetric((pre+app).Seconds()/alloc.Seconds(), "ratio")
	b.ReportMetric((pre+app-alloc).Seconds()/n, "overhead_s")
	ms, _ := env.Store.List(context.Background(), inventory.Query{State: inventory.StateDeployed})
	if len(ms) != 20*b.N {
		b.Errorf("%d deployed, want %d", len(ms), 20*b.N)
	}
}

// engineB is engine for benchmarks.
func engineB(b *testing.B) (string, string) {
	pulumiDir, _ := tools.PulumiDir()
	if _, err := os.Stat(filepath.Join(pulumiDir, "bin", "pulumi")); err != nil {
		b.Fatalf("pulumi engine: %v (run scripts/setup)", err)
	}
	prov := b.TempDir()
	if out, err := exec.Command("go", "build", "-o", prov, "github.com/ironrack/ironrack/cmd/pulumi-resource-ironrack").CombinedOutput(); err != nil {
		b.Fatalf("build provider: %v\n%s", err, out)
	}
	return pulumiDir, prov
}
