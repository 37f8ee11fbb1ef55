// Package pprofhttp serves Go's runtime profiles (net/http/pprof: CPU, heap,
// goroutines, block, mutex) on a loopback address, so a server can be
// profiled under load (`ironrack serve --pprof 127.0.0.1:6060`).
// It is off unless asked for, and refuses any address that is not
// loopback: profiles show internals and the CPU profile costs CPU.
package pprofhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// Rates of the block and mutex profiles while the endpoint is served: a
// blocking event is sampled about once per BlockRate ns spent blocked, one
// mutex contention event in MutexFraction.
const (
	BlockRate     = 10_000
	MutexFraction = 100
)

// Server is the profile endpoint.
type Server struct {
	addr string
	log  *slog.Logger
}

// New checks addr (host:port, the host a loopback IP or "localhost") and
// returns a server for it. It opens nothing.
func New(addr string, log *slog.Logger) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pprof address %q: want HOST:PORT on loopback, e.g. 127.0.0.1:6060: %v", addr, err)
	}
	if port == "" {
		return nil, fmt.Errorf("pprof address %q: no port", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("pprof address %q: %q is not a loopback address (profiles are served on loopback only)", addr, host)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{addr: addr, log: log}, nil
}

// Serve listens on the address, turns the block and mutex profiles on, and
// serves /debug/pprof/ until ctx is done; it then turns them off again and
// returns nil.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	runtime.SetBlockProfileRate(BlockRate)
	runtime.SetMutexProfileFraction(MutexFraction)
	defer runtime.SetBlockProfileRate(0)
	defer runtime.SetMutexProfileFraction(0)
	s.log.Info("pprof: serving profiles", "address", ln.Addr().String())
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("pprof: %w", err)
	}
	return nil
}
