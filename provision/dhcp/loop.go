package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// readLoop is the one read loop of the DHCPv4 and the DHCPv6 server: per
// socket, read a packet, parse it, hand it to a fixed pool of workers,
// which build and send the reply. T is the parsed request.
//
// A fixed pool, not a goroutine per packet: a handler that waits on Consul
// grows its stack, and a fresh goroutine per packet paid for that growth
// every time (7% of the CPU at 6000 DORA/s). And a large one: a request
// that stores a lease waits for a Consul commit, so the pool bounds the
// leases that can share one group commit (4 workers capped DHCPv6 at about
// 1,000 SARR/s; see docs/benchmarks.md).
type readLoop[T any] struct {
	name    string // "dhcp" or "dhcp6", the prefix of errors and logs
	iface   string // for errors
	workers int
	log     *slog.Logger
	// unparsable counts packets parse refused; they are dropped.
	unparsable prometheus.Counter
	parse      func(b []byte) (T, error)
	// handle answers req, which arrived from peer on conns[port].
	handle func(ctx context.Context, conn net.PacketConn, port int, peer net.Addr, req T)
}

// serve answers on conns until ctx is done or a read fails. It closes every
// conn when either happens (a failed socket stops the others' loops too),
// waits for the handlers in flight and returns the read error, or nil on
// a clean stop.
func (l readLoop[T]) serve(ctx context.Context, conns []net.PacketConn) error {
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	defer closeAll()

	type job struct {
		port int
		peer net.Addr
		req  T
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range max(l.workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				l.handle(ctx, conns[j.port], j.port, j.peer, j.req)
			}
		}()
	}
	g := new(errgroup.Group)
	for port, c := range conns {
		g.Go(func() error {
			defer closeAll() // one socket failed or ctx is done: stop the other loops too
			for {
				buf := make([]byte, 1500)
				n, peer, err := c.ReadFrom(buf)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("%s: read on %s: %w", l.name, l.iface, err)
				}
				req, err := l.parse(buf[:n])
				if err != nil {
					l.unparsable.Inc()
					l.log.Debug(l.name+": unparsable packet", "peer", peer, "err", err)
					continue
				}
				select {
				case jobs <- job{port, peer, req}:
				case <-ctx.Done():
					return nil
				}
			}
		})
	}
	err := g.Wait()
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}
