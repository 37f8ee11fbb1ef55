package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
)

// enlistTimeout bounds one EnlistPXE call.
const enlistTimeout = 3 * time.Second

// Reply answers one request that arrived on the DHCP server port. A nil
// reply with a nil error means no reply is due (not for us, malformed,
// proxy mode and not a PXE client, and so on); an error means a store
// failed and no reply may be sent. In authoritative mode an ACK is returned
// only after its lease was stored.
func (s *Server) Reply(ctx context.Context, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	resp, reason, err := s.reply(ctx, req, false)
	s.count(req, resp, reason, err)
	return resp, err
}

// ReplyPXE answers one request that arrived on the PXE boot-server port
// (4011): boot options only, never an address.
func (s *Server) ReplyPXE(ctx context.Context, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	resp, reason, err := s.reply(ctx, req, true)
	s.count(req, resp, reason, err)
	return resp, err
}

// validRequest rejects what no sane client sends.
func validRequest(req *dhcpv4.DHCPv4) string {
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return "not_a_request"
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		return "not_ethernet"
	case req.ClientHWAddr[0]&1 == 1 || isZero(req.ClientHWAddr):
		return "bad_mac"
	case req.HopCount > 16:
		return "too_many_hops"
	}
	return ""
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (s *Server) reply(ctx context.Context, req *dhcpv4.DHCPv4, pxePort bool) (*dhcpv4.DHCPv4, string, error) {
	if r := validRequest(req); r != "" {
		return nil, r, nil
	}
	mt := req.MessageType()
	fw := ClassifyFirmware(req)
	mac := req.ClientHWAddr.String()
	if s.cfg.ChainFirstTFTP && fw.IPXE && fw.PXE {
		if first, _ := s.chained.LoadOrStore(mac, req.TransactionID); first == req.TransactionID {
			fw.IPXE = false // this exchange goes the way a plain PXE ROM's would
		}
	}
	boot, bootable := BootFor(fw, mac, s.cfg.Boot)

	if pxePort {
		if mt != dhcpv4.MessageTypeRequest && mt != dhcpv4.MessageTypeInform {
			return nil, "pxe_port_not_request", nil
		}
		if !bootable {
			return nil, "not_bootable", nil
		}
		resp, err := s.base(req, dhcpv4.MessageTypeAck)
		if err != nil {
			return nil, "", err
		}
		resp.ClientIPAddr = req.ClientIPAddr
		s.addBoot(resp, req, boot, true)
		return resp, "", nil
	}

	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(net.IP(s.server.AsSlice())) &&
		(mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeRelease || mt == dhcpv4.MessageTypeDecline) {
		if mt == dhcpv4.MessageTypeRequest && s.pool != nil {
			s.pool.mu.Lock()
			s.pool.dropOfferOf(mac)
			s.pool.mu.Unlock()
		}
		return nil, "other_server", nil
	}

	if mt == dhcpv4.MessageTypeDiscover && fw.PXE {
		s.enlistPXE(ctx, req.ClientHWAddr)
	}

	if s.cfg.Proxy {
		if mt != dhcpv4.MessageTypeDiscover {
			return nil, "proxy_not_discover", nil
		}
		if !bootable {
			return nil, "not_bootable", nil
		}
		resp, err := s.base(req, dhcpv4.MessageTypeOffer)
		if err != nil {
			return nil, "", err
		}
		s.addBoot(resp, req, boot, true)
		return resp, "", nil
	}

	if err := s.pool.loadFrom(ctx, s.cfg.Leases); err != nil {
		return nil, "", err
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		ip, err := s.choose(ctx, req.ClientHWAddr)
		if err != nil {
			return nil, "", err
		}
		if !ip.IsValid() {
			return nil, "pool_exhausted", nil
		}
		resp, err := s.base(req, dhcpv4.MessageTypeOffer)
		if err != nil {
			return nil, "", err
		}
		resp.YourIPAddr = net.IP(ip.AsSlice())
		s.addLeaseOptions(resp)
		if bootable {
			s.addBoot(resp, req, boot, false)
		}
		return resp, "", nil
	case dhcpv4.MessageTypeRequest:
		return s.request(ctx, req, boot, bootable)
	case dhcpv4.MessageTypeRelease:
		return nil, "release", s.release(ctx, req)
	case dhcpv4.MessageTypeDecline:
		if ip, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4()); ok && s.pool.inRange(ip) {
			s.pool.mu.Lock()
			s.pool.declined[ip] = s.now().Add(s.cfg.LeaseTime)
			s.pool.dropOffer(ip)
			s.pool.mu.Unlock()
			s.log.Warn("dhcp: client declined address", "mac", mac, "ip", ip)
		}
		return nil, "decline", nil
	case dhcpv4.MessageTypeInform:
		resp, err := s.base(req, dhcpv4.MessageTypeAck)
		if err != nil {
			return nil, "", err
		}
		resp.ClientIPAddr = req.ClientIPAddr
		s.addLeaseOptions(resp)
		resp.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		if bootable {
			s.addBoot(resp, req, boot, false)
		}
		return resp, "", nil
	}
	return nil, "unknown_message_type", nil
}

// reservation returns mac's reserved address if it is usable here.
func (s *Server) reservation(ctx context.Context, mac net.HardwareAddr) (netip.Addr, error) {
	if s.cfg.Reservations == nil {
		return netip.Addr{}, nil
	}
	ip, err := s.cfg.Reservations.Reservation(ctx, mac)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reservation of %s: %w", mac, err)
	}
	if ip.IsValid() && !s.pool.usable(ip.Unmap()) {
		s.log.Warn("dhcp: reservation outside the subnet ignored", "mac", mac.String(), "ip", ip, "subnet", s.subnet)
		return netip.Addr{}, nil
	}
	return ip.Unmap(), nil
}

// choose picks the address to offer mac and holds it.
func (s *Server) choose(ctx context.Context, hw net.HardwareAddr) (netip.Addr, error) {
	res, err := s.reservation(ctx, hw)
	if err != nil {
		return netip.Addr{}, err
	}
	mac := hw.String()
	now := s.now()
	p := s.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if res.IsValid() {
		if holder, ok := p.byIP[res]; ok && holder != mac && !p.byMAC[holder].Expires.Before(now) {
			s.log.Warn("dhcp: reserved address is leased to another client; offering it anyway", "mac", mac, "ip", res, "holder", holder)
		}
		return res, nil
	}
	ip, ok := p.pick(mac, now)
	if !ok {
		s.log.Warn("dhcp: no free address in range", "mac", mac, "first", p.first, "last", p.last)
		return netip.Addr{}, nil
	}
	p.hold(ip, mac, now)
	return ip, nil
}

func (s *Server) request(ctx context.Context, req *dhcpv4.DHCPv4, boot Boot, bootable bool) (*dhcpv4.DHCPv4, string, error) {
	hw := req.ClientHWAddr
	mac := hw.String()
	want, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4())
	if !ok || !want.IsValid() || want.IsUnspecified() {
		want, ok = netip.AddrFromSlice(req.ClientIPAddr.To4())
	}
	if !ok || want.IsUnspecified() {
		return s.nak(req, "no requested address")
	}
	res, err := s.reservation(ctx, hw)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	p := s.pool
	p.mu.Lock()
	allowed := false
	switch {
	case res.IsValid():
		allowed = want == res
	default:
		allowed = p.inRange(want) && p.freeFor(want, mac, now)
	}
	if !allowed {
		p.mu.Unlock()
		return s.nak(req, fmt.Sprintf("address %s is not available to %s", want, mac))
	}
	prev, hadPrev := p.byMAC[mac]
	_, held := p.byIP[want]
	lease := Lease{MAC: append(net.HardwareAddr(nil), hw...), IP: want, Expires: now.Add(s.cfg.LeaseTime), Hostname: req.HostName(), Unclaimed: !held}
	p.put(mac, lease)
	p.dropOffer(want)
	p.mu.Unlock()

	if err := s.cfg.Leases.StoreLease(ctx, lease); err != nil {
		p.mu.Lock()
		p.restore(mac, want, prev, hadPrev)
		inUse := errors.Is(err, ErrAddressInUse)
		if inUse {
			// Another server leased it first: the loser NAKs, and its
			// next offer to this client is another address.
			p.declined[want] = now.Add(s.cfg.LeaseTime)
		}
		p.mu.Unlock()
		if inUse {
			s.log.Info("dhcp: address leased by another server first", "mac", mac, "ip", want, "error", err)
			return s.nak(req, fmt.Sprintf("address %s is in use", want))
		}
		return nil, "", fmt.Errorf("store lease %s for %s: %w", want, mac, err)
	}
	resp, err := s.base(req, dhcpv4.MessageTypeAck)
	if err != nil {
		return nil, "", err
	}
	resp.YourIPAddr = net.IP(want.AsSlice())
	resp.ClientIPAddr = req.ClientIPAddr
	s.addLeaseOptions(resp)
	if bootable {
		s.addBoot(resp, req, boot, false)
	}
	return resp, "", nil
}

func (s *Server) release(ctx context.Context, req *dhcpv4.DHCPv4) error {
	ip, ok := netip.AddrFromSlice(req.ClientIPAddr.To4())
	if !ok {
		return nil
	}
	mac := req.ClientHWAddr.String()
	p := s.pool
	p.mu.Lock()
	l, has := p.byMAC[mac]
	if !has || l.IP != ip {
		p.mu.Unlock()
		return nil
	}
	prev := l
	l.Expires = s.now()
	p.put(mac, l)
	p.mu.Unlock()
	// Keep the MAC→IP binding (expired), so the client gets the same
	// address back while nobody else took it.
	if err := s.cfg.Leases.StoreLease(ctx, l); err != nil {
		p.mu.Lock()
		p.put(mac, prev)
		p.mu.Unlock()
		return fmt.Errorf("store released lease %s for %s: %w", ip, mac, err)
	}
	return nil
}

func (s *Server) nak(req *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, string, error) {
	resp, err := s.base(req, dhcpv4.MessageTypeNak)
	if err != nil {
		return nil, "", err
	}
	resp.UpdateOption(dhcpv4.OptMessage(why))
	return resp, "", nil
}

// base starts a reply of type mt to req.
func (s *Server) base(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	return newReply(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(s.server.AsSlice()))),
	), nil
}

// newReply is dhcpv4.NewReplyFromRequest without its random transaction
// ID: that one reads crypto/rand under a fresh context timeout for every
// reply (5% of the server's CPU under load), only to be overwritten by the
// request's ID.
func newReply(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range []dhcpv4.Modifier{
		dhcpv4.WithReply(req),
		dhcpv4.WithGatewayIP(req.GatewayIPAddr),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier), // RFC 6842
	} {
		m(d)
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

func (s *Server) addLeaseOptions(resp *dhcpv4.DHCPv4) {
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(s.subnet.Bits(), 32)))
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime))
	if s.cfg.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(net.IP(s.cfg.Router.AsSlice())))
	}
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, d := range s.cfg.DNS {
			ips[i] = net.IP(d.AsSlice())
		}
		resp.UpdateOption(dhcpv4.OptDNS(ips...))
	}
}

// addBoot adds the boot options. proxy adds what proxyDHCP clients need to
// accept an answer without an address: option 60 PXEClient, option 43 with
// "boot from the file name, skip discovery" for BIOS, and option 97 echoed.
func (s *Server) addBoot(resp, req *dhcpv4.DHCPv4, b Boot, proxy bool) {
	if len(b.File) < 128 {
		resp.BootFileName = b.File
	}
	resp.UpdateOption(dhcpv4.OptBootFileName(b.File))
	if b.TFTP {
		resp.ServerIPAddr = net.IP(s.server.AsSlice())
		resp.UpdateOption(dhcpv4.OptTFTPServerName(s.server.String()))
	}
	switch {
	case b.VendorClass != "":
		resp.UpdateOption(dhcpv4.OptClassIdentifier(b.VendorClass))
	case proxy:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}
	if proxy {
		if fw := ClassifyFirmware(req); !fw.IPXE && fw.HasArch && fw.Arch == iana.INTEL_X86PC {
			// PXE vendor option 6 (discovery control) = 8: boot the file, no menu.
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		}
		if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(guid) == 17 {
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
		}
	}
}

// enlistCache remembers which MACs were enlisted by this process.
type enlistCache struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *Server) enlistPXE(ctx context.Context, hw net.HardwareAddr) {
	s.enlist.enlist(ctx, s.cfg.Enlister, hw, s.log, s.metrics.enlistErrors)
}

// enlist calls e.EnlistPXE for hw unless it succeeded before in this
// process; a failure is logged and counted in errs.
func (c *enlistCache) enlist(ctx context.Context, e Enlister, hw net.HardwareAddr, log *slog.Logger, errs prometheus.Counter) {
	if e == nil {
		return
	}
	mac := hw.String()
	c.mu.Lock()
	done := c.seen[mac]
	c.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, enlistTimeout)
	defer cancel()
	if err := e.EnlistPXE(ctx, append(net.HardwareAddr(nil), hw...)); err != nil {
		log.Error("dhcp: enlist PXE client", "mac", mac, "err", err)
		errs.Inc()
		return
	}
	c.mu.Lock()
	if len(c.seen) >= 65536 {
		clear(c.seen)
	}
	c.seen[mac] = true
	c.mu.Unlock()
}
