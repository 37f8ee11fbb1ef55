package inventory

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/tiers/placement"
)

// TestBackupRestoreFreshCluster: an inventory with machines in several
// states, histories, leases, a sealed credential, the image catalog and a
// shard map is backed up from one Consul and restored into a fresh 3-server
// cluster; `inventory export`, histories, leases, images, shard maps and
// every key compare equal, and the credential opens with the same key.
// A second restore is refused without replace, and with replace it
// succeeds; a file that is not a backup is refused with its line.
func TestBackupRestoreFreshCluster(t *testing.T) {
	src, srcClient := testStore(t)
	ctx := context.Background()
	seedReady(t, src, 300, 6) // three journaled chunks and more
	mustImport(t, src, "rack,slot,serial,bmc_address,bmc_username,bmc_password,macs\nr1,1,S1,10.0.0.1,admin,hunter2,02:00:00:00:00:01\n")
	if _, err := src.Allocate(ctx, AllocateRequest{Count: 5, Owner: "alice", Tier: "query"}); err != nil {
		t.Fatal(err)
	}
	if errs := src.StoreLeases(ctx, []Lease{{MAC: "02:00:00:00:00:01", IP: "10.1.0.5", Expires: time.Now().Add(time.Hour).UTC()}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	cat := &images.Catalog{KV: srcClient.KV()}
	if err := cat.Register(ctx, images.Manifest{Name: "debian", Version: "12.1", Kernel: "vmlinuz", Initrd: "initrd"}); err != nil {
		t.Fatal(err)
	}
	ps := placement.NewStore(srcClient, placement.StoreConfig{})
	if _, err := ps.Update(ctx, "storage", 8, 2, []placement.Node{{ID: "m-a", Rack: "r1"}, {ID: "m-b", Rack: "r2"}, {ID: "m-c", Rack: "r3"}}); err != nil {
		t.Fatal(err)
	}

	b, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "inv.backup")
	if err := WriteBackupFile(file, b); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", fi.Mode(), err)
	}
	if raw, _ := os.ReadFile(file); bytes.Contains(raw, []byte("hunter2")) {
		t.Fatal("the backup holds a password in the clear")
	}

	cl := consuldev.StartCluster(t, consuldev.ClusterOptions{})
	dst := clusterStore(t, cl.Client) // same key as testStore's
	back, err := ReadBackupFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Restore(ctx, back, false); err != nil {
		t.Fatal(err)
	}

	export := func(s *Store) string {
		ms, err := s.List(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := WriteSheet(&buf, ms); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	if diff := cmp.Diff(export(src), export(dst)); diff != "" {
		t.Errorf("inventory export differs after restore:\n%s", diff)
	}
	ms, _ := src.List(ctx, Query{})
	for _, m := range ms {
		h1, err1 := src.History(ctx, m.ID)
		h2, err2 := dst.History(ctx, m.ID)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if diff := cmp.Diff(h1, h2); diff != "" {
			t.Fatalf("history of %s differs:\n%s", m.ID, diff)
		}
	}
	l1, _ := src.Leases(ctx)
	l2, err := dst.Leases(ctx)
	if err != nil || cmp.Diff(l1, l2) != "" {
		t.Errorf("leases differ: %v %s", err, cmp.Diff(l1, l2))
	}
	dc, _ := consuldev.API(cl.Client)
	i1, _ := cat.List(ctx)
	i2, err := (&images.Catalog{KV: dc.KV()}).List(ctx)
	if err != nil || len(i1) != 1 || cmp.Diff(i1, i2) != "" {
		t.Errorf("image catalog differs: %v %s", err, cmp.Diff(i1, i2))
	}
	m1, _, _ := ps.Get(ctx, "storage")
	m2, _, err := placement.NewStore(dc, placement.StoreConfig{}).Get(ctx, "storage")
	if err != nil || cmp.Diff(m1, m2) != "" {
		t.Errorf("shard map differs: %v %s", err, cmp.Diff(m1, m2))
	}
	m, err := dst.Find(ctx, "S1")
	if err != nil {
		t.Fatal(err)
	}
	if cred, err := dst.Credential(ctx, m); err != nil || cred.Password != "hunter2" {
		t.Errorf("the sealed credential does not open after restore: %v", err)
	}
	again, err := dst.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameBackup(again, b); err != nil {
		t.Errorf("a backup of the restored inventory differs from the original: %v", err)
	}
	// A non-empty inventory is refused, and left as it is.
	if _, err := dst.Restore(ctx, back, false); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("restore into a non-empty inventory: %v, want ErrNotEmpty", err)
	}
	// With replace it succeeds (the claims on dst are replaced by the backup's).
	if _, err := dst.Allocate(ctx, AllocateRequest{Count: 2, Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
	if prev, err := dst.Restore(ctx, back, true); err != nil || prev == nil {
		t.Fatalf("restore --replace: %v", err)
	}
	if got := export(dst); got != export(src) {
		t.Error("after restore --replace, export differs from the source")
	}
	// All or nothing: a backup whose last chunk Consul refuses (a value
	// over its size limit) leaves the inventory as it was.
	before, err := dst.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	huge := *back
	huge.KV = append(append([]BackupKV{}, back.KV...), BackupKV{Key: "zz/huge", Value: bytes.Repeat([]byte("x"), 600<<10)})
	if _, err := dst.Restore(ctx, &huge, true); err == nil || !strings.Contains(err.Error(), "previous inventory is back") {
		t.Errorf("a restore that fails midway: %v", err)
	}
	after, err := dst.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameBackup(after, before); err != nil {
		t.Errorf("a failed restore changed the inventory: %v", err)
	}
	os.WriteFile(file+".bad", []byte("{\"version\": 1,\n \"kv\": [oops]}"), 0o600)
	if _, err := ReadBackupFile(file + ".bad"); err == nil || !strings.Contains(err.Error(), ".bad:2:") {
		t.Errorf("a broken file: %v, want FILE:2", err)
	}
	os.WriteFile(file+".type", []byte("{\"version\": 1,\n\"kv\": [],\n\"nodes\": 7}"), 0o600)
	if _, err := ReadBackupFile(file + ".type"); err == nil || !strings.Contains(err.Error(), ".type:3:") {
		t.Errorf("a file with a wrong type: %v, want FILE:3", err)
	}
}
