package stack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/internal/tools"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/placement"
	"github.com/ironrack/ironrack/tiers/stack"
)

var (
	buildOnce   sync.Once
	providerDir string
	buildErr    error
)

// engine returns the Pulumi engine's directory and a freshly built
// provider's, or fails the test (skips under -short).
func engine(t *testing.T) (pulumiDir, provDir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Pulumi engine and Consul; skipped under -short")
	}
	pulumiDir, _ = tools.PulumiDir()
	if d := os.Getenv("IRONRACK_PULUMI_DIR"); d != "" {
		pulumiDir = d
	}
	if _, err := os.Stat(filepath.Join(pulumiDir, "bin", "pulumi")); err != nil {
		t.Fatalf("pulumi engine: %v (run scripts/setup)", err)
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ironrack-provider-")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", dir, "github.com/ironrack/ironrack/cmd/pulumi-resource-ironrack").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build provider: %v\n%s", err, out)
		}
		providerDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pulumiDir, providerDir
}

func options(t *testing.T, env *tiertest.Env, sizes [3]int) stack.Options {
	pulumiDir, provDir := engine(t)
	dir := t.TempDir()
	zero := 0
	return stack.Options{
		Stack: "t", Backend: "file://" + filepath.Join(dir, "state"), Home: filepath.Join(dir, "home"),
		WorkDir: filepath.Join(dir, "work"), Passphrase: "test-passphrase", PulumiDir: pulumiDir, ProviderDir: provDir,
		Config: map[string]string{
			stack.Project + ":ingestionSize": strconv.Itoa(sizes[0]),
			stack.Project + ":storageSize":   strconv.Itoa(sizes[1]),
			stack.Project + ":querySize":     strconv.Itoa(sizes[2]),
		},
		Provider: tiers.ProviderConfig{Consul: env.Addr, Deployer: "state", HealthTimeoutSeconds: 60}, DrainSeconds: &zero,
		Store: env.Store, Shards: placement.NewStore(env.Client, placement.StoreConfig{}),
	}
}

func owner(tier string) string {
	return "urn:pulumi:t::" + stack.Project + "::ironrack:index:Tier::" + tier
}

func owned(t *testing.T, env *tiertest.Env, tier string) []string {
	var out []string
	for _, m := range tiertest.Owned(t, env.Store, owner(tier)) {
		if m.State != inventory.StateDeployed {
			t.Errorf("%s machine %s is %s", tier, m.ID, m.State)
		}
		out = append(out, m.ID)
	}
	sort.Strings(out)
	return out
}

func step(t *testing.T, steps []stack.Step, tier string) stack.Step {
	t.Helper()
	for _, s := range steps {
		if s.Tier == tier {
			sort.Strings(s.Add)
			sort.Strings(s.Remove)
			return s
		}
	}
	t.Fatalf("no step for tier %s in %+v", tier, steps)
	return stack.Step{}
}

func TestEngineStateDeployerThreeTiersStepUpDown(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 24, 3)
	ctx := context.Background()
	o := options(t, env, [3]int{2, 2, 2})

	start := time.Now()
	steps, err := stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("create 3 tiers: %v", time.Since(start))
	for _, tier := range []string{"ingestion", "storage", "query"} {
		s := step(t, steps, tier)
		if got := owned(t, env, tier); len(got) != 2 || !cmp.Equal(got, s.Add) {
			t.Errorf("%s: holds %v, step added %v", tier, got, s.Add)
		}
	}
	before := owned(t, env, "ingestion")

	// 2 → 5: the preview lists exactly 3 new machines and claims nothing.
	o.Config[stack.Project+":ingestionSize"] = "5"
	steps, err = stack.Preview(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pre := step(t, steps, "ingestion")
	if len(pre.Add) != 3 || len(pre.Remove) != 0 || pre.From != 2 || pre.To != 5 {
		t.Fatalf("preview 2→5: %+v", pre)
	}
	if got := owned(t, env, "ingestion"); !cmp.Equal(got, before) {
		t.Fatalf("preview changed the tier: %v → %v", before, got)
	}
	for _, tier := range []string{"storage", "query"} {
		if s := step(t, steps, tier); len(s.Add)+len(s.Remove) != 0 {
			t.Errorf("preview changes %s: %+v", tier, s)
		}
	}
	// Apply claims exactly those.
	steps, err = stack.Apply(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pre.Add, step(t, steps, "ingestion").Add); diff != "" {
		t.Errorf("apply added other machines than previewed (-preview +apply):\n%s", diff)
	}
	want := append(append([]string(nil), before...), pre.Add...)
	sort.Strings(want)
	if diff := cmp.Diff(want, owned(t, env, "ingestion")); diff != "" {
		t.Errorf("ingestion after 2→5 (-want +got):\n%s", diff)
	}

	// 5 → 3: two drained, released and wiped.
	o.Config[stack.Project+":ingestionSize"] = "3"
	steps, err = stack.Preview(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pre = step(t, steps, "ingestion")
	if len(pre.Remove) != 2 || len(pre.Add) != 0 {
		t.Fatalf("preview 5→3: %+v", pre)
	}
	if _, err := stack.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	after := owned(t, env, "ingestion")
	if len(after) != 3 {
		t.Fatalf("ingestion after 5→3: %v", after)
	}
	es, _, err := env.Client.Health().Service("ingestion", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var serving []string
	for _, e := range es {
		serving = append(serving, e.Node.Node)
	}
	sort.Strings(serving)
	if diff := cmp.Diff(after, serving); diff != "" {
		t.Errorf("service instances vs tier (-tier +serving):\n%s", diff)
	}
	for _, id := range pre.Remove {
		m, err := env.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		h, err := env.Store.History(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		last := h[len(h)-2:]
		if m.State != inventory.StateReady || m.Owner != "" || last[0].What != "wipe" || last[1].What != "released" {
			t.Errorf("removed %s: %s owner %q, history ends %s, %s", id, m.State, m.Owner, last[0].What, last[1].What)
		}
	}
}

func TestEngineStateDeployerPlanLargerThanPoolRefused(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 9, 3)
	ctx := context.Background()
	o := options(t, env, [3]int{2, 2, 20})
	_, err := stack.Preview(ctx, o)
	if !errors.Is(err, inventory.ErrInsufficient) || !strings.Contains(err.Error(), "not enough ready machines") || !strings.Contains(err.Error(), "query") {
		t.Fatalf("preview of 20 query machines from 9: %v", err)
	}
	_, err = stack.Apply(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "refused, nothing claimed") {
		t.Fatalf("apply of 20 query machines from 9: %v", err)
	}
	// The joint plan refuses the whole step before the engine runs:
	// no tier claimed anything, not even those that fit.
	ready, err2 := env.Store.List(ctx, inventory.Query{State: inventory.StateReady})
	if err2 != nil {
		t.Fatal(err2)
	}
	if len(ready) != 9 {
		t.Errorf("%d machines ready after the refused apply, want all 9", len(ready))
	}
	t.Logf("apply refused: %v", err)
}

// children lists the PIDs of pid's children whose command starts with name.
func children(pid int, name string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		comm := s[i+1 : j]
		f := strings.Fields(s[j+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && strings.HasPrefix(comm, name) {
			out = append(out, c)
		}
	}
	return out
}

func TestEngineStateDeployerKilledUpConverges(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 60, 3)
	ctx := context.Background()
	o := options(t, env, [3]int{2, 2, 2})
	if _, err := stack.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	// A big step, killed (engine and provider, SIGKILL) once some of the
	// new machines are deployed and before all are.
	o.Config[stack.Project+":ingestionSize"] = "40"
	errc := make(chan error, 1)
	go func() { _, err := stack.Apply(ctx, o); errc <- err }()
	deadline := time.Now().Add(3 * time.Minute)
	killed := false
	for !killed && time.Now().Before(deadline) {
		n := 0
		for _, m := range tiertest.Owned(t, env.Store, owner("ingestion")) {
			if m.State == inventory.StateDeployed {
				n++
			}
		}
		if n > 5 {
			if n >= 40 {
				t.Fatalf("the step finished before it could be killed")
			}
			for _, eng := range children(os.Getpid(), "pulumi") {
				for _, p := range children(eng, "pulumi-resource") {
					syscall.Kill(p, syscall.SIGKILL)
				}
				syscall.Kill(eng, syscall.SIGKILL)
				killed = true
			}
			t.Logf("killed with %d of 40 deployed", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !killed {
		t.Fatal("never found the engine to kill")
	}
	if err := <-errc; err == nil {
		t.Fatal("killed up reported success")
	}
	// The killed run left machines claimed (allocated or deploying) that
	// the stack does not know about; running again converges.
	if _, err := stack.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := owned(t, env, "ingestion"); len(got) != 40 {
		t.Errorf("ingestion holds %d machines, want 40", len(got))
	}
	// No orphans: every machine not ready is in exactly one tier.
	all, err := env.Store.List(ctx, inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	tierOf := map[string]string{owner("ingestion"): "ingestion", owner("storage"): "storage", owner("query"): "query"}
	count := 0
	for _, m := range all {
		if m.State == inventory.StateReady {
			continue
		}
		count++
		if tierOf[m.Owner] == "" || m.State != inventory.StateDeployed {
			t.Errorf("orphan %s: %s owned by %q", m.ID, m.State, m.Owner)
		}
	}
	if count != 44 {
		t.Errorf("%d machines out of the pool, want 44", count)
	}
}

// TestSameStackTwoBackends: the same stack name in two backends, each with
// its own passphrase, from one PULUMI_HOME (the CLI's default work dir).
// The work dir's settings file keeps a backend's encryption salt, so a
// shared one refused the second backend ("incorrect passphrase").
func TestSameStackTwoBackends(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 3, 3)
	o := options(t, env, [3]int{1, 0, 0})
	o.WorkDir = "" // the default: per backend
	dir := t.TempDir()
	for i, pass := range []string{"first-passphrase", "second-passphrase"} {
		o.Backend = "file://" + filepath.Join(dir, fmt.Sprintf("state%d", i))
		o.Passphrase = pass
		if _, err := stack.Preview(context.Background(), o); err != nil {
			t.Fatalf("preview in backend %d: %v", i, err)
		}
	}
}
