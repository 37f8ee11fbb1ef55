package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/santhosh-tekuri/jsonschema/v5"
)

// cliEnv runs the CLI in-process against a real Consul agent.
type cliEnv struct {
	t    *testing.T
	addr string
	key  string
}

func newCLI(t *testing.T) *cliEnv {
	a := consuldev.T(t)
	return &cliEnv{t: t, addr: a.Addr, key: filepath.Join(t.TempDir(), "key")}
}

func (c *cliEnv) run(stdin string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	full := append([]string{"ironrack", "--consul", c.addr, "--key-file", c.key}, args...)
	err := Run(context.Background(), full, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func (c *cliEnv) ok(args ...string) string {
	c.t.Helper()
	out, errs, err := c.run("", args...)
	if err != nil {
		c.t.Fatalf("ironrack %s: %v\n%s", strings.Join(args, " "), err, errs)
	}
	return out
}

func example(name string) string { return filepath.Join("..", "..", "..", "docs", "examples", name) }

func loadSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat = true
	s, err := c.Compile(filepath.Join("..", "..", "..", "docs", "machine.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJSONContract checks list and show -o json against
// docs/machine.schema.json, in every lifecycle stage the CLI can reach.
func TestJSONContract(t *testing.T) {
	c := newCLI(t)
	schema := loadSchema(t)
	check := func(what, out string, array bool) []any {
		t.Helper()
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", what, err, out)
		}
		items := []any{v}
		if array {
			arr, ok := v.([]any)
			if !ok {
				t.Fatalf("%s: not an array: %s", what, out)
			}
			items = arr
		}
		for _, it := range items {
			if err := schema.Validate(it); err != nil {
				t.Fatalf("%s violates the schema: %#v\n%s", what, err, out)
			}
		}
		return items
	}
	if out := strings.TrimSpace(c.ok("-o", "json", "inventory", "list")); out != "[]" {
		t.Fatalf("empty list = %q, want []", out)
	}
	c.ok("inventory", "import", example("rack-sheet.csv"))
	if got := check("list after import", c.ok("-o", "json", "inventory", "list"), true); len(got) != 40 {
		t.Fatalf("list = %d machines", len(got))
	}
	m := check("show", c.ok("-o", "json", "inventory", "show", "SN1001X"), false)[0].(map[string]any)
	for _, f := range []string{"nics", "disks", "drift"} {
		if _, ok := m[f].([]any); !ok {
			t.Errorf("show: %s is %T, want an array", f, m[f])
		}
	}
	c.ok("inventory", "commission", "--facts", example("facts.json"))
	c.ok("inventory", "allocate", "-n", "3", "--owner", "contract", "--tier", "query")
	got := check("list after allocate", c.ok("-o", "json", "inventory", "list", "--state", "allocated"), true)
	if len(got) != 3 {
		t.Fatalf("allocated = %d", len(got))
	}
	d := got[0].(map[string]any)
	if d["tier"] != "query" || d["owner"] != "contract" || d["cpu_cores"].(float64) == 0 || len(d["disks"].([]any)) == 0 {
		t.Errorf("allocated machine = %v", d)
	}
	if out := strings.TrimSpace(c.ok("-o", "json", "inventory", "list", "--where", `rack == "nope"`)); out != "[]" {
		t.Errorf("no match = %q, want []", out)
	}
	// The password never appears in any output.
	for _, args := range [][]string{{"-o", "json", "inventory", "list"}, {"inventory", "export"}, {"-o", "csv", "inventory", "list"}, {"inventory", "show", "SN1001X"}} {
		if out := c.ok(args...); strings.Contains(out, "demo-sn") {
			t.Errorf("%v prints a password", args)
		}
	}
}

func TestImportErrorsNameFileLineColumn(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("rack,slot,serial,bmc_address,bmc_username,bmc_password,macs\nr1,1,S1,10.0.0.1,admin,pw,52:54:00:00:00:01\nr1,2,S1,10.0.0.x!,admin,pw,nope\n"), 0o600)
	_, _, err := c.run("", "inventory", "import", bad)
	if err == nil {
		t.Fatal("bad import succeeded")
	}
	for _, want := range []string{
		"import refused, nothing stored",
		bad + ":3: bmc_address: \"10.0.0.x!\" is not an IP address or host name",
		bad + ":3: macs: malformed MAC \"nope\"",
		bad + ":3: serial: serial S1 also on line 2",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if out := strings.TrimSpace(c.ok("-o", "json", "inventory", "list")); out != "[]" {
		t.Errorf("a refused import stored machines: %s", out)
	}
}

func TestCLIFlow(t *testing.T) {
	c := newCLI(t)
	c.ok("inventory", "import", example("rack-sheet.csv"))
	if out := c.ok("inventory", "import", example("rack-sheet.csv")); !strings.Contains(out, "0 created, 0 updated, 40 unchanged") {
		t.Errorf("re-import: %s", out)
	}
	if fi, err := os.Stat(c.key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	c.ok("inventory", "commission", "--facts", example("facts.json"))
	out := c.ok("-o", "csv", "inventory", "list", "--where", `mem_gb >= 256 and tags.class == "storage"`, "--rack", "r2")
	if n := strings.Count(out, "\n"); n != 9 { // header + 8 storage machines in r2
		t.Errorf("where list: %d lines\n%s", n, out)
	}
	c.ok("inventory", "tag", "SN1001X", "pool=gold", "row=")
	show := c.ok("inventory", "show", "52:54:00:01:01:01")
	if !strings.Contains(show, "pool=gold") || strings.Contains(show, "row=a") {
		t.Errorf("tag: %s", show)
	}
	if _, _, err := c.run("", "inventory", "set-state", "SN1001X", "deployed"); err == nil || !strings.Contains(err.Error(), "not allowed for operator") {
		t.Errorf("operator to deployed: %v", err)
	}
	if _, _, err := c.run("", "inventory", "set-state", "SN1001X", "broken", "--reason", "PSU failed"); err == nil || !strings.Contains(err.Error(), "put flags first") {
		t.Errorf("flag after args: %v", err)
	}
	c.ok("inventory", "set-state", "--reason", "PSU failed", "SN1001X", "broken")
	hist := c.ok("inventory", "history", "SN1001X")
	if !strings.Contains(hist, "ready → broken") || !strings.Contains(hist, "PSU failed") {
		t.Errorf("history: %s", hist)
	}
	alloc := c.ok("-o", "json", "inventory", "allocate", "-n", "4", "--spread", "rack", "--owner", "team-a")
	var ms []map[string]any
	json.Unmarshal([]byte(alloc), &ms)
	racks := map[any]int{}
	for _, m := range ms {
		racks[m["rack"]]++
	}
	if len(ms) != 4 || racks["r1"] != 2 || racks["r2"] != 2 {
		t.Errorf("allocate spread: %v", racks)
	}
	c.ok("inventory", "release", "--owner", "team-a")
	if out := strings.TrimSpace(c.ok("-o", "json", "inventory", "list", "--state", "allocated")); out != "[]" {
		t.Errorf("after release: %s", out)
	}
	// Export round-trips through import without passwords.
	exp := filepath.Join(t.TempDir(), "export.csv")
	c.ok("inventory", "export", exp)
	if out := c.ok("inventory", "import", exp); !strings.Contains(out, "40 unchanged") {
		t.Errorf("re-import of export: %s", out)
	}
	// Flag errors name the flag.
	for args, want := range map[string]string{
		"-o yaml inventory list":                         "--output \"yaml\"",
		"inventory list --where memgb>1":                 "--where",
		"inventory list --state sleeping":                "--state",
		"inventory allocate -n 1 --owner x --spread row": "unknown spread",
		"--log-level loud inventory list":                "--log-level",
	} {
		_, _, err := c.run("", strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", args, err, want)
		}
	}
	// Shared credentials come from stdin, never arguments.
	if out, _, err := c.run("hunter2\n", "bmc", "credential", "set", "shared/r9"); err != nil || !strings.Contains(out, "stored") {
		t.Errorf("credential set: %v %s", err, out)
	}
}
