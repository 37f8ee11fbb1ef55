// Package mesh owns the WireGuard admin mesh: admins reach every machine's
// admin ports through it, and machines reach nothing through it (a
// machine's only peers are the admins).
//
// Private keys never leave their host: a machine generates its own key
// (Enroll, over SSH) and reports only its public key; an admin brings a
// public key. Consul stores public keys and mesh addresses only, under
// PREFIX/vpn/peers/NAME. Configurations are rendered from the two groups
// (MachineConfig, AdminConfig) and installed on machines with Sync; Revoke
// removes a peer from Consul and from every machine at once. See
// docs/network-policy.md for the order with the firewall: mesh first.
package mesh

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// Kinds of peer.
const (
	Admin   = "admin"
	Machine = "machine"
)

// Defaults of the mesh's address plan and its WireGuard port.
var (
	// DefaultAdminRange holds the admins' mesh addresses. The firewall
	// admits admin ports from this range on the mesh interface only;
	// WireGuard's cryptokey routing lets a packet in from an address only
	// from the peer that address belongs to.
	DefaultAdminRange = netip.MustParsePrefix("10.99.0.0/24")
	// DefaultMachineRange holds the machines' mesh addresses.
	DefaultMachineRange = netip.MustParsePrefix("10.99.16.0/20")
	// DefaultMesh is the prefix on every mesh interface (covers both).
	DefaultMesh = netip.MustParsePrefix("10.99.0.0/16")
)

// DefaultPort is WireGuard's listen port on machines.
const DefaultPort = 51820

// Interface is the mesh interface's name on machines.
const Interface = "wg0"

// Peer is one member of the mesh: public data only.
type Peer struct {
	Name      string     `json:"name"`
	Kind      string     `json:"kind"`
	PublicKey string     `json:"public_key"`
	Address   netip.Addr `json:"address"`
	// Endpoint is where a machine listens (IP:port); empty for admins.
	Endpoint string    `json:"endpoint,omitempty"`
	AddedAt  time.Time `json:"added_at"`
}

// ValidKey checks a WireGuard public key: base64 of 32 bytes.
func ValidKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("public key %q: want the 44-character base64 of 32 bytes, as `wg pubkey` prints", k)
	}
	return nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$`)

// Store keeps the peers in Consul KV.
type Store struct {
	Client *api.Client
	// Prefix is the inventory's KV prefix. If "", "ironrack".
	Prefix string
	// AdminRange, MachineRange: if invalid (zero), the defaults.
	AdminRange, MachineRange netip.Prefix
}

func (s *Store) base() string {
	p := strings.TrimSuffix(s.Prefix, "/")
	if p == "" {
		p = "ironrack"
	}
	return p + "/vpn/peers/"
}

func (s *Store) rangeOf(kind string) netip.Prefix {
	if kind == Admin {
		if s.AdminRange.IsValid() {
			return s.AdminRange
		}
		return DefaultAdminRange
	}
	if s.MachineRange.IsValid() {
		return s.MachineRange
	}
	return DefaultMachineRange
}

// List returns every peer, sorted by name, and the KV index.
func (s *Store) List(ctx context.Context) ([]Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kvs, _, err := s.Client.KV().List(s.base(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.base(), err)
	}
	var out []Peer
	for _, kv := range kvs {
		var p Peer
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Add stores a peer with the next free address of its kind's range. A
// peer of the same name and key is returned as it is; another name with
// the same key, or the same name with another key, is refused (revoke
// first).
func (s *Store) Add(ctx context.Context, p Peer) (Peer, error) {
	if !validName.MatchString(p.Name) {
		return p, fmt.Errorf("peer name %q: want letters, digits, _ . @ - (at most 63)", p.Name)
	}
	if p.Kind != Admin && p.Kind != Machine {
		return p, fmt.Errorf("peer %s: kind %q: want admin or machine", p.Name, p.Kind)
	}
	if err := ValidKey(p.PublicKey); err != nil {
		return p, fmt.Errorf("peer %s: %w", p.Name, err)
	}
	for range 8 {
		peers, err := s.List(ctx)
		if err != nil {
			return p, err
		}
		used := map[netip.Addr]bool{}
		for _, q := range peers {
			switch {
			case q.Name == p.Name && q.PublicKey == p.PublicKey:
				return q, nil
			case q.Name == p.Name:
				return p, fmt.Errorf("peer %s exists with another key; `vpn revoke %s` first", p.Name, p.Name)
			case q.PublicKey == p.PublicKey:
				return p, fmt.Errorf("public key of %s is already %s's", p.Name, q.Name)
			}
			used[q.Address] = true
		}
		r := s.rangeOf(p.Kind)
		p.Address = netip.Addr{}
		for a := r.Addr().Next(); r.Contains(a); a = a.Next() {
			if !used[a] && r.Contains(a.Next()) { // not the range's last (broadcast-like) address
				p.Address = a
				break
			}
		}
		if !p.Address.IsValid() {
			return p, fmt.Errorf("no free %s address in %s", p.Kind, r)
		}
		p.AddedAt = time.Now().UTC()
		b, _ := json.Marshal(p)
		// One transaction: the peer's key only if absent, and the index of
		// the listing unchanged (a racing Add took no address meanwhile is
		// not guaranteed by the index of one key, so the address is also
		// claimed as a key of its own).
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.base() + p.Name, Value: b, Index: 0}},
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.addrKey(p.Address), Value: []byte(p.Name), Index: 0}},
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, _, _, err := s.Client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(tctx))
		cancel()
		if err != nil {
			return p, fmt.Errorf("add peer %s: %w", p.Name, err)
		}
		if ok {
			return p, nil
		}
	}
	return p, fmt.Errorf("add peer %s: lost the race for an address 8 times", p.Name)
}

func (s *Store) addrKey(a netip.Addr) string {
	return strings.TrimSuffix(s.base(), "peers/") + "addresses/" + a.String()
}

// Remove deletes a peer and its address; it returns the removed peer.
func (s *Store) Remove(ctx context.Context, name string) (Peer, error) {
	peers, err := s.List(ctx)
	if err != nil {
		return Peer{}, err
	}
	for _, p := range peers {
		if p.Name != name {
			continue
		}
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.base() + p.Name}},
			{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.addrKey(p.Address)}},
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ok, resp, _, err := s.Client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(tctx))
		if err != nil {
			return p, fmt.Errorf("remove peer %s: %w", name, err)
		}
		if !ok {
			return p, fmt.Errorf("remove peer %s: %v", name, resp.Errors)
		}
		return p, nil
	}
	return Peer{}, fmt.Errorf("no peer named %q (`ironrack vpn list` shows them)", name)
}

// MachineConfig is a machine's WireGuard configuration (wg syncconf form)
// without its private key, which Sync adds on the machine itself: every
// admin is a peer, with its one mesh address; no machine is.
func MachineConfig(port int, peers []Peer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\nListenPort = %d\n", port)
	for _, p := range peers {
		if p.Kind != Admin {
			continue
		}
		fmt.Fprintf(&b, "\n# admin %s\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\n", p.Name, p.PublicKey, p.Address)
	}
	return b.String()
}

// AdminConfig is admin name's wg-quick configuration: its mesh address and
// every machine as a peer at its endpoint. The private key is the admin's
// own: the line says where it goes.
func AdminConfig(name string, peers []Peer) (string, error) {
	var self *Peer
	for i := range peers {
		if peers[i].Name == name && peers[i].Kind == Admin {
			self = &peers[i]
		}
	}
	if self == nil {
		return "", fmt.Errorf("no admin named %q", name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\n# PrivateKey = (yours: the key whose public key is %s)\nAddress = %s/32\n", self.PublicKey, self.Address)
	for _, p := range peers {
		if p.Kind != Machine {
			continue
		}
		fmt.Fprintf(&b, "\n# machine %s\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s\nPersistentKeepalive = 25\n", p.Name, p.PublicKey, p.Address, p.Endpoint)
	}
	return b.String(), nil
}

// Runner runs one shell command on a host (the same contract as
// netpolicy.Runner; an SSH client satisfies both).
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exit int, err error)
}

// KeyDir is where a machine keeps its private key (0600, never read by
// ironrack).
const KeyDir = "/etc/ironrack/wg"

// enrollScript makes the machine's key if it has none and prints only the
// public key.
const enrollScript = `set -eu
umask 077
mkdir -p ` + KeyDir + `
[ -s ` + KeyDir + `/private.key ] || wg genkey > ` + KeyDir + `/private.key
wg pubkey < ` + KeyDir + `/private.key
`

func run(ctx context.Context, r Runner, what, cmd string, stdin io.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out, errb strings.Builder
	code, err := r.Run(ctx, cmd, stdin, &out, &errb)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if code != 0 {
		return "", fmt.Errorf("%s: exit %d: %s", what, code, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Enroll has the machine make its key (once) and returns its public key.
func Enroll(ctx context.Context, r Runner) (string, error) {
	out, err := run(ctx, r, "enroll", enrollScript, nil)
	if err != nil {
		return "", err
	}
	k := strings.TrimSpace(out)
	if err := ValidKey(k); err != nil {
		return "", fmt.Errorf("enroll: the machine printed %w", err)
	}
	return k, nil
}

// Sync brings the machine's mesh interface up (the kernel's WireGuard, or
// wireguard-go where there is none) and sets its peers to exactly the
// configuration given, the private key added on the machine.
func Sync(ctx context.Context, r Runner, self Peer, mesh netip.Prefix, config string) error {
	if !mesh.IsValid() {
		mesh = DefaultMesh
	}
	script := fmt.Sprintf(`set -eu
umask 077
i=%[1]s
if ! ip link show "$i" >/dev/null 2>&1; then
  ip link add "$i" type wireguard 2>/dev/null || env -i PATH="$PATH" setsid wireguard-go "$i" </dev/null >/dev/null 2>&1
  n=0; while ! ip link show "$i" >/dev/null 2>&1 || ! wg show "$i" >/dev/null 2>&1; do n=$((n+1)); [ $n -lt 50 ] || { echo "no $i after 5s" >&2; exit 1; }; sleep 0.1; done
fi
t=$(mktemp)
{ echo "[Interface]"; echo "PrivateKey = $(cat %[2]s/private.key)"; sed 1d; } > "$t"
wg syncconf "$i" "$t"
rm -f "$t"
ip addr replace %[3]s/%[4]d dev "$i"
ip link set "$i" up
`, Interface, KeyDir, self.Address, mesh.Bits())
	_, err := run(ctx, r, "sync "+self.Name, script, strings.NewReader(config))
	return err
}

// RemovePeer removes one peer from the machine's interface at once.
func RemovePeer(ctx context.Context, r Runner, publicKey string) error {
	if err := ValidKey(publicKey); err != nil {
		return err
	}
	_, err := run(ctx, r, "remove peer", fmt.Sprintf("wg set %s peer %s remove", Interface, publicKey), nil)
	return err
}

// Dialer connects to a machine peer (its Name is the machine's ID).
type Dialer func(ctx context.Context, p Peer) (Runner, error)

// Revoke removes peer name from Consul, then from every machine's
// interface at once (at most parallel at a time; 0 means all). It returns
// the removed peer and the machines it could not reach, by name: those
// drop the peer at their next Sync.
func Revoke(ctx context.Context, s *Store, name string, dial Dialer, parallel int) (Peer, map[string]error, error) {
	removed, err := s.Remove(ctx, name)
	if err != nil {
		return removed, nil, err
	}
	peers, err := s.List(ctx)
	if err != nil {
		return removed, nil, err
	}
	failed := map[string]error{}
	var mu sync.Mutex
	g := new(errgroup.Group)
	if parallel > 0 {
		g.SetLimit(parallel)
	}
	for _, p := range peers {
		if p.Kind != Machine {
			continue
		}
		g.Go(func() error {
			err := func() error {
				r, err := dial(ctx, p)
				if err != nil {
					return err
				}
				if c, ok := r.(io.Closer); ok {
					defer c.Close()
				}
				return RemovePeer(ctx, r, removed.PublicKey)
			}()
			if err != nil {
				mu.Lock()
				failed[p.Name] = err
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return removed, failed, nil
}
