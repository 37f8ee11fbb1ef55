package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"
)

// handleTimeout bounds the store and inventory calls for one request.
const handleTimeout = 5 * time.Second

// Serve opens the DHCP socket (and the PXE port's, unless disabled), both
// bound to Config.Interface only, loads the leases, and answers requests
// until ctx is done. It then closes its sockets, waits for the requests in
// flight and returns nil. Sockets are opened before any goroutine starts,
// so a test may run Serve on a thread inside a network namespace.
//
// Serve uses server4's socket (SO_BINDTODEVICE, SO_BROADCAST) but its own
// read loop: server4.Server.Serve starts an unbounded goroutine per packet
// and cannot be stopped by a context.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.Interface == "" {
		return errors.New("dhcp: serve: no interface configured")
	}
	conn, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: s.cfg.Port})
	if err != nil {
		return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, s.cfg.Port, err)
	}
	conns := []net.PacketConn{conn}
	if s.cfg.PXEPort > 0 {
		pconn, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: s.cfg.PXEPort})
		if err != nil {
			conn.Close()
			return fmt.Errorf("dhcp: listen on %s port %d: %w", s.cfg.Interface, s.cfg.PXEPort, err)
		}
		conns = append(conns, pconn)
	}
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	if !s.cfg.Proxy {
		if err := s.load(ctx); err != nil {
			closeAll()
			return fmt.Errorf("dhcp: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	defer closeAll()

	s.log.Info("dhcp: serving", "interface", s.cfg.Interface, "address", s.cfg.Address, "proxy", s.cfg.Proxy)
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	g := new(errgroup.Group)
	for i, c := range conns {
		pxe := i == 1
		g.Go(func() error {
			err := s.loop(ctx, c, pxe, sem, &wg)
			closeAll() // one socket failed or ctx is done: stop the other loop too
			return err
		})
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Server) loop(ctx context.Context, conn net.PacketConn, pxe bool, sem chan struct{}, wg *sync.WaitGroup) error {
	for {
		buf := make([]byte, 1500)
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read on %s: %w", s.cfg.Interface, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.metrics.ignored.WithLabelValues("unparsable").Inc()
			s.log.Debug("dhcp: unparsable packet", "peer", peer, "err", err)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.handle(ctx, conn, peer, req, pxe)
		}()
	}
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
