package bootserver

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// batchTimeout bounds one group call to the inventory.
const batchTimeout = 10 * time.Second

// batcher groups the inventory calls of concurrent DHCP requests: a caller
// that finds no call in flight makes one call for everything queued so far
// (up to inventory.MaxLeaseBatch items); callers that arrive meanwhile
// queue and wait, and when the call returns the oldest of them leads the
// next one. Each caller returns only with its own item's result, so an ACK
// still follows its own durable lease. No goroutine is started: the
// callers take turns.
type batcher[In, Out any] struct {
	call func(ctx context.Context, in []In) []Out
	// inFlight bounds the calls made at once. If 0, 1. More than one lets
	// Consul's Raft put several transactions into one log write.
	inFlight int
	// maxWait, with stale, sheds load: a caller whose request could not
	// be answered within maxWait of its arrival (by dhcp.Received, else
	// since it queued here) gets stale()'s result and is left out of the
	// call: its age when a batch is made plus the last call's duration
	// is over maxWait. Past saturation the queue then holds only work
	// that is still answered in time, instead of everything late. If 0,
	// nothing is shed.
	maxWait  time.Duration
	stale    func() Out
	lastCall atomic.Int64 // the last call's duration, ns
	mu       sync.Mutex
	queue    []*pending[In, Out]
	busy     int
}

type pending[In, Out any] struct {
	in     In
	queued time.Time
	// done receives {lead: true} when this caller is to lead the next
	// call, and then (or at once) its own result.
	done chan outcome[Out]
}

type outcome[Out any] struct {
	out  Out
	lead bool
}

func (b *batcher[In, Out]) do(ctx context.Context, in In) Out {
	p := &pending[In, Out]{in: in, queued: time.Now(), done: make(chan outcome[Out], 1)}
	if t, ok := dhcp.Received(ctx); ok {
		p.queued = t
	}
	b.mu.Lock()
	if b.busy < max(b.inFlight, 1) {
		b.busy++
		b.mu.Unlock()
	} else {
		b.queue = append(b.queue, p)
		b.mu.Unlock()
		// No ctx case here: a waiter that left could be the one promoted
		// to lead, and the queue would stall. The wait is bounded by the
		// leaders' batchTimeout.
		o := <-p.done
		if !o.lead {
			return o.out
		}
	}
	b.lead(ctx, p)
	return (<-p.done).out
}

// lead makes one call for own (which is in no queue) and what is queued,
// hands out the results and promotes the oldest waiter left, if any, to
// lead the next call. A waiter is in the queue, or promoted, or in exactly
// one batch, so it gets exactly one message.
func (b *batcher[In, Out]) lead(ctx context.Context, own *pending[In, Out]) {
	var batch []*pending[In, Out]
	now := time.Now()
	est := time.Duration(b.lastCall.Load())
	take := func(p *pending[In, Out]) {
		if b.maxWait > 0 && b.stale != nil && now.Sub(p.queued)+est > b.maxWait {
			p.done <- outcome[Out]{out: b.stale()} // shed: it waited too long
			return
		}
		batch = append(batch, p)
	}
	take(own)
	b.mu.Lock()
	n := 0
	for n < len(b.queue) && len(batch) < inventory.MaxLeaseBatch {
		take(b.queue[n])
		n++
	}
	b.queue = b.queue[n:]
	b.mu.Unlock()
	if len(batch) > 0 {
		b.call1(ctx, batch)
	}

	b.mu.Lock()
	if len(b.queue) == 0 {
		b.busy--
		b.mu.Unlock()
		return
	}
	next := b.queue[0]
	b.queue = b.queue[1:]
	b.mu.Unlock()
	next.done <- outcome[Out]{lead: true}
}

// call1 makes one call for batch and hands out the results.
func (b *batcher[In, Out]) call1(ctx context.Context, batch []*pending[In, Out]) {
	in := make([]In, len(batch))
	for i, p := range batch {
		in[i] = p.in
	}
	// The call serves every caller in the batch: the leader's own
	// cancellation must not fail the others.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	start := time.Now()
	out := b.call(cctx, in)
	b.lastCall.Store(int64(time.Since(start)))
	cancel()
	for i, p := range batch {
		p.done <- outcome[Out]{out: out[i]}
	}
}

// reservationTTL is how long a reservation lookup is reused: a DHCP
// REQUEST follows its DISCOVER within milliseconds to seconds, and need not
// read the inventory again. An ip an operator sets on a machine takes
// effect for its next DISCOVER after at most this long.
const reservationTTL = 3 * time.Second

type cachedReservation struct {
	ip netip.Addr
	// owned: a machine has the MAC (its ip may be unset).
	owned bool
	until time.Time
}

// reservationCache remembers recent reservation lookups by MAC.
type reservationCache struct {
	mu sync.Mutex
	m  map[string]cachedReservation
}

func (c *reservationCache) get(mac string, now time.Time) (cachedReservation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[mac]
	if !ok || now.After(r.until) {
		return cachedReservation{}, false
	}
	return r, true
}

func (c *reservationCache) put(mac string, r cachedReservation, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 1<<16 {
		c.m = map[string]cachedReservation{}
	}
	r.until = now.Add(reservationTTL)
	c.m[mac] = r
}

// leased updates a cached reservation after mac's machine took a lease:
// its ip is now the lease's. A MAC without a machine stays without one.
func (c *reservationCache) leased(mac string, ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[mac]; ok && r.owned {
		r.ip = ip
		c.m[mac] = r
	}
}

// enlisted records that mac now belongs to a machine, so the next lease
// of mac reads the inventory and records its ip on the machine.
func (c *reservationCache) enlisted(mac string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[mac]; ok {
		r.owned = true
		c.m[mac] = r
	}
}

// unowned reports whether mac was looked up moments ago and belonged to no
// machine.
func (c *reservationCache) unowned(mac string, now time.Time) bool {
	r, ok := c.get(mac, now)
	return ok && !r.owned
}
