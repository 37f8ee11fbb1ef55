package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployReleaseRefusals runs deploy and release against a real Consul
// where nothing can be deployed: every refusal names the machine or the
// flag, exits non-zero, and changes no machine. (The workflow itself is
// tested end to end in provision's TestDeployQEMU.)
func TestDeployReleaseRefusals(t *testing.T) {
	c := newCLI(t)
	c.ok("inventory", "import", example("rack-sheet.csv"))
	c.ok("inventory", "commission", "--facts", example("facts.json"))
	before := c.ok("-o", "json", "inventory", "show", "SN1001X")

	key := filepath.Join(t.TempDir(), "id.pub")
	os.WriteFile(key, []byte("# comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey op@host\n"), 0o644)
	empty := filepath.Join(t.TempDir(), "empty.pub")
	os.WriteFile(empty, []byte("# nothing\n"), 0o644)

	cases := map[string]struct {
		args []string
		want string
	}{
		"no image flag":        {[]string{"deploy", "SN1001X"}, `"image" not set`},
		"empty image name":     {[]string{"deploy", "--image", ":1", "SN1001X"}, `--image ":1"`},
		"missing key file":     {[]string{"deploy", "--image", "debian", "--ssh-key", "/nonexistent.pub", "SN1001X"}, "--ssh-key"},
		"empty key file":       {[]string{"deploy", "--image", "debian", "--ssh-key", empty, "SN1001X"}, "no key in the file"},
		"no selection":         {[]string{"deploy", "--image", "debian"}, "name machines"},
		"image not in catalog": {[]string{"-o", "json", "deploy", "--image", "debian", "--ssh-key", key, "SN1001X"}, "1 of 1 machines failed"},
		"flag after args":      {[]string{"release", "SN1001X", "--allow-reboot"}, "put flags first"},
		"bad timeout":          {[]string{"release", "--timeout", "0s", "SN1001X"}, "--timeout"},
		"root disk not a disk field": {[]string{"deploy", "--image", "debian", "--ssh-key", key, "--root-disk", "mem_gb > 1", "SN1001X"},
			`--root-disk: root disk hint: where-expression "mem_gb > 1": unknown field "mem_gb" (fields: name, size_bytes, model, serial, rotational, wwn)`},
		"root layout":         {[]string{"deploy", "--image", "debian", "--ssh-key", key, "--root-layout", "raid5", "SN1001X"}, `--root-layout: root layout "raid5": want flat or mirror`},
		"mirror without hint": {[]string{"deploy", "--image", "debian", "--ssh-key", key, "--root-layout", "mirror", "SN1001X"}, "--root-layout: root layout mirror needs a root disk hint"},
		"erase level":         {[]string{"release", "--erase", "shred", "SN1001X"}, `--erase: erase level "shred": want quick, zero, secure`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, _, err := c.run("", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q; out:\n%s", err, tc.want, out)
			}
			if name == "image not in catalog" {
				var res []map[string]any
				if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || len(res) != 1 || res[0]["step"] != "image" || res[0]["result"] != "failed" {
					t.Fatalf("json summary %s (%v), want one failed row at step image", out, jerr)
				}
			}
		})
	}
	// Releasing a ready machine is nothing to do; a new one (SN1003X has no facts) is refused.
	out := c.ok("release", "SN1001X")
	if !strings.Contains(out, "already ready") || !strings.Contains(out, "1 ok, 0 failed") {
		t.Errorf("release of a ready machine:\n%s", out)
	}
	if after := c.ok("-o", "json", "inventory", "show", "SN1001X"); after != before {
		t.Errorf("refused commands changed the machine:\n%s\n%s", before, after)
	}
}
