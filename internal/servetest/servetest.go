// Package servetest runs a `Serve(ctx) error` server for the length of a
// test: it starts serve on its own goroutine and, at cleanup, cancels the
// context and fails the test if Serve returns an error or does not return
// within the given time.
package servetest

import (
	"context"
	"testing"
	"time"
)

// Run starts serve(ctx) and stops it when the test ends.
func Run(tb testing.TB, stopWithin time.Duration, serve func(ctx context.Context) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(stopWithin):
			tb.Error("Serve did not stop")
		}
	})
}
