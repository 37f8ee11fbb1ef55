package ui

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"golang.org/x/sync/errgroup"
)

// tierLog follows every machine's history for the moments it joined or
// left a tier (HistoryEntry.FromTier/Tier), so the tiers page can draw each
// tier's size over time. It reads each machine's history once at start,
// then again for each machine the cache reports changed.
type tierLog struct {
	store *inventory.Store
	cache *cache

	mu     sync.Mutex
	events map[string][]tierEvent // by machine ID
	read   int                    // machines read at least once
}

// tierEvent is one machine joining (+1) or leaving (-1) a tier.
type tierEvent struct {
	At    time.Time
	Tier  string
	Delta int
}

// tierPoint is a tier's size from At on.
type tierPoint struct {
	At   time.Time
	Size int
}

// eventsOf reads a machine's tier moves from its history. A machine in a
// tier whose history has no tier move (written before history recorded
// tiers) is taken to have joined at its last claim (→ allocated).
func eventsOf(m *inventory.Machine, h []inventory.HistoryEntry) []tierEvent {
	var out []tierEvent
	var claim time.Time
	for _, e := range h {
		if e.FromTier != "" {
			out = append(out, tierEvent{At: e.At, Tier: e.FromTier, Delta: -1})
		}
		if e.Tier != "" {
			out = append(out, tierEvent{At: e.At, Tier: e.Tier, Delta: +1})
		}
		if e.To == inventory.StateAllocated {
			claim = e.At
		}
	}
	if len(out) == 0 && m.Tier != "" {
		at := claim
		if at.IsZero() {
			at = m.CreatedAt
		}
		out = append(out, tierEvent{At: at, Tier: m.Tier, Delta: +1})
	}
	return out
}

// run reads histories until ctx is done: every machine first, then the
// changed ones, four at a time.
func (l *tierLog) run(ctx context.Context) error {
	sub, cancel := l.cache.subscribe()
	defer cancel()
	if err := l.cache.waitReady(ctx); err != nil {
		return nil
	}
	l.readAll(ctx, l.cache.machines(), true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.wake:
			l.readAll(ctx, sub.take(), false)
		}
	}
}

func (l *tierLog) readAll(ctx context.Context, ms []*inventory.Machine, first bool) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, m := range ms {
		g.Go(func() error {
			h, err := l.store.History(gctx, m.ID)
			if err != nil {
				l.cache.log.Debug("ui tier log: history", "machine", m.ID, "err", err)
				return nil // read again at its next change
			}
			ev := eventsOf(m, h)
			l.mu.Lock()
			l.events[m.ID] = ev
			if first {
				l.read++
			}
			l.mu.Unlock()
			return nil
		})
	}
	g.Wait()
}

// series returns each tier's size over time, and how many machines'
// histories have been read so far.
func (l *tierLog) series() (map[string][]tierPoint, int) {
	l.mu.Lock()
	var all []tierEvent
	for _, ev := range l.events {
		all = append(all, ev...)
	}
	read := l.read
	l.mu.Unlock()
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	out := map[string][]tierPoint{}
	size := map[string]int{}
	for _, e := range all {
		size[e.Tier] += e.Delta
		pts := out[e.Tier]
		if n := len(pts); n > 0 && pts[n-1].At.Equal(e.At) {
			pts[n-1].Size = size[e.Tier]
		} else {
			pts = append(pts, tierPoint{At: e.At, Size: size[e.Tier]})
		}
		out[e.Tier] = pts
	}
	return out, read
}
