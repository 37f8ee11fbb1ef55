package consuldev

import (
	"context"
	"os"
	"testing"
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
