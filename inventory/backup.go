package inventory

// Backup and restore of ironrack's own data: the keys under the prefix and
// the machines' catalog nodes, nothing else of the cluster. A Consul
// snapshot would restore the whole cluster, ACLs and other teams' keys
// included; this restores only the inventory.
//
// What is all or nothing. A restore writes far more than the 128
// operations of one transaction, and Consul has no multi-transaction
// commit, so a restore is verify-and-roll-back: it keeps the inventory it
// replaces in memory (and, with --replace, the CLI writes it to FILE.before
// first), clears the prefix and the nodes, writes the backup in chunks,
// reads everything back and compares; on any failure it clears again and
// writes the previous inventory back. A marker key (PREFIX/restoring) is
// created first with CAS "only if absent" and deleted last: two restores
// cannot interleave, and a restore killed midway leaves the marker, so the
// next restore (and `Backup`) refuse until a restore with replace runs to
// the end. Staging under a second prefix and switching was not chosen:
// every ironrack process reads the configured prefix, so a switch would
// need every process restarted at once.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// BackupVersion is the format version Backup writes and Restore reads.
const BackupVersion = 1

// Backup is ironrack's data at one moment: the KV keys under the prefix
// (sealed values stay sealed: the key file is never in a backup) and the
// machines' catalog nodes.
type Backup struct {
	Version int       `json:"version"`
	Prefix  string    `json:"prefix"`
	Taken   time.Time `json:"taken"`
	// KV are the keys, relative to the prefix, sorted.
	KV []BackupKV `json:"kv"`
	// Nodes are the catalog nodes marked ironrack=machine, sorted.
	Nodes []BackupNode `json:"nodes"`
}

// BackupKV is one key. Value is base64 in the file (encoding/json's []byte).
type BackupKV struct {
	Key   string `json:"key"`
	Flags uint64 `json:"flags,omitempty"`
	Value []byte `json:"value"`
}

// BackupNode is one machine's catalog node.
type BackupNode struct {
	Node    string            `json:"node"`
	Address string            `json:"address"`
	Meta    map[string]string `json:"meta"`
}

// ErrNotEmpty: a restore found an inventory and was not told to replace it.
var ErrNotEmpty = errors.New("the inventory is not empty")

func (s *Store) restoringKey() string { return s.key("restoring") }

// Backup reads the inventory: every key under the prefix in one consistent
// read, and the machines' catalog nodes. Running batches' journals are left
// out (they are a writer's scratch space); a backup taken while a batch is
// running is refused.
func (s *Store) Backup(ctx context.Context) (*Backup, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.cfg.OpTimeout)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.cfg.Prefix+"/", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("backup: read %s/: %w", s.cfg.Prefix, err)
	}
	b := &Backup{Version: BackupVersion, Prefix: s.cfg.Prefix, Taken: s.cfg.Now().UTC(), KV: []BackupKV{}, Nodes: []BackupNode{}}
	for _, kv := range kvs {
		rel := strings.TrimPrefix(kv.Key, s.cfg.Prefix+"/")
		switch {
		case rel == "restoring":
			return nil, fmt.Errorf("backup: a restore is running or was interrupted (%s exists); run `inventory restore --replace` to the end first", kv.Key)
		case strings.HasPrefix(rel, "journal/"):
			if strings.HasSuffix(rel, "/lock") {
				return nil, fmt.Errorf("backup: a batch is running or was interrupted (%s); back up once it has ended or been rolled back", kv.Key)
			}
			continue
		}
		b.KV = append(b.KV, BackupKV{Key: rel, Flags: kv.Flags, Value: kv.Value})
	}
	nodes, _, err := s.c.Catalog().Nodes((&api.QueryOptions{NodeMeta: map[string]string{"ironrack": "machine"}, RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("backup: read catalog nodes: %w", err)
	}
	for _, n := range nodes {
		b.Nodes = append(b.Nodes, BackupNode{Node: n.Node, Address: n.Address, Meta: n.Meta})
	}
	sort.Slice(b.Nodes, func(i, j int) bool { return b.Nodes[i].Node < b.Nodes[j].Node })
	return b, nil
}

// WriteBackupFile writes b to path, mode 0600, whole or not at all (a
// temporary file in the same directory, synced, then renamed).
func WriteBackupFile(path string, b *Backup) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ironrack-backup-*")
	if err != nil {
		return fmt.Errorf("write backup %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(data)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("write backup %s: %w", path, err)
	}
	return nil
}

// ReadBackupFile reads and checks a backup file.
func ReadBackupFile(path string) (*Backup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b Backup
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		off := int64(-1)
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		if off >= 0 && off <= int64(len(data)) {
			line := 1 + bytes.Count(data[:off], []byte("\n"))
			return nil, fmt.Errorf("%s:%d: not an ironrack backup: %v", path, line, err)
		}
		return nil, fmt.Errorf("%s: not an ironrack backup: %w", path, err)
	}
	if b.Version != BackupVersion {
		return nil, fmt.Errorf("%s: backup format version %d, this ironrack reads %d", path, b.Version, BackupVersion)
	}
	seen := map[string]bool{}
	for i, kv := range b.KV {
		if kv.Key == "" || strings.HasPrefix(kv.Key, "/") || strings.Contains(kv.Key, "//") || seen[kv.Key] {
			return nil, fmt.Errorf("%s: key %d (%q): empty, absolute or repeated", path, i+1, kv.Key)
		}
		seen[kv.Key] = true
	}
	for i, n := range b.Nodes {
		if n.Node == "" || n.Meta["ironrack"] != "machine" {
			return nil, fmt.Errorf("%s: node %d (%q) is not an ironrack machine node", path, i+1, n.Node)
		}
	}
	return &b, nil
}

// Restore writes b into the inventory, all or nothing (see the top of this
// file). An inventory that is not empty is refused with ErrNotEmpty unless
// replace is set. prev, when not nil, is the inventory replaced, for the
// caller to keep.
func (s *Store) Restore(ctx context.Context, b *Backup, replace bool) (prev *Backup, err error) {
	if b.Version != BackupVersion {
		return nil, fmt.Errorf("restore: backup format version %d, this ironrack reads %d", b.Version, BackupVersion)
	}
	marker := &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.restoringKey(), Value: []byte(s.cfg.Who), Index: 0}}
	if err := s.writeTxn(ctx, api.TxnOps{marker}); err != nil {
		if errors.Is(err, ErrConflict) && replace {
			// An interrupted restore: this one with replace takes over.
		} else if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("restore: another restore is running or was interrupted (%s exists); rerun with --replace to finish it", s.restoringKey())
		} else {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	cur, err := s.currentForRestore(ctx)
	if err != nil {
		return nil, err
	}
	if !replace && (len(cur.KV) > 0 || len(cur.Nodes) > 0) {
		s.clearMarker(ctx)
		return nil, fmt.Errorf("restore: %d keys under %s/ and %d machine nodes: %w; use --replace to replace it", len(cur.KV), s.cfg.Prefix, len(cur.Nodes), ErrNotEmpty)
	}
	if err := s.replaceWith(ctx, cur, b); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if rerr := s.replaceWith(rctx, nil, cur); rerr != nil {
			return cur, fmt.Errorf("restore: %w; putting the previous inventory back also failed: %v (the marker %s stays: rerun restore --replace with the file of the previous inventory)", err, rerr, s.restoringKey())
		}
		s.clearMarker(ctx)
		return cur, fmt.Errorf("restore: %w; the previous inventory is back as it was", err)
	}
	if err := s.clearMarker(ctx); err != nil {
		return cur, fmt.Errorf("restore: written and verified, but removing the marker %s failed: %w", s.restoringKey(), err)
	}
	return cur, nil
}

func (s *Store) clearMarker(ctx context.Context) error {
	return s.writeTxn(context.WithoutCancel(ctx), api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.restoringKey()}}})
}

// currentForRestore is the inventory as it is, journals included (a
// restore replaces them too), the marker left out.
func (s *Store) currentForRestore(ctx context.Context) (*Backup, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.cfg.OpTimeout)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.cfg.Prefix+"/", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("restore: read %s/: %w", s.cfg.Prefix, err)
	}
	cur := &Backup{Version: BackupVersion, Prefix: s.cfg.Prefix}
	for _, kv := range kvs {
		if kv.Key == s.restoringKey() || kv.Session != "" {
			continue // the marker; a running batch's session lock
		}
		cur.KV = append(cur.KV, BackupKV{Key: strings.TrimPrefix(kv.Key, s.cfg.Prefix+"/"), Flags: kv.Flags, Value: kv.Value})
	}
	nodes, _, err := s.c.Catalog().Nodes((&api.QueryOptions{NodeMeta: map[string]string{"ironrack": "machine"}, RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("restore: read catalog nodes: %w", err)
	}
	for _, n := range nodes {
		cur.Nodes = append(cur.Nodes, BackupNode{Node: n.Node, Address: n.Address, Meta: n.Meta})
	}
	return cur, nil
}

// replaceWith clears what is (cur; nil: read it) and writes want, then
// reads everything back and compares.
func (s *Store) replaceWith(ctx context.Context, cur, want *Backup) error {
	if cur == nil {
		var err error
		if cur, err = s.currentForRestore(ctx); err != nil {
			return err
		}
	}
	var ops api.TxnOps
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := s.writeTxn(ctx, ops)
		ops = ops[:0]
		return err
	}
	add := func(op *api.TxnOp) error {
		ops = append(ops, op)
		if len(ops) == maxTxnOps {
			return flush()
		}
		return nil
	}
	// Clear: each key (a tree delete would also take the marker).
	for _, kv := range cur.KV {
		if err := add(&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.key(kv.Key)}}); err != nil {
			return fmt.Errorf("clear %s: %w", kv.Key, err)
		}
	}
	for _, n := range cur.Nodes {
		if err := add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: n.Node}}}); err != nil {
			return fmt.Errorf("clear node %s: %w", n.Node, err)
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("clear: %w", err)
	}
	for _, kv := range want.KV {
		if err := add(&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.key(kv.Key), Flags: kv.Flags, Value: kv.Value}}); err != nil {
			return fmt.Errorf("write %s: %w", kv.Key, err)
		}
	}
	for _, n := range want.Nodes {
		if err := add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: n.Node, Address: n.Address, Meta: n.Meta}}}); err != nil {
			return fmt.Errorf("write node %s: %w", n.Node, err)
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got, err := s.currentForRestore(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return sameBackup(got, want)
}

// sameBackup compares the KV and nodes of two backups.
func sameBackup(got, want *Backup) error {
	wkv := map[string]BackupKV{}
	for _, kv := range want.KV {
		wkv[kv.Key] = kv
	}
	if len(got.KV) != len(want.KV) {
		return fmt.Errorf("verify: %d keys read back, %d written", len(got.KV), len(want.KV))
	}
	for _, kv := range got.KV {
		w, ok := wkv[kv.Key]
		if !ok || w.Flags != kv.Flags || !bytes.Equal(w.Value, kv.Value) {
			return fmt.Errorf("verify: key %s differs from the backup", kv.Key)
		}
	}
	wn := map[string]BackupNode{}
	for _, n := range want.Nodes {
		wn[n.Node] = n
	}
	if len(got.Nodes) != len(want.Nodes) {
		return fmt.Errorf("verify: %d machine nodes read back, %d written", len(got.Nodes), len(want.Nodes))
	}
	for _, n := range got.Nodes {
		w, ok := wn[n.Node]
		if !ok || w.Address != n.Address || !sameMeta(w.Meta, n.Meta) {
			return fmt.Errorf("verify: node %s differs from the backup", n.Node)
		}
	}
	return nil
}

func sameMeta(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
