package inventory

// What ironrack does when the Consul cluster has no leader for a moment (an
// election takes 1–3 s with raft_multiplier 1, about 11 s without). The
// policy lives in two places, each the one place its kind of call goes
// through:
//
//   - RetryTransport, under the API client, resends a request whenever
//     resending cannot do harm: every GET (a read), and any request that
//     Consul says it never delivered to a leader ("No cluster leader",
//     "rpc error getting client"). It retries with jittered, growing
//     pauses until the request's own deadline (the Store's OpTimeout per
//     call), then fails with a *NoLeaderError.
//   - doTxn (write.go), which every write transaction goes through, handles
//     the outcome that is unknown: the transaction was sent and the answer
//     lost (an EOF from the leader's RPC, a reset connection, "leadership
//     lost while committing log"). It reads a witness key of the
//     transaction back, consistently, once a leader answers: the
//     transaction is atomic, so the witness says whether all of it
//     happened. A write that happened is reported as done. One that did not
//     is sent again only if it is idempotent by construction — it holds a
//     CAS (every machine change, so every allocation, import, release and
//     state change, and every lease write, which CASes its address key),
//     so a second copy can never apply twice — until Config.RetryFor has
//     passed. Plain sets (a restore's chunks) are not resent: someone may
//     have written the key since.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// NoLeaderError is a call that failed because the Consul cluster had no
// leader for as long as ironrack retried it.
type NoLeaderError struct {
	// Retried is how long ironrack retried.
	Retried time.Duration
	// Last is Consul's last answer.
	Last string
}

func (e *NoLeaderError) Error() string {
	return fmt.Sprintf("the Consul cluster had no leader (retried for %s; last answer: %s)", e.Retried.Round(100*time.Millisecond), e.Last)
}

// UnknownOutcomeError is a write whose answer was lost and whose read-back
// could not be done either: it may or may not have happened.
type UnknownOutcomeError struct {
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return "the outcome is unknown (the answer was lost and reading it back failed): " + e.Err.Error()
}

func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// NewConsulClient returns an API client for cfg whose transport is wrapped
// in RetryTransport (cfg.HttpClient's, if the caller set one). Every
// ironrack process builds its client with it.
func NewConsulClient(cfg *api.Config) (*api.Client, error) {
	c, err := api.NewClient(cfg) // fills in cfg.HttpClient, which c shares
	if err != nil {
		return nil, err
	}
	cfg.HttpClient.Transport = &RetryTransport{Next: cfg.HttpClient.Transport}
	return c, nil
}

// RetryTransport resends a Consul API request while the cluster has no
// leader, where resending is harmless: every GET, and any request Consul
// did not deliver. It stops at the request context's deadline (or after
// 10 s without one). Next is the transport it wraps (nil:
// http.DefaultTransport).
type RetryTransport struct {
	Next http.RoundTripper
}

// retryPause is the first pause between attempts; it doubles to at most
// retryPauseMax, each jittered by ±50%.
const (
	retryPause    = 50 * time.Millisecond
	retryPauseMax = time.Second
)

func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	start := time.Now()
	parent := req.Context()
	deadline, ok := parent.Deadline()
	if !ok {
		deadline = start.Add(10 * time.Second)
	}
	// A read gets a share of the time left per attempt, so one request
	// stuck on a server that is cut off (its packets dropped, no reset)
	// leaves time to retry through another; a blocking query waits on
	// purpose.
	// Writes keep the whole deadline: a write cut short while still in
	// flight could commit after its caller was told it did not (doTxn's
	// read-back would see nothing yet).
	shared := req.Method == http.MethodGet && !req.URL.Query().Has("index")
	pause := retryPause
	var last string
	for attempt := 1; ; attempt++ {
		areq := req
		cancel := context.CancelFunc(func() {})
		keep := func() {} // lifts the attempt's share once it has answered
		if shared {
			// The share bounds the wait for an answer, not the reading of
			// its body: a big answer (every record of a large fleet) may
			// take longer to arrive than a third of the deadline, and its
			// reader is bounded by the caller's deadline.
			actx, acancel := context.WithCancel(parent)
			share := time.AfterFunc(max(time.Until(deadline)/3, time.Second), acancel)
			cancel = func() { share.Stop(); acancel() }
			keep = func() { share.Stop() }
			areq = req.Clone(actx)
		}
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			if areq == req {
				areq = req.Clone(parent)
			}
			areq.Body = body
		}
		resp, err := next.RoundTrip(areq)
		why, retry := t.judge(areq, resp, err)
		if err != nil && parent.Err() == nil && areq.Context().Err() != nil {
			// This attempt ran out of its share, the caller's time did not.
			why = fmt.Sprintf("no answer within %s", time.Since(start).Round(100*time.Millisecond))
			retry = req.Method == http.MethodGet
		}
		if why != "" {
			last = why
		}
		if !retry {
			if err != nil {
				cancel()
				if attempt > 1 && parent.Err() != nil && last != "" {
					return nil, &NoLeaderError{Retried: time.Since(start), Last: last}
				}
				return nil, err
			}
			keep()
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		}
		if resp != nil {
			resp.Body.Close()
		}
		cancel()
		if attempt > 1 && req.Body != nil && req.GetBody == nil {
			return nil, &NoLeaderError{Retried: time.Since(start), Last: last} // cannot rewind the body
		}
		d := pause/2 + rand.N(pause)
		pause = min(2*pause, retryPauseMax)
		if time.Now().Add(d).After(deadline) {
			return nil, &NoLeaderError{Retried: time.Since(start), Last: last}
		}
		select {
		case <-parent.Done():
			return nil, &NoLeaderError{Retried: time.Since(start), Last: last}
		case <-time.After(d):
		}
	}
}

// cancelBody ends an attempt's context when its response body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// judge says whether an answer is a leaderless moment worth resending for
// (and describes it). A 5xx response's body is read and restored.
func (t *RetryTransport) judge(req *http.Request, resp *http.Response, err error) (string, bool) {
	if err != nil {
		if req.Context().Err() != nil {
			return "", false
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			// The local agent itself is down or elsewhere: not an
			// election, and the caller's error says where it looked.
			return "", false
		}
		return err.Error(), req.Method == http.MethodGet
	}
	if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
		return "", false
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	body := strings.TrimSpace(string(b))
	last := fmt.Sprintf("%d %s", resp.StatusCode, body)
	if resp.StatusCode == http.StatusTooManyRequests {
		return last, true
	}
	if notDelivered(body) {
		return last, true
	}
	return last, req.Method == http.MethodGet && leaderless(body)
}

// notDelivered: Consul's answer says the request never reached a leader.
func notDelivered(body string) bool {
	for _, s := range []string{"No cluster leader", "rpc error getting client", "No known Consul servers"} {
		if strings.Contains(body, s) {
			return true
		}
	}
	return false
}

// leaderless: the answer of a server that lost its leader midway.
func leaderless(body string) bool {
	for _, s := range []string{"rpc error", "leadership lost", "EOF", "connection reset", "Raft leader not found", "timed out enqueuing operation"} {
		if strings.Contains(body, s) {
			return true
		}
	}
	return notDelivered(body)
}

// outcomeUnknown: a write transaction's error leaves open whether it
// happened (the answer was lost after the request was sent).
func outcomeUnknown(err error) bool {
	if err == nil {
		return false
	}
	var nl *NoLeaderError
	if errors.As(err, &nl) {
		// Retried only while undelivered; but the first try of a
		// request may have been delivered when a later one was not.
		return true
	}
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	return !errors.Is(err, context.Canceled)
}

// witness picks the operation of a write transaction that shows whether it
// happened: a history entry (written once, never changed), else the first
// key set or CASed with a value, else the first key deleted. ok is false
// when the transaction has none (only catalog operations).
func witness(ops api.TxnOps) (op *api.KVTxnOp, ok bool) {
	var set, del *api.KVTxnOp
	for _, o := range ops {
		kv := o.KV
		if kv == nil {
			continue
		}
		switch kv.Verb {
		case api.KVSet, api.KVCAS:
			if len(kv.Value) == 0 {
				continue
			}
			if strings.Contains(kv.Key, "/history/") {
				return kv, true
			}
			if set == nil {
				set = kv
			}
		case api.KVDelete, api.KVDeleteCAS:
			if del == nil {
				del = kv
			}
		}
	}
	if set != nil {
		return set, true
	}
	return del, del != nil
}

// isWrite: some operation of ops changes something.
func isWrite(ops api.TxnOps) bool {
	for _, o := range ops {
		if o.KV == nil {
			return true
		}
		switch o.KV.Verb {
		case api.KVGet, api.KVGetOrEmpty, api.KVGetTree, api.KVCheckIndex, api.KVCheckSession, api.KVCheckNotExists:
		default:
			return true
		}
	}
	return false
}

// guarded: ops hold a CAS, so a second copy of the transaction fails
// instead of applying twice.
func guarded(ops api.TxnOps) bool {
	for _, o := range ops {
		if kv := o.KV; kv != nil && (kv.Verb == api.KVCAS || kv.Verb == api.KVDeleteCAS || kv.Verb == api.KVCheckIndex || kv.Verb == api.KVCheckNotExists) {
			return true
		}
	}
	return false
}
