package placement

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
)

// testClient starts a real Consul dev agent on this package's loopback
// address and returns a client for it.
func testClient(t *testing.T) *api.Client {
	t.Helper()
	return consuldev.TWith(t, consuldev.Options{Bind: "127.0.35.1"}).Client(t)
}

func TestStoreCAS(t *testing.T) {
	c := testClient(t)
	ctx := context.Background()
	s := NewStore(c, StoreConfig{Prefix: "test"})
	nodes := []Node{{"a", "r1"}, {"b", "r2"}, {"c", "r3"}, {"d", "r1"}}
	if _, _, err := s.Get(ctx, "storage"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any write: %v, want ErrNotFound", err)
	}
	st, err := s.Update(ctx, "storage", 64, 2, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if st.Old != nil || st.Moves != 128 {
		t.Errorf("first update: old %v, moves %d, want none and 128", st.Old, st.Moves)
	}
	got, index, err := s.Get(ctx, "storage")
	if err != nil || mustJSON(got) != mustJSON(st.New) {
		t.Fatalf("Get = %v, %v; want the map written", got, err)
	}
	kv, _, _ := c.KV().Get("test/shards/storage", nil)
	if kv == nil || string(kv.Value) != mustJSON(st.New) {
		t.Fatalf("key test/shards/storage does not hold the map's JSON")
	}

	// A preview of a step writes nothing and counts the moves.
	more := append(nodes, Node{"e", "r2"})
	pre, err := s.Preview(ctx, "storage", 64, 2, more)
	if err != nil {
		t.Fatal(err)
	}
	if pre.Moves == 0 || pre.Moves != pre.New.Load()["e"] {
		t.Errorf("preview moves %d, new node holds %d", pre.Moves, pre.New.Load()["e"])
	}
	if _, again, _ := s.Get(ctx, "storage"); again != index {
		t.Fatalf("preview wrote: index %d → %d", index, again)
	}

	// A write at a stale index loses.
	if err := s.Put(ctx, "storage", pre.New, index); err != nil {
		t.Fatal(err)
	}
	err = s.Put(ctx, "storage", st.New, index)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "test/shards/storage") {
		t.Fatalf("stale Put: %v, want ErrConflict naming the key", err)
	}
	if got, _, _ := s.Get(ctx, "storage"); mustJSON(got) != mustJSON(pre.New) {
		t.Fatal("the losing write changed the map")
	}
	// "Only if absent" loses once the key exists.
	if err := s.Put(ctx, "storage", st.New, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over an existing map: %v, want ErrConflict", err)
	}

	// Concurrent updates: every writer's CAS either wins or re-reads; the
	// stored map is the last winner's, a valid map of the same shape.
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns := append(append([]Node(nil), more...), Node{ID: string(rune('f' + i)), Rack: "r3"})
			_, errs[i] = s.Update(ctx, "storage", 64, 2, ns)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	final, _, err := s.Get(ctx, "storage")
	if err != nil || len(final.Nodes) != 6 {
		t.Fatalf("after concurrent updates: %v, %d nodes", err, len(final.Nodes))
	}

	// A corrupt value is an error naming the key, and a bad map is not written.
	c.KV().Put(&api.KVPair{Key: "test/shards/query", Value: []byte("{")}, nil)
	if _, _, err := s.Get(ctx, "query"); err == nil || !strings.Contains(err.Error(), "test/shards/query: corrupt") {
		t.Errorf("corrupt map: %v", err)
	}
	bad := Map{Replicas: 2, Nodes: nodes, Shards: [][]string{{"a", "d"}}}
	if err := s.Put(ctx, "ingestion", bad, 0); err == nil || !strings.Contains(err.Error(), "two replicas in rack r1") {
		t.Errorf("invalid map: %v", err)
	}
	if _, _, err := s.Get(ctx, "Bad/Tier"); err == nil || !strings.Contains(err.Error(), "tier name") {
		t.Errorf("bad tier name: %v", err)
	}
}
