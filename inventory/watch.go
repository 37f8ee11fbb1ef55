package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// WatchMachines is a blocking query on every machine record: it returns
// the machines (sorted as List sorts them) once their records change after
// index, or after wait (at most Consul's 10 minutes) with no change, and
// the index to pass next. Index 0 answers at once. The firewall watcher
// (playbooks/netpolicy) follows membership with it.
func (s *Store) WatchMachines(ctx context.Context, index uint64, wait time.Duration) ([]*Machine, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+s.cfg.OpTimeout)
	defer cancel()
	kvs, meta, err := s.c.KV().List(s.key("machines")+"/", (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return nil, index, fmt.Errorf("watch machines: %w", err)
	}
	out := make([]*Machine, 0, len(kvs))
	for _, kv := range kvs {
		r, err := decodeRecord(kv.Value)
		if err != nil {
			return nil, index, fmt.Errorf("watch machines: %s: %w", kv.Key, err)
		}
		out = append(out, &r.Machine)
	}
	SortMachines(out)
	return out, meta.LastIndex, nil
}
