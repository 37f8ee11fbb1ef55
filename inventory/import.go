package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ImportResult counts what an import did.
type ImportResult struct {
	Created   []string `json:"created"`
	Updated   []string `json:"updated"`
	Unchanged int      `json:"unchanged"`
}

// indexSnapshot reads every uniqueness key at once: key → machine ID.
func (s *Store) indexSnapshot(ctx context.Context) (map[string]string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("index")+"/", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read inventory index: %w", err)
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out, nil
}

// Import applies parsed rack-sheet rows all-or-nothing: either every row is
// created or updated, or nothing is stored and every problem is returned as
// a SheetErrors naming file, line and column. Re-importing the same sheet
// changes nothing.
func (s *Store) Import(ctx context.Context, file string, rows []SheetRow, change Change) (*ImportResult, error) {
	if change.What == "" {
		change.What = "import " + file
	}
	if _, err := s.Recover(ctx); err != nil {
		return nil, err
	}
	index, err := s.indexSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	var errs SheetErrors
	add := func(line int, col, format string, a ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Column: col, Problem: fmt.Sprintf(format, a...)})
	}
	// Which existing machine is each row? By serial, else by a MAC of a
	// machine enlisted by PXE whose serial is still unknown.
	ids := make([]string, len(rows))
	var existing []string
	for i, r := range rows {
		if id := index[s.key("index", "serial", url.PathEscape(r.Serial))]; id != "" {
			ids[i] = id
			existing = append(existing, id)
			continue
		}
		for _, mac := range r.MACs {
			if id := index[s.key("index", "mac", mac)]; id != "" {
				ids[i] = id // checked below: only if that machine has no serial
				existing = append(existing, id)
				break
			}
		}
		if ids[i] == "" {
			ids[i] = MachineID(r.Serial)
		}
	}
	prevs := map[string]stored{}
	recs, err := s.records(ctx, existing)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		prevs[r.rec.ID] = r
	}
	// Every credential the sheet touches, read at once: the references it
	// names and the bmc/<id> of each inline password.
	var refs []string
	for i, r := range rows {
		if r.BMCCredential != "" {
			refs = append(refs, r.BMCCredential)
		} else {
			refs = append(refs, credRefFor(ids[i]))
		}
	}
	boxes, err := s.rawCredentials(ctx, refs)
	if err != nil {
		return nil, err
	}
	sl := s.cfg.Sealer
	var ws []*write
	res := &ImportResult{Created: []string{}, Updated: []string{}}
	undo := map[*write]map[string][]byte{}
	for i, r := range rows {
		id := ids[i]
		prev, found := prevs[id]
		if found && prev.rec.Serial != "" && prev.rec.Serial != r.Serial {
			// Matched by MAC, but that machine has another serial.
			for _, mac := range r.MACs {
				if index[s.key("index", "mac", mac)] == id {
					add(r.Line, "macs", "MAC %s is already held by machine %s (serial %s)", mac, id, prev.rec.Serial)
				}
			}
			continue
		}
		var prevM *Machine
		if found {
			prevM = &prev.rec.Machine
		}
		m := r.machine(id, prevM)
		for k, what := range s.indexKeys(m) {
			if holder, ok := index[k]; ok && holder != id {
				col := map[string]string{"serial": "serial", "MAC": "macs", "BMC": "bmc_address", "rack": "slot"}[strings.Fields(what)[0]]
				add(r.Line, col, "%s is already held by machine %s", what, holder)
			}
		}
		for _, fe := range m.Validate() {
			add(r.Line, fe.Field, "%s", fe.Problem)
		}
		// Credentials: an inline password is sealed under bmc/<id>; a
		// reference must already exist.
		var credOps, undoFor map[string][]byte
		if r.BMCCredential != "" {
			if boxes[r.BMCCredential] == nil {
				add(r.Line, "bmc_credential_ref", "no credential %q in the store (add it with `ironrack bmc credential set %s`)", r.BMCCredential, r.BMCCredential)
			}
		} else {
			if sl == nil {
				add(r.Line, "bmc_password", "a password needs a key file to encrypt it (--key-file)")
				continue
			}
			ref := credRefFor(id)
			old := boxes[ref]
			if pw, err := sl.Open(old); old == nil || err != nil || string(pw) != r.BMCPassword {
				box, err := sl.Seal([]byte(r.BMCPassword))
				if err != nil {
					return nil, err
				}
				credOps, undoFor = map[string][]byte{ref: box}, map[string][]byte{ref: old}
			}
		}
		if found && credOps == nil && sameMachine(prevM, m) {
			res.Unchanged++
			continue
		}
		w := &write{next: &record{Machine: *m}, change: change}
		if found {
			w.prev, w.prevIndex = prev.rec, prev.index
			w.next.HistorySeq = prev.rec.HistorySeq
			res.Updated = append(res.Updated, id)
		} else {
			res.Created = append(res.Created, id)
		}
		for ref, box := range credOps {
			w.extra = append(w.extra, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.credKey(ref), Value: box}})
		}
		if undoFor != nil {
			undo[w] = undoFor
		}
		ws = append(ws, w)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, w := range ws {
		s.plan(w)
	}
	if err := s.writeBatch(ctx, "import", ws, func(w *write) map[string][]byte { return undo[w] }); err != nil {
		return nil, fmt.Errorf("import %s: nothing stored: %w", file, err)
	}
	return res, nil
}

// sameMachine compares two machines ignoring timestamps.
func sameMachine(a, b *Machine) bool {
	ac, bc := *a, *b
	ac.CreatedAt, ac.UpdatedAt = bc.CreatedAt, bc.UpdatedAt
	ja, _ := json.Marshal(ac)
	jb, _ := json.Marshal(bc)
	return bytes.Equal(ja, jb)
}
