package placement

import (
	"fmt"
	"math/rand/v2"
)

// nodeID makes a machine-like ID.
func nodeID(rng *rand.Rand) string { return fmt.Sprintf("m-%012x", rng.Uint64()>>16) }

// evenNodes makes n nodes over racks racks r1..rK, sizes differing by at
// most one, in shuffled order.
func evenNodes(rng *rand.Rand, racks, n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{ID: nodeID(rng), Rack: fmt.Sprintf("r%d", i%racks+1)}
	}
	rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes
}

// addEven adds one node to a rack with the fewest nodes (a random one of
// them), keeping the spread even.
func addEven(rng *rand.Rand, nodes []Node, racks int) []Node {
	count := map[string]int{}
	for i := 1; i <= racks; i++ {
		count[fmt.Sprintf("r%d", i)] = 0
	}
	for _, n := range nodes {
		count[n.Rack]++
	}
	least := len(nodes) + 1
	var cands []string
	for i := 1; i <= racks; i++ {
		r := fmt.Sprintf("r%d", i)
		switch {
		case count[r] < least:
			least, cands = count[r], []string{r}
		case count[r] == least:
			cands = append(cands, r)
		}
	}
	out := append([]Node(nil), nodes...)
	return append(out, Node{ID: nodeID(rng), Rack: cands[rng.IntN(len(cands))]})
}
