package inventory

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// The ready pool lives in the catalog: a ready machine's node carries the
// meta pair
//
//	pool=BB
//
// written by the same transaction as every change of the machine (nodeMeta),
// so it is there exactly while the machine is ready. BB is one of 256
// buckets, from the ID's hash. An allocation looks up the nodes of a bucket
// through Consul's node-meta index (about 1/256 of the pool), ranks them,
// reads only the records it takes and CASes them at the indexes read: the
// pool is a ring, and each owner starts at its own bucket. That is what lets
// many claimers allocate at once.
//
// The pool costs a claim nothing beyond the node write every state change
// makes anyway. (It used to be a KV entry per ready machine, which made a
// delete, and its tombstone, a fourth write per claimed machine: a fifth
// of what a claim cost Consul. Recover moves an inventory written that way,
// see migratePool.)

const poolBuckets = 256

func poolBucket(id string) int {
	sum := sha256.Sum256([]byte(id))
	return int(sum[0])
}

// poolMeta is the node-meta value of bucket b.
func poolMeta(b int) string { return fmt.Sprintf("%02x", b) }

// bucketNodes looks up the ready nodes of buckets (8 lookups at once) and
// returns them by bucket.
func (s *Store) bucketNodes(ctx context.Context, buckets []int) (map[int][]*api.Node, error) {
	out := make([][]*api.Node, len(buckets))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, b := range buckets {
		g.Go(func() error {
			ctx, cancel := s.opCtx(ctx)
			defer cancel()
			nodes, _, err := s.c.Catalog().Nodes((&api.QueryOptions{NodeMeta: map[string]string{"pool": poolMeta(b)}}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("read pool: %w", err)
			}
			out[i] = nodes
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	m := make(map[int][]*api.Node, len(buckets))
	for i, b := range buckets {
		m[b] = out[i]
	}
	return m, nil
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
// those still ready (and still selected by w, if not nil): a machine
// claimed or changed since its node was read is left out.
func (s *Store) readyRecords(ctx context.Context, ids []string, w *Where) ([]stored, error) {
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
		st, ok := byID[id]
		if !ok || st.rec.State != StateReady {
			continue
		}
		if w != nil {
			ok, err := w.Match(&st.rec.Machine)
			if err != nil {
				return nil, fmt.Errorf("machine %s: %w", id, err)
			}
			if !ok {
				continue
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// ringChunk is how many buckets ringPick looks up at once after the first.
const ringChunk = 16

// ringPick walks the pool ring from the owner's bucket and takes the first
// n machines the expression selects, in bucket order and, within a bucket,
// by rendezvous score. Deterministic for a given owner and pool. It returns
// fewer than n only when the whole pool has fewer, or when a machine was
// claimed or changed between the node lookup and the record read (Allocate
// retries).
//
// It looks up the owner's bucket alone first (1/256 of the pool), which
// usually suffices; after that 16 buckets at a time, so a nearly drained
// pool costs 16 rounds, not 256. Without an expression, or with one that
// reads only node meta, the nodes decide and only the n records taken are
// read; otherwise every looked-up machine's record is read and matched.
func (s *Store) ringPick(ctx context.Context, n int, owner string, w *Where) ([]stored, int, error) {
	start := int(score(owner, "ring") % poolBuckets)
	byMeta := w == nil || w.prog == nil || w.onlyMeta()
	var out []stored
	var ids []string // byMeta: the IDs taken, in ring order
	total := 0
	have := func() int {
		if byMeta {
			return len(ids)
		}
		return len(out)
	}
	for i := 0; i < poolBuckets && have() < n; {
		size := 1
		if i > 0 {
			size = min(ringChunk, poolBuckets-i)
		}
		chunk := make([]int, size)
		for j := range chunk {
			chunk[j] = (start + i + j) % poolBuckets
		}
		got, err := s.bucketNodes(ctx, chunk)
		if err != nil {
			return nil, 0, err
		}
		var cand []string // !byMeta: the chunk's IDs, ranked per bucket
		for _, b := range chunk {
			bids := make([]string, 0, len(got[b]))
			for _, nd := range got[b] {
				if byMeta && w != nil {
					ok, err := w.matchMeta(nd.Node, nd.Meta)
					if err != nil {
						return nil, 0, err
					}
					if !ok {
						continue
					}
				}
				bids = append(bids, nd.Node)
			}
			r := ranked(owner, bids)
			if byMeta {
				total += len(r)
				ids = append(ids, r[:min(len(r), n-len(ids))]...)
			} else {
				cand = append(cand, r...)
			}
		}
		if !byMeta && len(cand) > 0 {
			recs, err := s.readyRecords(ctx, cand, w)
			if err != nil {
				return nil, 0, err
			}
			total += len(recs)
			out = append(out, recs[:min(len(recs), n-len(out))]...)
		}
		i += size
	}
	if !byMeta {
		return out, total, nil
	}
	out, err := s.readyRecords(ctx, ids, w)
	return out, total, err
}

// migratePool moves a pool kept the old way, as KV entries
// PREFIX/pool/BB/RACK/ID, into node meta: each entry's machine, if ready,
// has its node rewritten from its record (guarded by the record's index),
// and the entry goes, 32 machines per transaction. With no old entries it
// costs one key listing. A machine changed meanwhile is left for the next
// run, which Recover makes before every batch.
func (s *Store) migratePool(ctx context.Context) error {
	qctx, cancel := s.opCtx(ctx)
	keys, _, err := s.c.KV().Keys(s.key("pool")+"/", "", (&api.QueryOptions{}).WithContext(qctx))
	cancel()
	if err != nil {
		return fmt.Errorf("read old pool entries: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	s.log.Info("moving the ready pool into node meta", "machines", len(keys))
	const per = 32
	for start := 0; start < len(keys); start += per {
		batch := keys[start:min(start+per, len(keys))]
		ids := make([]string, len(batch))
		for i, k := range batch {
			ids[i] = path.Base(k)
		}
		recs, err := s.records(ctx, ids)
		if err != nil {
			return err
		}
		var ops api.TxnOps
		for _, r := range recs {
			if r.rec.State != StateReady {
				continue
			}
			addr := r.rec.IP
			if addr == "" {
				addr = "0.0.0.0"
			}
			ops = append(ops,
				&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: s.machineKey(r.rec.ID), Index: r.index}},
				&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: r.rec.ID, Address: addr, Meta: r.rec.nodeMeta()}}})
		}
		for _, k := range batch {
			if strings.HasPrefix(k, s.key("pool")+"/") {
				ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
			}
		}
		if err := s.writeTxn(ctx, ops); err != nil {
			return fmt.Errorf("move the ready pool into node meta: %w", err)
		}
	}
	return nil
}
