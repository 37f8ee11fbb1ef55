package inventory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// Query selects machines. Every field is optional; set fields are ANDed.
type Query struct {
	// Where is a where-expression (see Where); nil selects all.
	Where *Where
	State State
	Rack  string
	Tier  string
}

// equalities merges the query's exact string constraints: the flags and
// the expression's pushed-down `field == "literal"` conjuncts. none reports
// a contradiction (nothing can match).
func equalities(q Query) (eq map[string]string, none bool) {
	eq = map[string]string{}
	if q.Where != nil {
		for k, v := range q.Where.pushdown {
			if v == "\x00contradiction" {
				return nil, true
			}
			eq[k] = v
		}
	}
	for k, v := range map[string]string{"state": string(q.State), "rack": q.Rack, "tier": q.Tier} {
		if v == "" {
			continue
		}
		if prev, ok := eq[k]; ok && prev != v {
			return nil, true
		}
		eq[k] = v
	}
	return eq, false
}

// candidateIDs are the machines whose records a query must read. A rack,
// state or tier equality is answered from the by/ key indexes (a prefix walk
// proportional to the answer); otherwise the catalog is read with Consul's
// node-meta filter (a lookup by one pair; every machine when there is
// none), which lets an expression on meta fields be decided there.
func (s *Store) candidateIDs(ctx context.Context, q Query) ([]string, error) {
	eq, none := equalities(q)
	if none {
		return nil, nil
	}
	var sets [][]string
	for _, attr := range attrKeyFields {
		v, ok := eq[attr]
		if !ok || attr == "state" && !stateIndexed(State(v)) {
			continue // no key index: the catalog (or another set) narrows it
		}
		ids, err := s.attrIDs(ctx, attr, v)
		if err != nil {
			return nil, err
		}
		sets = append(sets, ids)
	}
	if len(sets) == 0 {
		nodes, err := s.candidates(ctx, q)
		return nodeIDs(nodes), err
	}
	out := sets[0]
	for _, other := range sets[1:] {
		in := make(map[string]bool, len(other))
		for _, id := range other {
			in[id] = true
		}
		kept := out[:0]
		for _, id := range out {
			if in[id] {
				kept = append(kept, id)
			}
		}
		out = kept
	}
	return out, nil
}

// candidates reads the catalog with what Consul filters exactly (NodeMeta
// equality) and, when the expression reads only meta fields, decides it
// there. It returns the nodes whose records need reading.
func (s *Store) candidates(ctx context.Context, q Query) ([]*api.Node, error) {
	eq, none := equalities(q)
	if none {
		return nil, nil
	}
	// Consul looks nodes up by one of the filter's pairs, picked at random,
	// and checks the rest on each: with the ironrack=machine marker among
	// several pairs, half the reads would walk every machine. So the marker
	// goes to Consul only alone, and is checked here otherwise.
	if len(eq) == 0 {
		eq[machineMetaKey] = machineMetaValue
	}
	// The whole fleet's nodes may come back: ScanTimeout, not OpTimeout.
	sctx, cancel := context.WithTimeout(ctx, s.cfg.ScanTimeout)
	defer cancel()
	nodes, _, err := s.c.Catalog().Nodes((&api.QueryOptions{NodeMeta: eq}).WithContext(sctx))
	if err != nil {
		return nil, s.scanErr(ctx, sctx, "read catalog", err)
	}
	out := nodes[:0]
	metaOnly := q.Where != nil && q.Where.onlyMeta()
	for _, n := range nodes {
		if n.Meta[machineMetaKey] != machineMetaValue {
			continue // another node that happens to carry the same meta
		}
		if metaOnly {
			ok, err := q.Where.matchMeta(n.Node, n.Meta)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func nodeIDs(nodes []*api.Node) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.Node
	}
	return ids
}

// List returns the machines q selects, ordered by rack, slot and ID.
func (s *Store) List(ctx context.Context, q Query) ([]*Machine, error) {
	var recs []stored
	var err error
	if q.State == "" && q.Rack == "" && q.Tier == "" && (noWhere(q) || len(q.Where.pushdown) == 0 && !q.Where.onlyMeta()) {
		// Every record must be read anyway: one list beats the catalog
		// read plus batched gets.
		recs, err = s.allRecords(ctx, q)
	} else {
		var ids []string
		ids, err = s.candidateIDs(ctx, q)
		if err == nil {
			recs, err = s.selectRecords(ctx, q, ids)
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]*Machine, len(recs))
	for i, r := range recs {
		out[i] = &r.rec.Machine
	}
	SortMachines(out)
	return out, nil
}

// noWhere: the query has no expression to evaluate.
func noWhere(q Query) bool { return q.Where == nil || q.Where.prog == nil }

// scanErr is the error of a read bounded by the store's ScanTimeout (sctx,
// made from ctx): when the ScanTimeout, not the caller, cut it short, it
// says so.
func (s *Store) scanErr(ctx, sctx context.Context, what string, err error) error {
	if ctx.Err() == nil && (sctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("%s: no complete answer within %v (the store's ScanTimeout; a read attempt gets a third of it): %w", what, s.cfg.ScanTimeout, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// allRecords reads every machine record with one list and keeps those q
// selects.
func (s *Store) allRecords(ctx context.Context, q Query) ([]stored, error) {
	// Every record in one answer, its size the fleet's: ScanTimeout. (The
	// retrying transport gives a read a third of the time left per
	// attempt, body included: 3.3 s of a 10 s deadline cut the list of
	// 100,000 records short on a loaded cluster.)
	sctx, cancel := context.WithTimeout(ctx, s.cfg.ScanTimeout)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("machines")+"/", (&api.QueryOptions{}).WithContext(sctx))
	if err != nil {
		return nil, s.scanErr(ctx, sctx, "read machines", err)
	}
	out := make([]stored, 0, len(kvs))
	for _, kv := range kvs {
		r, err := decodeRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		if !noWhere(q) {
			ok, err := q.Where.Match(&r.Machine)
			if err != nil {
				return nil, fmt.Errorf("machine %s: %w", r.ID, err)
			}
			if !ok {
				continue
			}
		}
		out = append(out, stored{r, kv.ModifyIndex})
	}
	return out, nil
}

// stored is a record with the ModifyIndex it was read at.
type stored struct {
	rec   *record
	index uint64
}

// selectRecords reads the records of candidate IDs and keeps those q selects.
func (s *Store) selectRecords(ctx context.Context, q Query, ids []string) ([]stored, error) {
	recs, err := s.records(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, r := range recs {
		m := &r.rec.Machine
		if q.State != "" && m.State != q.State || q.Rack != "" && m.Rack != q.Rack || q.Tier != "" && m.Tier != q.Tier {
			continue // changed between the catalog read and the KV read
		}
		if q.Where != nil {
			ok, err := q.Where.Match(m)
			if err != nil {
				return nil, fmt.Errorf("machine %s: %w", m.ID, err)
			}
			if !ok {
				continue
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// SortMachines orders machines by rack, slot (numerically where both are
// numbers) and ID.
func SortMachines(ms []*Machine) {
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.Rack != b.Rack {
			return a.Rack < b.Rack
		}
		if a.Slot != b.Slot {
			return slotLess(a.Slot, b.Slot)
		}
		return a.ID < b.ID
	})
}

func slotLess(a, b string) bool {
	x, e1 := strconv.Atoi(a)
	y, e2 := strconv.Atoi(b)
	if e1 == nil && e2 == nil && x != y {
		return x < y
	}
	return a < b
}

// getBatch is how many records one read transaction fetches.
const getBatch = maxTxnOps

// records reads the records of ids with batched read transactions, several
// at once. Machines deleted in between are skipped.
func (s *Store) records(ctx context.Context, ids []string) ([]stored, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.machineKey(id)
	}
	var mu sync.Mutex
	out := make([]stored, 0, len(ids))
	err := s.getMany(ctx, keys, func(kvs []*api.KVPair) error {
		recs := make([]stored, 0, len(kvs))
		for _, kv := range kvs {
			r, err := decodeRecord(kv.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", kv.Key, err)
			}
			recs = append(recs, stored{r, kv.ModifyIndex})
		}
		mu.Lock()
		out = append(out, recs...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read machines: %w", err)
	}
	return out, nil
}

// getMany reads keys in batched read transactions (getBatch keys each, 8 at
// once, answered without a Raft round) and hands each batch's present keys
// to each, on the batch's goroutine.
func (s *Store) getMany(ctx context.Context, keys []string, each func([]*api.KVPair) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for start := 0; start < len(keys); start += getBatch {
		batch := keys[start:min(start+getBatch, len(keys))]
		g.Go(func() error {
			ops := make(api.TxnOps, len(batch))
			for i, k := range batch {
				ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}}
			}
			resp, err := s.txn(ctx, ops)
			if err != nil {
				return err
			}
			kvs := make([]*api.KVPair, 0, len(batch))
			for _, res := range resp.Results {
				if res.KV != nil && len(res.KV.Value) > 0 {
					kvs = append(kvs, res.KV)
				}
			}
			return each(kvs)
		})
	}
	return g.Wait()
}

// StoredMachine is a machine as stored, with the Consul index of its
// record's last write.
type StoredMachine struct {
	Machine *Machine
	// Index is the record's ModifyIndex: it changes with every change of
	// the machine, history entries included.
	Index uint64
}

// WatchMachines is a blocking query over every machine record: it waits
// (at most wait) until a record changes past index, then returns them all
// with the index to wait on next. Index 0 returns at once. A record whose
// ModifyIndex equals its entry in prev is not decoded again: prev's
// machine is returned, so a caller that keeps the last answer pays only
// for what changed. The machines returned must not be modified.
func (s *Store) WatchMachines(ctx context.Context, index uint64, wait time.Duration, prev map[string]StoredMachine) ([]StoredMachine, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+s.cfg.OpTimeout)
	defer cancel()
	prefix := s.key("machines") + "/"
	kvs, meta, err := s.c.KV().List(prefix, (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return nil, index, fmt.Errorf("watch machines: %w", err)
	}
	out := make([]StoredMachine, 0, len(kvs))
	for _, kv := range kvs {
		id := strings.TrimPrefix(kv.Key, prefix)
		if p, ok := prev[id]; ok && p.Index == kv.ModifyIndex {
			out = append(out, p)
			continue
		}
		r, err := decodeRecord(kv.Value)
		if err != nil {
			return nil, index, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, StoredMachine{Machine: &r.Machine, Index: kv.ModifyIndex})
	}
	return out, meta.LastIndex, nil
}
