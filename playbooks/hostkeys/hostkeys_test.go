package hostkeys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/internal/sshdtest"
	"github.com/ironrack/ironrack/inventory"
)

const testID = "m-0123456789ab"

func randomKey(t *testing.T) ssh.PublicKey {
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

func testCA(t *testing.T) *CA {
	t.Helper()
	_, priv, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(priv)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// dial logs in to s with trust's callback and algorithms, runs nothing,
// and returns the handshake's error.
func dial(t *testing.T, s *sshdtest.Server, trust *Trust) error {
	t.Helper()
	cfg := s.ClientConfig()
	cfg.HostKeyCallback = trust.HostKeyCallback()
	cfg.HostKeyAlgorithms = trust.HostKeyAlgorithms(s.Addr)
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func newTrust(t *testing.T, hosts []Host, cas ...ssh.PublicKey) *Trust {
	t.Helper()
	tr, err := New(hosts, cas)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTrustPlainKeysRealSSHD: against a real sshd, the recorded key is
// accepted; another key is refused naming the machine and both
// fingerprints; a machine with no recorded key, and an address of no
// machine, are refused with the import hint.
func TestTrustPlainKeysRealSSHD(t *testing.T) {
	s := sshdtest.Start(t)
	real := inventory.CanonicalKey(s.HostKey)

	if err := dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: []string{real}}})); err != nil {
		t.Fatalf("recorded key refused: %v", err)
	}

	other := randomKey(t)
	err := dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: []string{inventory.CanonicalKey(other)}}}))
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("mismatched key: got %v, want a MismatchError", err)
	}
	for _, want := range []string{testID, ssh.FingerprintSHA256(s.HostKey), ssh.FingerprintSHA256(other), "MISMATCH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error %q does not name %s", err, want)
		}
	}

	err = dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}}}))
	if err == nil || !strings.Contains(err.Error(), "no host key of its is recorded") || !strings.Contains(err.Error(), "ssh-keys import") {
		t.Errorf("machine without keys: got %v", err)
	}

	// A trusted CA is no recorded key: a plain key is still unknown.
	err = dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}}}, testCA(t).PublicKey()))
	if err == nil || !strings.Contains(err.Error(), "no host key of its is recorded") {
		t.Errorf("machine without keys, CA trusted: got %v", err)
	}

	err = dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{"127.0.0.1:1"}, Keys: []string{real}}}))
	if err == nil || !strings.Contains(err.Error(), "no machine of this selection") || !strings.Contains(err.Error(), "ssh-keys import") {
		t.Errorf("unknown address: got %v", err)
	}
}

// TestTrustCertificatesRealSSHD: sshd presents host certificates of its
// key; with ironrack's CA trusted for the machine's address, a valid host
// certificate naming the dialed host is accepted with no key recorded, and
// an expired one, one for other principals, a user certificate and one
// from another CA are refused naming the machine (when its key is not
// recorded: then a certificate that fails counts as its key).
func TestTrustCertificatesRealSSHD(t *testing.T) {
	s := sshdtest.Start(t)
	ca := testCA(t)
	host := Host{ID: testID, Addrs: []string{s.Addr}}
	now := time.Now()
	sign := func(signer *CA, typ uint32, principals []string, after, before time.Time) *ssh.Certificate {
		c := &ssh.Certificate{Key: s.HostKey, CertType: typ, KeyId: "test", ValidPrincipals: principals,
			ValidAfter: uint64(after.Unix()), ValidBefore: uint64(before.Unix())}
		if err := c.SignCert(rand.Reader, signer.signer); err != nil {
			t.Fatal(err)
		}
		return c
	}

	good, err := ca.SignHost(s.HostKey, testID, Principals(testID, "web-1", "127.0.0.1"), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	s.UseHostCertificate(good)
	if err := dial(t, s, newTrust(t, []Host{host}, ca.PublicKey())); err != nil {
		t.Fatalf("valid host certificate refused: %v", err)
	}
	// Without the CA, the certificate counts as the key it certifies.
	if err := dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: []string{inventory.CanonicalKey(s.HostKey)}}})); err != nil {
		t.Fatalf("certificate of a recorded key, no CA: %v", err)
	}
	if err := dial(t, s, newTrust(t, []Host{host})); err == nil || !strings.Contains(err.Error(), testID) {
		t.Errorf("certificate, no CA, no recorded key: got %v, want refused naming the machine", err)
	}

	// A certificate that fails is judged as its key, as OpenSSH does: a
	// lapsed certificate of a recorded key still reaches the machine (to
	// renew it); of another key, it is a mismatch naming both.
	expired := sign(ca, ssh.HostCert, []string{"127.0.0.1"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	s.UseHostCertificate(expired)
	recorded := Host{ID: testID, Addrs: []string{s.Addr}, Keys: []string{inventory.CanonicalKey(s.HostKey)}}
	if err := dial(t, s, newTrust(t, []Host{recorded}, ca.PublicKey())); err != nil {
		t.Errorf("expired certificate of a recorded key: %v", err)
	}
	other := randomKey(t)
	err = dial(t, s, newTrust(t, []Host{{ID: testID, Addrs: []string{s.Addr}, Keys: []string{inventory.CanonicalKey(other)}}}, ca.PublicKey()))
	var mm *MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(other)) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(s.HostKey)) {
		t.Errorf("expired certificate of another key: %v", err)
	}

	cases := map[string]struct {
		cert *ssh.Certificate
		want string
	}{
		"expired":         {sign(ca, ssh.HostCert, []string{"127.0.0.1"}, now.Add(-48*time.Hour), now.Add(-time.Hour)), "expired"},
		"wrong principal": {sign(ca, ssh.HostCert, []string{testID, "10.9.9.9"}, now.Add(-time.Hour), now.Add(time.Hour)), "principal"},
		"user type":       {sign(ca, ssh.UserCert, []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour)), "type 1"},
		"other CA":        {sign(testCA(t), ssh.HostCert, []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour)), "no authorities"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s.UseHostCertificate(c.cert)
			err := dial(t, s, newTrust(t, []Host{host}, ca.PublicKey()))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), testID) {
				t.Errorf("got %v, want it to name %s and say %q", err, testID, c.want)
			}
		})
	}
}

// TestKnownHostsText: the text names each machine, scopes the CA to its
// addresses, and refuses two machines on one address.
func TestKnownHostsText(t *testing.T) {
	k := randomKey(t)
	ca := testCA(t)
	tr := newTrust(t, []Host{
		{ID: "m-bbbbbbbbbbbb", Addrs: []string{"10.0.0.2"}, Keys: []string{inventory.CanonicalKey(k)}},
		{ID: "m-aaaaaaaaaaaa", Addrs: []string{"10.0.0.1:2222"}},
	}, ca.PublicKey())
	want := "# ironrack: host keys recorded in the inventory (playbooks/hostkeys)\n" +
		"# m-aaaaaaaaaaaa\n" +
		"@cert-authority [10.0.0.1]:2222 " + inventory.CanonicalKey(ca.PublicKey()) + "\n" +
		"# m-bbbbbbbbbbbb\n" +
		"10.0.0.2 " + inventory.CanonicalKey(k) + "\n" +
		"@cert-authority 10.0.0.2 " + inventory.CanonicalKey(ca.PublicKey()) + "\n"
	if got := string(tr.KnownHosts()); got != want {
		t.Errorf("known_hosts:\n%s\nwant:\n%s", got, want)
	}
	if id := tr.Machine("10.0.0.2:22"); id != "m-bbbbbbbbbbbb" {
		t.Errorf("Machine(10.0.0.2:22) = %q", id)
	}
	_, err := New([]Host{{ID: "m-aaaaaaaaaaaa", Addrs: []string{"10.0.0.1"}}, {ID: "m-bbbbbbbbbbbb", Addrs: []string{"10.0.0.1:22"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "both have address 10.0.0.1") {
		t.Errorf("two machines on one address: %v", err)
	}
}

// caLine is a CAStore holding one line (or none).
type caLine string

func (c caLine) SSHCAPublicKey(context.Context) (string, error) {
	if c == "" {
		return "", fmt.Errorf("no SSH CA: %w", inventory.ErrNotFound)
	}
	return string(c), nil
}

// TestLoad: the trust of inventory machines at their IP and port, with the
// CA when there is one; machines without an IP are left out.
func TestLoad(t *testing.T) {
	k := inventory.CanonicalKey(randomKey(t))
	ms := []*inventory.Machine{{ID: "m-aaaaaaaaaaaa", IP: "10.0.0.1", HostKeys: []string{k}}, {ID: "m-bbbbbbbbbbbb"}}
	tr, err := Load(context.Background(), caLine(""), ms, 2222)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tr.KnownHosts()); !strings.Contains(got, "[10.0.0.1]:2222 "+k) || strings.Contains(got, "@cert-authority") || strings.Contains(got, "m-bbbbbbbbbbbb") {
		t.Errorf("without a CA:\n%s", got)
	}
	ca := inventory.CanonicalKey(testCA(t).PublicKey())
	if tr, err = Load(context.Background(), caLine(ca), ms, 22); err != nil {
		t.Fatal(err)
	}
	if got := string(tr.KnownHosts()); !strings.Contains(got, "@cert-authority 10.0.0.1 "+ca) {
		t.Errorf("with a CA:\n%s", got)
	}
	if _, err := Load(context.Background(), caLine("garbage"), ms, 22); err == nil {
		t.Error("a corrupt CA line was accepted")
	}
}
