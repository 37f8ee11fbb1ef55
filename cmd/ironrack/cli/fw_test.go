package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/inventory"
)

// TestFwCLI: refusals name FILE:LINE; then apply, plan and status over SSH
// to a real sshd host with the firewall, confirmed by apply itself.
func TestFwCLI(t *testing.T) {
	c := newCLI(t)
	hosts := sshhosts.Start(t, 1)
	h := hosts.Hosts[0]
	client, err := api.NewClient(&api.Config{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	store := inventory.New(client, inventory.Config{Who: "test"})
	ctx := context.Background()
	m, _, err := store.Enlist(ctx, inventory.Sighting{Serial: "SN-FW1", MACs: []string{"52:54:00:aa:00:01"}}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, m.ID, inventory.Operator, inventory.Change{What: "test"}, func(x *inventory.Machine) error {
		x.IP, x.Tier = h.IP, "storage"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sshArgs := []string{"--identity", hosts.KeyFile, "--known-hosts", hosts.KnownHosts}
	admin := hosts.Subnet.Addr().Next().String()
	for name, tc := range map[string]struct{ src, want string }{
		"unknown tier": {"admins: [" + admin + "]\nrules:\n  - from: {tier: ingestoin}\n    to: {tier: storage}\n    ports: [9100/tcp]\n", `bad.yaml:3: rule from: unknown tier "ingestoin"`},
		"no admin":     {"admins: [{tier: query}]\n", "cuts every admin off"},
	} {
		p := write("bad.yaml", tc.src)
		_, _, err := c.run("", append([]string{"fw", "plan", "--policy", p, "--all"}, sshArgs...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// Without --known-hosts the inventory's keys are the trust: none is
	// recorded for the machine, so it is refused by name.
	if out, errs, err := c.run("", "fw", "plan", "--policy", write("p.yaml", "admins: ["+admin+"]\n"), "--all", "--identity", hosts.KeyFile); err == nil ||
		!strings.Contains(out+errs, "machine "+m.ID) || !strings.Contains(out+errs, "ironrack ssh-keys import") {
		t.Errorf("without --known-hosts, no key recorded: %v\n%s%s", err, out, errs)
	}
	p := write("p.yaml", "admins: ["+admin+"]\nrules:\n  - from: {tier: ingestion}\n    to: {tier: storage}\n    ports: [9100/tcp]\n")
	_, stderr, err := c.run("", append([]string{"fw", "apply", "--policy", p, "--all"}, sshArgs...)...)
	if err != nil {
		t.Fatalf("fw apply: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "tier ingestion matches no machine today") {
		t.Errorf("no warning for the empty tier: %s", stderr)
	}
	if out := c.ok(append([]string{"fw", "plan", "--policy", p, "--all"}, sshArgs...)...); !strings.Contains(out, "no change") {
		t.Errorf("plan after apply: %s", out)
	}
	out := c.ok(append([]string{"fw", "status", "--policy", p, "--all"}, sshArgs...)...)
	if !strings.Contains(out, ": current; last apply") || !strings.Contains(out, "confirmed") {
		t.Errorf("status: %s", out)
	}
	t.Log(out)
}

// TestVpnCLI: add-admin refuses a bad key and a reused one, list and
// config show public data only.
func TestVpnCLI(t *testing.T) {
	c := newCLI(t)
	const key = "p+J6wbX3LPOdPLegRYo48NGQjFTrmF91/PSf13Hk4Vg="
	if _, _, err := c.run("", "vpn", "add-admin", "--no-push", "--public-key", "nope", "alice"); err == nil || !strings.Contains(err.Error(), `public key "nope"`) {
		t.Errorf("bad key: %v", err)
	}
	if out := c.ok("vpn", "add-admin", "--no-push", "--public-key", key, "alice"); !strings.Contains(out, "admin alice at 10.99.0.1") {
		t.Errorf("add-admin: %s", out)
	}
	if _, _, err := c.run("", "vpn", "add-admin", "--no-push", "--public-key", key, "bob"); err == nil || !strings.Contains(err.Error(), "already alice's") {
		t.Errorf("reused key: %v", err)
	}
	if out := c.ok("vpn", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, key) {
		t.Errorf("list: %s", out)
	}
	if out := c.ok("vpn", "config", "alice"); !strings.Contains(out, "Address = 10.99.0.1/32") || strings.Contains(out, "\nPrivateKey =") {
		t.Errorf("config: %s", out)
	}
}
