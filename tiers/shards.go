package tiers

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"
)

// Shards is a sharded tier's layout: Count shards, each with Replicas
// copies on Replicas machines in distinct racks. Replicas 0 means the
// stored map's replication factor, or for a first map DefaultReplicas
// capped at the racks the tier's machines span (so R never changes behind
// the operator's back once a map exists).
type Shards struct {
	Count, Replicas int
}

// DefaultReplicas is a first map's replication factor when Shards.Replicas
// is 0 and the tier's machines span at least as many racks.
const DefaultReplicas = 3

func (s Spec) validateShards() []*FieldError {
	if s.Shards == nil {
		return nil
	}
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	sh := s.Shards
	if sh.Count < 1 || sh.Count > placement.MaxShards {
		bad("shards.count", "%d is out of range (1 to %d)", sh.Count, placement.MaxShards)
	}
	switch {
	case sh.Replicas < 0 || sh.Replicas > placement.MaxReplicas:
		bad("shards.replicas", "%d is out of range (0 for the default, 1 to %d)", sh.Replicas, placement.MaxReplicas)
	case sh.Replicas > s.Size && s.Size > 0:
		bad("shards.replicas", "%d replicas need %d machines in %d racks, the tier's size is %d", sh.Replicas, sh.Replicas, sh.Replicas, s.Size)
	}
	return errs
}

// ShardStore keeps sharded tiers' maps; *placement.Store is the one.
type ShardStore interface {
	Get(ctx context.Context, tier string) (placement.Map, uint64, error)
	Preview(ctx context.Context, tier string, shards, replicas int, nodes []placement.Node) (placement.Step, error)
	Update(ctx context.Context, tier string, shards, replicas int, nodes []placement.Node) (placement.Step, error)
	Delete(ctx context.Context, tier string) error
}

// ShardNodes are machines as placement nodes.
func ShardNodes(ms []*inventory.Machine) []placement.Node {
	out := make([]placement.Node, len(ms))
	for i, m := range ms {
		out[i] = placement.Node{ID: m.ID, Rack: m.Rack}
	}
	return out
}

// shardStep previews (write false) or stores (write true) the tier's map
// over machines. A sharded tier without machines has no map: storing
// deletes it. So has a tier that is no longer sharded (see unshard).
func (r *Reconciler) shardStep(ctx context.Context, spec Spec, ms []*inventory.Machine, write bool) (*placement.Step, error) {
	if spec.Shards == nil {
		return r.unshard(ctx, spec, write)
	}
	if r.Shards == nil {
		return nil, fmt.Errorf("tier %s is sharded but the reconciler has no shard store", spec.Name)
	}
	if len(ms) == 0 {
		if write {
			if err := r.Shards.Delete(ctx, spec.Name); err != nil {
				return nil, fmt.Errorf("tier %s: %w", spec.Name, err)
			}
		}
		return &placement.Step{}, nil
	}
	R := spec.Shards.Replicas
	if R == 0 {
		old, _, err := r.Shards.Get(ctx, spec.Name)
		switch {
		case err == nil:
			R = old.Replicas
		case errors.Is(err, placement.ErrNotFound):
			racks := map[string]bool{}
			for _, m := range ms {
				racks[m.Rack] = true
			}
			R = max(1, min(DefaultReplicas, len(racks)))
		default:
			return nil, fmt.Errorf("tier %s: %w", spec.Name, err)
		}
	}
	var st placement.Step
	var err error
	if write {
		st, err = r.Shards.Update(ctx, spec.Name, spec.Shards.Count, R, ShardNodes(ms))
	} else {
		st, err = r.Shards.Preview(ctx, spec.Name, spec.Shards.Count, R, ShardNodes(ms))
	}
	if err != nil {
		var short *placement.RackShortfallError
		if errors.As(err, &short) {
			return nil, fmt.Errorf("tier %s: shards.replicas: the tier's %d machines after the step: %w", spec.Name, len(ms), err)
		}
		return nil, fmt.Errorf("tier %s: %w", spec.Name, err)
	}
	return &st, nil
}

// unshard handles a tier without shards: a map left from when it had them
// would still point consumers at machines for shards that no longer
// exist, so storing (write true) deletes it. The step it returns (Removed,
// Old the map) says so; nil when there is no map, or no shard store.
func (r *Reconciler) unshard(ctx context.Context, spec Spec, write bool) (*placement.Step, error) {
	if r.Shards == nil {
		return nil, nil
	}
	old, _, err := r.Shards.Get(ctx, spec.Name)
	if errors.Is(err, placement.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tier %s: %w", spec.Name, err)
	}
	if write {
		if err := r.Shards.Delete(ctx, spec.Name); err != nil {
			return nil, fmt.Errorf("tier %s: %w", spec.Name, err)
		}
		r.log().Info("shard map removed: the tier is no longer sharded", "tier", spec.Name, "shards", len(old.Shards), "replicas", old.Replicas)
	}
	return &placement.Step{Old: &old, Removed: true}, nil
}
