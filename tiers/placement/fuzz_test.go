package placement

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRebalance feeds Rebalance arbitrary previous maps (as read from
// Consul, before or without validation) and node lists: it never panics,
// and whatever it returns without error is a valid map of the same shape.
func FuzzRebalance(f *testing.F) {
	f.Add([]byte(`{"replicas":2,"nodes":[{"id":"a","rack":"r1"},{"id":"b","rack":"r2"}],"shards":[["a","b"],["b","a"]]}`), "a r1\nb r2\nc r3")
	f.Add([]byte(`{"replicas":2,"shards":[["a","a"],["x"],[]]}`), "a r1\nb r1\nc r2")
	f.Add([]byte(`{"replicas":3,"shards":[[],[],[],[]]}`), "a r1\nb r2")
	f.Fuzz(func(t *testing.T, data []byte, spec string) {
		var old Map
		if json.Unmarshal(data, &old) != nil || len(old.Shards) > 64 || old.Replicas > 8 {
			return
		}
		var nodes []Node
		for _, line := range strings.Split(spec, "\n") {
			id, rack, _ := strings.Cut(line, " ")
			nodes = append(nodes, Node{ID: id, Rack: rack})
			if len(nodes) > 32 {
				return
			}
		}
		m, err := Rebalance(old, nodes)
		if err != nil {
			return
		}
		if len(m.Shards) != len(old.Shards) || m.Replicas != old.Replicas {
			t.Fatalf("shape changed: %d×%d → %d×%d", len(old.Shards), old.Replicas, len(m.Shards), m.Replicas)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("invalid result: %v", err)
		}
	})
}
