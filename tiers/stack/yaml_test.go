package stack_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"
)

// TestYAMLProjectStateDeployer runs the shipped YAML project
// (deploy/pulumi/tiers) with the real engine and YAML language host: up,
// a step, destroy. Its resources are the inline program's (same URNs), so
// the claims carry the same owners.
func TestYAMLProjectStateDeployer(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 12, 3)
	pulumiDir, provDir := engine(t)
	dir := t.TempDir()
	proj := filepath.Join(dir, "tiers")
	os.MkdirAll(proj, 0o700)
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "pulumi", "tiers", "Pulumi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Point the plugin entry at the provider built for this test.
	b = bytes.Replace(b, []byte("path: ../../../bin"), []byte("path: "+provDir), 1)
	if err := os.WriteFile(filepath.Join(proj, "Pulumi.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	stackFile := func(ingestion string) {
		cfg := "config:\n  ironrack-tiers:ingestionSize: " + ingestion + "\n  ironrack-tiers:storageSize: 1\n  ironrack-tiers:querySize: 1\n" +
			"  ironrack-tiers:drainSeconds: 0\n  ironrack:consul: " + env.Addr + "\n  ironrack:deployer: state\n"
		old, _ := os.ReadFile(filepath.Join(proj, "Pulumi.t.yaml"))
		// keep the encryption salt `stack init` wrote
		var salt string
		for _, l := range strings.Split(string(old), "\n") {
			if strings.HasPrefix(l, "encryptionsalt:") {
				salt = l + "\n"
			}
		}
		os.WriteFile(filepath.Join(proj, "Pulumi.t.yaml"), []byte(salt+cfg), 0o600)
	}
	pulumi := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(pulumiDir, "bin", "pulumi"), append(args, "--non-interactive")...)
		cmd.Dir = proj
		cmd.Env = append(os.Environ(), "PULUMI_HOME="+filepath.Join(dir, "home"), "PULUMI_BACKEND_URL=file://"+filepath.Join(dir, "state"),
			"PULUMI_CONFIG_PASSPHRASE=test", "PULUMI_SKIP_UPDATE_CHECK=true", "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true",
			"PATH="+filepath.Join(pulumiDir, "bin")+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pulumi %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	pulumi("stack", "init", "t", "--secrets-provider", "passphrase")
	stackFile("2")
	start := time.Now()
	pulumi("up", "--yes", "--skip-preview", "-s", "t")
	t.Logf("YAML up, 3 tiers: %v", time.Since(start))
	first := owned(t, env, "ingestion")
	if len(first) != 2 {
		t.Fatalf("ingestion holds %v, want 2", first)
	}
	// The storage tier is sharded by default: 256 shards, one replica on
	// its one machine (3 replicas capped at the racks it spans).
	shards := placement.NewStore(env.Client, placement.StoreConfig{})
	if m, _, err := shards.Get(context.Background(), "storage"); err != nil || len(m.Shards) != 256 || m.Replicas != 1 {
		t.Fatalf("storage shard map: %d shards × %d (%v)", len(m.Shards), m.Replicas, err)
	}
	stackFile("4")
	out := pulumi("preview", "--diff", "-s", "t")
	if got := len(owned(t, env, "ingestion")); got != 2 {
		t.Fatalf("preview changed the tier: holds %d", got)
	}
	if !strings.Contains(out, "ingestionAdded") {
		t.Errorf("preview does not show the added machines:\n%s", out)
	}
	t.Logf("preview:\n%s", out)
	pulumi("up", "--yes", "--skip-preview", "-s", "t")
	now := owned(t, env, "ingestion")
	if len(now) != 4 {
		t.Fatalf("ingestion holds %v, want 4", now)
	}
	// The machines the step claimed are the ones the preview showed added.
	added := out[strings.Index(out, "ingestionAdded"):]
	added = added[:strings.Index(added, "ingestionMachineIds")]
	for _, id := range now {
		if id != first[0] && id != first[1] && !strings.Contains(added, `=> "`+id+`"`) {
			t.Errorf("claimed %s, which the preview did not list as added:\n%s", id, added)
		}
	}
	pulumi("destroy", "--yes", "--skip-preview", "-s", "t")
	ready, err := env.Store.List(context.Background(), inventory.Query{State: inventory.StateReady})
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 12 {
		t.Errorf("after destroy %d of 12 machines are ready", len(ready))
	}
	if _, _, err := shards.Get(context.Background(), "storage"); err == nil {
		t.Error("the storage shard map outlived the destroy")
	}
}
