package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"golang.org/x/net/ipv6"
)

// Serve opens the DHCPv6 socket on Config6.Port bound to Config6.Interface
// only (unless Config6.Conn gives one), joins ff02::1:2 there, loads the
// leases (stateful), and answers requests until ctx is done. It then closes
// its socket, waits for the requests in flight and returns nil. The socket
// is opened before any goroutine starts.
func (s *Server6) Serve(ctx context.Context) error {
	c := s.cfg.Conn
	if c == nil {
		if s.cfg.Interface == "" {
			return errors.New("dhcp6: serve: no interface configured")
		}
		uc, err := server6.NewIPv6UDPConn(s.cfg.Interface, &net.UDPAddr{Port: s.cfg.Port})
		if err != nil {
			return fmt.Errorf("dhcp6: listen on %s port %d: %w", s.cfg.Interface, s.cfg.Port, err)
		}
		ifi, err := net.InterfaceByName(s.cfg.Interface)
		if err == nil {
			err = ipv6.NewPacketConn(uc).JoinGroup(ifi, &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers})
		}
		if err != nil {
			uc.Close()
			return fmt.Errorf("dhcp6: join ff02::1:2 on %s: %w", s.cfg.Interface, err)
		}
		c = uc
	}
	growReadBuffer(c, s.log)
	if s.pool != nil {
		if err := s.pool.loadFrom(ctx, s.cfg.Leases); err != nil {
			c.Close()
			return fmt.Errorf("dhcp6: %w", err)
		}
	}
	s.log.Info("dhcp6: serving", "interface", s.cfg.Interface, "address", s.cfg.Address, "stateful", s.pool != nil)
	return readLoop[dhcpv6.DHCPv6]{
		name: "dhcp6", iface: s.cfg.Interface, workers: s.cfg.Workers, log: s.log,
		unparsable: s.metrics.ignored.WithLabelValues("unparsable"),
		parse:      dhcpv6.FromBytes,
		handle: func(ctx context.Context, c net.PacketConn, _ int, peer net.Addr, pkt dhcpv6.DHCPv6) {
			if up, ok := peer.(*net.UDPAddr); ok {
				s.handle6(ctx, c, up, pkt)
			}
		},
	}.serve(ctx, []net.PacketConn{c})
}

func (s *Server6) handle6(ctx context.Context, c net.PacketConn, peer *net.UDPAddr, pkt dhcpv6.DHCPv6) {
	ctx, cancel := context.WithTimeout(ctx, handleTimeout)
	defer cancel()
	src, _ := netip.AddrFromSlice(peer.IP)
	resp, err := s.Reply6(ctx, pkt, src.WithZone(peer.Zone))
	if err != nil {
		s.log.Error("dhcp6: no reply", "peer", peer, "type", pkt.Type().String(), "err", err)
		return
	}
	if resp == nil {
		return
	}
	// A client sends from port 546 and a relay from 547: both are
	// answered at their source (RFC 8415 18.3.10, 19.3).
	if _, err := c.WriteTo(resp.ToBytes(), peer); err != nil {
		s.log.Error("dhcp6: send reply", "to", peer, "err", err)
		return
	}
	var file string
	if m, err := resp.GetInnerMessage(); err == nil {
		file = m.Options.BootFileURL()
	}
	s.log.Debug("dhcp6: replied", "to", peer, "type", resp.Type().String(), "file", file)
}
