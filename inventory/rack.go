package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Rack is what the inventory knows of a rack beyond its machines: its
// height. A rack exists when a machine names it; its record is optional.
type Rack struct {
	Name string `json:"name"`
	// Height is the rack's height in rack units. If 0, DefaultRackHeight.
	Height int `json:"height"`
}

// DefaultRackHeight is a rack's height when none is set.
const DefaultRackHeight = 42

// MaxRackHeight bounds rack and machine heights.
const MaxRackHeight = 60

// Units is the rack's height, DefaultRackHeight when unset.
func (r Rack) Units() int {
	if r.Height <= 0 {
		return DefaultRackHeight
	}
	return r.Height
}

func (s *Store) rackKey(name string) string { return s.key("racks", name) }

// SetRack stores a rack's record (its height, 1 to MaxRackHeight).
func (s *Store) SetRack(ctx context.Context, r Rack) error {
	switch {
	case r.Name == "" || len(r.Name) > maxField || !plainRE.MatchString(r.Name) || strings.Contains(r.Name, "/"):
		return fmt.Errorf("rack %q: malformed name (letters, digits and _.:- )", r.Name)
	case r.Height < 1 || r.Height > MaxRackHeight:
		return fmt.Errorf("rack %s: height %d out of range (1-%d units)", r.Name, r.Height, MaxRackHeight)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.c.KV().Put(&api.KVPair{Key: s.rackKey(r.Name), Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("store rack %s: %w", r.Name, err)
	}
	return nil
}

// Racks returns every stored rack record, by name. Racks that machines
// name but that have no record are not listed: their height is the default.
func (s *Store) Racks(ctx context.Context) ([]Rack, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kvs, _, err := s.c.KV().List(s.key("racks")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read racks: %w", err)
	}
	out := make([]Rack, 0, len(kvs))
	for _, kv := range kvs {
		var r Rack
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("rack %s: corrupt record: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
