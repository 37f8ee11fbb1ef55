// Package fanout runs work on many machines over SSH: at most Fanout hosts
// at once, in batches (the next batch starts only when the last is done),
// with a failure threshold per batch that aborts the run when exceeded. An
// abort starts no new host; hosts in flight finish, or are cancelled when
// Plan.AbortNow is set. Every host ends with a Result, hosts never started
// included (StatusSkipped).
//
// The engine dials each host with playbooks/remote and hands the connection
// to a Work function: `ironrack run` passes one that runs a command,
// playbooks pass one that runs their steps.
package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ironrack/ironrack/playbooks/remote"
)

// Host is one machine to run on.
type Host struct {
	// ID is the inventory machine ID.
	ID string `json:"id"`
	// Addr is host:port.
	Addr string `json:"addr"`
	// User is the login name. If "", root.
	User string `json:"user,omitempty"`
}

// Work is what runs on one host over its connection. It writes the host's
// output to out (safe for concurrent writes: stdout and stderr may share it)
// and returns an exit status as remote.Client.Run does: err non-nil only
// when the work could not run or did not finish. ctx carries the per-host
// timeout and the run's cancellation.
type Work func(ctx context.Context, h Host, c *remote.Client, out io.Writer) (exit int, err error)

// Plan says how to run.
type Plan struct {
	// Fanout caps the hosts in flight. If 0, 64.
	Fanout int
	// Batches is the batch spec (ParseBatch). If nil, one batch.
	Batches []BatchSize
	// Limit is the per-batch failure threshold. The zero value aborts on
	// the first failure.
	Limit Limit
	// AbortNow cancels the hosts in flight when the run aborts; otherwise
	// they finish.
	AbortNow bool
	// Timeout bounds the work on each host, after login. If 0, none.
	Timeout time.Duration
	// Dial says how to log in; its ConnectTimeout bounds each connection.
	Dial remote.Options
	// OnStart, when set, is called as a host starts (concurrently).
	OnStart func(h Host)
	// OnDone, when set, is called with each host's result as it ends
	// (concurrently), skipped hosts included.
	OnDone func(r Result)
}

// Status is how a host ended.
type Status string

const (
	StatusOK          Status = "ok"          // exit 0
	StatusFailed      Status = "failed"      // a non-zero exit status
	StatusError       Status = "error"       // logged in, but the work did not finish (connection lost, signal)
	StatusUnreachable Status = "unreachable" // no connection or login (refused, timeout, host key)
	StatusTimeout     Status = "timeout"     // Plan.Timeout ran out; the remote command was ended
	StatusCancelled   Status = "cancelled"   // the run was cancelled or aborted with AbortNow
	StatusSkipped     Status = "skipped"     // never started: the run aborted first
)

// Failure reports whether s counts against the batch's threshold.
// Unreachable hosts count.
func (s Status) Failure() bool {
	switch s {
	case StatusFailed, StatusError, StatusUnreachable, StatusTimeout:
		return true
	}
	return false
}

// Result is how one host went.
type Result struct {
	Host   Host   `json:"host"`
	Batch  int    `json:"batch"` // 1-based
	Status Status `json:"status"`
	// Exit is the exit status, -1 when there is none.
	Exit int `json:"exit"`
	// Err says what went wrong when Status is not ok or failed.
	Err      error         `json:"-"`
	Error    string        `json:"error,omitempty"`
	Output   []byte        `json:"-"`
	Start    time.Time     `json:"start,omitzero"`
	Duration time.Duration `json:"duration_ns"`
}

// Report is a whole run: one Result per host, in the order given.
type Report struct {
	Results []Result
	// Batches are the batch sizes used.
	Batches []int
	// Aborted says why the run stopped early ("" when it did not).
	Aborted string
}

// Failed counts the hosts that did not end ok.
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.Results {
		if x.Status != StatusOK {
			n++
		}
	}
	return n
}

// Run runs work on hosts as plan says and returns every host's result. Its
// error is nil when the run went through (hosts may have failed: see the
// report), ErrAborted (wrapped, naming the threshold) when a threshold was
// exceeded, or ctx's error when ctx ended first.
func Run(ctx context.Context, hosts []Host, plan Plan, work Work) (*Report, error) {
	if work == nil {
		return nil, errors.New("fanout: no work")
	}
	fan := plan.Fanout
	if fan <= 0 {
		fan = 64
	}
	rep := &Report{Results: make([]Result, len(hosts)), Batches: Sizes(plan.Batches, len(hosts))}
	for i, h := range hosts {
		rep.Results[i] = Result{Host: h, Status: StatusSkipped, Exit: -1}
	}
	// abortCtx ends in-flight hosts on an abort with AbortNow.
	abortCtx, abortAll := context.WithCancel(ctx)
	defer abortAll()
	var (
		mu      sync.Mutex
		aborted string
	)
	first := 0
	for b, size := range rep.Batches {
		batch := rep.Results[first : first+size]
		first += size
		failed := 0
		sem := make(chan struct{}, fan)
		var wg sync.WaitGroup
		for i := range batch {
			sem <- struct{}{}
			mu.Lock()
			stop := aborted != "" || ctx.Err() != nil
			mu.Unlock()
			if stop {
				<-sem
				break
			}
			wg.Add(1)
			go func(r *Result) {
				defer wg.Done()
				defer func() { <-sem }()
				hctx := ctx
				if plan.AbortNow {
					hctx = abortCtx
				}
				r.Batch = b + 1
				if plan.OnStart != nil {
					plan.OnStart(r.Host)
				}
				runOne(hctx, r, plan, work)
				mu.Lock()
				if r.Status.Failure() {
					failed++
					if over, why := plan.Limit.Exceeded(failed, size); over && aborted == "" {
						aborted = fmt.Sprintf("batch %d: %s", b+1, why)
						if plan.AbortNow {
							abortAll()
						}
					}
				}
				mu.Unlock()
				if plan.OnDone != nil {
					plan.OnDone(*r)
				}
			}(&batch[i])
		}
		wg.Wait()
		if aborted != "" || ctx.Err() != nil {
			break
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Status == StatusSkipped {
			if r.Batch == 0 {
				r.Batch = batchOf(rep.Batches, i)
			}
			if plan.OnDone != nil {
				plan.OnDone(*r)
			}
		}
		if r.Err != nil {
			r.Error = r.Err.Error()
		}
	}
	rep.Aborted = aborted
	switch {
	case aborted != "":
		return rep, fmt.Errorf("%w: %s", ErrAborted, aborted)
	case ctx.Err() != nil:
		rep.Aborted = "cancelled"
		return rep, ctx.Err()
	}
	return rep, nil
}

// ErrAborted is Run's error when a batch exceeded the failure threshold.
var ErrAborted = errors.New("aborted")

func batchOf(sizes []int, i int) int {
	for b, n := range sizes {
		if i < n {
			return b + 1
		}
		i -= n
	}
	return len(sizes)
}

// runOne dials r.Host and runs work, filling r.
func runOne(ctx context.Context, r *Result, plan Plan, work Work) {
	r.Start = time.Now()
	defer func() { r.Duration = time.Since(r.Start) }()
	h := r.Host
	c, err := remote.Dial(ctx, remote.Target{ID: h.ID, Addr: h.Addr, User: h.User}, plan.Dial)
	if err != nil {
		r.Status, r.Err = StatusUnreachable, err
		if ctx.Err() != nil {
			r.Status = StatusCancelled
		}
		return
	}
	defer c.Close()
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if plan.Timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, plan.Timeout)
	}
	defer cancel()
	var out lockedBuffer
	exit, err := work(wctx, h, c, &out)
	r.Output = out.Bytes()
	r.Exit = exit
	switch {
	case err == nil && exit == 0:
		r.Status = StatusOK
	case err == nil:
		r.Status = StatusFailed
		r.Err = fmt.Errorf("exit status %d", exit)
	case ctx.Err() != nil:
		r.Status, r.Err = StatusCancelled, err
	case wctx.Err() != nil:
		r.Status, r.Err = StatusTimeout, fmt.Errorf("timed out after %v: %w", plan.Timeout, err)
	default:
		r.Status, r.Err = StatusError, err
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// Command is the Work of `ironrack run`: cmd through the login shell, its
// stdout and stderr both into the host's output.
func Command(cmd string) Work {
	return func(ctx context.Context, _ Host, c *remote.Client, out io.Writer) (int, error) {
		return c.Run(ctx, cmd, nil, out, out)
	}
}
