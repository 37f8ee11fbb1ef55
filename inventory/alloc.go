package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/hrw"
)

// AllocateRequest asks for Count ready machines.
type AllocateRequest struct {
	Count int
	// Where narrows the pool; nil: any ready machine.
	Where *Where
	// Spread "rack" spreads the claim evenly across racks; "" does not.
	Spread string
	// Owner is recorded on every claimed machine (e.g. a Pulumi URN).
	Owner string
	// Tier is recorded on every claimed machine; may be empty.
	Tier   string
	Change Change
	// DryRun picks the machines Allocate would claim and returns them as
	// they are (ready), writing nothing: the plan a preview shows. The same
	// request against an unchanged pool then claims exactly those.
	DryRun bool
	// IDs, if set, are exactly the machines to claim (a plan made
	// elsewhere, such as a stack's joint pick across its tiers): Count is
	// len(IDs) (or must equal it) and Spread is not used. Every one must
	// exist, be ready and match Where, or nothing is claimed and the
	// error names each that is not.
	IDs []string
}

// ErrInsufficient means the pool has fewer matching ready machines than asked.
var ErrInsufficient = errors.New("not enough ready machines")

// allocPatience bounds how long Allocate keeps retrying after losing races
// to other claimers (each retry after a jittered, growing pause).
const allocPatience = 2 * time.Minute

// Allocate claims Count ready machines for Owner: all or none, never one
// machine twice even across processes (every claim is a CAS on the machine's
// record). The choice is deterministic for a given owner and pool: without
// a spread, the first matches on the pool ring from the owner's bucket (see
// pool.go); with --spread rack, machines ranked by rendezvous hash of
// (owner, machine ID), round-robin over racks ranked likewise.
func (s *Store) Allocate(ctx context.Context, req AllocateRequest) ([]*Machine, error) {
	if len(req.IDs) > 0 && req.Count == 0 {
		req.Count = len(req.IDs)
	}
	if len(req.IDs) > 0 && req.Count != len(req.IDs) {
		return nil, fmt.Errorf("allocate: count %d but %d machines named", req.Count, len(req.IDs))
	}
	if req.Count <= 0 {
		return nil, fmt.Errorf("allocate: count must be at least 1, got %d", req.Count)
	}
	if !ownerRE.MatchString(req.Owner) {
		return nil, fmt.Errorf("allocate: malformed owner %q (letters, digits, _.:/@-)", req.Owner)
	}
	if req.Spread != "" && req.Spread != "rack" {
		return nil, fmt.Errorf("allocate: unknown spread %q (want rack)", req.Spread)
	}
	if req.Change.What == "" {
		req.Change.What = "allocate"
	}
	if req.Change.Why == "" {
		req.Change.Why = "claimed by " + req.Owner
	}
	if !req.DryRun {
		if err := s.recoverIfStale(ctx); err != nil {
			return nil, fmt.Errorf("allocate %d for %s: %w", req.Count, req.Owner, err)
		}
	}
	q := Query{Where: req.Where, State: StateReady}
	backoff := 20 * time.Millisecond
	giveUp := time.Now().Add(allocPatience)
	for attempt := 1; ; attempt++ {
		var picked []stored
		var avail int
		var err error
		switch {
		case len(req.IDs) > 0:
			picked, err = s.namedPick(ctx, req)
			avail = len(picked)
		case req.Spread == "":
			picked, avail, err = s.ringPick(ctx, req.Count, req.Owner, req.Where)
		default:
			picked, avail, err = s.spreadPick(ctx, q, req)
		}
		if err != nil {
			return nil, fmt.Errorf("allocate %d for %s: %w", req.Count, req.Owner, err)
		}
		if avail < req.Count {
			sel := "ready"
			if req.Where != nil && req.Where.String() != "" {
				sel += " and " + req.Where.String()
			}
			return nil, fmt.Errorf("allocate %d for %s: only %d machines are %s: %w", req.Count, req.Owner, avail, sel, ErrInsufficient)
		}
		if len(picked) != req.Count {
			err = fmt.Errorf("%d picked machines changed since the pool read: %w", req.Count-len(picked), ErrConflict)
		}
		if req.DryRun && err == nil {
			out := make([]*Machine, len(picked))
			for i, p := range picked {
				out[i] = p.rec.Machine.Clone()
			}
			SortMachines(out)
			return out, nil
		}
		ws := make([]*write, len(picked))
		for i, p := range picked {
			next := &record{Machine: *p.rec.Machine.Clone(), HistorySeq: p.rec.HistorySeq}
			next.State, next.Owner, next.Tier = StateAllocated, req.Owner, req.Tier
			ws[i] = &write{prev: p.rec, prevIndex: p.index, next: next, change: req.Change}
			s.plan(ws[i])
		}
		if err == nil {
			err = s.writeBatch(ctx, "allocate", ws, nil)
		}
		if err == nil {
			out := make([]*Machine, len(ws))
			for i, w := range ws {
				out[i] = &w.next.Machine
			}
			SortMachines(out)
			return out, nil
		}
		if !errors.Is(err, ErrConflict) || time.Now().After(giveUp) || ctx.Err() != nil {
			return nil, fmt.Errorf("allocate %d for %s (attempt %d): %w", req.Count, req.Owner, attempt, err)
		}
		// Lost a race for some machine: nothing of ours is left claimed
		// (writeBatch rolled back). Wait a jittered moment, read again.
		d := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// namedPick reads the records of req.IDs: every one must exist, be ready
// and match req.Where. An error names each machine that does not (the
// pick was made against a pool that has changed since).
func (s *Store) namedPick(ctx context.Context, req AllocateRequest) ([]stored, error) {
	seen := map[string]bool{}
	for _, id := range req.IDs {
		if seen[id] {
			return nil, fmt.Errorf("machine %s is named twice", id)
		}
		seen[id] = true
	}
	recs, err := s.records(ctx, req.IDs)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]stored, len(recs))
	for _, r := range recs {
		byID[r.rec.ID] = r
	}
	var errs []error
	out := make([]stored, 0, len(req.IDs))
	for _, id := range req.IDs {
		r, ok := byID[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("machine %s: %w", id, ErrNotFound))
			continue
		case r.rec.State != StateReady:
			who := ""
			if r.rec.Owner != "" {
				who = " (owner " + r.rec.Owner + ")"
			}
			errs = append(errs, fmt.Errorf("machine %s is %s%s, not ready", id, r.rec.State, who))
			continue
		case req.Where != nil:
			ok, err := req.Where.Match(&r.rec.Machine)
			if err != nil {
				return nil, fmt.Errorf("machine %s: %w", id, err)
			}
			if !ok {
				errs = append(errs, fmt.Errorf("machine %s does not match %s", id, req.Where))
				continue
			}
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("the named machines changed since they were picked: %w", errors.Join(errs...))
	}
	return out, nil
}

// spreadPick ranks every ready machine (a spread needs every rack's
// candidates) and reads the records picked. Without an expression, or with
// one decided by rack alone, the pool's key names are enough (rack and ID,
// about 45 bytes a machine); otherwise the catalog's meta, or the records.
func (s *Store) spreadPick(ctx context.Context, q Query, req AllocateRequest) ([]stored, int, error) {
	var pool []cand
	switch {
	case req.Where == nil || req.Where.prog == nil:
		ctx, cancel := s.opCtx(ctx)
		keys, _, err := s.c.KV().Keys(s.key("pool")+"/", "", (&api.QueryOptions{}).WithContext(ctx))
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("read pool: %w", err)
		}
		for _, k := range keys {
			parts := strings.Split(strings.TrimPrefix(k, s.key("pool")+"/"), "/")
			if len(parts) != 3 {
				continue
			}
			rack, _ := url.PathUnescape(parts[1])
			if rack == "-" {
				rack = ""
			}
			pool = append(pool, cand{id: parts[2], rack: rack})
		}
	case req.Where.onlyMeta():
		nodes, err := s.candidates(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		pool = make([]cand, len(nodes))
		for i, n := range nodes {
			pool[i] = cand{id: n.Node, rack: n.Meta["rack"]}
		}
	default:
		nodes, err := s.candidates(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		recs, err := s.selectRecords(ctx, q, nodeIDs(nodes))
		if err != nil {
			return nil, 0, err
		}
		pool = make([]cand, len(recs))
		for i, r := range recs {
			pool[i] = cand{id: r.rec.ID, rack: r.rec.Rack}
		}
	}
	if len(pool) < req.Count {
		return nil, len(pool), nil
	}
	picked, err := s.selectRecords(ctx, q, pick(pool, req.Count, req.Owner, true))
	return picked, len(pool), err
}

func score(owner, key string) uint64 { return hrw.Score(owner, key) }

// Ranked orders machines the way a spread Allocate for owner picks them: by
// rendezvous score of (owner, machine ID), and with spread round-robin over
// racks ranked likewise. A spread Allocate of n claims the first n of the
// ready machines it selects. (Without a spread Allocate walks the pool
// ring instead; Ranked then orders by score alone.)
func Ranked(ms []*Machine, owner string, spread bool) []*Machine {
	pool := make([]cand, len(ms))
	byID := make(map[string]*Machine, len(ms))
	for i, m := range ms {
		pool[i] = cand{id: m.ID, rack: m.Rack}
		byID[m.ID] = m
	}
	ids := pick(pool, len(pool), owner, spread)
	out := make([]*Machine, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out
}

// cand is a machine in the pool.
type cand struct{ id, rack string }

// pick ranks the pool by rendezvous hash and takes n IDs, round-robin over
// racks (also ranked by hash) when spread is set, so no rack gets more than
// one machine above any other that still has ready machines.
func pick(pool []cand, n int, owner string, spread bool) []string {
	sorted := rankedBy(owner, pool, func(c cand) string { return c.id })
	out := make([]string, 0, n)
	if !spread {
		for _, c := range sorted[:n] {
			out = append(out, c.id)
		}
		return out
	}
	byRack := map[string][]string{}
	var racks []string
	for _, c := range sorted {
		if _, ok := byRack[c.rack]; !ok {
			racks = append(racks, c.rack)
		}
		byRack[c.rack] = append(byRack[c.rack], c.id)
	}
	sort.Slice(racks, func(i, j int) bool {
		si, sj := score(owner, "rack/"+racks[i]), score(owner, "rack/"+racks[j])
		if si != sj {
			return si > sj
		}
		return racks[i] < racks[j]
	})
	for round := 0; len(out) < n; round++ {
		for _, r := range racks {
			if round < len(byRack[r]) && len(out) < n {
				out = append(out, byRack[r][round])
			}
		}
	}
	return out
}

// Release returns allocated machines to the pool (allocated → ready),
// all-or-none. Machines that went further (deploying, deployed) are released
// by the deploy workflow, which wipes them; they are refused here.
func (s *Store) Release(ctx context.Context, ms []*Machine, change Change) ([]*Machine, error) {
	if change.What == "" {
		change.What = "release"
	}
	if _, err := s.Recover(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	recs, err := s.records(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(recs) != len(ids) {
		return nil, fmt.Errorf("release: %d of %d machines no longer exist: %w", len(ids)-len(recs), len(ids), ErrNotFound)
	}
	var errs []error
	ws := make([]*write, 0, len(recs))
	for _, r := range recs {
		if err := CanTransition(r.rec.State, StateReady, System); err != nil || r.rec.State != StateAllocated {
			errs = append(errs, fmt.Errorf("machine %s is %s: only allocated machines are released here (deployed ones need `ironrack release`, which wipes them)", r.rec.ID, r.rec.State))
			continue
		}
		next := &record{Machine: *r.rec.Machine.Clone(), HistorySeq: r.rec.HistorySeq}
		next.State, next.Owner, next.Tier = StateReady, "", ""
		w := &write{prev: r.rec, prevIndex: r.index, next: next, change: change}
		s.plan(w)
		ws = append(ws, w)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := s.writeBatch(ctx, "release", ws, nil); err != nil {
		return nil, fmt.Errorf("release: nothing released: %w", err)
	}
	out := make([]*Machine, len(ws))
	for i, w := range ws {
		out[i] = &w.next.Machine
	}
	SortMachines(out)
	return out, nil
}
