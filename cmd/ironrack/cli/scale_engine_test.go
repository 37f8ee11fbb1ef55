package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/tiers/stack"
)

// engineCLI is newCLI on a dev agent in the tiers tests' loopback range
// with 40 ready machines (the example rack), a freshly built provider and
// engine flags for a private file backend.
func engineCLI(t *testing.T) (*cliEnv, []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Pulumi engine and Consul; skipped under -short")
	}
	pulumiDir := defaultPulumiDir()
	if _, err := os.Stat(filepath.Join(pulumiDir, "bin", "pulumi")); err != nil {
		t.Fatalf("pulumi engine: %v (run scripts/setup)", err)
	}
	a := consuldev.TWith(t, consuldev.Options{Bind: "127.0.33.2"})
	c := &cliEnv{t: t, addr: a.Addr, key: filepath.Join(t.TempDir(), "key")}
	c.ok("inventory", "import", example("rack-sheet.csv"))
	c.ok("inventory", "commission", "--facts", example("facts.json"))
	prov := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", prov, "github.com/ironrack/ironrack/cmd/pulumi-resource-ironrack").CombinedOutput(); err != nil {
		t.Fatalf("build provider: %v\n%s", err, out)
	}
	dir := t.TempDir()
	t.Setenv("TEST_TIERS_PASSPHRASE", "test-passphrase")
	t.Setenv("PULUMI_CONFIG_PASSPHRASE", "")
	return c, []string{"--stack", "t", "--project-dir", dir, "--backend", "file://" + filepath.Join(dir, "state"),
		"--passphrase-env", "TEST_TIERS_PASSPHRASE", "--pulumi-dir", pulumiDir, "--provider-dir", prov,
		"--deployer", "state", "--drain-seconds", "0"}
}

func writeSizes(t *testing.T, dir string, ingestion, storage, query int) {
	t.Helper()
	s := fmt.Sprintf("config:\n  ironrack-tiers:ingestionSize: %d\n  ironrack-tiers:storageSize: %d\n  ironrack-tiers:querySize: %d\n", ingestion, storage, query)
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.t.yaml"), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestScaleEngineStateDeployerPreviewApply(t *testing.T) {
	c, flags := engineCLI(t)
	dir := flags[3]
	writeSizes(t, dir, 2, 2, 2)
	c.ok(append([]string{"scale", "apply"}, flags...)...)

	// ingestion 2 → 5, and storage (sharded: 256 shards, 2 replicas on the
	// example's 2 racks) 2 → 3.
	writeSizes(t, dir, 5, 3, 2)
	out := c.ok(append([]string{"scale", "preview"}, flags...)...)
	moves := regexp.MustCompile(`(?m)^~ storage shard replicas that will move: (\d+)$`).FindStringSubmatch(out)
	if moves == nil || moves[1] == "0" {
		t.Fatalf("preview does not show the storage tier's shard moves:\n%s", out)
	}
	var adds []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "+ ingestion ") {
			adds = append(adds, strings.Fields(l)[2])
		}
	}
	if len(adds) != 3 || !strings.Contains(out, "ingestion  2 → 5") || strings.Count(out, "will add (rack r") != 4 {
		t.Fatalf("preview 2→5 lists %v:\n%s", adds, out)
	}
	out = c.ok(append([]string{"-o", "json", "scale", "apply"}, flags...)...)
	var steps []stack.Step
	if err := json.Unmarshal([]byte(out), &steps); err != nil {
		t.Fatalf("apply -o json: %v\n%s", err, out)
	}
	for _, s := range steps {
		if s.Tier == "ingestion" && strings.Join(s.Add, " ") != strings.Join(sorted(adds), " ") {
			t.Errorf("apply added %v, preview listed %v", s.Add, adds)
		}
		if s.Tier == "storage" && (s.ShardMoves == nil || strconv.Itoa(*s.ShardMoves) != moves[1]) {
			t.Errorf("apply moved %v shard replicas, preview said %s", s.ShardMoves, moves[1])
		}
	}
	for _, id := range adds {
		if got := c.ok("-o", "json", "inventory", "show", id); !strings.Contains(got, `"state": "deployed"`) || !strings.Contains(got, `"tier": "ingestion"`) {
			t.Errorf("previewed machine %s after apply:\n%s", id, got)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestScaleEngineStateDeployerRefusesPlanLargerThanPool(t *testing.T) {
	c, flags := engineCLI(t)
	dir := flags[3]
	before := c.ok("inventory", "list", "--state", "ready")
	// Each tier fits the 40 ready machines alone; together they do not.
	writeSizes(t, dir, 20, 15, 10)
	_, _, err := c.run("", append([]string{"scale", "apply"}, flags...)...)
	if err == nil || !strings.Contains(err.Error(), "refused, nothing claimed") || !strings.Contains(err.Error(), "short by 5") {
		t.Fatalf("45 of 40: %v", err)
	}
	// One tier larger than the pool: the preview already refuses.
	writeSizes(t, dir, 50, 0, 0)
	_, _, err = c.run("", append([]string{"scale", "apply"}, flags...)...)
	if err == nil || !strings.Contains(err.Error(), "not enough ready machines") {
		t.Fatalf("50 of 40: %v", err)
	}
	if after := c.ok("inventory", "list", "--state", "ready"); after != before {
		t.Errorf("a refused plan changed the pool:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestScaleEngineRefusesShardRackShortfall: a storage tier whose replicas
// need more racks than its machines would span is refused by the joint
// check, before the engine runs and before another tier claims anything
// (the example rack has two racks).
func TestScaleEngineRefusesShardRackShortfall(t *testing.T) {
	c, flags := engineCLI(t)
	dir := flags[3]
	before := c.ok("inventory", "list", "--state", "ready")
	cfg := "config:\n  ironrack-tiers:ingestionSize: 2\n  ironrack-tiers:storageSize: 3\n  ironrack-tiers:querySize: 0\n" +
		"  ironrack-tiers:storageShards: 16\n  ironrack-tiers:storageReplicas: 3\n"
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.t.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	so, se, err := c.run("", append([]string{"scale", "apply"}, flags...)...)
	if err == nil || !strings.Contains(err.Error(), "refused, nothing claimed") || !strings.Contains(err.Error(), "tier storage: shards.replicas") ||
		!strings.Contains(err.Error(), "rack(s) short") {
		t.Fatalf("3 replicas over 2 racks: %v\nstdout:\n%s\nstderr:\n%s", err, so, se)
	}
	if after := c.ok("inventory", "list", "--state", "ready"); after != before {
		t.Errorf("a refused step changed the pool:\nbefore\n%s\nafter\n%s", before, after)
	}
}
