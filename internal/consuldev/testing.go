package consuldev

import (
	"context"
	"os"
	"testing"

	"github.com/hashicorp/consul/api"
)

// T starts a dev agent for a test and stops it when the test ends. Under
// -short the test is skipped; otherwise a missing binary fails the test,
// because CI always has the tools.
func T(tb testing.TB) *Agent {
	tb.Helper()
	return TWith(tb, Options{})
}

// TWith is T with options (opt.Log is set from IRONRACK_CONSUL_LOG if nil).
func TWith(tb testing.TB, opt Options) *Agent {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a real consul agent; skipped under -short")
	}
	var log *os.File
	if os.Getenv("IRONRACK_CONSUL_LOG") != "" {
		log = os.Stderr
	}
	if log != nil && opt.Log == nil {
		opt.Log = log
	}
	a, err := Start(context.Background(), opt)
	if err != nil {
		tb.Fatalf("consul: %v", err)
	}
	tb.Cleanup(func() { a.Stop() })
	return a
}

// Client is an API client for the agent (no token: give one with the
// request options when ACLs are on), or fails the test.
func (a *Agent) Client(tb testing.TB) *api.Client {
	tb.Helper()
	c, err := api.NewClient(&api.Config{Address: a.Addr})
	if err != nil {
		tb.Fatalf("consul client for %s: %v", a.Addr, err)
	}
	return c
}
