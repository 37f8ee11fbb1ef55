package inventory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Lease is a DHCP lease kept in Consul, so that a restarted (or another)
// boot server never hands out an address in use.
type Lease struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip"`
	Expires  time.Time `json:"expires"`
	Hostname string    `json:"hostname,omitempty"`
	// NoMachine is a hint, never stored: the caller learnt moments ago
	// (Reservations) that no machine has MAC, so StoreLeases need not read
	// the MAC index again. A machine that gains the MAC in between has its
	// ip recorded at the lease's next renewal.
	NoMachine bool `json:"-"`
}

func (s *Store) leaseKey(mac string) string { return s.key("leases", mac) }

// Leases returns every stored lease, expired ones included.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("leases")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	out := make([]Lease, 0, len(kvs))
	for _, kv := range kvs {
		var l Lease
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			return nil, fmt.Errorf("lease %s: %w", kv.Key, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// StoreLease writes a lease durably (a Raft commit) before the caller sends
// its ACK. When the MAC belongs to a machine, the machine's ip changes in
// the same transaction.
func (s *Store) StoreLease(ctx context.Context, l Lease) error {
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("store lease: %w", err)
	}
	l.MAC = mac
	if net.ParseIP(l.IP) == nil {
		return fmt.Errorf("store lease for %s: malformed IP %q", mac, l.IP)
	}
	val, _ := json.Marshal(l)
	op := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.leaseKey(mac), Value: val}}
	id, err := s.lookupIndex(ctx, s.key("index", "mac", mac))
	if err != nil {
		return err
	}
	if id != "" {
		m, err := s.Get(ctx, id)
		if err == nil && m.IP != l.IP {
			_, err = s.update(ctx, id, System, Change{What: "lease", Why: "DHCP lease " + l.IP}, []*api.TxnOp{op}, func(m *Machine) error {
				m.IP = l.IP
				return nil
			})
			return err
		}
	}
	err = s.writeTxn(ctx, api.TxnOps{op})
	return err
}

// Leases6 returns every stored DHCPv6 lease (leases6/<mac>), expired ones
// included.
func (s *Store) Leases6(ctx context.Context) ([]Lease, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("leases6")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read DHCPv6 leases: %w", err)
	}
	out := make([]Lease, 0, len(kvs))
	for _, kv := range kvs {
		var l Lease
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			return nil, fmt.Errorf("DHCPv6 lease %s: %w", kv.Key, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// StoreLease6 writes a DHCPv6 lease durably (leases6/<mac>) before the
// caller sends its Reply. A machine's ip is its IPv4 address when it has
// one: the lease becomes the machine's ip (in the same transaction) only
// when the machine has no ip or an IPv6 one (an IPv6-only machine).
func (s *Store) StoreLease6(ctx context.Context, l Lease) error {
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("store DHCPv6 lease: %w", err)
	}
	l.MAC = mac
	ip := net.ParseIP(l.IP)
	if ip == nil || ip.To4() != nil {
		return fmt.Errorf("store DHCPv6 lease for %s: malformed IPv6 address %q", mac, l.IP)
	}
	val, _ := json.Marshal(l)
	op := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.key("leases6", mac), Value: val}}
	id, err := s.lookupIndex(ctx, s.key("index", "mac", mac))
	if err != nil {
		return err
	}
	if id != "" {
		m, err := s.Get(ctx, id)
		if err == nil && m.IP != l.IP && (m.IP == "" || strings.Contains(m.IP, ":")) {
			_, err = s.update(ctx, id, System, Change{What: "lease", Why: "DHCPv6 lease " + l.IP}, []*api.TxnOp{op}, func(m *Machine) error {
				m.IP = l.IP
				return nil
			})
			return err
		}
	}
	return s.writeTxn(ctx, api.TxnOps{op})
}

// NoteBoot records a boot (and what the boot server handed out) in the
// machine's history without changing the machine.
func (s *Store) NoteBoot(ctx context.Context, id, what, why string) error {
	_, err := s.Update(ctx, id, System, Change{What: what, Why: why, Who: "boot-server"}, func(*Machine) error { return nil })
	return err
}

// ErrToken is returned for a missing, malformed or wrong boot token.
var ErrToken = errors.New("invalid boot token")

func (s *Store) tokenKey(id string) string { return s.key("boot-tokens", id) }

// IssueBootToken makes a new per-boot token for a machine, replacing the
// previous one. The token is "<id>.<secret>"; only the secret's sha256 is
// stored.
func (s *Store) IssueBootToken(ctx context.Context, id string) (string, error) {
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", err
	}
	sec := hex.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(sec))
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.c.KV().Put(&api.KVPair{Key: s.tokenKey(id), Value: []byte(hex.EncodeToString(sum[:]))}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return "", fmt.Errorf("issue boot token for %s: %w", id, err)
	}
	return id + "." + sec, nil
}

// VerifyBootToken returns the machine a token was issued to.
func (s *Store) VerifyBootToken(ctx context.Context, token string) (string, error) {
	id, sec, ok := strings.Cut(token, ".")
	if !ok || !IsID(id) || len(sec) != 48 {
		return "", ErrToken
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.tokenKey(id), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("verify boot token: %w", err)
	}
	if kv == nil {
		return "", ErrToken
	}
	sum := sha256.Sum256([]byte(sec))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), kv.Value) != 1 {
		return "", ErrToken
	}
	return id, nil
}
