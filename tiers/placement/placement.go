// Package placement computes where the storage tier's shards live: a
// rack-aware shard → node map with replication factor R, every shard's R
// replicas on R different racks, kept balanced, and changed with as few
// replica moves as possible when nodes come and go. It also stores the map
// in Consul KV (Store, key <prefix>/shards/<tier>).
//
// A map is computed from the previous one (Rebalance; Place starts from
// nothing), so it is deterministic for a given (previous map, node set):
//
//  1. Replicas on nodes that are still there stay put.
//  2. Every node gets a target load: R·S replicas spread over the nodes in
//     proportion, except that a rack holds at most S (one replica of each
//     shard), with the remainder going to the nodes that already hold most.
//  3. Missing replicas (a new map, or a removed node's) go, shard by shard,
//     to the allowed node furthest below its target; ties go to the node
//     with the highest rendezvous score hash(shard, node).
//  4. A node still below its target takes replicas from nodes above theirs,
//     preferring the shards whose rendezvous score for it is highest, and
//     only where the shard's racks stay distinct.
//
// So adding a node moves about its fair share, R·S/(N+1) replicas, all onto
// the new node, and removing a node moves the replicas it held; the
// property tests bound both.
//
// The package knows nothing about machines beyond their ID and rack.
package placement

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ironrack/ironrack/internal/hrw"
)

// Node is one machine that can hold shard replicas.
type Node struct {
	ID   string `json:"id"`
	Rack string `json:"rack"`
}

// Map is a shard → node map. Its JSON form is stable: nodes sorted by ID,
// each shard's replicas in rank order (best first).
type Map struct {
	// Replicas is the replication factor R.
	Replicas int `json:"replicas"`
	// Nodes are the nodes placed over, sorted by ID.
	Nodes []Node `json:"nodes"`
	// Shards[i] are the IDs of the nodes holding shard i.
	Shards [][]string `json:"shards"`
}

// Limits on a map's size, so one Consul value (512 KB) holds it.
const (
	MaxShards   = 4096
	MaxReplicas = 16
)

// score is the rendezvous weight of a node for a shard (internal/hrw).
func score(shard int, id string) uint64 { return hrw.Score(strconv.Itoa(shard), id) }

// Place places shards shards with replicas replicas each over nodes,
// starting from nothing. It fails, naming the shortfall, when the nodes span
// fewer racks than replicas; a node without a rack, a duplicate node ID or a
// count out of range is an error too. The result does not depend on the
// order of nodes.
func Place(shards, replicas int, nodes []Node) (Map, error) {
	if shards < 1 || shards > MaxShards {
		return Map{}, fmt.Errorf("placement: shard count %d out of range 1..%d", shards, MaxShards)
	}
	if replicas < 1 || replicas > MaxReplicas {
		return Map{}, fmt.Errorf("placement: replication factor %d out of range 1..%d", replicas, MaxReplicas)
	}
	return Rebalance(Map{Replicas: replicas, Shards: make([][]string, shards)}, nodes)
}

// Rebalance moves old's shards (same count, same replication factor) onto
// nodes with as few moves as balance allows: replicas on remaining nodes
// stay unless a node below its target takes them over. Errors are Place's.
func Rebalance(old Map, nodes []Node) (Map, error) {
	S, R := len(old.Shards), old.Replicas
	if S < 1 || S > MaxShards {
		return Map{}, fmt.Errorf("placement: shard count %d out of range 1..%d", S, MaxShards)
	}
	if R < 1 || R > MaxReplicas {
		return Map{}, fmt.Errorf("placement: replication factor %d out of range 1..%d", R, MaxReplicas)
	}
	sorted, racks, err := checkNodes(nodes)
	if err != nil {
		return Map{}, err
	}
	if len(racks) < R {
		return Map{}, &RackShortfallError{Replicas: R, Racks: racks}
	}
	rackOf := make(map[string]string, len(sorted))
	for _, n := range sorted {
		rackOf[n.ID] = n.Rack
	}
	p := &placer{S: S, R: R, nodes: sorted, rackOf: rackOf, load: make(map[string]int, len(sorted)),
		shards: make([][]string, S)}
	// 1. Keep replicas on nodes still present (one per rack).
	for s := range S {
		var ids []string
		if s < len(old.Shards) {
			ids = old.Shards[s]
		}
		kept := make([]string, 0, R)
		for _, id := range ids {
			rack, ok := rackOf[id]
			if !ok || len(kept) == R || p.hasRack(kept, rack) || contains(kept, id) {
				continue
			}
			kept = append(kept, id)
			p.load[id]++
		}
		p.shards[s] = kept
	}
	// 2. Targets.
	p.target = targets(sorted, racks, S, R, p.load)
	// 3. Fill missing replicas.
	for s := range S {
		for len(p.shards[s]) < R {
			p.fill(s)
		}
	}
	// 4. New nodes, and old ones far below target (by two replicas and a
	// quarter), take over replicas from nodes above theirs.
	was := make(map[string]bool, len(old.Nodes))
	for _, n := range old.Nodes {
		was[n.ID] = true
	}
	p.level(func(id string) bool {
		t := p.target[id]
		d := t - p.load[id]
		return !was[id] || d >= 2 && 4*d > t
	})
	return Map{Replicas: R, Nodes: sorted, Shards: p.shards}, nil
}

// placer is the working state of one Rebalance.
type placer struct {
	S, R   int
	nodes  []Node
	rackOf map[string]string
	load   map[string]int
	target map[string]int
	shards [][]string
}

func (p *placer) hasRack(ids []string, rack string) bool {
	for _, id := range ids {
		if p.rackOf[id] == rack {
			return true
		}
	}
	return false
}

// fill adds one replica of shard s on the allowed node furthest below its
// target, ties by rendezvous score. A node is allowed when the shard has no
// replica in its rack; with at least R racks one always is.
func (p *placer) fill(s int) {
	best, bestDef, bestScore, scored := "", 0, uint64(0), false
	for _, n := range p.nodes {
		def := p.target[n.ID] - p.load[n.ID]
		if best != "" && def < bestDef || p.hasRack(p.shards[s], n.Rack) {
			continue
		}
		if best == "" || def > bestDef {
			best, bestDef, scored = n.ID, def, false
			continue
		}
		// A tie: the rendezvous score decides (computed only for ties).
		if !scored {
			bestScore, scored = score(s, best), true
		}
		if sc := score(s, n.ID); sc > bestScore {
			best, bestScore = n.ID, sc
		}
	}
	p.shards[s] = append(p.shards[s], best)
	p.load[best]++
}

// level lets each node below its target take replicas from nodes above
// theirs: the receiver walks shards by its rendezvous score, best first,
// and takes a replica where the shard's racks stay distinct. Every take
// lowers the total distance from the targets by two, so it ends.
func (p *placer) level(receives func(id string) bool) {
	for {
		var under []string
		for _, n := range p.nodes {
			if p.load[n.ID] < p.target[n.ID] && receives(n.ID) {
				under = append(under, n.ID)
			}
		}
		if len(under) == 0 {
			return
		}
		sort.SliceStable(under, func(i, j int) bool {
			return p.target[under[i]]-p.load[under[i]] > p.target[under[j]]-p.load[under[j]]
		})
		progress := false
		for _, u := range under {
			if p.take(u) {
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

// take moves replicas onto u until it reaches its target or nothing
// allowed is left; it reports whether it moved any.
func (p *placer) take(u string) bool {
	order := make([]int, p.S)
	scores := make([]uint64, p.S)
	for s := range p.S {
		order[s], scores[s] = s, score(s, u)
	}
	sort.Slice(order, func(i, j int) bool { return scores[order[i]] > scores[order[j]] })
	moved := false
	rack := p.rackOf[u]
	for _, s := range order {
		if p.load[u] >= p.target[u] {
			break
		}
		ids := p.shards[s]
		if contains(ids, u) {
			continue
		}
		// The donor: the replica in u's rack if there is one (the shard
		// may not gain a second replica there), else the one furthest
		// above its target.
		donor := -1
		for i, id := range ids {
			if p.rackOf[id] == rack {
				donor = i
				break
			}
		}
		if donor < 0 {
			bestEx := 0
			for i, id := range ids {
				if ex := p.load[id] - p.target[id]; ex > bestEx {
					donor, bestEx = i, ex
				}
			}
		}
		if donor < 0 || p.load[ids[donor]] <= p.target[ids[donor]] {
			continue
		}
		p.load[ids[donor]]--
		p.load[u]++
		ids[donor] = u
		moved = true
	}
	return moved
}

// targets gives each node its share of the R·S replicas: racks get shares
// in proportion to their node count, but at most S each (water-filling),
// rounded by largest remainder; within a rack, nodes split its share
// evenly, the odd replicas going to the nodes that hold most already (so a
// balanced map stays put), then by ID.
func targets(nodes []Node, racks []string, S, R int, load map[string]int) map[string]int {
	size := map[string]int{}
	rackLoad := map[string]int{}
	members := map[string][]string{}
	for _, n := range nodes {
		size[n.Rack]++
		rackLoad[n.Rack] += load[n.ID]
		members[n.Rack] = append(members[n.Rack], n.ID)
	}
	quota := map[string]int{}
	remaining := R * S
	open := append([]string(nil), racks...)
	var lambda float64
	for {
		total := 0
		for _, r := range open {
			total += size[r]
		}
		lambda = float64(remaining) / float64(total)
		var still []string
		for _, r := range open {
			if lambda*float64(size[r]) >= float64(S) {
				quota[r] = S
				remaining -= S
			} else {
				still = append(still, r)
			}
		}
		if len(still) == len(open) || len(still) == 0 {
			break
		}
		open = still
	}
	type frac struct {
		rack string
		f    float64
	}
	var fr []frac
	for _, r := range open {
		if _, capped := quota[r]; capped {
			continue
		}
		x := lambda * float64(size[r])
		q := int(x)
		quota[r] = q
		remaining -= q
		fr = append(fr, frac{r, x - float64(q)})
	}
	sort.Slice(fr, func(i, j int) bool {
		if fr[i].f != fr[j].f {
			return fr[i].f > fr[j].f
		}
		if rackLoad[fr[i].rack] != rackLoad[fr[j].rack] {
			return rackLoad[fr[i].rack] > rackLoad[fr[j].rack]
		}
		return fr[i].rack < fr[j].rack
	})
	for i := 0; remaining > 0 && len(fr) > 0; i = (i + 1) % len(fr) {
		if quota[fr[i].rack] < S {
			quota[fr[i].rack]++
			remaining--
		}
	}
	t := make(map[string]int, len(nodes))
	for _, r := range racks {
		ids := append([]string(nil), members[r]...)
		sort.SliceStable(ids, func(i, j int) bool { return load[ids[i]] > load[ids[j]] })
		base, extra := quota[r]/len(ids), quota[r]%len(ids)
		for i, id := range ids {
			t[id] = base
			if i < extra {
				t[id]++
			}
		}
	}
	return t
}

// checkNodes validates nodes and returns them sorted by ID, with the racks
// they span in name order.
func checkNodes(nodes []Node) ([]Node, []string, error) {
	sorted := append([]Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var racks []string
	seenRack := map[string]bool{}
	for i, n := range sorted {
		if strings.TrimSpace(n.ID) == "" {
			return nil, nil, errors.New("placement: a node has no ID")
		}
		if strings.TrimSpace(n.Rack) == "" {
			return nil, nil, fmt.Errorf("placement: node %s has no rack (replicas are spread by rack)", n.ID)
		}
		if i > 0 && sorted[i-1].ID == n.ID {
			return nil, nil, fmt.Errorf("placement: node %s listed twice", n.ID)
		}
		if !seenRack[n.Rack] {
			seenRack[n.Rack] = true
			racks = append(racks, n.Rack)
		}
	}
	sort.Strings(racks)
	return sorted, racks, nil
}

// RackShortfallError: the nodes span fewer racks than the replication
// factor needs.
type RackShortfallError struct {
	Replicas int
	// Racks are the racks the nodes span.
	Racks []string
}

func (e *RackShortfallError) Error() string {
	have := "none"
	if len(e.Racks) > 0 {
		have = strings.Join(e.Racks, ", ")
	}
	return fmt.Sprintf("placement: replication factor %d needs nodes in %d racks, they span %d (%s): %d rack(s) short",
		e.Replicas, e.Replicas, len(e.Racks), have, e.Replicas-len(e.Racks))
}

// Moves counts the replicas that change node from old to new: for each
// shard of new, the nodes holding it in new that did not hold it in old. A
// shard that old lacks counts all its replicas.
func Moves(old, new Map) int {
	moves := 0
	for s, ids := range new.Shards {
		var before []string
		if s < len(old.Shards) {
			before = old.Shards[s]
		}
		for _, id := range ids {
			if !contains(before, id) {
				moves++
			}
		}
	}
	return moves
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Load returns how many replicas each node holds (every node of the map,
// zero included).
func (m Map) Load() map[string]int {
	load := make(map[string]int, len(m.Nodes))
	for _, n := range m.Nodes {
		load[n.ID] = 0
	}
	for _, ids := range m.Shards {
		for _, id := range ids {
			load[id]++
		}
	}
	return load
}

// Validate checks a map read from outside: every shard has Replicas
// replicas on known nodes in distinct racks.
func (m Map) Validate() error {
	if m.Replicas < 1 || m.Replicas > MaxReplicas {
		return fmt.Errorf("replication factor %d out of range 1..%d", m.Replicas, MaxReplicas)
	}
	if len(m.Shards) < 1 || len(m.Shards) > MaxShards {
		return fmt.Errorf("shard count %d out of range 1..%d", len(m.Shards), MaxShards)
	}
	_, _, err := checkNodes(m.Nodes)
	if err != nil {
		return err
	}
	rack := make(map[string]string, len(m.Nodes))
	for _, n := range m.Nodes {
		rack[n.ID] = n.Rack
	}
	for s, ids := range m.Shards {
		if len(ids) != m.Replicas {
			return fmt.Errorf("shard %d has %d replicas, want %d", s, len(ids), m.Replicas)
		}
		used := map[string]string{}
		for _, id := range ids {
			r, ok := rack[id]
			if !ok {
				return fmt.Errorf("shard %d is on unknown node %q", s, id)
			}
			if other, dup := used[r]; dup {
				return fmt.Errorf("shard %d has two replicas in rack %s (%s and %s)", s, r, other, id)
			}
			used[r] = id
		}
	}
	return nil
}
