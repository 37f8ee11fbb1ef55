package mesh

import (
	"context"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/consuldev"
)

const (
	k1 = "p+J6wbX3LPOdPLegRYo48NGQjFTrmF91/PSf13Hk4Vg="
	k2 = "m5A6Ho/9EtDa6mspOCbMmNJB8NtQggK4g1s0f0p4nkc="
	k3 = "DFPeEaHjSYip4CLrBy5LkGetvuI3zC53iEmOB5lv+Eg="
)

// TestStoreAndConfigs: addresses per group, idempotent adds, refusals,
// an address freed by Remove is reused; configs by group.
func TestStoreAndConfigs(t *testing.T) {
	s := &Store{Client: consuldev.T(t).Client(t)}
	ctx := context.Background()
	alice, err := s.Add(ctx, Peer{Name: "alice", Kind: Admin, PublicKey: k1})
	if err != nil || alice.Address.String() != "10.99.0.1" {
		t.Fatalf("alice: %+v %v", alice, err)
	}
	m1, err := s.Add(ctx, Peer{Name: "m1", Kind: Machine, PublicKey: k2, Endpoint: "192.0.2.5:51820"})
	if err != nil || m1.Address.String() != "10.99.16.1" {
		t.Fatalf("m1: %+v %v", m1, err)
	}
	if again, err := s.Add(ctx, Peer{Name: "alice", Kind: Admin, PublicKey: k1}); err != nil || again.Address != alice.Address {
		t.Errorf("re-add: %+v %v", again, err)
	}
	for name, p := range map[string]Peer{
		"another key":  {Name: "alice", Kind: Admin, PublicKey: k3},
		"reused key":   {Name: "bob", Kind: Admin, PublicKey: k1},
		"bad key":      {Name: "bob", Kind: Admin, PublicKey: "abc"},
		"bad name":     {Name: "bob smith", Kind: Admin, PublicKey: k3},
		"unknown kind": {Name: "bob", Kind: "user", PublicKey: k3},
	} {
		if _, err := s.Add(ctx, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	mc := MachineConfig(DefaultPort, []Peer{alice, m1})
	if !strings.Contains(mc, k1) || strings.Contains(mc, k2) || !strings.Contains(mc, "AllowedIPs = 10.99.0.1/32") {
		t.Errorf("machine config lists admins only:\n%s", mc)
	}
	ac, err := AdminConfig("alice", []Peer{alice, m1})
	if err != nil || !strings.Contains(ac, "Endpoint = 192.0.2.5:51820") || strings.Contains(ac, "PublicKey = "+k1) {
		t.Errorf("admin config lists machines only:\n%s %v", ac, err)
	}
	if _, err := s.Remove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, "alice"); err == nil {
		t.Error("removed twice")
	}
	bob, err := s.Add(ctx, Peer{Name: "bob", Kind: Admin, PublicKey: k3})
	if err != nil || bob.Address.String() != "10.99.0.1" {
		t.Errorf("bob after alice's revoke: %+v %v", bob, err)
	}
}
