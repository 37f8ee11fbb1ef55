package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no machine (or credential) matches.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a concurrent writer changed the machine first, or a
	// unique key (serial, MAC, BMC address, rack/slot) is held by another
	// machine.
	ErrConflict = errors.New("conflict")
	// ErrAmbiguous: a lookup key matches more than one machine.
	ErrAmbiguous = errors.New("ambiguous")
)

// Config configures a Store. The zero value works with a client.
type Config struct {
	// Prefix is the KV prefix of every key ironrack writes. If empty, "ironrack".
	Prefix string
	// Sealer encrypts BMC passwords. If nil, storing or reading a password
	// fails with ErrKeyFile; everything else works.
	Sealer *Sealer
	// Logger receives debug logs. If nil, logs are discarded.
	Logger *slog.Logger
	// HistoryCap is how many history records are kept per machine; older
	// ones are dropped as new ones land. If 0, 1000.
	HistoryCap int
	// Now returns the time. If nil, time.Now.
	Now func() time.Time
	// Who is recorded in history when a Change names nobody. If empty,
	// "$USER@hostname".
	Who string
	// OpTimeout bounds each Consul call. If 0, 10s.
	OpTimeout time.Duration
	// ScanTimeout bounds instead the calls whose size grows with the
	// fleet: a query's catalog read, which returns every machine's node
	// when no key index narrows the query, and the list of every record
	// (100,000 of either took over 10 s on a loaded 3-server cluster). If
	// 0, 6×OpTimeout.
	ScanTimeout time.Duration
	// RetryFor bounds how long a write transaction is resent, and read back,
	// while the cluster has no leader (see retry.go). If 0, 30s.
	RetryFor time.Duration
}

// Store is the inventory in Consul. It is safe for concurrent use, also
// across processes: every write is a CAS-guarded transaction.
type Store struct {
	c   *api.Client
	cfg Config
	log *slog.Logger
	// recovered is when Recover last found nothing left to do (unix ns).
	recovered atomic.Int64
	// dc is the agent's datacenter, once read (Datacenter).
	dc atomic.Pointer[string]
	// afterChunk, if set, runs after each chunk of a journaled batch
	// (tests use it to kill a batch midway).
	afterChunk func()
	// noAddrClaim, if set, makes StoreLeases neither read nor take the
	// leases' address keys (addrs/<ip>): only the benchmark that measures
	// what the claim costs sets it (BenchmarkLeaseClaim). Never in
	// production: two boot servers could then lease one address twice.
	noAddrClaim bool
}

// New returns a Store over a Consul client.
func New(c *api.Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "ironrack"
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.HistoryCap == 0 {
		cfg.HistoryCap = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.ScanTimeout == 0 {
		cfg.ScanTimeout = 6 * cfg.OpTimeout
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 30 * time.Second
	}
	if cfg.Who == "" {
		host, _ := os.Hostname()
		name := "unknown"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		cfg.Who = name + "@" + host
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{c: c, cfg: cfg, log: log}
}

// Change describes why a machine changes, for its history.
type Change struct {
	// What is a short verb phrase, e.g. "import", "state", "tag".
	What string
	// Why is the operator's or workflow's reason; may be empty.
	Why string
	// Who made it. If empty, the Store's Config.Who.
	Who string
}

// record is the KV value of a machine: the Machine plus bookkeeping that is
// not part of the JSON contract.
type record struct {
	Machine
	HistorySeq int64 `json:"history_seq"`
}

func (s *Store) key(parts ...string) string {
	return s.cfg.Prefix + "/" + strings.Join(parts, "/")
}

func (s *Store) machineKey(id string) string { return s.key("machines", id) }

func (s *Store) historyKey(id string, seq int64) string {
	return s.key("history", id, fmt.Sprintf("%016d", seq))
}

// indexKeys are the uniqueness keys of m: each maps to m's ID, and no two
// machines may hold the same one.
func (s *Store) indexKeys(m *Machine) map[string]string {
	keys := map[string]string{}
	if m.Serial != "" {
		keys[s.key("index", "serial", url.PathEscape(m.Serial))] = "serial " + m.Serial
	}
	for _, n := range m.NICs {
		keys[s.key("index", "mac", n.MAC)] = "MAC " + n.MAC
	}
	if k := m.BMCKey(); k != "" {
		keys[s.key("index", "bmc", url.PathEscape(k))] = "BMC address " + k
	}
	if m.Rack != "" {
		keys[s.key("index", "slot", url.PathEscape(m.Rack), url.PathEscape(m.Slot))] = "rack " + m.Rack + " slot " + m.Slot
	}
	return keys
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// get reads a machine's record and its ModifyIndex.
func (s *Store) get(ctx context.Context, id string) (*record, uint64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.machineKey(id), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("read machine %s: %w", id, err)
	}
	if kv == nil {
		return nil, 0, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	r, err := decodeRecord(kv.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("machine %s: %w", id, err)
	}
	return r, kv.ModifyIndex, nil
}

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := r.UnmarshalJSON(b); err != nil { // not json.Unmarshal, which scans b twice
		return nil, fmt.Errorf("corrupt record: %w", err)
	}
	r.normalize()
	return &r, nil
}

// Get returns the machine with this ID.
func (s *Store) Get(ctx context.Context, id string) (*Machine, error) {
	r, _, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &r.Machine, nil
}

// lookupIndex returns the ID holding an index key, or "".
func (s *Store) lookupIndex(ctx context.Context, key string) (string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	if kv == nil {
		return "", nil
	}
	return string(kv.Value), nil
}

// Find resolves an operator's key — a machine ID, a serial number or a MAC —
// to one machine. A key that names different machines as different kinds is
// ErrAmbiguous.
func (s *Store) Find(ctx context.Context, key string) (*Machine, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return nil, fmt.Errorf("empty machine key: %w", ErrNotFound)
	}
	ids := map[string][]string{}
	if IsID(key) {
		if _, _, err := s.get(ctx, key); err == nil {
			ids[key] = append(ids[key], "ID")
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	if id, err := s.lookupIndex(ctx, s.key("index", "serial", url.PathEscape(key))); err != nil {
		return nil, err
	} else if id != "" {
		ids[id] = append(ids[id], "serial")
	}
	if mac, err := NormalizeMAC(key); err == nil {
		if id, err := s.lookupIndex(ctx, s.key("index", "mac", mac)); err != nil {
			return nil, err
		} else if id != "" {
			ids[id] = append(ids[id], "MAC")
		}
	}
	switch len(ids) {
	case 0:
		return nil, fmt.Errorf("no machine with ID, serial or MAC %q: %w", key, ErrNotFound)
	case 1:
		for id := range ids {
			return s.Get(ctx, id)
		}
	}
	var desc []string
	for id, kinds := range ids {
		desc = append(desc, fmt.Sprintf("%s (as %s)", id, strings.Join(kinds, ", ")))
	}
	sort.Strings(desc)
	return nil, fmt.Errorf("%q matches %d machines: %s; use the machine ID: %w", key, len(ids), strings.Join(desc, "; "), ErrAmbiguous)
}

// HistoryEntry is one change of one machine. History is append-only.
type HistoryEntry struct {
	Seq  int64     `json:"seq"`
	At   time.Time `json:"at"`
	Who  string    `json:"who"`
	What string    `json:"what"`
	Why  string    `json:"why"`
	From State     `json:"from,omitempty"`
	To   State     `json:"to,omitempty"`
	// FromTier and Tier are set when the change moves the machine out of,
	// into or between tiers: its tier before and after ("" for none).
	// Tiers' sizes over time are read from them (the web UI).
	FromTier string `json:"from_tier,omitempty"`
	Tier     string `json:"tier,omitempty"`
}

// History returns a machine's history, oldest first (at most HistoryCap).
func (s *Store) History(ctx context.Context, id string) ([]HistoryEntry, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("history", id)+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", id, err)
	}
	out := make([]HistoryEntry, 0, len(kvs))
	for _, kv := range kvs {
		var h HistoryEntry
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, fmt.Errorf("history of %s: corrupt entry %s: %w", id, kv.Key, err)
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}
