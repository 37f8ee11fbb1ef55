package ui

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"runtime"
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
	envs  map[*inventory.Machine]inventory.Env
	index uint64
	ready chan struct{} // closed after the first load

	subMu sync.Mutex
	subs  map[*subscriber]struct{}
}

// subscriber is one live stream's queue: the machines changed since it
// last took them (latest version of each; a slow stream misses no machine,
// it gets the newest state of each), and a wake-up.
type subscriber struct {
	mu      sync.Mutex
	pending map[string]*inventory.Machine
	wake    chan struct{}
}

// take returns the pending machines and clears them.
func (s *subscriber) take() []*inventory.Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*inventory.Machine, 0, len(s.pending))
	for _, m := range s.pending {
		out = append(out, m)
	}
	clear(s.pending)
	return out
}

func newCache(s *inventory.Store, wait time.Duration, log *slog.Logger) *cache {
	return &cache{store: s, wait: wait, log: log, byID: map[string]inventory.StoredMachine{}, envs: map[*inventory.Machine]inventory.Env{},
		ready: make(chan struct{}), subs: map[*subscriber]struct{}{}}
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
		// Coalesce bursts (a bulk deploy changes machines many times a
		// second, and each answer is every record): at most four answers
		// a second, well within the 2 s a change may take to show.
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// apply installs a new answer and tells subscribers what changed.
func (c *cache) apply(got []inventory.StoredMachine) {
	byID := make(map[string]inventory.StoredMachine, len(got))
	list := make([]*inventory.Machine, len(got))
	var changed []*inventory.Machine
	c.mu.RLock()
	old, oldEnvs := c.byID, c.envs
	c.mu.RUnlock()
	envs := make(map[*inventory.Machine]inventory.Env, len(got))
	for i, sm := range got {
		byID[sm.Machine.ID] = sm
		list[i] = sm.Machine
		if p, ok := old[sm.Machine.ID]; !ok || p.Index != sm.Index {
			changed = append(changed, sm.Machine)
		}
		e, ok := oldEnvs[sm.Machine]
		if !ok {
			e = inventory.NewEnv(sm.Machine)
		}
		envs[sm.Machine] = e
	}
	inventory.SortMachines(list)
	c.mu.Lock()
	first := c.index == 0 && len(c.byID) == 0
	c.byID, c.list, c.envs = byID, list, envs
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
	for sub := range c.subs {
		sub.mu.Lock()
		for _, m := range changed {
			sub.pending[m.ID] = m
		}
		sub.mu.Unlock()
		select {
		case sub.wake <- struct{}{}:
		default: // already woken
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

// filter returns the machines w selects (nil: all), sorted. Each machine's
// where-environment is built once per version (apply), the list is cut
// into one chunk per CPU evaluated in parallel, and a machine that fails
// the expression's plain equalities (Prefilter) is not evaluated.
func (c *cache) filter(w *inventory.Where) ([]*inventory.Machine, error) {
	c.mu.RLock()
	all, envs := c.list, c.envs
	c.mu.RUnlock()
	if w == nil || w.String() == "" {
		return all, nil
	}
	parts := max(1, min(runtime.GOMAXPROCS(0), len(all)/512))
	hits := make([][]*inventory.Machine, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(all)/parts, (p+1)*len(all)/parts
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range all[lo:hi] {
				if !w.Prefilter(m) {
					continue
				}
				ok, err := w.MatchEnv(envs[m])
				if err != nil {
					errs[p] = err
					return
				}
				if ok {
					hits[p] = append(hits[p], m)
				}
			}
		}()
	}
	wg.Wait()
	var out []*inventory.Machine
	for p := range parts {
		if errs[p] != nil {
			return nil, errs[p]
		}
		out = append(out, hits[p]...)
	}
	return out, nil
}

// subscribe returns a queue of changed machines and its cancel.
func (c *cache) subscribe() (*subscriber, func()) {
	sub := &subscriber{pending: map[string]*inventory.Machine{}, wake: make(chan struct{}, 1)}
	c.subMu.Lock()
	c.subs[sub] = struct{}{}
	c.subMu.Unlock()
	return sub, func() {
		c.subMu.Lock()
		delete(c.subs, sub)
		c.subMu.Unlock()
	}
}
