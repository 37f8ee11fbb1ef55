package tiers

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"
)

// Shards is a sharded tier's layout: Count shards, each with Replicas
// copies on Replicas machines in distinct racks.
type Shards struct {
	Count, Replicas int
}

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
	case sh.Replicas < 1 || sh.Replicas > placement.MaxReplicas:
		bad("shards.replicas", "%d is out of range (1 to %d)", sh.Replicas, placement.MaxReplicas)
	case sh.Replicas > s.Size:
		bad("shards.replicas", "%d replicas need %d machines in %d racks, the tier's size is %d", sh.Replicas, sh.Replicas, sh.Replicas, s.Size)
	}
	return errs
}

// ShardStore keeps sharded tiers' maps; *placement.Store is the one.
type ShardStore interface {
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
// over machines.
func (r *Reconciler) shardStep(ctx context.Context, spec Spec, ms []*inventory.Machine, write bool) (*placement.Step, error) {
	if spec.Shards == nil {
		return nil, nil
	}
	if r.Shards == nil {
		return nil, fmt.Errorf("tier %s is sharded but the reconciler has no shard store", spec.Name)
	}
	var st placement.Step
	var err error
	if write {
		st, err = r.Shards.Update(ctx, spec.Name, spec.Shards.Count, spec.Shards.Replicas, ShardNodes(ms))
	} else {
		st, err = r.Shards.Preview(ctx, spec.Name, spec.Shards.Count, spec.Shards.Replicas, ShardNodes(ms))
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
