package images

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
)

func TestCatalog(t *testing.T) {
	a := consuldev.T(t)
	client, err := api.NewClient(&api.Config{Address: a.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := &Catalog{KV: client.KV(), Prefix: "test"}
	agentV2 := Manifest{Name: "agent", Version: "6.1.192-2-bbbb", KernelPackage: "linux-image-6.1.0-56-amd64 6.1.192-2",
		Files: []File{{Name: "vmlinuz", Size: 6, SHA256: "ab"}}}
	agentV1 := Manifest{Name: "agent", Version: "6.1.192-2-aaaa"}
	debian := Manifest{Name: "debian", Version: "12.7"}
	for _, m := range []Manifest{agentV2, debian, agentV1, agentV2} {
		if err := c.Register(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Manifest{agentV1, agentV2, debian}, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	m, err := c.Get(ctx, "agent", agentV2.Version)
	if err != nil || !cmp.Equal(m, agentV2) {
		t.Errorf("get: %+v, %v", m, err)
	}
	if err := c.Remove(ctx, "agent", agentV1.Version); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "agent", agentV1.Version); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if _, err := c.Get(ctx, "nope", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get unknown: %v, want ErrNotFound", err)
	}
	// A corrupt record is named, and the others still list.
	if _, err := client.KV().Put(&api.KVPair{Key: "test/images/bad/1", Value: []byte("{")}, nil); err != nil {
		t.Fatal(err)
	}
	got, err = c.List(ctx)
	if err == nil || len(got) != 2 {
		t.Errorf("list with a corrupt record: %d manifests, error %v; want 2 and an error naming test/images/bad/1", len(got), err)
	}
	if err := c.Register(ctx, Manifest{Name: "x"}); err == nil {
		t.Error("register without a version: no error")
	}
}
