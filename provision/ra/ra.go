// Package ra owns the IPv6 router advertisements on the boot interface.
// It advertises router lifetime 0 (this host is not a default router),
// both unsolicited on a timer and in answer to router solicitations, so
// that firmware such as Debian's iPXE, which waits about 16 s per boot
// stage for an RA, moves on at once. Without DHCPv6 it carries no prefix
// and no flags; with DHCPv6 (Config.DHCP6) it carries the boot prefix as
// on-link, and the M and O flags: stateful DHCPv6 sets M and O and clears
// the prefix's autonomous flag (addresses come from DHCPv6 only);
// stateless sets O alone and the autonomous flag (SLAAC). The source
// link-layer address option follows the interface's current MAC (a
// bridge's MAC changes as ports join it).
package ra

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

var (
	allNodes   = &net.IPAddr{IP: net.ParseIP("ff02::1")}
	allRouters = &net.IPAddr{IP: net.ParseIP("ff02::2")}
)

// Config configures a Server. The zero value of every optional field works.
type Config struct {
	// Interface is the only interface the server listens and sends on. Required.
	Interface string
	// Interval is the period of unsolicited advertisements. If 0, 30s.
	Interval time.Duration
	// MinReplyGap is the least time between two solicited advertisements
	// (a flood of solicitations gets at most one answer per gap). If 0, 50ms.
	MinReplyGap time.Duration
	// DHCP6 describes the DHCPv6 service on the link. If its Prefix is the
	// zero Prefix, there is none: no prefix, no flags.
	DHCP6 DHCP6
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// DHCP6 is what the advertisement says about DHCPv6 on the link.
type DHCP6 struct {
	// Prefix is the on-link prefix (a /64 for SLAAC), e.g. 2001:db8::/64.
	Prefix netip.Prefix
	// Stateful: DHCPv6 hands out addresses (M and O set, prefix not
	// autonomous). Otherwise only other configuration (O set, prefix
	// autonomous: SLAAC).
	Stateful bool
	// RouterLifetime, if positive, advertises this host as a default
	// router for that long (at most 9000s) instead of lifetime 0. UEFI
	// HTTP boot over IPv6 does not need it (OVMF reaches a boot server in
	// the on-link prefix without a router). This host does not forward:
	// clients' off-link IPv6 traffic ends here.
	RouterLifetime time.Duration
}

// Server sends router advertisements on one interface. Make one with New.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New fills cfg's defaults and returns a Server. It does no I/O.
func New(cfg Config) *Server {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.MinReplyGap <= 0 {
		cfg.MinReplyGap = 50 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}
}

// Advertisement returns the ICMPv6 router advertisement this server sends
// from an interface with hardware address mac: hop limit unspecified,
// router lifetime 0, reachable and retransmit times unspecified, the source
// link-layer address option and, when d.Prefix is set, the M/O flags and a
// prefix information option as the package doc says.
func Advertisement(mac net.HardwareAddr, d DHCP6) ([]byte, error) {
	body := make([]byte, 12, 12+8+32)
	// body[0] cur hop limit 0, body[1] flags, body[2:4] router lifetime 0,
	// body[4:8] reachable time 0, body[8:12] retrans timer 0.
	if d.Prefix.IsValid() {
		if !d.Prefix.Addr().Is6() || d.Prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("ra: prefix %v is not IPv6", d.Prefix)
		}
		pi := make([]byte, 32)
		pi[0], pi[1], pi[2] = 3, 4, byte(d.Prefix.Bits()) // type, length (32 bytes), prefix length
		pi[3] = 0x80                                      // L: on link
		body[1] = 0x40                                    // O
		if d.Stateful {
			body[1] |= 0x80 // M
		} else {
			pi[3] |= 0x40 // A: autonomous (SLAAC)
		}
		if lt := d.RouterLifetime; lt > 0 {
			binary.BigEndian.PutUint16(body[2:4], uint16(min(lt, 9000*time.Second)/time.Second))
		}
		binary.BigEndian.PutUint32(pi[4:8], 86400)  // valid lifetime
		binary.BigEndian.PutUint32(pi[8:12], 14400) // preferred lifetime
		a := d.Prefix.Masked().Addr().As16()
		copy(pi[16:], a[:])
		body = append(body, pi...)
	}
	if len(mac) == 6 {
		body = append(body, 1, 1) // source link-layer address, length 1 (8 bytes)
		body = append(body, mac...)
	}
	m := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Code: 0, Body: &icmp.RawBody{Data: body}}
	// The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.
	return m.Marshal(nil)
}

// Serve opens a raw ICMPv6 socket bound to the interface, joins ff02::2
// (without which no solicitation arrives), sends an advertisement at
// once and every Interval, and answers each solicitation, until ctx is
// done; it then closes the socket and returns nil. The socket is opened
// before any goroutine starts.
func (s *Server) Serve(ctx context.Context) error {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("ra: interface %q: %w", s.cfg.Interface, err)
	}
	ra, err := Advertisement(ifi.HardwareAddr, s.cfg.DHCP6)
	if err != nil {
		return fmt.Errorf("ra: build advertisement: %w", err)
	}
	mac := ifi.HardwareAddr
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifi.Name) }); err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("ra: listen on %s: %w", ifi.Name, err)
	}
	defer conn.Close()
	pc := ipv6.NewPacketConn(conn)
	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeRouterSolicitation)
	for _, step := range []struct {
		what string
		err  error
	}{
		{"set ICMPv6 filter", pc.SetICMPFilter(&filter)},
		{"request control messages", pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagSrc|ipv6.FlagInterface, true)},
		{"join ff02::2", pc.JoinGroup(ifi, allRouters)},
		{"set multicast hop limit", pc.SetMulticastHopLimit(255)},
		{"set hop limit", pc.SetHopLimit(255)},
		{"set multicast interface", pc.SetMulticastInterface(ifi)},
		{"disable multicast loopback", pc.SetMulticastLoopback(false)},
	} {
		if step.err != nil {
			return fmt.Errorf("ra: %s on %s: %w", step.what, ifi.Name, step.err)
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var sendMu sync.Mutex
	send := func(dst *net.IPAddr) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		// A bridge's MAC changes when ports join it: the source
		// link-layer option must name the current one, or clients
		// send their off-link traffic to a MAC nobody owns.
		if cur, err := net.InterfaceByIndex(ifi.Index); err == nil && !bytes.Equal(cur.HardwareAddr, mac) {
			b, err := Advertisement(cur.HardwareAddr, s.cfg.DHCP6)
			if err != nil {
				return fmt.Errorf("build advertisement: %w", err)
			}
			s.log.Info("ra: interface hardware address changed", "interface", ifi.Name, "from", mac.String(), "to", cur.HardwareAddr.String())
			ra, mac = b, cur.HardwareAddr
		}
		_, err := pc.WriteTo(ra, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}, dst)
		return err
	}

	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			if err := send(allNodes); err != nil && tctx.Err() == nil {
				s.log.Warn("ra: unsolicited advertisement", "interface", ifi.Name, "err", err)
			}
			select {
			case <-tctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	s.log.Info("ra: advertising", "interface", ifi.Name, "interval", s.cfg.Interval,
		"prefix", s.cfg.DHCP6.Prefix, "stateful", s.cfg.DHCP6.Stateful, "router_lifetime", s.cfg.DHCP6.RouterLifetime)
	buf := make([]byte, 1500)
	var last time.Time
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ra: read on %s: %w", ifi.Name, err)
		}
		// RFC 4861 6.1.1: hop limit 255, code 0, length >= 8.
		if cm == nil || cm.HopLimit != 255 || cm.IfIndex != ifi.Index || n < 8 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || buf[1] != 0 {
			continue
		}
		if now := time.Now(); now.Sub(last) < s.cfg.MinReplyGap {
			continue
		} else {
			last = now
		}
		dst := allNodes
		if a, ok := src.(*net.IPAddr); ok && a.IP.IsLinkLocalUnicast() {
			dst = &net.IPAddr{IP: a.IP, Zone: ifi.Name}
		}
		if err := send(dst); err != nil {
			s.log.Warn("ra: solicited advertisement", "interface", ifi.Name, "to", dst, "err", err)
		} else {
			s.log.Debug("ra: answered solicitation", "interface", ifi.Name, "from", src)
		}
	}
}
