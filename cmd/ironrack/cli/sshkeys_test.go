package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/inventory"
)

func newHostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSSHKeysCLI: import (confirmation required off a terminal, refused
// files record nothing), list, known-hosts, the CA (init once, show),
// sign and renew, and the keys in `inventory show` under the JSON schema.
func TestSSHKeysCLI(t *testing.T) {
	c := newCLI(t)
	c.ok("inventory", "import", example("rack-sheet.csv"))
	client, err := api.NewClient(&api.Config{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	st := inventory.New(client, inventory.Config{})
	ctx := context.Background()
	ms, err := st.List(ctx, inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := ms[0].ID, ms[1].ID
	for id, ip := range map[string]string{a: "10.1.0.1", b: "127.0.0.1"} {
		if _, err := st.Update(ctx, id, inventory.Operator, inventory.Change{What: "test"}, func(m *inventory.Machine) error { m.IP = ip; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if out := c.ok("ssh-keys", "list", a); !strings.Contains(out, "no host keys recorded") {
		t.Errorf("list before import:\n%s", out)
	}

	dir := t.TempDir()
	k1, k2 := newHostKey(t), newHostKey(t)
	scan := filepath.Join(dir, "scan.txt")
	os.WriteFile(scan, []byte("# 10.1.0.1:22 SSH-2.0-OpenSSH_9.2p1\n10.1.0.1 "+inventory.CanonicalKey(k1)+"\n[127.0.0.1]:22 "+inventory.CanonicalKey(k2)+"\n"), 0o644)
	_, errs, err := c.run("", "ssh-keys", "import", scan)
	if err == nil || !strings.Contains(err.Error(), "--yes") || !strings.Contains(errs, ssh.FingerprintSHA256(k1)) {
		t.Fatalf("import off a terminal without --yes: %v\n%s", err, errs)
	}
	if m, _ := st.Get(ctx, a); len(m.HostKeys) != 0 {
		t.Fatal("an unconfirmed import recorded keys")
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("10.1.0.1 "+inventory.CanonicalKey(k1)+"\n10.9.9.9 "+inventory.CanonicalKey(k2)+"\n"), 0o644)
	if _, _, err := c.run("", "ssh-keys", "import", "--yes", bad); err == nil || !strings.Contains(err.Error(), bad+`:2: host "10.9.9.9" is no machine`) {
		t.Errorf("unknown host: %v", err)
	}
	if m, _ := st.Get(ctx, a); len(m.HostKeys) != 0 {
		t.Fatal("a refused import recorded keys")
	}
	if out := c.ok("ssh-keys", "import", "--yes", scan); !strings.Contains(out, a+": recorded 1 host keys") || !strings.Contains(out, b+": recorded 1 host keys") {
		t.Errorf("import:\n%s", out)
	}
	if out := c.ok("ssh-keys", "list"); !strings.Contains(out, ssh.FingerprintSHA256(k1)) || !strings.Contains(out, ssh.FingerprintSHA256(k2)) {
		t.Errorf("list:\n%s", out)
	}
	if out := c.ok("ssh-keys", "list", "--where", `ip == "127.0.0.1"`); !strings.Contains(out, b) || strings.Contains(out, a) {
		t.Errorf("list --where:\n%s", out)
	}
	if _, _, err := c.run("", "ssh-keys", "list", "--tier", "x", a); err == nil {
		t.Error("list with IDs and a selection flag: accepted")
	}
	if out := c.ok("ssh-keys", "known-hosts", a, b); !strings.Contains(out, "10.1.0.1 "+inventory.CanonicalKey(k1)+"\n") || strings.Contains(out, "@cert-authority") {
		t.Errorf("known-hosts without a CA:\n%s", out)
	}

	if _, _, err := c.run("", "ssh-keys", "ca", "show"); err == nil || !strings.Contains(err.Error(), "ca init") {
		t.Errorf("ca show without a CA: %v", err)
	}
	c.ok("ssh-keys", "ca", "init")
	if _, _, err := c.run("", "ssh-keys", "ca", "init"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second ca init: %v", err)
	}
	caLine := strings.TrimSpace(c.ok("ssh-keys", "ca", "show"))
	if !strings.HasPrefix(caLine, "@cert-authority * ssh-ed25519 ") {
		t.Errorf("ca show: %q", caLine)
	}
	out := filepath.Join(dir, "certs")
	if got := c.ok("ssh-keys", "sign", "--cert-lifetime", "90d", "--out", out, a); !strings.Contains(got, a+": signed 1 host certificates for "+a+",10.1.0.1") {
		t.Errorf("sign: %s", got)
	}
	m, _ := st.Get(ctx, a)
	if len(m.HostCerts) != 1 {
		t.Fatalf("certs %q", m.HostCerts)
	}
	if b, err := os.ReadFile(filepath.Join(out, a, "ssh_host_ed25519_key-cert.pub")); err != nil || strings.TrimSpace(string(b)) != m.HostCerts[0] {
		t.Errorf("--out certificate: %v", err)
	}
	if got := c.ok("ssh-keys", "renew", "--within", "30d"); !strings.Contains(got, "no host certificate expires within") {
		t.Errorf("renew within 30d: %s", got)
	}
	if got := c.ok("ssh-keys", "renew", "--within", "100d", a, b); !strings.Contains(got, a+": signed 1") || strings.Contains(got, b) {
		t.Errorf("renew within 100d: %s", got)
	}
	if m2, _ := st.Get(ctx, a); m2.HostCerts[0] == m.HostCerts[0] {
		t.Error("renew did not re-sign")
	}
	// --install reaches the host over SSH (here: nothing listens at b's
	// address); the certificates stay recorded, and the failure names it.
	_, port, _ := net.SplitHostPort(closedPort(t))
	idFile := filepath.Join(dir, "id")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	os.WriteFile(idFile, pem.EncodeToMemory(blk), 0o600)
	got, errs, err := c.run("", "ssh-keys", "sign", "--install", "--identity", idFile, "--port", port, b)
	if err == nil || !strings.Contains(err.Error(), "not installed on 1 machines ("+b+")") || !strings.Contains(errs, b+": not installed") || !strings.Contains(got, b+": signed 1") {
		t.Errorf("sign --install, host down: %v\n%s%s", err, got, errs)
	}
	if m, _ := st.Get(ctx, b); len(m.HostCerts) != 1 {
		t.Errorf("certificates of a failed install not recorded: %q", m.HostCerts)
	}
	if out := c.ok("ssh-keys", "known-hosts", a); !strings.Contains(out, "@cert-authority 10.1.0.1 ssh-ed25519 ") {
		t.Errorf("known-hosts with a CA:\n%s", out)
	}
	if out := c.ok("inventory", "show", a); !strings.Contains(out, "host key:") || !strings.Contains(out, "host certs:") {
		t.Errorf("inventory show:\n%s", out)
	}
	var v any
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "inventory", "show", a)), &v); err != nil {
		t.Fatal(err)
	}
	if err := loadSchema(t).Validate(v); err != nil {
		t.Errorf("show -o json with host keys violates the schema: %v", err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "ssh-keys", "list", a)), &list); err != nil || len(list) != 1 || list[0]["cert_expires"] == nil {
		t.Errorf("list -o json: %v %v", err, list)
	}
}
