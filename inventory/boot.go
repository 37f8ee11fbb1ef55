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
	// Unclaimed is a hint, never stored: the caller's index held no lease
	// of IP when it chose it (a fresh address). StoreLeases then claims
	// the address key with a create-only CAS without reading it first
	// (when the batch needs no other read, one transaction instead of
	// two); if the key exists after all (another boot server took the
	// address, or a stale claim), the write fails as a whole and the batch
	// is stored again the usual way, reading every key.
	Unclaimed bool `json:"-"`
}

func (s *Store) leaseKey(mac string) string { return s.key("leases", mac) }

// leaseKeyFor is where mac's lease of ip lives: leases/<mac> for IPv4,
// leases6/<mac> for IPv6 (an address key's holder is found by its family).
func (s *Store) leaseKeyFor(mac, ip string) string {
	if strings.Contains(ip, ":") {
		return s.key("leases6", mac)
	}
	return s.leaseKey(mac)
}

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

// ErrAddressInUse: the lease's address is held by another MAC whose lease
// has not expired (another boot server gave it out first).
var ErrAddressInUse = errors.New("address in use")

// addrKey is the key that says which MAC holds an address: every lease
// write CASes it, so two boot servers sharing a range never commit the
// same address for two MACs.
func (s *Store) addrKey(ip string) string { return s.key("addrs", ip) }

// addrHolder is what an address key says.
type addrHolder struct {
	mac   string
	index uint64 // 0: the key is absent
}

// addrClaim is the CAS that takes ip for mac, given what its key held; the
// error is ErrAddressInUse when another MAC's live lease has it. heldLease
// is that MAC's lease (nil: none stored).
func (s *Store) addrClaim(ip, mac string, h addrHolder, heldLease *Lease, now time.Time) (*api.TxnOp, error) {
	if h.index != 0 && h.mac != mac && heldLease != nil && heldLease.IP == ip && heldLease.Expires.After(now) {
		return nil, fmt.Errorf("address %s is leased to %s until %s: %w", ip, h.mac, heldLease.Expires.UTC().Format(time.RFC3339), ErrAddressInUse)
	}
	return &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.addrKey(ip), Value: []byte(mac), Index: h.index}}, nil
}

// readAddrClaim reads ip's key (and its holder's lease, if another MAC
// holds it) and returns the claim for mac.
func (s *Store) readAddrClaim(ctx context.Context, ip, mac string) (*api.TxnOp, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.addrKey(ip), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("store lease: read holder of %s: %w", ip, err)
	}
	var h addrHolder
	var held *Lease
	if kv != nil {
		h = addrHolder{mac: string(kv.Value), index: kv.ModifyIndex}
		if h.mac != mac {
			lkv, _, err := s.c.KV().Get(s.leaseKeyFor(h.mac, ip), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("store lease: read lease of %s: %w", h.mac, err)
			}
			if lkv != nil {
				held = &Lease{}
				if json.Unmarshal(lkv.Value, held) != nil {
					held = nil
				}
			}
		}
	}
	return s.addrClaim(ip, mac, h, held, s.cfg.Now())
}

// StoreLease writes a lease durably (a Raft commit) before the caller sends
// its ACK. When the MAC belongs to a machine, the machine's ip changes in
// the same transaction. An address another MAC's live lease holds is
// ErrAddressInUse.
func (s *Store) StoreLease(ctx context.Context, l Lease) error { return s.storeLease(ctx, l, false) }

// StoreLease6 writes a DHCPv6 lease durably (leases6/<mac>) before the
// caller sends its Reply, taking its address's key as StoreLease does. A
// machine's ip is its IPv4 address when it has one: the lease becomes the
// machine's ip (in the same transaction) only when the machine has no ip or
// an IPv6 one (an IPv6-only machine).
func (s *Store) StoreLease6(ctx context.Context, l Lease) error { return s.storeLease(ctx, l, true) }

func (s *Store) storeLease(ctx context.Context, l Lease, v6 bool) error {
	what, why := "lease", "DHCP lease "
	if v6 {
		what, why = "DHCPv6 lease", "DHCPv6 lease "
	}
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("store %s: %w", what, err)
	}
	l.MAC = mac
	if ip := net.ParseIP(l.IP); ip == nil || v6 && ip.To4() != nil {
		return fmt.Errorf("store %s for %s: malformed IP %q", what, mac, l.IP)
	}
	val, _ := json.Marshal(l)
	op := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.leaseKeyFor(mac, l.IP), Value: val}}
	id, err := s.lookupIndex(ctx, s.key("index", "mac", mac))
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		claim, err := s.readAddrClaim(ctx, l.IP, mac)
		if err != nil {
			return err
		}
		if id != "" {
			m, err := s.Get(ctx, id)
			if err == nil && m.IP != l.IP && (!v6 || m.IP == "" || strings.Contains(m.IP, ":")) {
				_, err = s.update(ctx, id, System, Change{What: "lease", Why: why + l.IP}, []*api.TxnOp{op, claim}, func(m *Machine) error {
					m.IP = l.IP
					return nil
				})
				return err
			}
		}
		err = s.writeTxn(ctx, api.TxnOps{op, claim})
		if errors.Is(err, ErrConflict) && attempt < 2 {
			continue // the address key moved: read its holder again
		}
		return err
	}
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
