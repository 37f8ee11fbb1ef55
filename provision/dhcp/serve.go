package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// handleTimeout bounds the store and inventory calls for one request.
const handleTimeout = 5 * time.Second

// ShedAge is the MaxQueueAge `ironrack serve --shed` sets: a request that
// has waited 800 ms before any work is shed. A client's first
// retransmission comes 1 s (iPXE, perfdhcp's drop time) to 4 s (RFC 2131)
// after its request; the 200 ms left are for the answer (a lease's commit
// may shed it later, see bootserver).
const ShedAge = 800 * time.Millisecond

// Serve opens the DHCP socket (and the PXE port's, unless disabled), both
// bound to Config.Interface only, unless Config.Conn (Config.PXEConn)
// gives it; it loads the leases, and answers requests until ctx is done.
// It then closes its sockets, waits for the requests in flight and
// returns nil. Sockets are opened before any goroutine starts,
// so a test may run Serve on a thread inside a network namespace.
//
// Serve uses server4's socket (SO_BINDTODEVICE, SO_BROADCAST) but its own
// read loop: server4.Server.Serve starts an unbounded goroutine per packet
// and cannot be stopped by a context.
func (s *Server) Serve(ctx context.Context) error {
	// conns[0] is the DHCP port's socket, conns[1] (if any) the PXE port's.
	var conns []net.PacketConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		for _, c := range []net.PacketConn{s.cfg.Conn, s.cfg.PXEConn} {
			if c != nil {
				c.Close() // also when Serve failed before taking it
			}
		}
	}
	for i, p := range []struct {
		given net.PacketConn
		port  int
	}{{s.cfg.Conn, s.cfg.Port}, {s.cfg.PXEConn, s.cfg.PXEPort}} {
		c := p.given
		switch {
		case c != nil:
		case i == 1 && p.port <= 0: // the PXE port, disabled
			continue
		case s.cfg.Interface == "":
			closeAll()
			return errors.New("dhcp: serve: no interface configured")
		default:
			var err error
			if c, err = server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: p.port}); err != nil {
				closeAll()
				return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, p.port, err)
			}
		}
		conns = append(conns, c)
	}
	// On a UDP socket the kernel stamps each packet as it arrives
	// (SO_TIMESTAMPNS), from now on: under overload a request may wait in
	// the socket's 4 MiB buffer for seconds, and only the kernel's stamp
	// shows it (MaxQueueAge).
	timed := make([]bool, len(conns))
	for i, c := range conns {
		growReadBuffer(c, s.log)
		if uc, ok := c.(*net.UDPConn); ok {
			timed[i] = enableTimestamps(uc)
		}
	}
	if !s.cfg.Proxy {
		if err := s.pool.loadFrom(ctx, s.cfg.Leases); err != nil {
			closeAll()
			return fmt.Errorf("dhcp: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	defer closeAll()

	s.log.Info("dhcp: serving", "interface", s.cfg.Interface, "address", s.cfg.Address, "proxy", s.cfg.Proxy)
	// A fixed pool of workers, not a goroutine per packet: a handler that
	// waits on Consul grows its stack, and a fresh goroutine per packet
	// paid for that growth every time (7% of the CPU at 6000 DORA/s).
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if s.stale(j.recv) { // it waited for a worker too long
					continue
				}
				s.handle(ctx, j.conn, j.peer, j.req, j.pxe, j.recv)
			}
		}()
	}
	defer wg.Wait()
	defer close(jobs) // after both loops have returned (g.Wait below)
	g := new(errgroup.Group)
	for i, c := range conns {
		pxe := i == 1
		g.Go(func() error {
			err := s.loop(ctx, c, pxe, timed[i], jobs)
			closeAll() // one socket failed or ctx is done: stop the other loop too
			return err
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// job is one parsed request for a worker.
type job struct {
	conn net.PacketConn
	peer net.Addr
	req  *dhcpv4.DHCPv4
	pxe  bool
	recv time.Time // when the kernel received it
}

// stale reports whether a request received at recv has waited past
// MaxQueueAge, and counts it if so.
func (s *Server) stale(recv time.Time) bool {
	if s.cfg.MaxQueueAge <= 0 || time.Since(recv) <= s.cfg.MaxQueueAge {
		return false
	}
	s.metrics.ignored.WithLabelValues("stale").Inc()
	return true
}

// loop reads requests from conn and hands them to the workers; timed: conn
// is a *net.UDPConn whose packets carry the kernel's receive stamp.
func (s *Server) loop(ctx context.Context, conn net.PacketConn, pxe, timed bool, jobs chan<- job) error {
	uc, _ := conn.(*net.UDPConn)
	oob := make([]byte, 128)
	for {
		buf := make([]byte, 1500)
		var n int
		var peer net.Addr
		var err error
		var recv time.Time
		if timed {
			var oobn int
			var ua *net.UDPAddr
			n, oobn, _, ua, err = uc.ReadMsgUDP(buf, oob)
			if err == nil {
				peer, recv = ua, kernelTime(oob[:oobn])
			}
		} else {
			n, peer, err = conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read on %s: %w", s.cfg.Interface, err)
		}
		if recv.IsZero() {
			recv = time.Now()
		}
		if s.stale(recv) { // shed before parsing: the backlog drains fast
			continue
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.metrics.ignored.WithLabelValues("unparsable").Inc()
			s.log.Debug("dhcp: unparsable packet", "peer", peer, "err", err)
			continue
		}
		select {
		case jobs <- job{conn, peer, req, pxe, recv}:
		case <-ctx.Done():
			return nil
		}
	}
}

// receivedKey is the context key of a request's arrival time.
type receivedKey struct{}

// Received returns when the request being answered under ctx arrived (the
// kernel's receive stamp), if ctx is a request's: a LeaseStore may shed a
// lease whose request is too old to be answered in time (ErrStale).
func Received(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(receivedKey{}).(time.Time)
	return t, ok
}

func (s *Server) handle(ctx context.Context, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, pxe bool, recv time.Time) {
	ctx = context.WithValue(ctx, receivedKey{}, recv)
	ctx, cancel := context.WithTimeout(ctx, handleTimeout)
	defer cancel()
	var resp *dhcpv4.DHCPv4
	var err error
	if pxe {
		resp, err = s.ReplyPXE(ctx, req)
	} else {
		resp, err = s.Reply(ctx, req)
	}
	if errors.Is(err, ErrStale) {
		s.log.Debug("dhcp: shed", "mac", req.ClientHWAddr.String(), "type", req.MessageType().String(), "err", err)
		return
	}
	if err != nil {
		s.log.Error("dhcp: no reply", "mac", req.ClientHWAddr.String(), "type", req.MessageType().String(), "err", err)
		return
	}
	if resp == nil {
		return
	}
	dst := s.destination(req, resp, peer, pxe)
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		s.log.Error("dhcp: send reply", "mac", req.ClientHWAddr.String(), "to", dst, "err", err)
		return
	}
	s.log.Debug("dhcp: replied", "mac", req.ClientHWAddr.String(), "type", resp.MessageType().String(),
		"yiaddr", resp.YourIPAddr, "file", resp.BootFileName, "to", dst)
}

// destination follows RFC 2131 4.1, except that a client without an address
// is always answered by broadcast (a UDP socket cannot reach an address
// the client has not configured yet without an ARP entry).
func (s *Server) destination(req, resp *dhcpv4.DHCPv4, peer net.Addr, pxe bool) net.Addr {
	if pxe {
		if u, ok := peer.(*net.UDPAddr); ok && !u.IP.IsUnspecified() {
			return u
		}
	}
	switch {
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	case req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// readBuffer is the socket receive buffer asked for: about 4,000 requests,
// so a burst (a rack powering on, a GC pause, Consul taking the core)
// queues in the kernel instead of being dropped.
const readBuffer = 4 << 20

// growReadBuffer raises c's receive buffer to readBuffer: past the
// net.core.rmem_max limit when the process may (SO_RCVBUFFORCE, root),
// else as far as that limit allows.
func growReadBuffer(c net.PacketConn, log *slog.Logger) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, readBuffer)
	}); err == nil && serr == nil {
		return
	}
	if err := uc.SetReadBuffer(readBuffer); err != nil {
		log.Debug("dhcp: cannot grow the socket receive buffer", "err", err)
	}
}

// enableTimestamps asks the kernel to stamp c's packets on arrival
// (SO_TIMESTAMPNS); it reports whether it could.
func enableTimestamps(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// kernelTime is the arrival time in a packet's control messages
// (SCM_TIMESTAMPNS), or the zero time if there is none.
func kernelTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix())
		}
	}
	return time.Time{}
}
