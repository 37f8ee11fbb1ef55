package bootserver

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// TestBatcher: every caller gets its own item's result exactly once, calls
// never exceed the batch size or the in-flight bound, and concurrent
// callers share calls.
func TestBatcher(t *testing.T) {
	for name, inFlight := range map[string]int{"one in flight": 1, "four in flight": 4} {
		t.Run(name, func(t *testing.T) {
			var calls, items, now, peak atomic.Int64
			b := &batcher[int, int]{inFlight: inFlight, call: func(_ context.Context, in []int) []int {
				if n := now.Add(1); n > peak.Load() {
					peak.Store(n)
				}
				defer now.Add(-1)
				if len(in) > inventory.MaxLeaseBatch {
					t.Errorf("batch of %d", len(in))
				}
				calls.Add(1)
				items.Add(int64(len(in)))
				time.Sleep(time.Millisecond)
				out := make([]int, len(in))
				for i, v := range in {
					out[i] = 2 * v
				}
				return out
			}}
			var wg sync.WaitGroup
			const goroutines, each = 200, 50
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						v := g*each + i
						if got := b.do(context.Background(), v); got != 2*v {
							t.Errorf("do(%d) = %d", v, got)
						}
					}
				}()
			}
			wg.Wait()
			if items.Load() != goroutines*each {
				t.Errorf("%d items called, want %d", items.Load(), goroutines*each)
			}
			if peak.Load() > int64(inFlight) {
				t.Errorf("%d calls at once, want at most %d", peak.Load(), inFlight)
			}
			if calls.Load() > goroutines*each/4 {
				t.Errorf("%d calls for %d items: callers did not share calls", calls.Load(), items.Load())
			}
			if b.busy != 0 || len(b.queue) != 0 {
				t.Errorf("batcher left busy=%d queue=%d", b.busy, len(b.queue))
			}
			t.Logf("%d items in %d calls", items.Load(), calls.Load())
		})
	}
}

// TestBatcherShedsStale: callers whose wait in the queue plus the last
// call's duration exceeds maxWait (they could not be answered in time) get
// stale()'s result and are left out of the next call; a caller arriving
// afterwards (0 + 200 ms < 300 ms) is served.
func TestBatcherShedsStale(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	b := &batcher[int, int]{inFlight: 1, maxWait: 300 * time.Millisecond, stale: func() int { return -1 },
		call: func(_ context.Context, in []int) []int {
			mu.Lock()
			seen = append(seen, in...)
			mu.Unlock()
			time.Sleep(200 * time.Millisecond) // a slow commit: the queue waits
			out := make([]int, len(in))
			for i, v := range in {
				out[i] = v * 10
			}
			return out
		}}
	res := make([]int, 6)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); res[0] = b.do(context.Background(), 1) }() // leads
	time.Sleep(30 * time.Millisecond)
	for i := 2; i <= 5; i++ { // queue behind the 200 ms call
		wg.Add(1)
		go func() { defer wg.Done(); res[i-1] = b.do(context.Background(), i) }()
	}
	wg.Wait()
	res[5] = b.do(context.Background(), 6) // after the queue drained
	want := []int{10, -1, -1, -1, -1, 60}
	for i := range want {
		if res[i] != want[i] {
			t.Fatalf("results %v, want %v (the four queued callers waited ~170 ms, + a 200 ms call > maxWait 300 ms)", res, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != 1 || seen[1] != 6 {
		t.Errorf("the call saw %v, want [1 6]: shed callers must not be written", seen)
	}
}
