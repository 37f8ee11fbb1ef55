package inventory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// A batch of machine writes that does not fit one Consul transaction is
// written in chunks with a journal:
//
//	PREFIX/journal/OP/lock          held by a Consul session (TTL) of the writer
//	PREFIX/journal/OP/items/ID      the machine's prior record, written in the
//	                                same transaction as the machine itself
//
// So the journal lists exactly the machines the batch has written. On any
// failure the writer rolls them back; a writer killed midway leaves the
// journal, and the next command that writes finds it abandoned (its session
// expired, or its PID on this host is gone) and rolls it back.

// journalHead is the value of a journal's lock key.
type journalHead struct {
	Op      string    `json:"op"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// journalItem is the undo record of one machine.
type journalItem struct {
	// Prev is the record before the batch; nil if the batch created it.
	Prev *record `json:"prev"`
	// NextSum is the sha256 of the record the batch wrote: rollback only
	// touches a machine nobody has changed since.
	NextSum string `json:"next_sum"`
	// PrevCreds are the sealed credentials the batch replaced (nil value:
	// there was none).
	PrevCreds map[string][]byte `json:"prev_creds,omitempty"`
}

// batchParallel is how many chunks of a batch are in flight at once.
const batchParallel = 4

// writeBatch writes ws all-or-nothing. undoCreds gives, per write, the
// credentials it replaces, so a rollback can restore them.
func (s *Store) writeBatch(ctx context.Context, op string, ws []*write, undoCreds func(*write) map[string][]byte) error {
	if len(ws) == 0 {
		return nil
	}
	all := make([]api.TxnOps, len(ws))
	total := 0
	for i, w := range ws {
		ops, err := s.ops(w)
		if err != nil {
			return err
		}
		all[i] = ops
		total += len(ops)
	}
	if total <= maxTxnOps {
		var ops api.TxnOps
		for _, o := range all {
			ops = append(ops, o...)
		}
		err := s.writeTxn(ctx, ops)
		return s.explainBatch(ctx, ws, err)
	}

	j, err := s.openJournal(ctx, op)
	if err != nil {
		return err
	}
	defer j.close()
	// Chunk the writes, each with its journal item, into transactions.
	var chunks [][]int
	var cur []int
	n := 0
	for i, w := range ws {
		item := journalItem{Prev: w.prev}
		if undoCreds != nil {
			item.PrevCreds = undoCreds(w)
		}
		if w.next != nil {
			sum := sha256.Sum256(w.val)
			item.NextSum = hex.EncodeToString(sum[:])
		}
		iv, _ := json.Marshal(item)
		all[i] = append(all[i], &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: j.itemKey(w.id()), Value: iv}})
		if len(all[i]) > maxTxnOps {
			return fmt.Errorf("machine %s: its change needs %d operations, more than one transaction holds", w.id(), len(all[i]))
		}
		if n+len(all[i]) > maxTxnOps {
			chunks, cur, n = append(chunks, cur), nil, 0
		}
		cur = append(cur, i)
		n += len(all[i])
	}
	chunks = append(chunks, cur)

	// A chunk in flight is never cancelled: its outcome must be known
	// before a rollback reads the journal, or a late commit would escape
	// it. After a failure no new chunk starts.
	var failed atomic.Bool
	var g errgroup.Group
	g.SetLimit(batchParallel)
	wctx := context.WithoutCancel(ctx)
	started := 0
	for _, c := range chunks {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		started++
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			var ops api.TxnOps
			var cws []*write
			for _, i := range c {
				ops = append(ops, all[i]...)
				cws = append(cws, ws[i])
			}
			err := s.writeTxn(wctx, ops)
			if err == nil && s.afterChunk != nil {
				s.afterChunk()
			}
			if err != nil {
				failed.Store(true)
			}
			return s.explainBatch(wctx, cws, err)
		})
	}
	err = g.Wait()
	if err == nil && started < len(chunks) {
		err = ctx.Err() // cancelled before every chunk started
	}
	if err != nil {
		// Roll back with a fresh context: the caller's may be what failed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if rerr := s.rollback(rctx, j.op); rerr != nil {
			return fmt.Errorf("%w; rolling back %s also failed (the next command retries): %v", err, op, rerr)
		}
		return err
	}
	return j.finish(ctx)
}

// explainBatch names the machine whose unique key or CAS failed.
func (s *Store) explainBatch(ctx context.Context, ws []*write, err error) error {
	var te *TxnError
	if !errors.As(err, &te) {
		return err
	}
	for _, w := range ws {
		if w.next == nil {
			continue
		}
		keys := s.indexKeys(&w.next.Machine)
		for _, k := range te.Keys {
			if k == s.machineKey(w.id()) {
				return fmt.Errorf("machine %s changed concurrently: %w", w.id(), te)
			}
			if _, ok := keys[k]; ok {
				return s.explainConflict(ctx, w, te)
			}
		}
	}
	return err
}

type journal struct {
	s       *Store
	op      string
	session string
	stop    chan struct{}
}

func (j *journal) itemKey(id string) string { return j.s.key("journal", j.op, "items", id) }

func (s *Store) openJournal(ctx context.Context, what string) (*journal, error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	opid := fmt.Sprintf("%s-%s-%s", time.Now().UTC().Format("20060102T150405"), what, hex.EncodeToString(rnd[:]))
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	sid, _, err := s.c.Session().Create(&api.SessionEntry{
		Name:      "ironrack " + what,
		TTL:       "15s",
		Behavior:  api.SessionBehaviorRelease,
		LockDelay: time.Millisecond,
		Checks:    []string{}, // no serfHealth: the TTL alone decides
	}, (&api.WriteOptions{}).WithContext(octx))
	if err != nil {
		return nil, fmt.Errorf("open journal: create session: %w", err)
	}
	host, _ := os.Hostname()
	head, _ := json.Marshal(journalHead{Op: what, Host: host, PID: os.Getpid(), Started: time.Now().UTC()})
	j := &journal{s: s, op: opid, session: sid, stop: make(chan struct{})}
	ok, _, err := s.c.KV().Acquire(&api.KVPair{Key: s.key("journal", opid, "lock"), Value: head, Session: sid}, (&api.WriteOptions{}).WithContext(octx))
	if err != nil || !ok {
		s.c.Session().Destroy(sid, nil)
		return nil, fmt.Errorf("open journal %s: acquire lock: %v", opid, err)
	}
	go s.c.Session().RenewPeriodic("15s", sid, nil, j.stop)
	return j, nil
}

// finish removes a completed batch's journal. It first marks the journal
// committed (one small key): removing it is one Raft entry that deletes
// every item (about 10 s for 100,000 on a 3-server cluster under load), and
// if that fails or outlasts its deadline, the next command's Recover only
// removes a committed journal, never undoes its batch.
func (j *journal) finish(ctx context.Context) error {
	octx, cancel := j.s.opCtx(ctx)
	defer cancel()
	key := j.s.key("journal", j.op, "committed")
	if _, err := j.s.c.KV().Put(&api.KVPair{Key: key, Value: []byte("1")}, (&api.WriteOptions{}).WithContext(octx)); err != nil {
		// The answer may be lost while the write happened: read it back.
		kv, _, rerr := j.s.c.KV().Get(key, (&api.QueryOptions{RequireConsistent: true}).WithContext(octx))
		if rerr != nil || kv == nil {
			return fmt.Errorf("batch %s is written, but its journal could not be marked committed (the next command will roll it back): %w", j.op, err)
		}
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), journalRemoveTimeout)
	defer dcancel()
	if _, err := j.s.c.KV().DeleteTree(j.s.key("journal", j.op)+"/", (&api.WriteOptions{}).WithContext(dctx)); err != nil {
		j.s.log.Warn("batch written and committed; its journal is left for the next command to remove", "batch", j.op, "err", err)
	}
	return nil
}

// journalRemoveTimeout bounds the removal of a committed journal.
const journalRemoveTimeout = 2 * time.Minute

// close stops renewing and destroys the session (RenewPeriodic destroys it
// when stopped).
func (j *journal) close() { close(j.stop) }

// rollback undoes every machine a batch wrote, then removes its journal.
func (s *Store) rollback(ctx context.Context, opid string) error {
	// A committed batch is complete: only its journal is left to remove.
	kv, _, err := s.c.KV().Get(s.key("journal", opid, "committed"), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read journal %s: %w", opid, err)
	}
	if kv != nil {
		_, err = s.c.KV().DeleteTree(s.key("journal", opid)+"/", (&api.WriteOptions{}).WithContext(ctx))
		return err
	}
	kvs, _, err := s.c.KV().List(s.key("journal", opid, "items")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read journal %s: %w", opid, err)
	}
	var errs []error
	for _, kv := range kvs {
		id := kv.Key[strings.LastIndex(kv.Key, "/")+1:]
		if err := s.undo(ctx, opid, id, kv); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err = s.c.KV().DeleteTree(s.key("journal", opid)+"/", (&api.WriteOptions{}).WithContext(ctx))
	return err
}

func (s *Store) undo(ctx context.Context, opid, id string, kv *api.KVPair) error {
	var item journalItem
	if err := json.Unmarshal(kv.Value, &item); err != nil {
		return fmt.Errorf("journal %s: corrupt item for %s: %w", opid, id, err)
	}
	dropItem := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: kv.Key, Index: kv.ModifyIndex}}
	cur, idx, err := s.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		err := s.writeTxn(ctx, api.TxnOps{dropItem})
		return err
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(cur)
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != item.NextSum {
		s.log.Warn("rollback: machine changed since the batch wrote it; leaving it", "batch", opid, "machine", id)
		err := s.writeTxn(ctx, api.TxnOps{dropItem})
		return err
	}
	w := &write{prev: cur, prevIndex: idx, change: Change{What: "rollback", Why: "batch " + opid + " did not complete"}}
	if item.Prev != nil {
		next := &record{Machine: *item.Prev.Machine.Clone(), HistorySeq: cur.HistorySeq}
		w.next = next
		s.plan(w)
		w.next.CreatedAt = item.Prev.CreatedAt
	}
	for ref, box := range item.PrevCreds {
		if box == nil {
			w.extra = append(w.extra, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.credKey(ref)}})
		} else {
			w.extra = append(w.extra, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.credKey(ref), Value: box}})
		}
	}
	w.extra = append(w.extra, dropItem)
	if err := s.commit(ctx, w); err != nil {
		return fmt.Errorf("roll back machine %s of batch %s: %w", id, opid, err)
	}
	return nil
}

// Recover rolls back every abandoned batch: one whose writer's session is
// gone, or whose writer was a process on this host that no longer runs.
// Commands that write batches call it first; it returns what it rolled back.
func (s *Store) Recover(ctx context.Context) ([]string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("journal")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read journals: %w", err)
	}
	type state struct {
		lock *api.KVPair
	}
	ops := map[string]*state{}
	prefix := s.key("journal") + "/"
	for _, kv := range kvs {
		rest := strings.TrimPrefix(kv.Key, prefix)
		opid, tail, _ := strings.Cut(rest, "/")
		st := ops[opid]
		if st == nil {
			st = &state{}
			ops[opid] = st
		}
		if tail == "lock" {
			st.lock = kv
		}
	}
	host, _ := os.Hostname()
	var done []string
	for opid, st := range ops {
		if st.lock != nil && st.lock.Session != "" {
			var head journalHead
			_ = json.Unmarshal(st.lock.Value, &head)
			if head.Host != host || pidAlive(head.PID) {
				continue // its writer may still be at work
			}
			s.c.Session().Destroy(st.lock.Session, nil)
		}
		s.log.Info("rolling back abandoned batch", "batch", opid)
		if err := s.rollback(ctx, opid); err != nil {
			return done, err
		}
		done = append(done, opid)
	}
	return done, nil
}

// recoverEvery is how long a Store trusts that no abandoned batch waits.
const recoverEvery = 10 * time.Second

// recoverIfStale runs Recover unless this Store ran it within recoverEvery:
// a long-lived process (boot server, provider, benchmark) allocating in a
// loop need not list the journals before every claim.
func (s *Store) recoverIfStale(ctx context.Context) error {
	if last := s.recovered.Load(); last != 0 && time.Since(time.Unix(0, last)) < recoverEvery {
		return nil
	}
	if _, err := s.Recover(ctx); err != nil {
		return err
	}
	s.recovered.Store(time.Now().UnixNano())
	return nil
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
