package inventory

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// maxTxnOps is Consul's limit of operations in one transaction.
const maxTxnOps = 128

// write is one machine's planned change: from prev (nil: new machine) to next
// (nil: delete the machine).
type write struct {
	prev      *record
	prevIndex uint64
	next      *record
	change    Change
	// extra ops ride in the same transaction (credentials, journal items).
	extra api.TxnOps
	// val is next's encoded record, set by ops: the bytes the transaction
	// writes (a journal's undo item keeps their sum).
	val []byte
}

func (w *write) id() string {
	if w.next != nil {
		return w.next.ID
	}
	return w.prev.ID
}

// plan fills in the bookkeeping of a write: timestamps, history sequence.
func (s *Store) plan(w *write) {
	if w.next == nil {
		return
	}
	now := s.cfg.Now().UTC()
	if w.prev == nil {
		w.next.CreatedAt = now
		w.next.HistorySeq = 1
	} else {
		w.next.CreatedAt = w.prev.CreatedAt
		w.next.HistorySeq = w.prev.HistorySeq + 1
	}
	w.next.UpdatedAt = now
	w.next.normalize()
}

// ops is the transaction of one write: the record (CAS), the catalog node,
// the index keys that appear or vanish, and one history entry.
func (s *Store) ops(w *write) (api.TxnOps, error) {
	id := w.id()
	var ops api.TxnOps
	if w.next == nil {
		ops = append(ops,
			&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.machineKey(id), Index: w.prevIndex}},
			&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: id}}},
			&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteTree, Key: s.key("history", id) + "/"}},
		)
		for k := range s.indexKeys(&w.prev.Machine) {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
		}
		if k := s.poolKey(&w.prev.Machine); k != "" {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
		}
		ops = append(ops, s.attrOps(w)...)
		ops = append(ops, s.deployOps(w)...)
		return append(ops, w.extra...), nil
	}
	val, err := w.next.MarshalJSON() // not json.Marshal, which re-scans the output
	if err != nil {
		return nil, err
	}
	w.val = val
	ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.machineKey(id), Value: val, Index: w.prevIndex}})
	addr := w.next.IP
	if addr == "" {
		addr = "0.0.0.0" // Consul requires an address; unknown until DHCP leases one
	}
	ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: id, Address: addr, Meta: w.next.nodeMeta()}}})
	var oldKeys map[string]string
	if w.prev != nil {
		oldKeys = s.indexKeys(&w.prev.Machine)
	}
	newKeys := s.indexKeys(&w.next.Machine)
	for _, k := range sortedKeys(newKeys) {
		if _, had := oldKeys[k]; !had {
			// Index 0 means "only if absent": this is what makes serials,
			// MACs, BMC addresses and slots unique under races.
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: k, Value: []byte(id), Index: 0}})
		}
	}
	for _, k := range sortedKeys(oldKeys) {
		if _, keep := newKeys[k]; !keep {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
		}
	}
	ops = append(ops, s.poolOps(w)...)
	ops = append(ops, s.attrOps(w)...)
	ops = append(ops, s.deployOps(w)...)
	h := HistoryEntry{Seq: w.next.HistorySeq, At: w.next.UpdatedAt, Who: w.change.Who, What: w.change.What, Why: w.change.Why, To: w.next.State}
	if h.Who == "" {
		h.Who = s.cfg.Who
	}
	if w.prev != nil {
		h.From = w.prev.State
	}
	if h.From == h.To && w.prev != nil {
		h.From, h.To = "", ""
	}
	var prevTier, nextTier string
	if w.prev != nil {
		prevTier = w.prev.Tier
	}
	if w.next != nil {
		nextTier = w.next.Tier
	}
	if prevTier != nextTier {
		h.FromTier, h.Tier = prevTier, nextTier
	}
	hv, _ := json.Marshal(h)
	ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.historyKey(id, h.Seq), Value: hv}})
	if old := h.Seq - int64(s.cfg.HistoryCap); old > 0 {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.historyKey(id, old)}})
	}
	return append(ops, w.extra...), nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TxnError is a refused transaction: which keys failed and why.
type TxnError struct {
	Errors []string
	// Keys are the keys of the failed operations.
	Keys []string
}

func (e *TxnError) Error() string {
	return "consul transaction refused: " + strings.Join(e.Errors, "; ")
}

// Unwrap makes a CAS failure an ErrConflict.
func (e *TxnError) Unwrap() error { return ErrConflict }

// txn runs ops as one Consul transaction and returns its results (reads).
func (s *Store) txn(ctx context.Context, ops api.TxnOps) (*api.TxnResponse, error) {
	var resp api.TxnResponse
	if err := s.doTxn(ctx, ops, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// writeTxn runs write ops as one Consul transaction without decoding its
// results: Consul echoes every key and node written, and decoding them was
// a fifth of an allocation's client CPU.
func (s *Store) writeTxn(ctx context.Context, ops api.TxnOps) error {
	return s.doTxn(ctx, ops, nil)
}

// doTxn sends ops, encoded by encodeTxn, as one transaction and decodes
// the results into out unless it is nil. A refused transaction comes back
// as a *TxnError naming its keys.
//
// It is where the policy for a leaderless cluster meets writes (see
// retry.go): a read-only transaction is resent until RetryFor; a write
// whose answer was lost is read back, reported done if it happened, and
// resent only if it holds a CAS.
func (s *Store) doTxn(ctx context.Context, ops api.TxnOps, out *api.TxnResponse) error {
	if len(ops) > maxTxnOps {
		return fmt.Errorf("transaction of %d operations exceeds Consul's %d", len(ops), maxTxnOps)
	}
	body, err := encodeTxn(ops)
	if err != nil {
		return fmt.Errorf("encode transaction: %w", err)
	}
	write := isWrite(ops)
	start := time.Now()
	unknown := false // an earlier attempt may have happened
	pause := retryPause
	for {
		err := s.sendTxn(ctx, ops, body, out)
		if err == nil {
			return nil
		}
		var te *TxnError
		if errors.As(err, &te) {
			if unknown && s.happened(ctx, ops) == nil {
				return nil // the lost first copy won its own CAS
			}
			return err
		}
		if !outcomeUnknown(err) || (!write && ctx.Err() != nil) {
			return err
		}
		if write {
			// Also when the caller's time ran out: it learns what happened.
			unknown = true
			switch herr := s.happened(ctx, ops); {
			case herr == nil:
				s.log.Debug("consul transaction: answer lost, read back: it happened", "error", err)
				return nil
			case !errors.Is(herr, errNotHappened):
				return fmt.Errorf("consul transaction: %w", &UnknownOutcomeError{Err: fmt.Errorf("%v; read-back: %v", err, herr)})
			case !guarded(ops):
				return fmt.Errorf("consul transaction (read back: it did not happen; a plain set is not resent): %w", err)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("consul transaction (read back: it did not happen): %w", s.noLeader(err, start))
			}
		}
		if time.Since(start) > s.cfg.RetryFor {
			return fmt.Errorf("consul transaction: %w", s.noLeader(err, start))
		}
		d := pause/2 + rand.N(pause)
		pause = min(2*pause, retryPauseMax)
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul transaction: %w", s.noLeader(err, start))
		case <-time.After(d):
		}
	}
}

// noLeader is the one error a call ends with when the cluster stayed
// leaderless through its retries.
func (s *Store) noLeader(err error, start time.Time) error {
	var nl *NoLeaderError
	if errors.As(err, &nl) {
		return &NoLeaderError{Retried: time.Since(start), Last: nl.Last}
	}
	return &NoLeaderError{Retried: time.Since(start), Last: err.Error()}
}

// sendTxn sends one transaction once (within OpTimeout).
func (s *Store) sendTxn(ctx context.Context, ops api.TxnOps, body txnBody, out *api.TxnResponse) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var dst any
	if out != nil {
		dst = out
	}
	_, err := s.c.Raw().Write("/v1/txn", body, dst, (&api.WriteOptions{}).WithContext(ctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusConflict {
		var resp api.TxnResponse
		if jerr := json.Unmarshal([]byte(se.Body), &resp); jerr != nil || len(resp.Errors) == 0 {
			return fmt.Errorf("consul transaction refused: %s", se.Body)
		}
		return txnError(ops, &resp)
	}
	if err != nil {
		return fmt.Errorf("consul transaction: %w", err)
	}
	return nil
}

// errNotHappened: a read-back found that a transaction did not happen.
var errNotHappened = errors.New("did not happen")

// happened reads a write transaction's witness back, consistently (the
// read itself waits out an election): nil if the transaction happened,
// errNotHappened if not, another error if it cannot tell.
func (s *Store) happened(ctx context.Context, ops api.TxnOps) error {
	w, ok := witness(ops)
	if !ok {
		return fmt.Errorf("no key to read back")
	}
	// Not the caller's context: it may be what ran out. One call's time.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.OpTimeout)
	defer cancel()
	kv, _, err := s.c.KV().Get(w.Key, (&api.QueryOptions{RequireConsistent: true}).WithContext(rctx))
	if err != nil {
		return fmt.Errorf("read back %s: %w", w.Key, err)
	}
	switch w.Verb {
	case api.KVDelete, api.KVDeleteCAS:
		if kv == nil {
			return nil
		}
	default:
		if kv != nil && bytes.Equal(kv.Value, w.Value) {
			return nil
		}
	}
	return errNotHappened
}

// txnError names the failed operations of a refused transaction.
func txnError(ops api.TxnOps, resp *api.TxnResponse) *TxnError {
	te := &TxnError{}
	for _, e := range resp.Errors {
		te.Errors = append(te.Errors, e.What)
		if e.OpIndex >= 0 && e.OpIndex < len(ops) {
			if kv := ops[e.OpIndex].KV; kv != nil {
				te.Keys = append(te.Keys, kv.Key)
			} else if n := ops[e.OpIndex].Node; n != nil {
				te.Keys = append(te.Keys, "node "+n.Node.Node)
			}
		}
	}
	return te
}

// commit writes one machine in one transaction. A unique key held by another
// machine comes back as an ErrConflict that names the holder.
func (s *Store) commit(ctx context.Context, w *write) error {
	ops, err := s.ops(w)
	if err != nil {
		return err
	}
	err = s.writeTxn(ctx, ops)
	var te *TxnError
	if errors.As(err, &te) {
		return s.explainConflict(ctx, w, te)
	}
	return err
}

// explainConflict turns a failed index CAS into "MAC x is held by machine y".
func (s *Store) explainConflict(ctx context.Context, w *write, te *TxnError) error {
	if w.next == nil {
		return fmt.Errorf("machine %s: %w", w.id(), te)
	}
	keys := s.indexKeys(&w.next.Machine)
	for _, k := range te.Keys {
		if what, ok := keys[k]; ok {
			holder, _ := s.lookupIndex(ctx, k)
			return fmt.Errorf("machine %s: %s is already held by machine %s: %w", w.id(), what, holder, ErrConflict)
		}
	}
	return fmt.Errorf("machine %s changed concurrently, try again: %w", w.id(), te)
}

// maxRetries bounds the read-modify-write loop of Update.
const maxRetries = 16

// Update applies fn to a fresh copy of a machine and writes it with CAS,
// retrying when another writer got there first. fn may return an error to
// abort. State changes inside fn are checked against the transition table
// for `by`.
func (s *Store) Update(ctx context.Context, id string, by Actor, change Change, fn func(m *Machine) error) (*Machine, error) {
	return s.update(ctx, id, by, change, nil, fn)
}

// update is Update with extra operations in the same transaction.
func (s *Store) update(ctx context.Context, id string, by Actor, change Change, extra api.TxnOps, fn func(m *Machine) error) (*Machine, error) {
	return s.updateWith(ctx, id, by, extra, func(m *Machine, c *Change) error {
		*c = change
		return fn(m)
	})
}

// updateChange is Update whose history entry fn writes, from what it found.
func (s *Store) updateChange(ctx context.Context, id string, by Actor, fn func(m *Machine, c *Change) error) (*Machine, error) {
	return s.updateWith(ctx, id, by, nil, fn)
}

func (s *Store) updateWith(ctx context.Context, id string, by Actor, extra api.TxnOps, fn func(m *Machine, c *Change) error) (*Machine, error) {
	for attempt := 0; ; attempt++ {
		prev, idx, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		next := &record{Machine: *prev.Machine.Clone(), HistorySeq: prev.HistorySeq}
		var change Change
		if err := fn(&next.Machine, &change); err != nil {
			return nil, fmt.Errorf("machine %s: %w", id, err)
		}
		next.ID = prev.ID // the ID never changes
		if next.State != prev.State {
			if err := CanTransition(prev.State, next.State, by); err != nil {
				return nil, fmt.Errorf("machine %s: %w", id, err)
			}
		}
		if errs := next.Validate(); len(errs) > 0 {
			return nil, fmt.Errorf("machine %s: %w", id, errors.Join(asErrors(errs)...))
		}
		w := &write{prev: prev, prevIndex: idx, next: next, change: change, extra: extra}
		s.plan(w)
		err = s.commit(ctx, w)
		if err == nil {
			return &next.Machine, nil
		}
		var te *TxnError
		if errors.As(err, &te) && attempt < maxRetries && ctx.Err() == nil && !extraCASFailed(te, extra) {
			continue // lost a CAS race on the record: read again
		}
		return nil, err
	}
}

// extraCASFailed reports whether a refused transaction failed on one of
// the extra CAS operations: those were read before the write, so reading
// the machine again cannot make them pass; the caller decides.
func extraCASFailed(te *TxnError, extra api.TxnOps) bool {
	for _, op := range extra {
		if op.KV != nil && op.KV.Verb == api.KVCAS && failedKey(te, op.KV.Key) {
			return true
		}
	}
	return false
}

func asErrors(fe []*FieldError) []error {
	out := make([]error, len(fe))
	for i, e := range fe {
		out[i] = e
	}
	return out
}

// SetState moves a machine to another state, checked against the transition
// table for `by`, and records who and why.
func (s *Store) SetState(ctx context.Context, id string, to State, by Actor, change Change) (*Machine, error) {
	if change.What == "" {
		change.What = "set-state"
	}
	return s.Update(ctx, id, by, change, func(m *Machine) error {
		if m.State == to {
			return fmt.Errorf("already %s", to)
		}
		m.State = to
		if to == StateReady || to == StateRetired {
			m.Owner, m.Tier = "", ""
		}
		return nil
	})
}

// txnBody is a transaction's request body, encoded by encodeTxn.
type txnBody []byte

func (b txnBody) MarshalJSON() ([]byte, error) { return b, nil }

// encodeTxn encodes ops as Consul's /v1/txn body. The operations ironrack
// writes are appended by hand, without reflection (a claim encodes some
// forty per transaction), leaving out the fields ironrack never sets:
// Consul decodes a missing field as its zero value, so the body means the
// same as the api package's encoding, at about half the size. Any other
// operation goes through encoding/json whole.
func encodeTxn(ops api.TxnOps) (txnBody, error) {
	buf := make([]byte, 0, 256*len(ops))
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		switch {
		case op.KV != nil && op.Node == nil && op.Service == nil && op.Check == nil && op.KV.Namespace == "" && op.KV.Partition == "":
			buf = appendKVOp(buf, op.KV)
		case op.Node != nil && op.KV == nil && op.Service == nil && op.Check == nil && slimNode(&op.Node.Node):
			buf = appendNodeOp(buf, op.Node)
		default:
			b, err := json.Marshal(op)
			if err != nil {
				return nil, err
			}
			buf = append(buf, b...)
		}
	}
	return append(buf, ']'), nil
}

// appendKVOp appends kv as {"KV":{...}}, leaving out zero fields.
func appendKVOp(buf []byte, kv *api.KVTxnOp) []byte {
	buf = append(buf, `{"KV":{"Verb":`...)
	buf = appendJSONString(buf, string(kv.Verb))
	buf = append(buf, `,"Key":`...)
	buf = appendJSONString(buf, kv.Key)
	if len(kv.Value) > 0 {
		buf = append(buf, `,"Value":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, kv.Value)
		buf = append(buf, '"')
	}
	if kv.Flags != 0 {
		buf = append(buf, `,"Flags":`...)
		buf = strconv.AppendUint(buf, kv.Flags, 10)
	}
	if kv.Index != 0 {
		buf = append(buf, `,"Index":`...)
		buf = strconv.AppendUint(buf, kv.Index, 10)
	}
	if kv.Session != "" {
		buf = append(buf, `,"Session":`...)
		buf = appendJSONString(buf, kv.Session)
	}
	return append(buf, "}}"...)
}

// appendNodeOp appends n as {"Node":{"Verb":..,"Node":{...}}}, leaving out
// zero fields; meta keys in sorted order, as encoding/json writes them.
func appendNodeOp(buf []byte, n *api.NodeTxnOp) []byte {
	buf = append(buf, `{"Node":{"Verb":`...)
	buf = appendJSONString(buf, string(n.Verb))
	buf = append(buf, `,"Node":{`...)
	sep := false
	field := func(name, v string) {
		if v == "" {
			return
		}
		if sep {
			buf = append(buf, ',')
		}
		sep = true
		buf = append(buf, '"')
		buf = append(buf, name...)
		buf = append(buf, `":`...)
		buf = appendJSONString(buf, v)
	}
	field("ID", n.Node.ID)
	field("Node", n.Node.Node)
	field("Address", n.Node.Address)
	if len(n.Node.Meta) > 0 {
		if sep {
			buf = append(buf, ',')
		}
		buf = append(buf, `"Meta":{`...)
		for i, k := range sortedKeys(n.Node.Meta) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			buf = appendJSONString(buf, n.Node.Meta[k])
		}
		buf = append(buf, '}')
	}
	return append(buf, "}}}"...)
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// quote and backslash goes as is; a string with anything else is left to
// encoding/json, so escaping is exactly its own.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// slimNode: n sets only what appendNodeOp writes (ID, Node, Address, Meta).
func slimNode(n *api.Node) bool {
	return n.Datacenter == "" && n.TaggedAddresses == nil && n.CreateIndex == 0 && n.ModifyIndex == 0 &&
		n.Partition == "" && n.PeerName == "" && n.Locality == nil
}
