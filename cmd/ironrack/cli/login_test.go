package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestLoginInventoryTrust: without --known-hosts, `run` and `wait-ready`
// check host keys against those recorded in the inventory (here imported
// with `ssh-keys import --yes`): a recorded key logs in, a host with no
// recorded key is refused naming the machine and `ironrack ssh-keys
// import`, and one whose recorded key differs is refused naming the
// machine and both fingerprints.
func TestLoginInventoryTrust(t *testing.T) {
	fx := newRunFixture(t, 3)
	ctx := context.Background()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := ssh.NewPublicKey(pub)
	h := fx.hosts.Hosts
	// ids[0]: its real key; ids[1]: nothing recorded; ids[2]: another key.
	kh := knownhosts.Line([]string{knownhosts.Normalize(h[0].Addr)}, h[0].HostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(h[2].Addr)}, wrong) + "\n"
	f := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f, []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errs, err := fx.run(ctx, "ssh-keys", "import", "--yes", f); err != nil {
		t.Fatalf("ssh-keys import: %v\n%s%s", err, out, errs)
	}
	login := []string{"--identity", fx.hosts.KeyFile, "--connect-timeout", "5s"}

	t.Run("run: a recorded key logs in", func(t *testing.T) {
		out, errs, err := fx.run(ctx, append(append([]string{"run"}, login...), fx.ids[0], "--", "cat /srv/ident")...)
		if err != nil || !strings.Contains(out, h[0].Name) {
			t.Fatalf("run: %v\n%s%s", err, out, errs)
		}
	})
	t.Run("run: no recorded key is refused, saying ssh-keys import", func(t *testing.T) {
		out, errs, err := fx.run(ctx, append(append([]string{"run"}, login...), fx.ids[1], "--", "true")...)
		all := out + errs
		if err == nil || !strings.Contains(all, "machine "+fx.ids[1]) || !strings.Contains(all, "ironrack ssh-keys import") ||
			!strings.Contains(all, ssh.FingerprintSHA256(h[1].HostKey)) {
			t.Fatalf("run: %v\n%s", err, all)
		}
	})
	t.Run("run: a different recorded key is refused naming both fingerprints", func(t *testing.T) {
		out, errs, err := fx.run(ctx, append(append([]string{"run"}, login...), fx.ids[2], "--", "touch /srv/ran")...)
		all := out + errs
		for _, want := range []string{"HOST KEY MISMATCH for machine " + fx.ids[2], ssh.FingerprintSHA256(h[2].HostKey), ssh.FingerprintSHA256(wrong)} {
			if err == nil || !strings.Contains(all, want) {
				t.Errorf("run: %v, output lacks %q:\n%s", err, want, all)
			}
		}
		if _, err := os.Stat(filepath.Join(h[2].Dir, "srv", "ran")); err == nil {
			t.Error("the command ran on a host whose key is not the recorded one")
		}
	})
	t.Run("wait-ready: recorded key ready, different key refused", func(t *testing.T) {
		out, errs, err := fx.run(ctx, append(append([]string{"wait-ready", "--no-health", "--logins", "1", "--timeout", "20s"}, login...), fx.ids[0])...)
		if err != nil || !strings.Contains(out, fx.ids[0]) {
			t.Fatalf("wait-ready: %v\n%s%s", err, out, errs)
		}
		out, errs, err = fx.run(ctx, append(append([]string{"wait-ready", "--no-health", "--logins", "1", "--timeout", "8s"}, login...), fx.ids[2])...)
		all := out + errs
		for _, want := range []string{"HOST KEY MISMATCH for machine " + fx.ids[2], ssh.FingerprintSHA256(h[2].HostKey), ssh.FingerprintSHA256(wrong)} {
			if err == nil || !strings.Contains(all, want) {
				t.Errorf("wait-ready: %v, output lacks %q:\n%s", err, want, all)
			}
		}
		if t.Failed() {
			t.Log(h[2].Log())
		}
	})
}
