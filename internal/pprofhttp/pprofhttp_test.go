package pprofhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "example.com:6060", "127.0.0.1", "[::]:6060"} {
		if _, err := New(a, nil); err == nil {
			t.Errorf("New(%q) accepted a non-loopback or malformed address", a)
		}
	}
	for _, a := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:0"} {
		if _, err := New(a, nil); err != nil {
			t.Errorf("New(%q): %v", a, err)
		}
	}
}

// TestServesProfiles fetches the block and mutex profiles and a short CPU
// profile from a real listener, then stops it.
func TestServesProfiles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := New(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	get := func(path string) string {
		var last error
		for range 50 {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				last = err
				time.Sleep(20 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %s", path, resp.Status)
			}
			return string(b)
		}
		t.Fatalf("%s: %v", path, last)
		return ""
	}
	if b := get("/debug/pprof/block?debug=1"); !strings.Contains(b, "--- contention:") {
		t.Errorf("block profile: %.200q", b)
	}
	if b := get("/debug/pprof/mutex?debug=1"); !strings.Contains(b, "--- mutex:") {
		t.Errorf("mutex profile: %.200q", b)
	}
	if b := get("/debug/pprof/profile?seconds=1"); len(b) == 0 {
		t.Error("empty CPU profile")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Error("still serving after Serve returned")
	}
}
