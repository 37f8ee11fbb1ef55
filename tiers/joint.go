package tiers

import (
	"context"
	"fmt"
	"sort"

	"github.com/ironrack/ironrack/inventory"
)

// Want is one tier's share of a joint pick: Count more machines for Owner
// that match Where (nil: any), spread over racks when Spread is "rack".
type Want struct {
	Tier   string
	Owner  string
	Where  *inventory.Where
	Spread string
	Count  int
}

// JointPick picks the machines every want claims, from one read of the
// ready pool, disjointly: no machine goes to two tiers. It is deterministic
// for a given pool and wants. The wants are served in order; each takes the
// machines of its own rendezvous order (inventory.Ranked: by score of its
// owner and the machine ID, round-robin over racks with a spread), except
// that it passes over a machine a later want needs to be met at all (the
// check is Hall's condition over the remaining wants, as CheckPool's), so
// the picks fit whenever any disjoint assignment does. A want without
// contention gets exactly what a spread Allocate alone would claim.
//
// When the pool cannot meet the wants together, the error is a
// *ShortfallError naming the smallest set of tiers that is short. At most
// 16 wants.
func JointPick(ready []*inventory.Machine, wants []Want) (map[string][]*inventory.Machine, error) {
	if len(wants) > 16 {
		return nil, fmt.Errorf("joint pick: %d tiers; at most 16", len(wants))
	}
	ws := make([]*inventory.Where, len(wants))
	needs := make([]int, len(wants))
	for i, w := range wants {
		ws[i] = w.Where
		if ws[i] == nil {
			ws[i] = &inventory.Where{}
		}
		needs[i] = max(w.Count, 0)
	}
	name := func(i int) string { return wants[i].Tier }
	mask := make(map[string]uint32, len(ready))
	byMask := map[uint32]int{}
	for _, m := range ready {
		k, err := maskOf(m, ws, name)
		if err != nil {
			return nil, err
		}
		mask[m.ID] = k
		if k != 0 {
			byMask[k]++
		}
	}
	if set, need, have, ok := hall(byMask, needs); !ok {
		var names []string
		for i := range wants {
			if set&(1<<i) != 0 {
				names = append(names, wants[i].Tier)
			}
		}
		sort.Strings(names)
		return nil, &ShortfallError{Tiers: names, Need: need, Have: have}
	}
	used := map[string]bool{}
	out := make(map[string][]*inventory.Machine, len(wants))
	for i, w := range wants {
		if needs[i] == 0 {
			continue
		}
		var cands []*inventory.Machine
		for _, m := range ready {
			if mask[m.ID]&(1<<i) != 0 && !used[m.ID] {
				cands = append(cands, m)
			}
		}
		later := ^uint32(0) << (i + 1)
		var got []*inventory.Machine
		for _, m := range inventory.Ranked(cands, w.Owner, w.Spread == "rack") {
			if needs[i] == 0 {
				break
			}
			k := mask[m.ID]
			byMask[k]--
			needs[i]--
			if k&later != 0 {
				// A later tier could use this machine: take it only if
				// the rest can still be met without it.
				if _, _, _, ok := hall(byMask, needs); !ok {
					byMask[k]++
					needs[i]++
					continue
				}
			}
			used[m.ID] = true
			got = append(got, m)
		}
		if needs[i] > 0 {
			// Hall's condition held, so a machine was always left.
			return nil, fmt.Errorf("joint pick: tier %s: %d machines left unpicked (a bug)", w.Tier, needs[i])
		}
		out[w.Tier] = got
	}
	return out, nil
}

// StackTier is one tier of a stack: the owner of its claims and its spec.
type StackTier struct {
	Owner string
	Spec  Spec
}

// PlanStack plans the step of every tier of a stack together and changes
// nothing: what each tier holds, removes and leaves is as Plan says, and
// the machines the tiers add are picked jointly (JointPick, in the order
// of ts), so tiers whose selectors overlap never pick the same machine.
// Pass each plan's Add as its spec's Pick, and Apply claims exactly those.
// A step the ready pool cannot meet is a *ShortfallError; a sharded
// tier's map over the machines after the step is checked as in Plan.
func (r *Reconciler) PlanStack(ctx context.Context, ts []StackTier) ([]*Plan, error) {
	plans := make([]*Plan, len(ts))
	var wants []Want
	for i, t := range ts {
		spec := t.Spec
		spec.Pick = nil
		p, err := r.plan(ctx, t.Owner, spec, false)
		if err != nil {
			return nil, err
		}
		plans[i] = p
		if n := spec.Size - len(p.Members); n > 0 {
			w, err := spec.where()
			if err != nil {
				return nil, err
			}
			wants = append(wants, Want{Tier: spec.Name, Owner: t.Owner, Where: w, Spread: spec.Spread, Count: n})
		}
	}
	if len(wants) > 0 {
		ready, err := r.Store.List(ctx, inventory.Query{State: inventory.StateReady})
		if err != nil {
			return nil, fmt.Errorf("read the ready pool: %w", err)
		}
		picks, err := JointPick(ready, wants)
		if err != nil {
			return nil, err
		}
		for _, p := range plans {
			p.Add = picks[p.Spec.Name]
			inventory.SortMachines(p.Add)
		}
	}
	for _, p := range plans {
		var err error
		if p.Shards, err = r.shardStep(ctx, p.Spec, p.Final(), false); err != nil {
			return nil, err
		}
	}
	return plans, nil
}
