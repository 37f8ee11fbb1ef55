package labtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SSHKey is a test's SSH key: the authorized_keys line a deploy hands the
// machine, and the signer that logs in with it.
type SSHKey struct {
	Authorized string
	Signer     ssh.Signer
}

// NewSSHKey is a fresh ed25519 key.
func NewSSHKey(t testing.TB) SSHKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return SSHKey{Authorized: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " test@lab", Signer: signer}
}
