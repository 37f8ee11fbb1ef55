package netpolicy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
)

// MachineWatcher is a blocking query on the inventory's machines.
// *inventory.Store satisfies it.
type MachineWatcher interface {
	WatchMachines(ctx context.Context, index uint64, wait time.Duration, prev map[string]inventory.StoredMachine) ([]inventory.StoredMachine, uint64, error)
}

// Watcher follows the inventory with blocking queries and, on every change,
// replaces the elements of the sets that changed on each affected machine
// (one nft transaction per machine, rules untouched). It is the one
// process that pushes (`ironrack fw watch`); see docs/network-policy.md
// for why not one per machine.
type Watcher struct {
	Inventory MachineWatcher
	Policy    *Policy
	Firewall  *Firewall
	// Targets says which machines carry the firewall and get updates. If
	// nil, every machine with an address that has an apply record (when
	// Firewall.Records is set), or every machine with an address.
	Targets func(m *inventory.Machine) bool
	// Wait is the blocking query's longest wait. If 0, 5 minutes.
	Wait time.Duration
	// Parallel bounds concurrent pushes. If 0, 32.
	Parallel int
	// Logger logs; nil discards.
	Logger *slog.Logger
	// pushed is each machine's sets as last pushed.
	pushed map[string]map[string][]string
}

// Serve runs until ctx is done; it returns nil then.
func (w *Watcher) Serve(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := w.Wait
	if wait == 0 {
		wait = 5 * time.Minute
	}
	w.pushed = map[string]map[string][]string{}
	var index uint64
	var prev map[string]inventory.StoredMachine // the last answer: only changed records are decoded again
	retry := false
	for ctx.Err() == nil {
		wt := wait
		if retry {
			wt = 2 * time.Second // a failed push is tried again soon
		}
		got, next, err := w.Inventory.WatchMachines(ctx, index, wt, prev)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("watch machines", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if next < index {
			next = 0 // Consul's index went back (a restored snapshot): start over
		}
		if next == index && !retry {
			continue
		}
		index = next
		prev = make(map[string]inventory.StoredMachine, len(got))
		ms := make([]*inventory.Machine, 0, len(got))
		for _, sm := range got {
			prev[sm.Machine.ID] = sm
			ms = append(ms, sm.Machine)
		}
		inventory.SortMachines(ms)
		retry = w.sync(ctx, log, ms) > 0
	}
	return nil
}

// sync pushes the changed sets; it returns how many machines failed.
func (w *Watcher) sync(ctx context.Context, log *slog.Logger, ms []*inventory.Machine) int {
	c := Compile(w.Policy, ms)
	var mu sync.Mutex
	failed := 0
	g, gctx := errgroup.WithContext(ctx)
	par := w.Parallel
	if par == 0 {
		par = 32
	}
	g.SetLimit(par)
	target := w.Targets
	if target == nil {
		target = func(*inventory.Machine) bool { return true }
		if w.Firewall.Records != nil {
			applied, err := w.Firewall.Records.Applied(ctx)
			if err != nil {
				log.Warn("list applied machines", "err", err)
				return 1
			}
			target = func(m *inventory.Machine) bool { return applied[m.ID] }
		}
	}
	for _, m := range ms {
		if m.IP == "" || !target(m) {
			continue
		}
		sets := c.SetsFor(m)
		mu.Lock()
		prev := w.pushed[m.ID]
		mu.Unlock()
		var changed []Set
		for _, s := range sets {
			if old, ok := prev[s.Name]; !ok || !slices.Equal(old, s.Elements) {
				changed = append(changed, s)
			}
		}
		if len(changed) == 0 {
			continue
		}
		g.Go(func() error {
			start := time.Now()
			var err error
			if prev != nil {
				// Only what changed: add and delete element.
				var delta strings.Builder
				for _, s := range changed {
					delta.WriteString(SetDelta(s.Name, prev[s.Name], s.Elements))
				}
				err = w.Firewall.nftInput(gctx, m, "update sets", delta.String())
			}
			if prev == nil || err != nil {
				// First push, or the host's sets are not as last pushed:
				// flush and fill every set.
				err = w.Firewall.UpdateSets(gctx, m, sets)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				delete(w.pushed, m.ID)
				log.Warn("update sets (run fw apply if the machine has no ironrack table, or its rules changed)", "machine", m.ID, "err", err)
				return nil
			}
			now := map[string][]string{}
			for _, s := range sets {
				now[s.Name] = s.Elements
			}
			w.pushed[m.ID] = now
			log.Info("sets updated", "machine", m.ID, "sets", len(changed), "took", time.Since(start))
			return nil
		})
	}
	_ = g.Wait()
	return failed
}
