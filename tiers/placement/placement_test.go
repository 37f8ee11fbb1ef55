package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// check asserts the map's invariants: S shards of R replicas each, on R
// distinct racks and known nodes.
func check(t *testing.T, m Map, S, R int, what string) {
	t.Helper()
	if len(m.Shards) != S || m.Replicas != R {
		t.Fatalf("%s: %d shards of %d replicas, want %d of %d", what, len(m.Shards), m.Replicas, S, R)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// randomNodes makes n nodes over racks racks with random (uneven) sizes,
// every rack non-empty.
func randomNodes(rng *rand.Rand, racks, n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		r := i
		if i >= racks {
			r = rng.IntN(racks)
		}
		nodes[i] = Node{ID: nodeID(rng), Rack: fmt.Sprintf("r%d", r+1)}
	}
	rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes
}

func mustJSON(m Map) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestPlaceInvariants: every shard has R replicas on R distinct racks, the
// map does not depend on the order of the nodes, and its JSON round-trips
// byte for byte. 400 random cases from a fixed seed.
func TestPlaceInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	for c := range 400 {
		S := 1 + rng.IntN(300)
		R := 1 + rng.IntN(4)
		racks := R + rng.IntN(5)
		N := racks + rng.IntN(25)
		nodes := randomNodes(rng, racks, N)
		what := fmt.Sprintf("case %d: S=%d R=%d racks=%d N=%d", c, S, R, racks, N)
		m, err := Place(S, R, nodes)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		check(t, m, S, R, what)
		shuffled := append([]Node(nil), nodes...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, err := Place(S, R, shuffled)
		if err != nil || mustJSON(again) != mustJSON(m) {
			t.Fatalf("%s: placement depends on node order (%v)", what, err)
		}
		var back Map
		if err := json.Unmarshal([]byte(mustJSON(m)), &back); err != nil || mustJSON(back) != mustJSON(m) {
			t.Fatalf("%s: JSON does not round-trip (%v)", what, err)
		}
		total := 0
		for _, l := range m.Load() {
			total += l
		}
		if total != S*R {
			t.Fatalf("%s: %d replicas placed, want %d", what, total, S*R)
		}
	}
}

// TestPlaceBalanced: with nodes spread evenly over more racks than R, every
// node holds within two replicas of its target: R·S/N, unless a rack would
// then hold more than S (one replica of each shard), when that rack's nodes
// share S and the others the rest.
func TestPlaceBalanced(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 2))
	for c := range 200 {
		S := 1 + rng.IntN(1000)
		R := 1 + rng.IntN(3)
		racks := R + 1 + rng.IntN(4)
		N := racks + rng.IntN(20)
		nodes := evenNodes(rng, racks, N)
		m, err := Place(S, R, nodes)
		if err != nil {
			t.Fatal(err)
		}
		sorted, rs, _ := checkNodes(nodes)
		target := targets(sorted, rs, S, R, m.Load())
		fair := float64(R*S) / float64(N)
		for id, l := range m.Load() {
			if math.Abs(float64(l-target[id])) > 2 || N%racks == 0 && math.Abs(float64(l)-fair) > 2 {
				t.Fatalf("case %d (S=%d R=%d racks=%d N=%d): node %s holds %d, target %d, fair share %.1f", c, S, R, racks, N, id, l, target[id], fair)
			}
		}
	}
}

// stepBound is the tested bound of a step N → N+1: 1.25·R·S/(N+1), or the
// fair share rounded up when that is larger (a node holds whole replicas).
func stepBound(S, R, N int) float64 {
	mu := float64(R*S) / float64(N+1)
	return math.Max(1.25*mu, math.Ceil(mu))
}

// TestStepUpMoves: a step N → N+1 (the new node in a rack with fewest
// nodes, so the spread stays even) moves at most stepBound replicas, and
// every moved replica lands on the new node. 150 cases of 4 steps each.
func TestStepUpMoves(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 3))
	worst, worst4 := 0.0, 0.0
	for c := range 150 {
		S := []int{8, 64, 256, 1024, 4096}[rng.IntN(5)]
		R := 1 + rng.IntN(3)
		racks := R + rng.IntN(5)
		N := racks + rng.IntN(30)
		nodes := evenNodes(rng, racks, N)
		m, err := Place(S, R, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			nodes = addEven(rng, nodes, racks)
			added := nodes[len(nodes)-1].ID
			next, err := Rebalance(m, nodes)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("case %d: S=%d R=%d racks=%d N=%d→%d", c, S, R, racks, len(nodes)-1, len(nodes))
			check(t, next, S, R, what)
			moves := Moves(m, next)
			if b := stepBound(S, R, len(nodes)-1); float64(moves) > b {
				t.Fatalf("%s: %d moves, bound %.1f", what, moves, b)
			}
			mu := float64(R*S) / float64(len(nodes))
			worst = math.Max(worst, float64(moves)/mu)
			if mu >= 4 {
				worst4 = math.Max(worst4, float64(moves)/mu)
			}
			if on := next.Load()[added]; on != moves {
				t.Fatalf("%s: %d moves but %d replicas on the new node: something else moved", what, moves, on)
			}
			m = next
		}
	}
	t.Logf("worst moves / (R·S/(N+1)) = %.3f; where R·S/(N+1) >= 4: %.3f", worst, worst4)
}

// TestStepDownMoves: a step N → N-1 (removing a node of a largest rack)
// moves the removed node's replicas and at most one more.
func TestStepDownMoves(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 4))
	extraMax := 0
	for c := range 150 {
		S := []int{8, 64, 256, 1024}[rng.IntN(4)]
		R := 1 + rng.IntN(3)
		racks := R + rng.IntN(5)
		nodes := evenNodes(rng, racks, racks+4+rng.IntN(25))
		m, err := Place(S, R, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if len(nodes) <= racks {
				break
			}
			count := map[string]int{}
			most := 0
			for _, n := range nodes {
				count[n.Rack]++
				most = max(most, count[n.Rack])
			}
			var idx []int
			for i, n := range nodes {
				if count[n.Rack] == most {
					idx = append(idx, i)
				}
			}
			i := idx[rng.IntN(len(idx))]
			gone := nodes[i].ID
			nodes = append(append([]Node(nil), nodes[:i]...), nodes[i+1:]...)
			next, err := Rebalance(m, nodes)
			what := fmt.Sprintf("case %d: S=%d R=%d racks=%d N=%d→%d", c, S, R, racks, len(nodes)+1, len(nodes))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			check(t, next, S, R, what)
			held := m.Load()[gone]
			moves := Moves(m, next)
			if moves < held || moves > held+1 {
				t.Fatalf("%s: %d moves, the removed node held %d", what, moves, held)
			}
			extraMax = max(extraMax, moves-held)
			m = next
		}
	}
	t.Logf("most moves beyond the removed node's replicas: %d", extraMax)
}

// TestRandomWalk: 40 random steps each of adding or removing nodes anywhere
// (new racks too), several at once; the invariants hold throughout, a
// recomputation is deterministic, and no node holds more than 1.5 times its
// target (plus two).
func TestRandomWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 5))
	for c := range 20 {
		S := 64 + rng.IntN(512)
		R := 1 + rng.IntN(3)
		racks := R + 2
		nodes := evenNodes(rng, racks, racks*3)
		m, err := Place(S, R, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for step := range 40 {
			next := append([]Node(nil), nodes...)
			switch k := 1 + rng.IntN(3); {
			case rng.IntN(2) == 0 && len(next) > 2*racks+k:
				for range k {
					i := rng.IntN(len(next))
					next = append(next[:i], next[i+1:]...)
				}
			default:
				for range k {
					next = append(next, Node{ID: nodeID(rng), Rack: fmt.Sprintf("r%d", 1+rng.IntN(racks+1))})
				}
			}
			what := fmt.Sprintf("case %d step %d: S=%d R=%d N=%d", c, step, S, R, len(next))
			out, err := Rebalance(m, next)
			if err != nil {
				var short *RackShortfallError
				if errors.As(err, &short) {
					continue
				}
				t.Fatalf("%s: %v", what, err)
			}
			check(t, out, S, R, what)
			if again, _ := Rebalance(m, next); mustJSON(again) != mustJSON(out) {
				t.Fatalf("%s: not deterministic", what)
			}
			// The target is the fair share under the rack limit (a rack
			// holds at most S replicas).
			sorted, racks, _ := checkNodes(next)
			target := targets(sorted, racks, S, R, out.Load())
			for id, l := range out.Load() {
				if float64(l) > 1.5*float64(target[id])+2 {
					t.Fatalf("%s: node %s holds %d, target %d", what, id, l, target[id])
				}
			}
			m, nodes = out, next
		}
	}
}

func TestPlaceErrors(t *testing.T) {
	two := []Node{{"a", "r1"}, {"b", "r1"}, {"c", "r2"}}
	for name, tc := range map[string]struct {
		shards, replicas int
		nodes            []Node
		want             string
	}{
		"too few racks": {4, 3, two, "replication factor 3 needs nodes in 3 racks, they span 2 (r1, r2): 1 rack(s) short"},
		"no nodes":      {4, 1, nil, "they span 0 (none)"},
		"no rack":       {4, 1, []Node{{"a", ""}}, "node a has no rack"},
		"duplicate":     {4, 1, []Node{{"a", "r1"}, {"a", "r2"}}, "node a listed twice"},
		"zero shards":   {0, 1, two, "shard count 0 out of range"},
		"zero replicas": {4, 0, two, "replication factor 0 out of range"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Place(tc.shards, tc.replicas, tc.nodes)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMoves(t *testing.T) {
	old := Map{Replicas: 2, Shards: [][]string{{"a", "b"}, {"b", "c"}}}
	for name, tc := range map[string]struct {
		new  Map
		want int
	}{
		"same":              {old, 0},
		"order only":        {Map{Replicas: 2, Shards: [][]string{{"b", "a"}, {"c", "b"}}}, 0},
		"one replica moved": {Map{Replicas: 2, Shards: [][]string{{"a", "d"}, {"b", "c"}}}, 1},
		"new shard":         {Map{Replicas: 2, Shards: [][]string{{"a", "b"}, {"b", "c"}, {"a", "c"}}}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Moves(old, tc.new); got != tc.want {
				t.Errorf("Moves = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	nodes := []Node{{"a", "r1"}, {"b", "r1"}, {"c", "r2"}}
	for name, tc := range map[string]struct {
		m    Map
		want string
	}{
		"same rack":    {Map{Replicas: 2, Nodes: nodes, Shards: [][]string{{"a", "b"}}}, "two replicas in rack r1"},
		"unknown node": {Map{Replicas: 2, Nodes: nodes, Shards: [][]string{{"a", "x"}}}, "unknown node \"x\""},
		"short shard":  {Map{Replicas: 2, Nodes: nodes, Shards: [][]string{{"a"}}}, "shard 0 has 1 replicas, want 2"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tc.m.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
