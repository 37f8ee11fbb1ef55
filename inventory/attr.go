package inventory

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Consul's node-meta filter returns whole nodes, every meta pair of each
// (20-30 ms for most of 10,000 machines), so the fields operators select
// by most — rack, state, tier — also have key indexes, written in the same
// transaction as the machine:
//
//	PREFIX/by/<field>/<value>/<id>   (empty value)
//
// A selection by one of them is a prefix walk of the keys (proportional to
// the answer), then the records.

// attrKeyFields are the indexed fields, most selective first.
var attrKeyFields = []string{"rack", "tier", "state"}

func (s *Store) attrKeys(m *Machine) map[string]bool {
	keys := map[string]bool{}
	for f, v := range map[string]string{"rack": m.Rack, "tier": m.Tier, "state": string(m.State)} {
		// Ready machines are indexed by the pool, not by/state keys.
		if v != "" && (f != "state" || stateIndexed(State(v)) && State(v) != StateReady) {
			keys[s.key("by", f, url.PathEscape(v), m.ID)] = true
		}
	}
	return keys
}

// stateIndexed reports whether a selection of machines in state st is
// answered from keys: ready machines from the pool (pool.go), the others
// from by/state keys. Allocated is left to the catalog's state meta: it is
// the state every claim writes, and one key fewer per claimed machine is a
// fifth of a claim's writes, while a selection of allocated machines is
// rare enough for the catalog scan (20-30 ms at 10,000 machines).
func stateIndexed(st State) bool { return st != StateAllocated }

// attrOps keeps the by/ keys in step with a write.
func (s *Store) attrOps(w *write) api.TxnOps {
	var old, nk map[string]bool
	if w.prev != nil {
		old = s.attrKeys(&w.prev.Machine)
	}
	if w.next != nil {
		nk = s.attrKeys(&w.next.Machine)
	}
	var ops api.TxnOps
	for k := range old {
		if !nk[k] {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
		}
	}
	for k := range nk {
		if !old[k] {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: k}})
		}
	}
	return ops
}

// attrIDs lists the machines whose field has value.
func (s *Store) attrIDs(ctx context.Context, field, value string) ([]string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if field == "state" && value == string(StateReady) {
		keys, _, err := s.c.KV().Keys(s.key("pool")+"/", "", (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read pool: %w", err)
		}
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			ids = append(ids, k[strings.LastIndex(k, "/")+1:])
		}
		return ids, nil
	}
	prefix := s.key("by", field, url.PathEscape(value)) + "/"
	keys, _, err := s.c.KV().Keys(prefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s index: %w", field, err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, prefix))
	}
	return ids, nil
}
