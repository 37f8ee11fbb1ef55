package ipmi_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/ipmi"
)

// instantClock fires every timer at once and records the pauses asked for.
type instantClock struct {
	mu     sync.Mutex
	pauses []time.Duration
}

func (c *instantClock) Now() time.Time { return time.Now() }
func (c *instantClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.pauses = append(c.pauses, d)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func targets(hosts ...string) []ipmi.Target {
	var ts []ipmi.Target
	for i, h := range hosts {
		ts = append(ts, ipmi.Target{ID: fmt.Sprintf("m%d", i), Credentials: ipmi.Credentials{Host: h}})
	}
	return ts
}

// Bulk's scheduling is pure logic over op, so these tests use plain funcs;
// TestBulkFrozenBMC runs it against real sims.
func TestBulkLimitsAndOrder(t *testing.T) {
	hosts := []string{"a", "a", "a", "a", "b", "b", "b", "c", "d", "e"}
	var mu sync.Mutex
	inFlight := map[string]int{}
	maxPer := map[string]int{}
	var total, maxTotal atomic.Int32
	var progress []int
	res := ipmi.Bulk(context.Background(), targets(hosts...), ipmi.BulkOptions{
		Concurrency: 3, PerBMC: 2,
		Progress: func(p ipmi.Progress) { progress = append(progress, p.Done) },
	}, func(ctx context.Context, tg ipmi.Target) (string, error) {
		n := total.Add(1)
		for m := maxTotal.Load(); n > m && !maxTotal.CompareAndSwap(m, n); m = maxTotal.Load() {
		}
		h := tg.Credentials.Host
		mu.Lock()
		inFlight[h]++
		maxPer[h] = max(maxPer[h], inFlight[h])
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		inFlight[h]--
		mu.Unlock()
		total.Add(-1)
		return tg.ID, nil
	})
	for i, r := range res {
		if r.Value != fmt.Sprintf("m%d", i) || r.Err != nil || r.Attempts != 1 {
			t.Errorf("result %d = %+v, want value m%d, no error, 1 attempt", i, r, i)
		}
	}
	if m := maxTotal.Load(); m > 3 {
		t.Errorf("max concurrency %d, want <= 3", m)
	}
	for h, m := range maxPer {
		if m > 2 {
			t.Errorf("max per BMC %s = %d, want <= 2", h, m)
		}
	}
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestBulkRetries(t *testing.T) {
	tests := map[string]struct {
		errs         []error // returned by successive attempts; nil = success
		retries      int
		wantAttempts int
		wantReason   string
		wantPauses   int
	}{
		"ok first time":           {[]error{nil}, 0, 1, "ok", 0},
		"timeout then ok":         {[]error{ipmi.ErrTimeout, nil}, 0, 2, "ok", 1},
		"timeouts exhaust":        {[]error{ipmi.ErrTimeout, ipmi.ErrTimeout, ipmi.ErrTimeout, ipmi.ErrTimeout}, 0, 3, "timeout", 2},
		"unreachable, 1 retry":    {[]error{ipmi.ErrUnreachable, ipmi.ErrUnreachable}, 1, 2, "unreachable", 1},
		"auth is not retried":     {[]error{ipmi.ErrAuth, nil}, 0, 1, "auth", 0},
		"no retries when < 0":     {[]error{ipmi.ErrTimeout, nil}, -1, 1, "timeout", 0},
		"not applied not retried": {[]error{ipmi.ErrNotApplied, nil}, 0, 1, "not-applied", 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := &instantClock{}
			n := 0
			res := ipmi.Bulk(context.Background(), targets("a"), ipmi.BulkOptions{Retries: tc.retries, Clock: clk},
				func(ctx context.Context, tg ipmi.Target) (int, error) {
					err := tc.errs[n]
					n++
					if err != nil {
						return 0, fmt.Errorf("op %s: %w", tg.Credentials.Host, err)
					}
					return n, nil
				})
			r := res[0]
			if r.Attempts != tc.wantAttempts || r.Reason() != tc.wantReason || len(clk.pauses) != tc.wantPauses {
				t.Errorf("attempts %d reason %q pauses %v; want %d %q %d pauses",
					r.Attempts, r.Reason(), clk.pauses, tc.wantAttempts, tc.wantReason, tc.wantPauses)
			}
		})
	}
}

func TestBulkCallTimeoutAndCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	start := time.Now()
	res := ipmi.Bulk(ctx, targets("a", "b", "c"), ipmi.BulkOptions{Concurrency: 1, CallTimeout: 50 * time.Millisecond, Retries: -1},
		func(ctx context.Context, tg ipmi.Target) (int, error) {
			if started.Add(1) == 1 {
				<-ctx.Done() // first call hangs until its deadline
				return 0, fmt.Errorf("hang %s: %w", tg.Credentials.Host, ctx.Err())
			}
			cancel() // the caller gives up during the second
			return 0, nil
		})
	if time.Since(start) > 2*time.Second {
		t.Fatalf("batch took %v", time.Since(start))
	}
	if !errors.Is(res[0].Err, context.DeadlineExceeded) || res[0].Reason() != "timeout" {
		t.Errorf("first = %v (%s), want its call deadline", res[0].Err, res[0].Reason())
	}
	if res[2].Reason() != "canceled" {
		t.Errorf("third = %v (%s), want canceled", res[2].Err, res[2].Reason())
	}
}
