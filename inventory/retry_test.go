package inventory

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
)

// loseAnswers delivers requests to Consul and then, for the first n write
// transactions, drops the answer: the write happened, the caller hears
// "unexpected EOF", as when a leader dies after committing.
type loseAnswers struct {
	next http.RoundTripper
	n    atomic.Int32
	lost atomic.Int32
	// drop, while > 0, loses write transactions before they reach Consul.
	drop atomic.Int32
}

func (l *loseAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.HasPrefix(req.URL.Path, "/v1/txn") && l.drop.Add(-1) >= 0 {
		return nil, io.ErrUnexpectedEOF
	}
	resp, err := l.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodPut && strings.HasPrefix(req.URL.Path, "/v1/txn") && l.n.Add(-1) >= 0 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.lost.Add(1)
		return nil, io.ErrUnexpectedEOF
	}
	return resp, err
}

// TestLostAnswerReadBack: a claim whose answer is lost after Consul applied
// it is read back and reported as done, with the machines it claimed; a
// plain write (a lease batch) likewise. A refused write whose answer was
// lost is not mistaken for done.
func TestLostAnswerReadBack(t *testing.T) {
	agent := consuldev.T(t)
	lossy := &loseAnswers{next: http.DefaultTransport}
	cfg := &api.Config{Address: agent.Addr, HttpClient: &http.Client{Transport: lossy}}
	c, err := NewConsulClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(c, Config{Who: "test", RetryFor: 5 * time.Second})
	seedReady(t, s, 20, 2)
	ctx := context.Background()

	lossy.n.Store(1)
	ms, err := s.Allocate(ctx, AllocateRequest{Count: 3, Owner: "alice"})
	if err != nil || len(ms) != 3 || lossy.lost.Load() != 1 {
		t.Fatalf("allocate with its answer lost: %v, %d machines, %d answers lost", err, len(ms), lossy.lost.Load())
	}
	held, err := s.List(ctx, Query{State: StateAllocated})
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 3 || ids(held)[0] != ids(ms)[0] {
		t.Errorf("Consul holds %v for alice, the caller was told %v", ids(held), ids(ms))
	}

	lossy.n.Store(1)
	if errs := s.StoreLeases(ctx, []Lease{{MAC: "02:00:00:00:00:99", IP: "10.0.0.9", Expires: time.Now().Add(time.Hour), NoMachine: true}}); errs[0] != nil {
		t.Errorf("lease batch with its answer lost: %v", errs[0])
	}

	// Nothing happened and the answer is lost: a claim (it holds a CAS)
	// is read back, found not done, resent and done; a plain set is read
	// back and reported failed, not resent.
	lossy.drop.Store(1)
	more, err := s.Allocate(ctx, AllocateRequest{Count: 2, Owner: "bob"})
	if err != nil || len(more) != 2 {
		t.Fatalf("allocate whose first copy was lost: %v", err)
	}
	lossy.drop.Store(1)
	errs := s.StoreLeases(ctx, []Lease{{MAC: "02:00:00:00:00:98", IP: "10.0.0.8", Expires: time.Now().Add(time.Hour), NoMachine: true}})
	if errs[0] != nil {
		t.Errorf("a lease batch whose first copy was lost (it CASes its address): %v", errs[0])
	}
	lossy.drop.Store(1)
	set := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "ironrack/plain", Value: []byte("v")}}}
	if err := s.writeTxn(ctx, set); err == nil || !strings.Contains(err.Error(), "did not happen") {
		t.Errorf("a lost plain set: %v, want a failure that says it did not happen", err)
	}
	if kv, _, _ := c.KV().Get("ironrack/plain", nil); kv != nil {
		t.Error("the plain set was resent")
	}
}

// TestRetryTransportSlowBody: a read's answer whose body takes longer to
// arrive than the attempt's share (a third of the time left) is read
// whole: the share bounds the wait for an answer, the caller's deadline
// the body (the list of 100,000 records was cut off at 3.3 s of 10).
func TestRetryTransportSlowBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for range 3 {
			time.Sleep(600 * time.Millisecond) // 1.8 s in all, the share is 1 s
			w.Write([]byte(strings.Repeat("x", 1000)))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/kv/x", nil)
	resp, err := (&http.Client{Transport: &RetryTransport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) != 3000 {
		t.Fatalf("read %d bytes of 3000: %v", len(b), err)
	}
}
