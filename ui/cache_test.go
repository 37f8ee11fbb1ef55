package ui

import (
	"io"
	"log/slog"
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// TestCacheSubscriberMissesNothing: a stream that does not read between
// two changes gets every changed machine once, at its latest version.
func TestCacheSubscriberMissesNothing(t *testing.T) {
	c := newCache(nil, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	v := func(id string, idx uint64, st inventory.State) inventory.StoredMachine {
		return inventory.StoredMachine{Machine: &inventory.Machine{ID: id, State: st}, Index: idx}
	}
	c.apply([]inventory.StoredMachine{v("a", 1, inventory.StateNew), v("b", 1, inventory.StateNew)})
	sub, cancel := c.subscribe()
	defer cancel()
	c.apply([]inventory.StoredMachine{v("a", 2, inventory.StateReady), v("b", 1, inventory.StateNew)})
	c.apply([]inventory.StoredMachine{v("a", 3, inventory.StateBroken), v("b", 2, inventory.StateReady), v("c", 1, inventory.StateNew)})
	<-sub.wake
	got := map[string]inventory.State{}
	for _, m := range sub.take() {
		got[m.ID] = m.State
	}
	want := map[string]inventory.State{"a": inventory.StateBroken, "b": inventory.StateReady, "c": inventory.StateNew}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("%s: %s, want %s", id, got[id], st)
		}
	}
	if left := sub.take(); len(left) != 0 {
		t.Errorf("taken twice: %v", left)
	}
	ms, _ := c.filter(mustWhere(t, `state == "ready"`))
	if len(ms) != 1 || ms[0].ID != "b" {
		t.Errorf("filter: %v", ms)
	}
}

func mustWhere(t *testing.T, src string) *inventory.Where {
	w, err := inventory.ParseWhere(src)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
