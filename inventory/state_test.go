package inventory

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// wantAllowed is the lifecycle written out by hand, independently of the
// table in state.go: every pair not listed here must be refused.
var wantAllowed = map[string]Actor{
	"new→commissioning":                  System | Operator,
	"commissioning→ready":                System,
	"commissioning→failed_commissioning": System,
	"ready→allocated":                    System,
	"ready→commissioning":                System | Operator,
	"allocated→deploying":                System,
	"allocated→ready":                    System,
	"deploying→deployed":                 System,
	"deploying→failed_deployment":        System,
	"deployed→releasing":                 System,
	"releasing→ready":                    System,
	"releasing→failed_releasing":         System,
	"failed_commissioning→commissioning": System | Operator,
	"failed_deployment→releasing":        System,
	"failed_deployment→commissioning":    Operator,
	"failed_releasing→releasing":         System,
	"failed_releasing→commissioning":     Operator,
	"broken→commissioning":               Operator,
	"retired→commissioning":              Operator,
}

func expected(from, to State, by Actor) bool {
	if by == Operator && from != to && from != StateRetired && (to == StateBroken || to == StateRetired) {
		return true
	}
	return wantAllowed[string(from)+"→"+string(to)]&by != 0
}

func TestTransitionTableExhaustive(t *testing.T) {
	if len(States()) != 12 {
		t.Fatalf("states = %v", States())
	}
	for _, from := range States() {
		for _, to := range States() {
			for _, by := range []Actor{System, Operator} {
				err := CanTransition(from, to, by)
				if want := expected(from, to, by); (err == nil) != want {
					t.Errorf("%s→%s by %s: err=%v, want allowed=%v", from, to, by, err, want)
				}
				if err != nil && !errors.Is(err, ErrTransition) {
					t.Errorf("%s→%s: error %v is not ErrTransition", from, to, err)
				}
			}
		}
	}
	// Every state is reachable from new, and ready is reachable from every
	// state but retired... through commissioning.
	reach := map[State]bool{StateNew: true}
	for changed := true; changed; {
		changed = false
		for from := range reach {
			for _, to := range append(Transitions(from, System), Transitions(from, Operator)...) {
				if !reach[to] {
					reach[to], changed = true, true
				}
			}
		}
	}
	if len(reach) != len(States()) {
		t.Errorf("reachable from new: %v", reach)
	}
	if _, err := ParseState("bogus"); err == nil {
		t.Error("ParseState(bogus) = nil error")
	}
	if err := CanTransition("bogus", StateReady, System); err == nil {
		t.Error("unknown from-state allowed")
	}
}

// forceState writes a machine into a state, bypassing the table (tests only).
func forceState(t *testing.T, s *Store, id string, st State) {
	t.Helper()
	prev, idx, err := s.get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	next := &record{Machine: *prev.Machine.Clone(), HistorySeq: prev.HistorySeq}
	next.State = st
	w := &write{prev: prev, prevIndex: idx, next: next, change: Change{What: "test setup"}}
	s.plan(w)
	if err := s.commit(context.Background(), w); err != nil {
		t.Fatal(err)
	}
}

// TestTransitionsInConsul drives every (from, to, actor) triple through the
// real store: allowed ones land with a history record naming who and why,
// refused ones leave the record untouched.
func TestTransitionsInConsul(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	id := MachineID("S1")
	for _, from := range States() {
		for _, to := range States() {
			if from == to {
				continue
			}
			for _, by := range []Actor{System, Operator} {
				name := fmt.Sprintf("%s→%s/%s", from, to, by)
				forceState(t, s, id, from)
				before, beforeIdx, _ := s.get(ctx, id)
				m, err := s.SetState(ctx, id, to, by, Change{Why: name, Who: "tester"})
				if want := expected(from, to, by); !want {
					if !errors.Is(err, ErrTransition) {
						t.Errorf("%s: err = %v, want ErrTransition", name, err)
					}
					after, afterIdx, _ := s.get(ctx, id)
					if afterIdx != beforeIdx || after.State != before.State {
						t.Errorf("%s: refused transition changed the record", name)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if m.State != to {
					t.Errorf("%s: state = %s", name, m.State)
				}
				node, _, _ := c.Catalog().Node(id, nil)
				if node.Node.Meta["state"] != string(to) {
					t.Errorf("%s: node meta state = %q", name, node.Node.Meta["state"])
				}
				h, _ := s.History(ctx, id)
				last := h[len(h)-1]
				if diff := cmp.Diff(HistoryEntry{From: from, To: to, Who: "tester", Why: name, What: "set-state"},
					HistoryEntry{From: last.From, To: last.To, Who: last.Who, Why: last.Why, What: last.What}); diff != "" {
					t.Errorf("%s: history (-want +got):\n%s", name, diff)
				}
			}
		}
	}
}

func TestHistoryCap(t *testing.T) {
	s, _ := testStore(t)
	s.cfg.HistoryCap = 5
	ctx := context.Background()
	mustImport(t, s, sheet3)
	id := MachineID("S2")
	for i := range 12 {
		if _, err := s.Tag(ctx, id, map[string]string{"n": fmt.Sprint(i)}, Change{}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 5 || h[0].Seq != 9 || h[4].Seq != 13 {
		t.Fatalf("history = %d entries, seqs %d..%d; want 5, 9..13", len(h), h[0].Seq, h[len(h)-1].Seq)
	}
}
