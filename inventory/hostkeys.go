package inventory

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"
)

// A deployed machine's SSH host keys are made on its first boot and never
// trusted on first use: the deploy's seed carries a single-use token
// (DeploySpec.HostKeyToken), and the boot server records the keys the OS
// posts with it (RecordHostKeys), burning the token in the same
// transaction. An operator imports the keys of machines ironrack did not
// deploy (SetHostKeys). ironrack's SSH CA, if set up, lives sealed at
//
//	PREFIX/secrets/ssh-ca   {"public_key": "ssh-ed25519 …", "sealed_private_key": secretbox of the OpenSSH PEM}

// HostKeyTokenTTL is how long after a deploy starts its host-key token is
// taken: a first boot reports its keys within minutes of the image being
// written; a token never used within a day is refused.
const HostKeyTokenTTL = 24 * time.Hour

// MaxHostKeys bounds a machine's host keys (and its certificates).
const MaxHostKeys = 8

// Errors of the host-key report; callers branch on them.
var (
	// ErrHostKeyToken: the token is malformed, unknown, already used,
	// expired, or not the deploy's.
	ErrHostKeyToken = errors.New("host-key token refused")
	// ErrBadHostKeys: the keys are not SSH public keys ironrack records.
	ErrBadHostKeys = errors.New("bad host keys")
)

// ParseHostKey parses one host public key in authorized_keys form
// ("TYPE BASE64 [comment]") and returns it with its canonical line
// ("TYPE BASE64", the form a machine's record keeps). Certificates are
// refused: a host key is a plain key.
func ParseHostKey(line string) (ssh.PublicKey, string, error) {
	if strings.ContainsAny(line, "\r\n\x00") {
		return nil, "", errors.New("spans lines")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, "", errors.New("want TYPE BASE64 [comment]")
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f[0] + " " + f[1]))
	if err != nil {
		return nil, "", fmt.Errorf("%.40q: %v", line, err)
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, "", fmt.Errorf("%.40q is a certificate, not a host key", line)
	}
	return k, CanonicalKey(k), nil
}

// CanonicalKey is a key's line as records keep it: "TYPE BASE64".
func CanonicalKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// NormalizeHostKeys parses host keys (ParseHostKey) and returns their
// canonical lines: at least one, at most MaxHostKeys, each type once.
// Errors wrap ErrBadHostKeys and name the key by position.
func NormalizeHostKeys(lines []string) ([]string, error) {
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrBadHostKeys)
	}
	if len(lines) > MaxHostKeys {
		return nil, fmt.Errorf("%w: %d keys, at most %d", ErrBadHostKeys, len(lines), MaxHostKeys)
	}
	out := make([]string, 0, len(lines))
	types := map[string]bool{}
	for i, l := range lines {
		k, canon, err := ParseHostKey(l)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrBadHostKeys, i+1, err)
		}
		if types[k.Type()] {
			return nil, fmt.Errorf("%w: key %d: a second %s key", ErrBadHostKeys, i+1, k.Type())
		}
		types[k.Type()] = true
		out = append(out, canon)
	}
	return out, nil
}

// validateHostKeys checks a machine's recorded keys and certificates: keys
// canonical, each type once; each certificate a host certificate of one of
// the keys.
func validateHostKeys(keys, certs []string) []*FieldError {
	var errs []*FieldError
	bad := func(f, format string, a ...any) { errs = append(errs, &FieldError{f, fmt.Sprintf(format, a...)}) }
	if len(keys) > MaxHostKeys {
		bad("host_keys", "%d keys, at most %d", len(keys), MaxHostKeys)
	}
	if len(certs) > len(keys) {
		bad("host_certs", "%d certificates for %d keys", len(certs), len(keys))
	}
	blobs := map[string]bool{}
	types := map[string]bool{}
	for i, l := range keys {
		k, canon, err := ParseHostKey(l)
		switch {
		case err != nil:
			bad(fmt.Sprintf("host_keys[%d]", i), "%v", err)
			continue
		case canon != l:
			bad(fmt.Sprintf("host_keys[%d]", i), "not in canonical form TYPE BASE64")
		case types[k.Type()]:
			bad(fmt.Sprintf("host_keys[%d]", i), "a second %s key", k.Type())
		}
		types[k.Type()] = true
		blobs[string(k.Marshal())] = true
	}
	for i, l := range certs {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		c, ok := k.(*ssh.Certificate)
		switch {
		case err != nil || strings.ContainsAny(l, "\r\n"):
			bad(fmt.Sprintf("host_certs[%d]", i), "not an SSH certificate line")
		case !ok:
			bad(fmt.Sprintf("host_certs[%d]", i), "a plain key, not a certificate")
		case c.CertType != ssh.HostCert:
			bad(fmt.Sprintf("host_certs[%d]", i), "a user certificate, not a host certificate")
		case !blobs[string(c.Key.Marshal())]:
			bad(fmt.Sprintf("host_certs[%d]", i), "certifies a key that is not among host_keys")
		}
	}
	return errs
}

// newHostKeyToken is a fresh "<id>.<48 hex>".
func newHostKeyToken(id string) (string, error) {
	sec, err := randomHex(24)
	if err != nil {
		return "", err
	}
	return id + "." + sec, nil
}

// RecordHostKeys records the host keys a deployed machine's first boot
// reports with its deploy's host-key token, and burns the token: the
// machine's record (HostKeys, HostCerts from sign, a history entry) and
// the deploy spec (token cleared, HostKeysReportedAt set) change in one
// transaction, the spec under CAS, so of two reports racing with one token
// exactly one is recorded. sign, if not nil, returns the certificates for
// the keys (it sees the machine and spec as read). A malformed, unknown,
// used, expired or foreign token is ErrHostKeyToken, bad keys are
// ErrBadHostKeys; neither changes anything. It returns the machine ID and
// the certificates recorded.
func (s *Store) RecordHostKeys(ctx context.Context, token string, keys []string, sign func(m *Machine, spec *DeploySpec, keys []string) ([]string, error)) (string, []string, error) {
	id, sec, ok := strings.Cut(token, ".")
	if _, herr := hex.DecodeString(sec); !ok || !IsID(id) || len(sec) != 48 || herr != nil {
		return "", nil, fmt.Errorf("%w: malformed (want <machine id>.<48 hex>)", ErrHostKeyToken)
	}
	keys, err := NormalizeHostKeys(keys)
	if err != nil {
		return id, nil, fmt.Errorf("machine %s: %w", id, err)
	}
	for attempt := 0; attempt < 4; attempt++ {
		spec, index, err := s.deployWithIndex(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return id, nil, fmt.Errorf("%w: machine %s has no deploy", ErrHostKeyToken, id)
		}
		if err != nil {
			return id, nil, err
		}
		now := s.cfg.Now().UTC()
		switch {
		case spec.HostKeyToken == "" && !spec.HostKeysReportedAt.IsZero():
			return id, nil, fmt.Errorf("%w: machine %s's token was already used at %s", ErrHostKeyToken, id, spec.HostKeysReportedAt.Format(time.RFC3339))
		case spec.HostKeyToken == "":
			return id, nil, fmt.Errorf("%w: machine %s's deploy has no host-key token (deployed before host keys were reported)", ErrHostKeyToken, id)
		case subtle.ConstantTimeCompare([]byte(spec.HostKeyToken), []byte(token)) != 1:
			return id, nil, fmt.Errorf("%w: not the token of machine %s's current deploy", ErrHostKeyToken, id)
		case now.After(spec.RequestedAt.Add(HostKeyTokenTTL)):
			return id, nil, fmt.Errorf("%w: machine %s's token expired at %s", ErrHostKeyToken, id, spec.RequestedAt.Add(HostKeyTokenTTL).Format(time.RFC3339))
		}
		var certs []string
		if sign != nil {
			m, err := s.Get(ctx, id)
			if err != nil {
				return id, nil, err
			}
			if certs, err = sign(m, spec, keys); err != nil {
				return id, nil, fmt.Errorf("machine %s: sign host certificates: %w", id, err)
			}
		}
		burned := *spec
		burned.HostKeyToken, burned.HostKeysReportedAt = "", now
		b, err := json.Marshal(burned)
		if err != nil {
			return id, nil, err
		}
		cas := api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.deployKey(id), Value: b, Index: index}}}
		why := "reported by the deployed OS's first boot: " + strings.Join(Fingerprints(keys), ", ")
		if len(certs) > 0 {
			why += fmt.Sprintf("; %d host certificates signed", len(certs))
		}
		_, err = s.update(ctx, id, System, Change{What: "host keys", Why: why, Who: "boot-server"}, cas, func(m *Machine) error {
			if m.State != StateDeploying && m.State != StateDeployed {
				return fmt.Errorf("is %s: only a deploying or deployed machine reports host keys: %w", m.State, ErrHostKeyToken)
			}
			m.HostKeys, m.HostCerts = keys, certs
			return nil
		})
		var te *TxnError
		if errors.As(err, &te) && failedKey(te, s.deployKey(id)) {
			continue // the spec changed (a racing report, a redeploy): read it again
		}
		if err != nil {
			return id, nil, err
		}
		return id, certs, nil
	}
	return id, nil, fmt.Errorf("machine %s: deploy spec changed concurrently: %w", id, ErrConflict)
}

// failedKey reports whether a refused transaction failed on key.
func failedKey(te *TxnError, key string) bool {
	for _, k := range te.Keys {
		if k == key {
			return true
		}
	}
	return false
}

// deployWithIndex reads a deploy spec (consistently) with its ModifyIndex.
func (s *Store) deployWithIndex(ctx context.Context, id string) (*DeploySpec, uint64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.deployKey(id), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("read deploy spec of %s: %w", id, err)
	}
	if kv == nil {
		return nil, 0, fmt.Errorf("machine %s has no deploy spec: %w", id, ErrNotFound)
	}
	var d DeploySpec
	if err := json.Unmarshal(kv.Value, &d); err != nil {
		return nil, 0, fmt.Errorf("deploy spec of %s: corrupt: %w", id, err)
	}
	return &d, kv.ModifyIndex, nil
}

// SetHostKeys replaces a machine's host keys and certificates (an
// operator's import, a renewal), with change in its history. keys are
// normalized (NormalizeHostKeys); certs must certify them.
func (s *Store) SetHostKeys(ctx context.Context, id string, keys, certs []string, by Actor, change Change) (*Machine, error) {
	keys, err := NormalizeHostKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", id, err)
	}
	if change.What == "" {
		change.What = "host keys"
	}
	if change.Why == "" {
		change.Why = strings.Join(Fingerprints(keys), ", ")
	}
	return s.Update(ctx, id, by, change, func(m *Machine) error {
		m.HostKeys, m.HostCerts = keys, certs
		return nil
	})
}

// SetHostCerts replaces a machine's host certificates only (a renewal),
// provided its keys are still keys (the certificates are checked against
// them).
func (s *Store) SetHostCerts(ctx context.Context, id string, keys, certs []string, by Actor, change Change) (*Machine, error) {
	if change.What == "" {
		change.What = "host certificates"
	}
	return s.Update(ctx, id, by, change, func(m *Machine) error {
		if strings.Join(m.HostKeys, "\n") != strings.Join(keys, "\n") {
			return fmt.Errorf("host keys changed while signing: %w", ErrConflict)
		}
		m.HostCerts = certs
		return nil
	})
}

// Fingerprints are the keys' SHA256 fingerprints (as ssh-keygen -l prints
// them), with their types; an unparsable line is "?".
func Fingerprints(keys []string) []string {
	out := make([]string, len(keys))
	for i, l := range keys {
		k, _, err := ParseHostKey(l)
		if err != nil {
			out[i] = "?"
			continue
		}
		out[i] = k.Type() + " " + ssh.FingerprintSHA256(k)
	}
	return out
}

// SSHCA is ironrack's SSH certificate authority as stored: its public key
// (an authorized_keys line) and its private key sealed with the key file.
type SSHCA struct {
	PublicKey        string `json:"public_key"`
	SealedPrivateKey []byte `json:"sealed_private_key"`
}

func (s *Store) sshCAKey() string { return s.key("secrets", "ssh-ca") }

// InitSSHCA stores a new SSH CA: its public key line and its private key
// (OpenSSH PEM), sealed with the key file. An existing CA is never
// replaced (ErrConflict).
func (s *Store) InitSSHCA(ctx context.Context, publicKey string, privatePEM []byte) error {
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(publicKey)); err != nil {
		return fmt.Errorf("ssh CA public key: %w", err)
	}
	sl, err := s.sealer()
	if err != nil {
		return err
	}
	box, err := sl.Seal(privatePEM)
	if err != nil {
		return err
	}
	b, err := json.Marshal(SSHCA{PublicKey: publicKey, SealedPrivateKey: box})
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	ok, _, err := s.c.KV().CAS(&api.KVPair{Key: s.sshCAKey(), Value: b, ModifyIndex: 0}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("store ssh CA: %w", err)
	}
	if !ok {
		return fmt.Errorf("an SSH CA exists already (%s): %w", s.sshCAKey(), ErrConflict)
	}
	return nil
}

// readSSHCA returns the stored CA, or ErrNotFound.
func (s *Store) readSSHCA(ctx context.Context) (*SSHCA, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.sshCAKey(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read ssh CA: %w", err)
	}
	if kv == nil {
		return nil, fmt.Errorf("no SSH CA (create one with `ironrack ssh-keys ca init`): %w", ErrNotFound)
	}
	var ca SSHCA
	if err := json.Unmarshal(kv.Value, &ca); err != nil {
		return nil, fmt.Errorf("ssh CA at %s: corrupt: %w", kv.Key, err)
	}
	return &ca, nil
}

// SSHCAPublicKey returns the SSH CA's public key line (no key file
// needed), or ErrNotFound when there is no CA.
func (s *Store) SSHCAPublicKey(ctx context.Context) (string, error) {
	ca, err := s.readSSHCA(ctx)
	if err != nil {
		return "", err
	}
	return ca.PublicKey, nil
}

// SSHCAPrivateKey returns the SSH CA's private key (OpenSSH PEM), opened
// with the key file; ErrNotFound when there is no CA. Callers must not
// log it.
func (s *Store) SSHCAPrivateKey(ctx context.Context) ([]byte, error) {
	ca, err := s.readSSHCA(ctx)
	if err != nil {
		return nil, err
	}
	sl, err := s.sealer()
	if err != nil {
		return nil, fmt.Errorf("ssh CA: %w", err)
	}
	pem, err := sl.Open(ca.SealedPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("ssh CA at %s: %w", s.sshCAKey(), err)
	}
	return pem, nil
}

// randomHex is n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Now is the store's clock (Config.Now), for callers that stamp what
// they write through it (a certificate's validity).
func (s *Store) Now() time.Time { return s.cfg.Now() }
