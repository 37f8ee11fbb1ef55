package inventory

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
)

// testStore returns a Store on a fresh real Consul dev agent.
func testStore(t testing.TB) (*Store, *api.Client) {
	t.Helper()
	s, c, _ := testStoreAddr(t)
	return s, c
}

// testStoreAddr also returns the agent's HTTP address.
func testStoreAddr(t testing.TB) (*Store, *api.Client, string) {
	t.Helper()
	agent := consuldev.T(t)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], "0123456789abcdef0123456789abcdef")
	return New(c, Config{Sealer: NewSealer(key), Who: "test"}), c, agent.Addr
}

func mustImport(t testing.TB, s *Store, csv string) *ImportResult {
	t.Helper()
	rows, err := ParseSheet("t.csv", strings.NewReader(csv))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	res, err := s.Import(context.Background(), "t.csv", rows, Change{})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return res
}
