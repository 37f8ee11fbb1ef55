package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// The ready pool is kept as KV entries beside the records, written in the
// same transaction as every change of a ready machine:
//
//	PREFIX/pool/BB/RACK/ID = a copy of the machine's record
//
// present exactly while the machine is ready. Because entry and record are
// written by the same transactions, the entry's ModifyIndex is the record's:
// a claim reads only pool entries and CASes the records at those indexes.
// BB is one of 256 buckets, from the ID's hash, so an allocation reads a
// bucket or two (about 1/256 of the pool each) instead of the whole catalog:
// the pool is a ring, and each owner starts at its own bucket. That is what
// lets many claimers allocate at once.

const poolBuckets = 256

func poolBucket(id string) int {
	sum := sha256.Sum256([]byte(id))
	return int(sum[0])
}

// poolKey is the pool entry of m, or "" if m is not ready.
func (s *Store) poolKey(m *Machine) string {
	if m.State != StateReady {
		return ""
	}
	rack := m.Rack
	if rack == "" {
		rack = "-"
	}
	return s.key("pool", fmt.Sprintf("%02x", poolBucket(m.ID)), url.PathEscape(rack), m.ID)
}

// poolOps keeps the pool entry in step with a write.
func (s *Store) poolOps(w *write) api.TxnOps {
	var old string
	if w.prev != nil {
		old = s.poolKey(&w.prev.Machine)
	}
	nk := s.poolKey(&w.next.Machine)
	var ops api.TxnOps
	if old != "" && old != nk {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: old}})
	}
	if nk != "" {
		val, _ := json.Marshal(w.next)
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: nk, Value: val}})
	}
	return ops
}

// poolEntry is one pool entry, not yet decoded: a claim decodes only the
// entries it takes (an expression needs them all).
type poolEntry struct {
	id string
	kv *api.KVPair
}

// readPool reads the pool entries under a key prefix.
func (s *Store) readPool(ctx context.Context, prefix string) ([]poolEntry, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read pool: %w", err)
	}
	out := make([]poolEntry, len(kvs))
	for i, kv := range kvs {
		out[i] = poolEntry{id: path.Base(kv.Key), kv: kv}
	}
	return out, nil
}

// decode is the entry's record with its ModifyIndex (the record's), or
// ok false for an entry that is not a ready machine's.
func (e poolEntry) decode() (stored, bool, error) {
	r, err := decodeRecord(e.kv.Value)
	if err != nil {
		return stored{}, false, fmt.Errorf("pool entry %s: %w", e.kv.Key, err)
	}
	return stored{r, e.kv.ModifyIndex}, r.State == StateReady && r.ID == e.id, nil
}

// pickBucket ranks one bucket's entries for owner by rendezvous score and
// returns up to n ready machines the expression selects, and how many it
// selects in all. Without an expression every entry counts and only the
// entries taken are decoded.
func pickBucket(es []poolEntry, n int, owner string, w *Where) ([]stored, int, error) {
	sort.Slice(es, func(a, b int) bool { return rank(owner, es[a].id, es[b].id) })
	var out []stored
	total := 0
	for _, e := range es {
		if w == nil && len(out) >= n {
			total++ // counted, not decoded
			continue
		}
		st, ok, err := e.decode()
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			continue
		}
		if w != nil {
			ok, err := w.Match(&st.rec.Machine)
			if err != nil {
				return nil, 0, fmt.Errorf("machine %s: %w", st.rec.ID, err)
			}
			if !ok {
				continue
			}
		}
		total++
		if len(out) < n {
			out = append(out, st)
		}
	}
	return out, total, nil
}

// ringPick walks the pool ring from the owner's bucket and takes the first
// n machines the expression selects, in bucket order and, within a bucket,
// by rendezvous score. Deterministic for a given owner and pool. It returns
// fewer than n only when the whole pool has fewer.
func (s *Store) ringPick(ctx context.Context, n int, owner string, w *Where) ([]stored, int, error) {
	start := int(score(owner, "ring") % poolBuckets)
	var out []stored
	total := 0
	// The first bucket alone usually suffices; after it, read 8 at once.
	for i := 0; i < poolBuckets && len(out) < n; {
		width := 1
		if i > 0 {
			width = min(8, poolBuckets-i)
		}
		got := make([][]stored, width)
		counts := make([]int, width)
		want := n - len(out)
		g, gctx := errgroup.WithContext(ctx)
		for j := range width {
			b := (start + i + j) % poolBuckets
			g.Go(func() error {
				es, err := s.readPool(gctx, s.key("pool", fmt.Sprintf("%02x", b))+"/")
				if err != nil {
					return err
				}
				got[j], counts[j], err = pickBucket(es, want, owner, w)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, 0, err
		}
		for j, cs := range got {
			total += counts[j]
			for _, c := range cs {
				if len(out) < n {
					out = append(out, c)
				}
			}
		}
		i += width
	}
	return out, total, nil
}

// rank orders two IDs by rendezvous score for an owner (ties by ID).
func rank(owner, a, b string) bool {
	sa, sb := score(owner, a), score(owner, b)
	if sa != sb {
		return sa > sb
	}
	return a < b
}
