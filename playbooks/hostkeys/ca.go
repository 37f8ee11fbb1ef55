package hostkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/inventory"
)

// DefaultCertLifetime is a host certificate's lifetime unless one is given.
const DefaultCertLifetime = 365 * 24 * time.Hour

// clockSkew backdates a certificate's start, so a host whose clock runs a
// little behind the signer's still presents a valid certificate.
const clockSkew = 5 * time.Minute

// CA is ironrack's SSH certificate authority: an ed25519 key. Whoever
// holds the key file opens it (the boot server at report time, the CLI for
// sign and renew); the inventory keeps it sealed (inventory.SSHCA).
type CA struct {
	signer ssh.Signer
}

// NewCA makes a new CA key: its public key line and its private key as
// OpenSSH PEM (for inventory.Store.InitSSHCA).
func NewCA() (publicKey string, privatePEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "ironrack-ssh-ca")
	if err != nil {
		return "", nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	return inventory.CanonicalKey(sp), pem.EncodeToMemory(blk), nil
}

// ParseCA reads a CA's private key (OpenSSH PEM).
func ParseCA(privatePEM []byte) (*CA, error) {
	s, err := ssh.ParsePrivateKey(privatePEM)
	if err != nil {
		return nil, fmt.Errorf("ssh CA private key: %w", err)
	}
	return &CA{signer: s}, nil
}

// PublicKey is the CA's public key.
func (ca *CA) PublicKey() ssh.PublicKey { return ca.signer.PublicKey() }

// CALine is the CA as a known_hosts line trusting it for patterns (e.g.
// "*", or "10.0.0.*"), for plain ssh (`ironrack ssh-keys ca show`).
func CALine(ca ssh.PublicKey, patterns string) string {
	return "@cert-authority " + patterns + " " + inventory.CanonicalKey(ca) + " ironrack-ssh-ca"
}

// Principals are the names a machine's host certificate is valid for: its
// machine ID, host name (and its first label) and IP, as given.
func Principals(id, hostname, ip string) []string {
	var out []string
	add := func(s string) {
		for _, p := range out {
			if p == s {
				return
			}
		}
		if s != "" {
			out = append(out, s)
		}
	}
	add(id)
	add(hostname)
	if label, _, ok := strings.Cut(hostname, "."); ok {
		add(label)
	}
	if ip != "" && net.ParseIP(ip) != nil {
		add(ip)
	}
	return out
}

// SignHost signs a host certificate for key: type host, key ID
// "ironrack:<id>", the principals, valid from now (less a few minutes of
// clock skew) for lifetime (if 0, DefaultCertLifetime).
func (ca *CA) SignHost(key ssh.PublicKey, id string, principals []string, lifetime time.Duration, now time.Time) (*ssh.Certificate, error) {
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("sign host certificate: the key is a certificate")
	}
	if len(principals) == 0 {
		return nil, errors.New("sign host certificate: no principals")
	}
	if lifetime == 0 {
		lifetime = DefaultCertLifetime
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("sign host certificate: negative lifetime %v", lifetime)
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	c := &ssh.Certificate{
		Key:             key,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.HostCert,
		KeyId:           "ironrack:" + id,
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-clockSkew).Unix()),
		ValidBefore:     uint64(now.Add(lifetime).Unix()),
	}
	if err := c.SignCert(rand.Reader, ca.signer); err != nil {
		return nil, fmt.Errorf("sign host certificate for %s: %w", id, err)
	}
	return c, nil
}

// SignMachine signs a certificate for each of a machine's host keys
// (authorized_keys lines) with Principals(id, hostname, ip), and returns
// them as lines, in the keys' order.
func (ca *CA) SignMachine(id, hostname, ip string, keys []string, lifetime time.Duration, now time.Time) ([]string, error) {
	principals := Principals(id, hostname, ip)
	var out []string
	for i, l := range keys {
		k, _, err := inventory.ParseHostKey(l)
		if err != nil {
			return nil, fmt.Errorf("machine %s: host key %d: %w", id, i+1, err)
		}
		c, err := ca.SignHost(k, id, principals, lifetime, now)
		if err != nil {
			return nil, err
		}
		out = append(out, inventory.CanonicalKey(c))
	}
	return out, nil
}

// CertExpiry is when the earliest of a machine's certificates expires;
// zero when it has none (or one never expires and is the only one).
func CertExpiry(certs []string) (time.Time, error) {
	var first time.Time
	for i, l := range certs {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return time.Time{}, fmt.Errorf("host certificate %d: %w", i+1, err)
		}
		c, ok := k.(*ssh.Certificate)
		if !ok {
			return time.Time{}, fmt.Errorf("host certificate %d is a plain key", i+1)
		}
		if c.ValidBefore == ssh.CertTimeInfinity {
			continue
		}
		t := time.Unix(int64(c.ValidBefore), 0).UTC()
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, nil
}
