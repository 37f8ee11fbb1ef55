package inventory

import (
	"context"
	"errors"
	"testing"
)

const sheet3 = `rack,slot,serial,bmc_address,bmc_username,bmc_password,macs,tags,vendor,model
r1,1,S1,127.0.20.1,admin,pw1,52:54:00:00:00:01,role=db;zone=a,Dell,R650
r1,2,S2,127.0.20.2,admin,pw2,52:54:00:00:00:02,,Dell,R650
r2,1,S3,127.0.20.3,admin,pw3,52:54:00:00:00:03;52:54:00:00:01:03,role=web,HPE,DL360
`

func TestImportAndGet(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	res := mustImport(t, s, sheet3)
	if len(res.Created) != 3 || len(res.Updated) != 0 {
		t.Fatalf("first import: %+v", res)
	}
	m, err := s.Find(ctx, "S3")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != MachineID("S3") || m.Rack != "r2" || len(m.NICs) != 2 || m.Tags["role"] != "web" || m.State != StateNew {
		t.Fatalf("S3 = %+v", m)
	}
	node, _, err := c.Catalog().Node(m.ID, nil)
	if err != nil || node == nil {
		t.Fatalf("catalog node: %v %v", node, err)
	}
	if node.Node.Meta["rack"] != "r2" || node.Node.Meta["serial"] != "S3" || node.Node.Meta["state"] != "new" {
		t.Fatalf("meta = %v", node.Node.Meta)
	}
	cred, err := s.Credential(ctx, m)
	if err != nil || cred.Password != "pw3" || cred.Username != "admin" {
		t.Fatalf("credential = %v, %v", cred, err)
	}
	if m2, err := s.Find(ctx, "52:54:00:00:01:03"); err != nil || m2.ID != m.ID {
		t.Fatalf("find by MAC: %v %v", m2, err)
	}
	if _, err := s.Find(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("find nope: %v", err)
	}
	// Idempotent.
	res = mustImport(t, s, sheet3)
	if len(res.Created) != 0 || len(res.Updated) != 0 || res.Unchanged != 3 {
		t.Fatalf("re-import: %+v", res)
	}
	h, err := s.History(ctx, m.ID)
	if err != nil || len(h) != 1 {
		t.Fatalf("history after re-import = %v, %v", h, err)
	}
}
