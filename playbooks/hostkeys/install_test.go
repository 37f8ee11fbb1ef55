package hostkeys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/internal/sshdtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/remote"
)

// TestInstallRealSSHD installs a signed certificate over a real sshd,
// checked strictly, into a directory standing in for /etc/ssh (the test
// runs as root on this machine: its own /etc/ssh and sshd are not
// touched; "reload" is a marker file); sshd then presents the installed
// certificate and the CA's trust accepts it. A host that does not match
// the record gets nothing.
func TestInstallRealSSHD(t *testing.T) {
	s := sshdtest.Start(t)
	ca := testCA(t)
	keys := []string{inventory.CanonicalKey(s.HostKey)}
	certs, err := ca.SignMachine(testID, "web-1", "127.0.0.1", keys, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script, err := InstallScript(dir, "touch "+filepath.Join(dir, "reloaded"), keys, certs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// install logs in with playbooks/remote's client, checked by tr, and
	// runs script there.
	install := func(tr *Trust, script string) error {
		c, err := remote.Dial(ctx, remote.Target{ID: testID, Addr: s.Addr, User: s.User}, remote.Options{
			HostKeyCallback: tr.HostKeyCallback(), HostKeyAlgorithms: tr.HostKeyAlgorithms,
			Auth: []ssh.AuthMethod{ssh.PublicKeys(s.Signer)}})
		if err != nil {
			return err
		}
		defer c.Close()
		return Install(ctx, c, script)
	}
	if err := install(newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: keys}}), script); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ssh_host_ed25519_key-cert.pub"))
	if err != nil || strings.TrimSpace(string(b)) != certs[0] {
		t.Fatalf("installed certificate: %v %q", err, b)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, CertConf))
	if !strings.Contains(string(conf), "HostCertificate "+filepath.Join(dir, "ssh_host_ed25519_key-cert.pub")+"\n") {
		t.Errorf("%s:\n%s", CertConf, conf)
	}
	if _, err := os.Stat(filepath.Join(dir, "reloaded")); err != nil {
		t.Error("reload did not run")
	}
	k, _, _, _, _ := ssh.ParseAuthorizedKey(b)
	s.UseHostCertificate(k.(*ssh.Certificate))
	if err := dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}}}, ca.PublicKey())); err != nil {
		t.Errorf("the installed certificate, presented by sshd: %v", err)
	}

	other := t.TempDir()
	script2, _ := InstallScript(other, "", keys, certs)
	err = install(newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: []string{inventory.CanonicalKey(randomKey(t))}}}), script2)
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Errorf("install on a mismatched host: %v", err)
	}
	if names, _ := os.ReadDir(other); len(names) != 0 {
		t.Errorf("a mismatched host got files: %v", names)
	}
	script3, _ := InstallScript(other, "echo reload failed >&2; false", keys, certs)
	if err := install(newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: keys}}), script3); err == nil || !strings.Contains(err.Error(), "reload failed") {
		t.Errorf("failing reload: %v", err)
	}

	if _, err := InstallScript("etc/ssh", "", keys, certs); err == nil {
		t.Error("relative ssh directory accepted")
	}
	if _, err := InstallScript("/etc/ssh", "", []string{inventory.CanonicalKey(randomKey(t))}, certs); err == nil {
		t.Error("a certificate of another key accepted")
	}
}
