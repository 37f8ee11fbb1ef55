package ui

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// cache holds every machine, fed by a Consul blocking query over the
// machine records, so pages and filters never wait on Consul. Subscribers
// (the live event streams) get the machines that changed.
type cache struct {
	store *inventory.Store
	wait  time.Duration
	log   *slog.Logger

	mu    sync.RWMutex
	byID  map[string]inventory.StoredMachine
	list  []*inventory.Machine // sorted by rack, slot, ID
	index uint64
	ready chan struct{} // closed after the first load

	subMu sync.Mutex
	subs  map[chan []*inventory.Machine]struct{}
}

func newCache(s *inventory.Store, wait time.Duration, log *slog.Logger) *cache {
	return &cache{store: s, wait: wait, log: log, byID: map[string]inventory.StoredMachine{},
		ready: make(chan struct{}), subs: map[chan []*inventory.Machine]struct{}{}}
}

// run follows the machine records until ctx is done. A failed query is
// retried after a jittered pause that grows to 10s.
func (c *cache) run(ctx context.Context) error {
	pause := 100 * time.Millisecond
	var index uint64
	for ctx.Err() == nil {
		c.mu.RLock()
		prev := c.byID
		c.mu.RUnlock()
		got, next, err := c.store.WatchMachines(ctx, index, c.wait, prev)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.log.Warn("ui cache: watch machines", "err", err)
			d := pause/2 + rand.N(pause)
			pause = min(2*pause, 10*time.Second)
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
			continue
		}
		pause = 100 * time.Millisecond
		if next < index {
			next = 0 // Consul's index went backwards (a restore): start over
		}
		if next == index && index != 0 {
			continue // the wait timed out with no change
		}
		index = next
		c.apply(got)
	}
	return nil
}

// apply installs a new answer and tells subscribers what changed.
func (c *cache) apply(got []inventory.StoredMachine) {
	byID := make(map[string]inventory.StoredMachine, len(got))
	list := make([]*inventory.Machine, len(got))
	var changed []*inventory.Machine
	c.mu.RLock()
	old := c.byID
	c.mu.RUnlock()
	for i, sm := range got {
		byID[sm.Machine.ID] = sm
		list[i] = sm.Machine
		if p, ok := old[sm.Machine.ID]; !ok || p.Index != sm.Index {
			changed = append(changed, sm.Machine)
		}
	}
	inventory.SortMachines(list)
	c.mu.Lock()
	first := c.index == 0 && len(c.byID) == 0
	c.byID, c.list = byID, list
	c.index++
	c.mu.Unlock()
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	if first || len(changed) == 0 {
		return
	}
	c.subMu.Lock()
	for ch := range c.subs {
		select {
		case ch <- changed:
		default: // a slow stream misses this batch; it reloads on its next
		}
	}
	c.subMu.Unlock()
}

// waitReady waits for the first load (or ctx).
func (c *cache) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// machines is the current list, sorted; callers must not modify it.
func (c *cache) machines() []*inventory.Machine {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.list
}

// get returns one machine, or nil.
func (c *cache) get(id string) *inventory.Machine {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id].Machine
}

// filter returns the machines w selects (nil: all), sorted.
func (c *cache) filter(w *inventory.Where) ([]*inventory.Machine, error) {
	all := c.machines()
	if w == nil || w.String() == "" {
		return all, nil
	}
	out := make([]*inventory.Machine, 0, 64)
	for _, m := range all {
		ok, err := w.Match(m)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// subscribe returns a channel of changed machines and its cancel.
func (c *cache) subscribe() (<-chan []*inventory.Machine, func()) {
	ch := make(chan []*inventory.Machine, 16)
	c.subMu.Lock()
	c.subs[ch] = struct{}{}
	c.subMu.Unlock()
	return ch, func() {
		c.subMu.Lock()
		delete(c.subs, ch)
		c.subMu.Unlock()
	}
}
