package bootserver

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// macWait is how long one blocking read of the MAC index waits for a
// change; macSettle is the least time between two reads, so a burst of
// enlistments costs a few reads, not one each.
const (
	macWait   = 5 * time.Minute
	macSettle = 250 * time.Millisecond
)

// macReplica is the boot server's copy of the inventory's MAC index (which
// MACs belong to machines), kept in step by blocking queries. A DHCP
// request from a MAC no machine has is then answered without reading
// Consul at all; most of a busy segment's clients are such. A MAC a
// machine gains is seen within milliseconds (macSettle at most); until then
// its client is served as a plain one, and its machine's ip is recorded at
// the next renewal. Until the first read, and after a failed one, the
// replica knows nothing and every lookup reads Consul as before.
type macReplica struct {
	store *inventory.Store
	log   *slog.Logger

	mu     sync.RWMutex
	synced bool
	macs   map[string]struct{}
	// added holds the MACs this server enlisted lately, until when they
	// count as owned whatever a read that started earlier says.
	added map[string]time.Time
}

// addedFor is how long an enlisted MAC counts as owned without the index.
const addedFor = 10 * time.Second

// owned reports whether mac belongs to a machine, and whether the replica
// can tell.
func (r *macReplica) owned(mac string) (owned, known bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.synced {
		return false, false
	}
	if _, ok := r.macs[mac]; ok {
		return true, true
	}
	until, ok := r.added[mac]
	return ok && time.Now().Before(until), true
}

// add records a MAC this server just enlisted, ahead of the next read.
func (r *macReplica) add(mac string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.added == nil || len(r.added) > 4096 {
		for m, until := range r.added {
			if now.After(until) {
				delete(r.added, m)
			}
		}
		if r.added == nil {
			r.added = map[string]time.Time{}
		}
	}
	r.added[mac] = now.Add(addedFor)
}

// Serve keeps the replica in step until ctx is done. Consul being away is
// not fatal to the boot server: the replica forgets what it knew (lookups
// fall back to reading Consul) and retries with a growing pause.
func (r *macReplica) Serve(ctx context.Context) error {
	var index uint64
	pause := time.Second
	for {
		macs, next, err := r.store.MACs(ctx, index, macWait)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.mu.Lock()
			r.synced, r.macs = false, nil
			r.mu.Unlock()
			r.log.Warn("bootserver: MAC index replica: read failed; DHCP lookups read Consul until it recovers", "err", err, "retry_in", pause)
			index = 0
			if !sleepCtx(ctx, pause) {
				return nil
			}
			pause = min(2*pause, 30*time.Second)
			continue
		}
		pause = time.Second
		set := make(map[string]struct{}, len(macs))
		for _, m := range macs {
			set[m] = struct{}{}
		}
		r.mu.Lock()
		r.synced, r.macs = true, set
		r.mu.Unlock()
		if next < index {
			next = 0 // the index went backwards (a restored snapshot): read afresh
		}
		index = next
		if !sleepCtx(ctx, macSettle) {
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
