// Package plans keeps the latest capacity plan (`ironrack scale plan`) in
// Consul KV under <prefix>/plans/latest, so readers without the stack file
// (the web UI's tiers page) can draw it: each tier's step, the racks its
// new machines come from, and the storage tier's shard moves.
//
// It owns that one key. The plan itself is tiers/capacity's; the shard
// moves are tiers/placement's preview of the step.
package plans

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/capacity"
	"github.com/ironrack/ironrack/tiers/placement"
)

// Record is one stored plan.
type Record struct {
	At    time.Time     `json:"at"`
	Stack string        `json:"stack"`
	Who   string        `json:"who,omitempty"`
	Plan  capacity.Plan `json:"plan"`
	// ShardMoves is how many storage shard replicas the step moves, as
	// placement previews it; -1 when it cannot be known at plan time.
	ShardMoves int `json:"shard_moves"`
	// ShardNote says how ShardMoves was found, for people.
	ShardNote string `json:"shard_note"`
}

// Store keeps the latest Record.
type Store struct {
	c      *api.Client
	prefix string
}

// NewStore returns a Store under the inventory's prefix (empty: "ironrack").
func NewStore(c *api.Client, prefix string) *Store {
	if prefix == "" {
		prefix = "ironrack"
	}
	return &Store{c: c, prefix: strings.TrimSuffix(prefix, "/")}
}

// Key is the Consul key of the latest plan.
func (s *Store) Key() string { return s.prefix + "/plans/latest" }

// Save stores r as the latest plan.
func (s *Store) Save(ctx context.Context, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.c.KV().Put(&api.KVPair{Key: s.Key(), Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("store the plan in %s: %w", s.Key(), err)
	}
	return nil
}

// Latest returns the latest plan, or nil when none was stored.
func (s *Store) Latest(ctx context.Context) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.Key(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Key(), err)
	}
	if kv == nil {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, fmt.Errorf("%s: corrupt plan: %w", s.Key(), err)
	}
	return &r, nil
}

// MachineGetter reads one machine (its rack). *inventory.Store is one.
type MachineGetter interface {
	Get(ctx context.Context, id string) (*inventory.Machine, error)
}

// ShardMoves previews the storage tier's shard moves for plan's step: the
// stored map rebalanced over its nodes plus the machines the plan adds.
// With no stored map, nothing moves (the first placement holds no data
// yet). A step that removes machines is left to `scale preview`, which
// knows which ones: it returns -1 then.
func ShardMoves(ctx context.Context, shards *placement.Store, inv MachineGetter, p *capacity.Plan) (int, string, error) {
	var tp *capacity.TierPlan
	for i := range p.Tiers {
		if p.Tiers[i].Tier == capacity.Storage {
			tp = &p.Tiers[i]
		}
	}
	if tp == nil || (tp.Add == 0 && tp.Remove == 0) {
		return 0, "storage does not change", nil
	}
	old, _, err := shards.Get(ctx, capacity.Storage)
	if errors.Is(err, placement.ErrNotFound) {
		return 0, "no shard map yet: the first placement moves no data", nil
	}
	if err != nil {
		return 0, "", err
	}
	if tp.Remove > 0 {
		return -1, "the machines a step down drains are chosen by `scale preview`, which shows the moves", nil
	}
	nodes := append([]placement.Node(nil), old.Nodes...)
	for _, id := range tp.Machines {
		m, err := inv.Get(ctx, id)
		if err != nil {
			return 0, "", fmt.Errorf("shard moves: machine %s: %w", id, err)
		}
		nodes = append(nodes, placement.Node{ID: m.ID, Rack: m.Rack})
	}
	st, err := shards.Preview(ctx, capacity.Storage, len(old.Shards), old.Replicas, nodes)
	if err != nil {
		return 0, "", err
	}
	return st.Moves, fmt.Sprintf("%d shards, %d replicas each, onto %d new machines", len(old.Shards), old.Replicas, tp.Add), nil
}
