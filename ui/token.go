package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Roles a token carries.
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// Token is a stored UI token: its name, role and the sha256 of its secret.
// The secret itself is printed once, at creation, and stored nowhere.
type Token struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// ErrBadToken is a token that is malformed, unknown or wrong.
var ErrBadToken = errors.New("invalid token")

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@-]{0,63}$`)

// Tokens keeps UI tokens in Consul KV under PREFIX/ui/tokens/NAME.
type Tokens struct {
	Client *api.Client
	// Prefix is the inventory's KV prefix. If empty, "ironrack".
	Prefix string
}

func (t *Tokens) key(name string) string {
	p := t.Prefix
	if p == "" {
		p = "ironrack"
	}
	return strings.TrimSuffix(p, "/") + "/ui/tokens/" + name
}

// Create stores a new token and returns its secret form, NAME.SECRET,
// which is shown once. A name already in use is refused.
func (t *Tokens) Create(ctx context.Context, name, role string) (string, error) {
	if !tokenNameRE.MatchString(name) {
		return "", fmt.Errorf("token name %q: want letters, digits, _ @ - (at most 64, no dots)", name)
	}
	if role != RoleViewer && role != RoleAdmin {
		return "", fmt.Errorf("token %s: role %q: want viewer or admin", name, role)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := name + "." + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	b, err := json.Marshal(Token{Name: name, Role: role, SHA256: hex.EncodeToString(sum[:]), Created: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, _, err := t.Client.KV().CAS(&api.KVPair{Key: t.key(name), Value: b, ModifyIndex: 0}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("store token %s: %w", name, err)
	}
	if !ok {
		return "", fmt.Errorf("token %s exists already: pick another name, or delete it first", name)
	}
	return secret, nil
}

// Delete removes a token; its sessions end at their next request.
func (t *Tokens) Delete(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := t.Client.KV().Delete(t.key(name), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("delete token %s: %w", name, err)
	}
	return nil
}

// Lookup returns the stored token NAME (ErrBadToken if none).
func (t *Tokens) Lookup(ctx context.Context, name string) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, _, err := t.Client.KV().Get(t.key(name), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Token{}, fmt.Errorf("read token %s: %w", name, err)
	}
	if kv == nil {
		return Token{}, ErrBadToken
	}
	var tok Token
	if err := json.Unmarshal(kv.Value, &tok); err != nil {
		return Token{}, fmt.Errorf("token %s: corrupt record: %w", name, err)
	}
	return tok, nil
}

// Verify checks a secret (NAME.SECRET) against its stored hash.
func (t *Tokens) Verify(ctx context.Context, secret string) (Token, error) {
	secret = strings.TrimSpace(secret)
	name, _, ok := strings.Cut(secret, ".")
	if !ok || !tokenNameRE.MatchString(name) || len(secret) > 256 {
		return Token{}, ErrBadToken
	}
	tok, err := t.Lookup(ctx, name)
	if err != nil {
		return Token{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	want, err := hex.DecodeString(tok.SHA256)
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Token{}, ErrBadToken
	}
	return tok, nil
}
