package ipmi

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Target is one BMC in a batch. ID is the caller's name for it (a machine
// ID); it is only echoed back.
type Target struct {
	ID          string
	Credentials Credentials
}

// Result is the outcome for one target. Err wraps the sentinels (see
// Reason), names the target and keeps the cause.
type Result[T any] struct {
	Target   Target
	Value    T
	Err      error
	Attempts int
	Elapsed  time.Duration
}

// Reason is Reason(r.Err): "ok", "auth", "timeout", ...
func (r Result[T]) Reason() string { return Reason(r.Err) }

// Progress is reported once per finished target.
type Progress struct {
	Done, Total int
	Target      Target
	Err         error
}

// BulkOptions bound a batch. The zero value works.
type BulkOptions struct {
	// Concurrency is how many targets run at once. If 0, 64.
	Concurrency int
	// PerBMC is how many calls may run at once against one BMC address
	// (BMCs have few session slots). If 0, 2.
	PerBMC int
	// CallTimeout is the deadline of each attempt. If 0, 5s.
	CallTimeout time.Duration
	// Retries is how many more attempts a Retryable failure gets (timeouts,
	// unreachable; never a cycle or reset that may have been applied). If 0,
	// 2; if negative, none.
	Retries int
	// Backoff is the upper bound of the first retry's jittered pause; it
	// doubles per retry up to 8×. If 0, 250ms.
	Backoff time.Duration
	// Clock paces retries. If nil, the real clock.
	Clock Clock
	// Progress, if set, is called after each target finishes, one call at a
	// time, from the batch's goroutines. It must not block for long.
	Progress func(Progress)
}

func (o BulkOptions) withDefaults() BulkOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.PerBMC <= 0 {
		o.PerBMC = 2
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 2
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 250 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o
}

// Bulk runs op over targets with bounded concurrency overall and per BMC
// address, a deadline per attempt, and jittered retries bounded by ctx. It
// returns one Result per target, in the order of targets; it never fails as
// a whole. When ctx ends, targets not yet done fail with ctx's error.
//
//	res := ipmi.Bulk(ctx, targets, ipmi.BulkOptions{}, func(ctx context.Context, t ipmi.Target) (ipmi.PowerState, error) {
//		return ctl.PowerStatus(ctx, t.Credentials)
//	})
func Bulk[T any](ctx context.Context, targets []Target, o BulkOptions, op func(ctx context.Context, t Target) (T, error)) []Result[T] {
	o = o.withDefaults()
	results := make([]Result[T], len(targets))
	slots := perBMCSlots(targets, o.PerBMC)

	var mu sync.Mutex
	done := 0
	report := func(i int) {
		if o.Progress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		done++
		o.Progress(Progress{Done: done, Total: len(targets), Target: targets[i], Err: results[i].Err})
	}

	var g errgroup.Group
	g.SetLimit(o.Concurrency)
	for i, t := range targets {
		g.Go(func() error {
			results[i] = runOne(ctx, t, o, slots[t.Credentials.Host], op)
			report(i)
			return nil
		})
	}
	_ = g.Wait() // the workers never return errors; each Result has its own
	return results
}

func perBMCSlots(targets []Target, n int) map[string]chan struct{} {
	slots := map[string]chan struct{}{}
	for _, t := range targets {
		if _, ok := slots[t.Credentials.Host]; !ok {
			slots[t.Credentials.Host] = make(chan struct{}, n)
		}
	}
	return slots
}

// runOne tries one target until it succeeds, fails for good, runs out of
// retries, or ctx ends. The per-BMC slot is held only during an attempt, not
// during the backoff pause.
func runOne[T any](ctx context.Context, t Target, o BulkOptions, slot chan struct{}, op func(context.Context, Target) (T, error)) Result[T] {
	r := Result[T]{Target: t}
	start := o.Clock.Now()
	for attempt := 0; ; attempt++ {
		if !acquire(ctx, slot) {
			if r.Err == nil {
				r.Err = classify(ctx.Err())
			}
			break
		}
		actx, cancel := context.WithTimeout(ctx, o.CallTimeout)
		var err error
		r.Value, err = op(actx, t)
		r.Err = classify(err)
		cancel()
		<-slot
		r.Attempts++
		if r.Err == nil || !Retryable(r.Err) || attempt >= o.Retries || ctx.Err() != nil {
			break
		}
		if sleep(ctx, o.Clock, jitter(o.Backoff, attempt)) != nil {
			break
		}
	}
	r.Elapsed = o.Clock.Now().Sub(start)
	return r
}

// acquire takes a slot unless ctx ends first (checked first, so a done ctx
// never starts an attempt).
func acquire(ctx context.Context, slot chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case slot <- struct{}{}:
		if ctx.Err() != nil {
			<-slot
			return false
		}
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter is "full jitter" backoff: a random pause in [0, base·2^attempt),
// with the exponent capped at 3.
func jitter(base time.Duration, attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(backoffCap(base, attempt))))
}

func backoffCap(base time.Duration, attempt int) time.Duration {
	return base << min(attempt, 3)
}
