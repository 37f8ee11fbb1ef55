package inventory

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/nacl/secretbox"
)

// Sealer encrypts BMC passwords at rest with NaCl secretbox
// (XSalsa20-Poly1305) under a 32-byte key kept outside Consul.
type Sealer struct {
	key [32]byte
}

// ErrKeyFile is wrapped by every key-file problem.
var ErrKeyFile = errors.New("key file")

// LoadKeyFile reads a sealer key from path. If create is true and the file
// does not exist, a new random key is written there with mode 0600 (and its
// directory with 0700). A key file readable by group or others is refused.
// The file holds the key base64-encoded on one line.
func LoadKeyFile(path string, create bool) (*Sealer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		var k [32]byte
		if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
			return nil, fmt.Errorf("%w %s: generate: %v", ErrKeyFile, path, err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) { // another process won the race
				return LoadKeyFile(path, false)
			}
			return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, err)
		}
		_, werr := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(k[:]))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, werr)
		}
		return &Sealer{key: k}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v (create one with `ironrack key init` or pass --key-file)", ErrKeyFile, path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %04o lets others read it; chmod 600 it", ErrKeyFile, path, fi.Mode().Perm())
	}
	raw, err := base64.StdEncoding.DecodeString(string(trimSpace(b)))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("%w %s: not a base64 32-byte key", ErrKeyFile, path)
	}
	s := &Sealer{}
	copy(s.key[:], raw)
	return s, nil
}

// NewSealer returns a sealer for a raw 32-byte key.
func NewSealer(key [32]byte) *Sealer { return &Sealer{key: key} }

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Seal encrypts plaintext under a fresh random nonce.
func (s *Sealer) Seal(plaintext []byte) ([]byte, error) {
	var nonce [24]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, err
	}
	return secretbox.Seal(nonce[:], plaintext, &nonce, &s.key), nil
}

// ErrSealed is returned when a sealed value cannot be opened: a wrong key
// file or a tampered value.
var ErrSealed = errors.New("cannot decrypt credential (wrong key file, or the value was altered)")

// Open decrypts a value made by Seal.
func (s *Sealer) Open(box []byte) ([]byte, error) {
	if len(box) < 24+secretbox.Overhead {
		return nil, ErrSealed
	}
	var nonce [24]byte
	copy(nonce[:], box[:24])
	out, ok := secretbox.Open(nil, box[24:], &nonce, &s.key)
	if !ok {
		return nil, ErrSealed
	}
	return out, nil
}

// Credential is a BMC login, as handed to the ipmi package. Its String method
// never prints the password.
type Credential struct {
	Username string
	Password string
}

func (c Credential) String() string { return c.Username + ":<redacted>" }

// GoString keeps %#v from printing the password too.
func (c Credential) GoString() string { return c.String() }
