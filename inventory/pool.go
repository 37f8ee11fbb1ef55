package inventory

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// The ready pool is kept as KV entries beside the records, written in the
// same transaction as every change of a ready machine:
//
//	PREFIX/pool/BB/RACK/ID   (empty value)
//
// present exactly while the machine is ready. BB is one of 256 buckets, from
// the ID's hash, so an allocation lists the keys of a bucket or two (about
// 1/256 of the pool each) instead of the whole catalog, ranks them, and reads
// only the records it takes, CASing them at the indexes read: the pool is a
// ring, and each owner starts at its own bucket. That is what lets many
// claimers allocate at once. The entries hold no value: a copy of the record
// there would make every claim read (and Consul encode) the whole bucket's
// records, and every return to ready write the record twice.

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
	if nk != "" && nk != old {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: nk}})
	}
	return ops
}

// listBuckets lists the machine IDs of the pool buckets under a key prefix
// ("pool/3c/": one bucket; "pool/3": the 16 buckets 30-3f), by bucket.
func (s *Store) listBuckets(ctx context.Context, prefix string) (map[int][]string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	keys, _, err := s.c.KV().Keys(prefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read pool: %w", err)
	}
	out := map[int][]string{}
	root := s.key("pool") + "/"
	for _, k := range keys {
		rest := strings.TrimPrefix(k, root)
		if len(rest) < 3 || rest[2] != '/' {
			continue
		}
		b, err := strconv.ParseUint(rest[:2], 16, 8)
		if err != nil {
			continue
		}
		out[int(b)] = append(out[int(b)], path.Base(k))
	}
	return out, nil
}

// ranked orders ids for owner by rendezvous score (ties by ID).
func ranked(owner string, ids []string) []string {
	return rankedBy(owner, ids, func(id string) string { return id })
}

// rankedBy orders xs for owner by the rendezvous score of each one's ID
// (ties by ID), computing each score once.
func rankedBy[T any](owner string, xs []T, id func(T) string) []T {
	type scored struct {
		x     T
		id    string
		score uint64
	}
	ss := make([]scored, len(xs))
	for i, x := range xs {
		ss[i] = scored{x, id(x), score(owner, id(x))}
	}
	sort.Slice(ss, func(a, b int) bool {
		if ss[a].score != ss[b].score {
			return ss[a].score > ss[b].score
		}
		return ss[a].id < ss[b].id
	})
	out := make([]T, len(ss))
	for i, x := range ss {
		out[i] = x.x
	}
	return out
}

// readyRecords reads the records of ids and returns, in the order of ids,
// those still ready: a machine claimed since its pool key was listed is
// left out.
func (s *Store) readyRecords(ctx context.Context, ids []string) ([]stored, error) {
	recs, err := s.records(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]stored, len(recs))
	for _, r := range recs {
		byID[r.rec.ID] = r
	}
	out := make([]stored, 0, len(ids))
	for _, id := range ids {
		if st, ok := byID[id]; ok && st.rec.State == StateReady {
			out = append(out, st)
		}
	}
	return out, nil
}

// ringPick walks the pool ring from the owner's bucket and takes the first
// n machines the expression selects, in bucket order and, within a bucket,
// by rendezvous score. Deterministic for a given owner and pool. It returns
// fewer than n only when the whole pool has fewer, or when a machine was
// claimed between the key list and the record read (Allocate retries).
//
// It lists the owner's bucket alone first (1/256 of the pool), which
// usually suffices; after that it lists 16 buckets per request (the rest of
// a bucket group, pool/X), so a nearly drained pool costs 16 requests, not
// 256. Without an expression only keys are listed and only the n records
// taken are read; with one, the listed buckets' records are read and
// matched.
func (s *Store) ringPick(ctx context.Context, n int, owner string, w *Where) ([]stored, int, error) {
	start := int(score(owner, "ring") % poolBuckets)
	var out []stored
	var ids []string // w == nil: the IDs taken, in ring order
	total := 0
	have := func() int {
		if w == nil {
			return len(ids)
		}
		return len(out)
	}
	for i := 0; i < poolBuckets && have() < n; {
		// The chunk: the start bucket alone, then the rest of each group.
		b := (start + i) % poolBuckets
		prefix := s.key("pool", fmt.Sprintf("%02x", b)) + "/"
		chunk := []int{b}
		if i > 0 {
			prefix = s.key("pool", fmt.Sprintf("%x", b>>4))
			for j := i + 1; j < poolBuckets && (start+j)%poolBuckets>>4 == b>>4; j++ {
				chunk = append(chunk, (start+j)%poolBuckets)
			}
		}
		got, err := s.listBuckets(ctx, prefix)
		if err != nil {
			return nil, 0, err
		}
		var cand []string // w != nil: the chunk's IDs, ranked per bucket
		for _, cb := range chunk {
			r := ranked(owner, got[cb])
			if w == nil {
				total += len(r)
				ids = append(ids, r[:min(len(r), n-len(ids))]...)
			} else {
				cand = append(cand, r...)
			}
		}
		if w != nil && len(cand) > 0 {
			recs, err := s.readyRecords(ctx, cand)
			if err != nil {
				return nil, 0, err
			}
			for _, st := range recs {
				ok, err := w.Match(&st.rec.Machine)
				if err != nil {
					return nil, 0, fmt.Errorf("machine %s: %w", st.rec.ID, err)
				}
				if !ok {
					continue
				}
				total++
				if len(out) < n {
					out = append(out, st)
				}
			}
		}
		i += len(chunk)
	}
	if w != nil {
		return out, total, nil
	}
	out, err := s.readyRecords(ctx, ids)
	return out, total, err
}
