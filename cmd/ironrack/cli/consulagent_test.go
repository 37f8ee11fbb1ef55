package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConsulAgentSecrets: the gossip key, the agent token and the CA come
// from files or stdin (never arguments), are refused by name when
// malformed, are kept when another is set, are never printed, and are
// cleared.
func TestConsulAgentSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real consul agent; skipped under -short")
	}
	c := newCLI(t)
	const key, token = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "2f1c3e8a-6a7b-4c1d-9e2f-0a1b2c3d4e5f"
	dir := t.TempDir()
	kf, tf, bad := filepath.Join(dir, "gossip.key"), filepath.Join(dir, "token"), filepath.Join(dir, "bad")
	os.WriteFile(kf, []byte(key+"\n"), 0o600)
	os.WriteFile(tf, []byte(token+"\n"), 0o600)
	os.WriteFile(bad, []byte("hunter2\n"), 0o600)

	if out := c.ok("consul-agent", "show"); !strings.Contains(out, "gossip key unset, ACL token unset") {
		t.Errorf("show before set: %q", out)
	}
	for name, args := range map[string][]string{
		"no file":         {"consul-agent", "set"},
		"value as arg":    {"consul-agent", "set", token},
		"both from stdin": {"consul-agent", "set", "--gossip-key-file", "-", "--token-file", "-"},
		"bad token":       {"consul-agent", "set", "--token-file", bad},
		"bad key":         {"consul-agent", "set", "--gossip-key-file", bad},
		"missing file":    {"consul-agent", "set", "--token-file", filepath.Join(dir, "nope")},
		"empty stdin":     {"consul-agent", "set", "--token-file", "-"},
	} {
		out, errs, err := c.run("", args...)
		if err == nil {
			t.Errorf("%s: accepted: %s", name, out)
			continue
		}
		if strings.Contains(err.Error()+errs+out, "hunter2") {
			t.Errorf("%s: the error echoes the file's content: %v", name, err)
		}
	}
	if out := c.ok("consul-agent", "show"); !strings.Contains(out, "gossip key unset, ACL token unset") {
		t.Errorf("refused sets stored something: %q", out)
	}

	out, _, err := c.run(token+"\n", "consul-agent", "set", "--gossip-key-file", kf, "--token-file", "-")
	if err != nil || !strings.Contains(out, "gossip key set, ACL token set") {
		t.Fatalf("set: %v %q", err, out)
	}
	// Setting one keeps the others.
	if out, _, err := c.run("", "consul-agent", "set", "--gossip-key-file", kf); err != nil || !strings.Contains(out, "ACL token set, CA certificate unset") {
		t.Errorf("set the key alone: %v %q", err, out)
	}
	ca := filepath.Join("..", "..", "..", "inventory", "testdata", "consul-ca.pem")
	if out, _, err := c.run("", "consul-agent", "set", "--ca-file", ca); err != nil || !strings.Contains(out, "gossip key set, ACL token set, CA certificate set") {
		t.Errorf("set the CA: %v %q", err, out)
	}
	if out, _, err := c.run("", "consul-agent", "set", "--datacenter", "fra1"); err != nil || !strings.Contains(out, "CA certificate set, datacenter fra1") {
		t.Errorf("set the datacenter: %v %q", err, out)
	}
	if _, _, err := c.run("", "consul-agent", "set", "--datacenter", "fra 1"); err == nil || !strings.Contains(err.Error(), `datacenter "fra 1"`) {
		t.Errorf("a bad datacenter: %v", err)
	}
	leaf := filepath.Join("..", "..", "..", "inventory", "testdata", "consul-leaf.pem")
	if _, _, err := c.run("", "consul-agent", "set", "--ca-file", leaf); err == nil || !strings.Contains(err.Error(), "not a CA certificate") {
		t.Errorf("a leaf as CA: %v", err)
	}
	for _, args := range [][]string{{"consul-agent", "show"}, {"-o", "json", "consul-agent", "show"}} {
		out := c.ok(args...)
		if strings.Contains(out, key) || strings.Contains(out, token) {
			t.Errorf("%v prints a secret: %q", args, out)
		}
		var got map[string]any
		if args[0] == "-o" && (json.Unmarshal([]byte(out), &got) != nil || len(got) != 4 || got["gossip_key"] != true || got["token"] != true ||
			got["ca_cert"] != true || got["datacenter"] != "fra1") {
			t.Errorf("show -o json: %q", out)
		}
	}
	c.ok("consul-agent", "clear")
	if out := c.ok("consul-agent", "show"); !strings.Contains(out, "gossip key unset, ACL token unset") {
		t.Errorf("after clear: %q", out)
	}
}
