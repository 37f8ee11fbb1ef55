package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// handleTimeout bounds the store and inventory calls for one request (v4 or v6).
const handleTimeout = 5 * time.Second

// Serve opens the DHCP socket (and the PXE port's, unless disabled), both
// bound to Config.Interface only, unless Config.Conn (Config.PXEConn)
// gives it; it loads the leases, and answers requests until ctx is done.
// It then closes its sockets, waits for the requests in flight and
// returns nil. Sockets are opened before any goroutine starts,
// so a test may run Serve on a thread inside a network namespace.
//
// Serve uses server4's socket (SO_BINDTODEVICE, SO_BROADCAST) but its own
// read loop, the one Server6 uses too (readLoop): server4.Server.Serve
// starts an unbounded goroutine per packet and cannot be stopped by a
// context.
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
	for _, c := range conns {
		growReadBuffer(c, s.log)
	}
	if !s.cfg.Proxy {
		if err := s.pool.loadFrom(ctx, s.cfg.Leases); err != nil {
			closeAll()
			return fmt.Errorf("dhcp: %w", err)
		}
	}
	s.log.Info("dhcp: serving", "interface", s.cfg.Interface, "address", s.cfg.Address, "proxy", s.cfg.Proxy)
	return readLoop[*dhcpv4.DHCPv4]{
		name: "dhcp", iface: s.cfg.Interface, workers: s.cfg.Workers, log: s.log,
		unparsable: s.metrics.ignored.WithLabelValues("unparsable"),
		parse:      dhcpv4.FromBytes,
		handle: func(ctx context.Context, c net.PacketConn, port int, peer net.Addr, req *dhcpv4.DHCPv4) {
			s.handle(ctx, c, peer, req, port == 1)
		},
	}.serve(ctx, conns)
}

func (s *Server) handle(ctx context.Context, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, pxe bool) {
	ctx, cancel := context.WithTimeout(ctx, handleTimeout)
	defer cancel()
	var resp *dhcpv4.DHCPv4
	var err error
	if pxe {
		resp, err = s.ReplyPXE(ctx, req)
	} else {
		resp, err = s.Reply(ctx, req)
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
