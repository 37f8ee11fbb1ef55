package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no map is stored for the tier.
	ErrNotFound = errors.New("not found")
	// ErrConflict: another writer changed the tier's map since it was read.
	ErrConflict = errors.New("conflict")
)

// maxValue is Consul's limit on one KV value.
const maxValue = 512 * 1024

// Store keeps shard maps in Consul KV under <Prefix>/shards/<tier>, one
// JSON Map per tier, every write a check-and-set on the ModifyIndex read.
type Store struct {
	c   *api.Client
	cfg StoreConfig
}

// StoreConfig configures a Store. The zero value works.
type StoreConfig struct {
	// Prefix is the KV prefix, shared with the inventory. If empty, "ironrack".
	Prefix string
	// OpTimeout bounds each Consul call. If 0, 10s.
	OpTimeout time.Duration
	// Retries is how often Update re-reads and retries after losing a
	// check-and-set. If 0, 8.
	Retries int
}

// NewStore returns a Store over a Consul client.
func NewStore(c *api.Client, cfg StoreConfig) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "ironrack"
	}
	cfg.Prefix = strings.TrimSuffix(cfg.Prefix, "/")
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 8
	}
	return &Store{c: c, cfg: cfg}
}

var tierRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Key is the Consul key of a tier's map.
func (s *Store) Key(tier string) string { return s.cfg.Prefix + "/shards/" + tier }

func checkTier(tier string) error {
	if !tierRE.MatchString(tier) {
		return fmt.Errorf("tier name %q: want lower-case letters, digits, - and _", tier)
	}
	return nil
}

// Get returns a tier's map and the ModifyIndex it was read at, or
// ErrNotFound. A stored value that does not decode or validate is an
// error naming the key.
func (s *Store) Get(ctx context.Context, tier string) (Map, uint64, error) {
	if err := checkTier(tier); err != nil {
		return Map{}, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	key := s.Key(tier)
	kv, _, err := s.c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return Map{}, 0, fmt.Errorf("read %s: %w", key, err)
	}
	if kv == nil {
		return Map{}, 0, fmt.Errorf("shard map of tier %s (%s): %w", tier, key, ErrNotFound)
	}
	var m Map
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		return Map{}, 0, fmt.Errorf("%s: corrupt shard map: %w", key, err)
	}
	if err := m.Validate(); err != nil {
		return Map{}, 0, fmt.Errorf("%s: invalid shard map: %w", key, err)
	}
	return m, kv.ModifyIndex, nil
}

// Put stores a tier's map if the key is still at index (0: only if absent).
// A lost check-and-set is ErrConflict; nothing is written then.
func (s *Store) Put(ctx context.Context, tier string, m Map, index uint64) error {
	if err := checkTier(tier); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("shard map of tier %s: %w", tier, err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	key := s.Key(tier)
	if len(b) > maxValue {
		return fmt.Errorf("shard map of tier %s is %d bytes, over Consul's %d-byte value limit: use fewer shards", tier, len(b), maxValue)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	ok, _, err := s.c.KV().CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if !ok {
		return fmt.Errorf("write %s: changed since read at index %d: %w", key, index, ErrConflict)
	}
	return nil
}

// Step is a change of a tier's map.
type Step struct {
	// Old is the stored map before; nil when there was none.
	Old *Map `json:"old,omitempty"`
	New Map  `json:"new"`
	// Moves counts replicas that change node (see Moves); with no old map,
	// every replica counts.
	Moves int `json:"moves"`
	// Removed: the tier is no longer sharded and its map (Old) goes; New
	// is empty and Moves 0.
	Removed bool `json:"removed,omitempty"`
}

// Preview computes the map for nodes from the stored one (Rebalance; Place
// when none is stored or the shard count or replication factor changed),
// writing nothing.
func (s *Store) Preview(ctx context.Context, tier string, shards, replicas int, nodes []Node) (Step, error) {
	st, _, err := s.step(ctx, tier, shards, replicas, nodes)
	return st, err
}

func (s *Store) step(ctx context.Context, tier string, shards, replicas int, nodes []Node) (Step, uint64, error) {
	old, index, err := s.Get(ctx, tier)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Step{}, 0, err
	}
	var m Map
	if index != 0 && len(old.Shards) == shards && old.Replicas == replicas {
		m, err = Rebalance(old, nodes)
	} else {
		// A new map, or a new shape: place from scratch.
		m, err = Place(shards, replicas, nodes)
	}
	if err != nil {
		return Step{}, 0, fmt.Errorf("shard map of tier %s: %w", tier, err)
	}
	st := Step{New: m}
	if index != 0 {
		st.Old = &old
	}
	st.Moves = Moves(old, m)
	return st, index, nil
}

// Update computes the map as Preview does and stores it with check-and-set,
// re-reading and retrying when another writer won (at most Retries times).
// Writing a map equal to the stored one is skipped.
func (s *Store) Update(ctx context.Context, tier string, shards, replicas int, nodes []Node) (Step, error) {
	for attempt := 0; ; attempt++ {
		st, index, err := s.step(ctx, tier, shards, replicas, nodes)
		if err != nil {
			return Step{}, err
		}
		if st.Old != nil && st.Moves == 0 && equal(*st.Old, st.New) {
			return st, nil
		}
		err = s.Put(ctx, tier, st.New, index)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, ErrConflict) || attempt >= s.cfg.Retries {
			return Step{}, fmt.Errorf("update shard map of tier %s (attempt %d): %w", tier, attempt+1, err)
		}
		select {
		case <-ctx.Done():
			return Step{}, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
}

func equal(a, b Map) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Delete removes a tier's map (a deleted tier). A missing map is not an
// error.
func (s *Store) Delete(ctx context.Context, tier string) error {
	if err := checkTier(tier); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	key := s.Key(tier)
	if _, err := s.c.KV().Delete(key, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
