package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/tiers/plans"
	"gopkg.in/yaml.v3"
)

// newScaleCLI is newCLI on a dev agent bound in this test's loopback
// range, with the example rack imported and commissioned: 40 ready
// machines in r1 and r2 (per rack 8 storage-dense, 8 compute, 4 edge in
// the default model's classes).
func newScaleCLI(t *testing.T) *cliEnv {
	t.Helper()
	a := consuldev.TWith(t, consuldev.Options{Bind: "127.0.35.3"})
	c := &cliEnv{t: t, addr: a.Addr, key: filepath.Join(t.TempDir(), "key")}
	c.ok("inventory", "import", example("rack-sheet.csv"))
	c.ok("inventory", "commission", "--facts", example("facts.json"))
	return c
}

// twoRackModel is the default model with replication factor 2, which the
// example's two racks can hold.
func twoRackModel(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "tiers", "capacity", "default-model.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["replication_factor"] = 2
	// The storage class's root: mirrored over its SSDs (scale plan writes
	// both keys for the storage tier, none for the others).
	for _, c := range m["classes"].([]any) {
		if c := c.(map[string]any); c["name"] == "storage-dense" {
			c["root_disk"], c["root_layout"] = "not rotational", "mirror"
		}
	}
	out, _ := json.Marshal(m)
	p := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(p, out, 0o600)
	return p
}

func stackConfig(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc.Config
}

func TestScalePlan(t *testing.T) {
	c := newScaleCLI(t)
	dir := t.TempDir()
	model := twoRackModel(t)
	stack := filepath.Join(dir, "Pulumi.prod.yaml")
	workload := []string{"--events-per-sec", "250000", "--retention-days", "14", "--bytes-per-event", "300", "--queries-per-sec", "500"}
	plan := func(extra ...string) []string {
		return append(append([]string{"scale", "plan"}, workload...), append([]string{"--model", model, "--stack", "prod", "--project-dir", dir}, extra...)...)
	}

	// The default model wants three racks for storage; the example has two.
	args := append(append([]string{"scale", "plan"}, workload...), "--project-dir", dir, "--stack", "prod")
	out, _, err := c.run("", args...)
	if err == nil || !strings.Contains(err.Error(), "class storage-dense") || !strings.Contains(err.Error(), "span 2 (r1, r2): 1 rack(s) short") ||
		!strings.Contains(err.Error(), "nothing written to "+stack) {
		t.Fatalf("R=3 on two racks: %v", err)
	}
	if !strings.Contains(out, "storage-dense") {
		t.Errorf("a refused plan still prints the step:\n%s", out)
	}
	if _, err := os.Stat(stack); !os.IsNotExist(err) {
		t.Fatalf("a refused plan wrote %s", stack)
	}

	// An existing stack file: other keys and comments survive.
	os.WriteFile(stack, []byte("# prod tiers\nencryptionsalt: v1:abc\nconfig:\n  ironrack-tiers:image: debian-12 # pinned\n  other:key: 7\n"), 0o640)
	// ingestion 250000·1.3/100000 → 4 compute; storage
	// 250000·300·86400·14·2·1.3 = 2.358e14 bytes / 3.6e13 → 7; query 650/200 → 4 compute.
	out = c.ok(plan()...)
	for _, want := range []string{
		"ingestion  compute        0 → 4 (+4)",
		"storage    storage-dense  0 → 7 (+7)",
		"query      compute        0 → 4 (+4)",
		"r1:4 r2:3",
		"325000 events/s",
		"235.87 TB",
		"wrote " + stack,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	cfg := stackConfig(t, stack)
	for k, want := range map[string]any{
		"ironrack-tiers:ingestionSize":     4,
		"ironrack-tiers:storageSize":       7,
		"ironrack-tiers:querySize":         4,
		"ironrack-tiers:storageSelector":   "mem_gb >= 256 and cpu_cores >= 32 and len(disks) >= 6",
		"ironrack-tiers:ingestionSelector": "mem_gb >= 384 and cpu_cores >= 48 and len(disks) < 6",
		"ironrack-tiers:image":             "debian-12",
		"other:key":                        7,
		"ironrack-tiers:storageRootDisk":   "not rotational",
		"ironrack-tiers:storageRootLayout": "mirror",
		"ironrack-tiers:queryRootLayout":   nil,
	} {
		if cfg[k] != want {
			t.Errorf("stack config %s = %#v, want %#v", k, cfg[k], want)
		}
	}
	raw, _ := os.ReadFile(stack)
	if !strings.Contains(string(raw), "# prod tiers") || !strings.Contains(string(raw), "encryptionsalt: v1:abc") || !strings.Contains(string(raw), "# pinned") {
		t.Errorf("stack file lost keys or comments:\n%s", raw)
	}
	if fi, _ := os.Stat(stack); fi.Mode().Perm() != 0o640 {
		t.Errorf("stack file mode %v, want 0640 kept", fi.Mode().Perm())
	}

	// The next plan steps from the sizes in the file: without headroom the
	// tiers become ingestion 3, storage 6, query 3; then a smaller workload
	// steps down. -o json prints the plan.
	c.ok(plan("--headroom", "0")...)
	workload[1] = "100000"
	out = c.ok(append([]string{"-o", "json"}, plan("--headroom", "0")...)...)
	var got struct {
		Tiers []struct {
			Tier                         string
			Current, Target, Add, Remove int
		}
		Classes []struct {
			Class         string
			Needed, Ready int
		}
		StackFile string `json:"stack_file"`
		Written   bool
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	// 100000 events/s: ingestion 1; storage 100000·300·86400·14·2 = 7.26e13
	// bytes / 3.6e13 → 3; query 500/200 → 3.
	want := map[string][4]int{"ingestion": {3, 1, 0, 2}, "storage": {6, 3, 0, 3}, "query": {3, 3, 0, 0}}
	for _, tp := range got.Tiers {
		if w := want[tp.Tier]; [4]int{tp.Current, tp.Target, tp.Add, tp.Remove} != w {
			t.Errorf("%s: current %d target %d add %d remove %d, want %v", tp.Tier, tp.Current, tp.Target, tp.Add, tp.Remove, w)
		}
	}
	if !got.Written || got.StackFile != stack || len(got.Classes) != 3 || got.Classes[1].Ready != 16 {
		t.Errorf("json: %+v", got)
	}
	// The plan is also in Consul, for the web UI: the latest one.
	client, err := api.NewClient(&api.Config{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := plans.NewStore(client, "").Latest(context.Background())
	if err != nil || rec == nil {
		t.Fatalf("stored plan: %v %v", rec, err)
	}
	if rec.Stack != "prod" || len(rec.Plan.Tiers) != 3 || rec.Plan.Tiers[1].Current != 6 || rec.Plan.Tiers[1].Target != 3 ||
		rec.ShardMoves != 0 || rec.ShardNote == "" {
		t.Errorf("stored plan: %+v", rec)
	}

	// A plan larger than the pool is refused, naming the class, and the
	// file stays as it was.
	before, _ := os.ReadFile(stack)
	workload[1] = "5000000"
	_, _, err = c.run("", plan()...)
	if err == nil || !strings.Contains(err.Error(), "plan refused: the ready pool cannot meet it") ||
		!strings.Contains(err.Error(), "class compute (mem_gb >= 384 and cpu_cores >= 48 and len(disks) < 6): ingestion + query need") ||
		!strings.Contains(err.Error(), "16 ready") {
		t.Fatalf("too big: %v", err)
	}
	if after, _ := os.ReadFile(stack); string(after) != string(before) {
		t.Errorf("a refused plan changed the stack file")
	}
}

func TestScalePlanFlagErrors(t *testing.T) {
	c := &cliEnv{t: t, addr: "127.0.35.4:1", key: filepath.Join(t.TempDir(), "key")}
	dir := t.TempDir()
	base := []string{"scale", "plan", "--events-per-sec", "1000", "--retention-days", "7", "--bytes-per-event", "200", "--queries-per-sec", "10", "--project-dir", dir}
	with := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	badModel := filepath.Join(dir, "bad.json")
	os.WriteFile(badModel, []byte(`{"replication_factor": 2, "classes": [{"name": "x", "where": "cpus > 1", "query_qps": 1}]}`), 0o600)
	badStack := filepath.Join(dir, "Pulumi.bad.yaml")
	os.WriteFile(badStack, []byte("config:\n  ironrack-tiers:storageSize: lots\n"), 0o600)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"negative rate":   {with("--events-per-sec", "-5"), "--events-per-sec -5: want a number > 0"},
		"zero retention":  {with("--retention-days", "0"), "--retention-days 0: want a number > 0"},
		"headroom":        {with("--headroom", "20"), "--headroom 20: want a fraction"},
		"not a number":    {with("--bytes-per-event", "lots"), "bytes-per-event"},
		"missing":         {[]string{"scale", "plan", "--events-per-sec", "1"}, `Required flags "retention-days, bytes-per-event, queries-per-sec" not set`},
		"stack path":      {with("--stack", "../x"), `--stack "../x"`},
		"project dir":     {with("--project-dir", filepath.Join(dir, "nope")), "--project-dir"},
		"model file":      {with("--model", filepath.Join(dir, "none.json")), "--model"},
		"model content":   {with("--model", badModel), `--model: model ` + badModel + `: classes[0] (x): where`},
		"stack file size": {with("--stack", "bad"), badStack + `: ironrack-tiers:storageSize is "lots", not a size`},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := c.run("", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestScalePlanLabModel: a lab-shaped pool (5 VMs on 2 racks, 1-2 GB, 1-2
// CPUs, 1-2 small disks) is refused by the default model and planned by
// `--model lab` (and by the shipped file's path): ingestion 1, storage 2
// on both racks, query 1.
func TestScalePlanLabModel(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,vendor,model\n")
	var facts []map[string]any
	for i, f := range []struct{ mem, cpu, disks int }{{1, 1, 1}, {2, 2, 2}, {1, 1, 2}, {1, 1, 1}, {2, 2, 1}} {
		serial := fmt.Sprintf("LAB%02d", i)
		fmt.Fprintf(&sheet, "r%d,%d,%s,127.0.36.%d,admin,pw,QEMU,Standard PC\n", i%2+1, i/2+1, serial, i+1)
		var disks []map[string]any
		for d := range f.disks {
			disks = append(disks, map[string]any{"name": fmt.Sprintf("vd%c", 'a'+d), "size_bytes": 4 << 30})
		}
		facts = append(facts, map[string]any{"serial": serial, "cpu_cores": f.cpu, "mem_gb": f.mem, "disks": disks})
	}
	os.WriteFile(filepath.Join(dir, "lab.csv"), []byte(sheet.String()), 0o600)
	b, _ := json.Marshal(facts)
	os.WriteFile(filepath.Join(dir, "facts.json"), b, 0o600)
	c.ok("inventory", "import", filepath.Join(dir, "lab.csv"))
	c.ok("inventory", "commission", "--facts", filepath.Join(dir, "facts.json"))

	workload := []string{"scale", "plan", "--events-per-sec", "100", "--retention-days", "1", "--bytes-per-event", "50",
		"--queries-per-sec", "5", "--stack", "lab", "--project-dir", dir}
	stack := filepath.Join(dir, "Pulumi.lab.yaml")
	if _, _, err := c.run("", workload...); err == nil || !strings.Contains(err.Error(), "plan refused") {
		t.Fatalf("the default model on a lab: %v", err)
	}
	if _, err := os.Stat(stack); !os.IsNotExist(err) {
		t.Fatalf("a refused plan wrote %s", stack)
	}
	for _, model := range []string{"lab", filepath.Join("..", "..", "..", "tiers", "capacity", "lab-model.json")} {
		out := c.ok(append(workload, "--model", model)...)
		cfg := stackConfig(t, stack)
		for k, want := range map[string]any{"ironrack-tiers:ingestionSize": 1, "ironrack-tiers:storageSize": 2, "ironrack-tiers:querySize": 1} {
			if cfg[k] != want {
				t.Errorf("--model %s: %s = %v, want %v\n%s", model, k, cfg[k], want, out)
			}
		}
		if !strings.Contains(out, "replication factor 2") || !strings.Contains(out, "r1:1 r2:1") {
			t.Errorf("--model %s: output lacks R=2 or storage over both racks:\n%s", model, out)
		}
		os.Remove(stack)
	}
	if _, _, err := c.run("", append(workload, "--model", "nosuch")...); err == nil || !strings.Contains(err.Error(), "neither an embedded model (default, lab) nor a file") {
		t.Errorf("--model nosuch: %v", err)
	}
}
