package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
)

// Reply6 answers one DHCPv6 packet from peer (its source address). A nil
// reply with a nil error means no reply is due; an error means a store
// failed and no reply may be sent. A Reply that grants an address is
// returned only after its lease was stored. A relayed request gets its
// answer wrapped in the matching Relay-Reply chain.
func (s *Server6) Reply6(ctx context.Context, pkt dhcpv6.DHCPv6, peer netip.Addr) (dhcpv6.DHCPv6, error) {
	var relay *dhcpv6.RelayMessage
	var msg *dhcpv6.Message
	switch p := pkt.(type) {
	case *dhcpv6.RelayMessage:
		if p.MessageType != dhcpv6.MessageTypeRelayForward {
			s.metrics.ignored.WithLabelValues("not_a_request").Inc()
			return nil, nil
		}
		m, err := p.GetInnerMessage()
		if err != nil {
			s.metrics.ignored.WithLabelValues("bad_relay").Inc()
			return nil, nil
		}
		relay, msg = p, m
	case *dhcpv6.Message:
		msg = p
	default:
		return nil, nil
	}
	s.metrics.received.WithLabelValues(msgType6(msg.MessageType)).Inc()
	resp, reason, err := s.reply6(ctx, msg, peer, relay)
	switch {
	case err != nil:
		s.metrics.errors.Inc()
		return nil, err
	case resp == nil:
		s.metrics.ignored.WithLabelValues(reason).Inc()
		return nil, nil
	}
	s.metrics.replies.WithLabelValues(msgType6(resp.MessageType)).Inc()
	if relay != nil {
		out, err := dhcpv6.NewRelayReplFromRelayForw(relay, resp)
		if err != nil {
			s.metrics.ignored.WithLabelValues("bad_relay").Inc()
			return nil, nil
		}
		return out, nil
	}
	return resp, nil
}

func (s *Server6) reply6(ctx context.Context, msg *dhcpv6.Message, peer netip.Addr, relay *dhcpv6.RelayMessage) (*dhcpv6.Message, string, error) {
	mt := msg.MessageType
	cid := msg.Options.ClientID()
	if cid == nil && mt != dhcpv6.MessageTypeInformationRequest {
		return nil, "no_client_id", nil
	}
	sid := msg.Options.ServerID()
	switch mt {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		if sid != nil {
			return nil, "server_id_present", nil
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if sid == nil || !sid.Equal(s.serverID) {
			return nil, "other_server", nil
		}
	case dhcpv6.MessageTypeInformationRequest:
		if sid != nil && !sid.Equal(s.serverID) {
			return nil, "other_server", nil
		}
	default:
		return nil, "unknown_message_type", nil
	}

	hw, src := ClientMAC(msg, peer, relay)
	fw := ClassifyFirmware6(msg)
	var mac string
	if hw != nil {
		mac = hw.String()
	}
	url, httpClient, bootable := "", false, false
	if hw != nil {
		url, httpClient, bootable = BootURL6(fw, mac, s.cfg.Boot, s.server)
	} else if fw.PXE || fw.IPXE {
		s.log.Warn("dhcp6: network-boot client not identified (no DUID-LL/LLT, no EUI-64 link-local source, no relay option 79): no boot file",
			"duid", fmt.Sprint(cid), "peer", peer)
	}
	if mt == dhcpv6.MessageTypeSolicit && fw.PXE && hw != nil {
		s.enlist.enlist(ctx, s.cfg.Enlister, hw, s.log, s.metrics.enlistErrors)
	}
	s.log.Debug("dhcp6: request", "type", mt.String(), "mac", mac, "mac_from", string(src), "bootable", bootable,
		"pxe", fw.PXE, "http_client", fw.HTTPClient, "ipxe", fw.IPXE, "arch", archLabel(fw))

	if mt == dhcpv6.MessageTypeInformationRequest {
		resp, err := dhcpv6.NewReplyFromMessage(msg, dhcpv6.WithServerID(s.serverID))
		if err != nil {
			// An Information-Request may lack a client ID.
			resp = &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: msg.TransactionID}
			resp.AddOption(dhcpv6.OptServerID(s.serverID))
		}
		s.addOptions6(resp, url, httpClient, bootable)
		resp.AddOption(dhcpv6.OptInformationRefreshTime(s.cfg.LeaseTime))
		return resp, "", nil
	}
	if s.pool == nil {
		// Stateless: addresses come from SLAAC (the RA's A flag).
		return nil, "stateless", nil
	}
	if hw == nil {
		return nil, "unidentified", nil
	}
	if err := s.pool.loadFrom(ctx, s.cfg.Leases); err != nil {
		return nil, "", err
	}
	ianas := msg.Options.IANA()
	switch mt {
	case dhcpv6.MessageTypeSolicit:
		if len(ianas) == 0 {
			return nil, "no_ia_na", nil
		}
		rapid := msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil
		if !rapid {
			ip := s.choose6(hw)
			resp, err := dhcpv6.NewAdvertiseFromSolicit(msg, dhcpv6.WithServerID(s.serverID))
			if err != nil {
				return nil, "malformed", nil
			}
			s.addIAs(resp, ianas, ip, iana.StatusNoAddrsAvail)
			s.addOptions6(resp, url, httpClient, bootable)
			return resp, "", nil
		}
		return s.commit(ctx, msg, hw, ianas, netip.Addr{}, url, httpClient, bootable)
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		if len(ianas) == 0 {
			return nil, "no_ia_na", nil
		}
		return s.commit(ctx, msg, hw, ianas, requested(ianas), url, httpClient, bootable)
	case dhcpv6.MessageTypeConfirm:
		resp, err := dhcpv6.NewReplyFromMessage(msg, dhcpv6.WithServerID(s.serverID))
		if err != nil {
			return nil, "malformed", nil
		}
		code := iana.StatusSuccess
		for _, ia := range ianas {
			for _, a := range ia.Options.Addresses() {
				if ip, ok := netip.AddrFromSlice(a.IPv6Addr); !ok || !s.subnet.Contains(ip) {
					code = iana.StatusNotOnLink
				}
			}
		}
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: code})
		return resp, "", nil
	case dhcpv6.MessageTypeRelease:
		if err := s.release6(ctx, hw, requested(ianas)); err != nil {
			return nil, "", err
		}
		resp, err := dhcpv6.NewReplyFromMessage(msg, dhcpv6.WithServerID(s.serverID))
		if err != nil {
			return nil, "malformed", nil
		}
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
		return resp, "", nil
	case dhcpv6.MessageTypeDecline:
		if ip := requested(ianas); ip.IsValid() && s.pool.inRange(ip) {
			s.pool.mu.Lock()
			s.pool.declined[ip] = s.now().Add(s.cfg.LeaseTime)
			s.pool.dropOffer(ip)
			s.pool.mu.Unlock()
			s.log.Warn("dhcp6: client declined address", "mac", mac, "ip", ip)
		}
		resp, err := dhcpv6.NewReplyFromMessage(msg, dhcpv6.WithServerID(s.serverID))
		if err != nil {
			return nil, "malformed", nil
		}
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
		return resp, "", nil
	}
	return nil, "unknown_message_type", nil
}

func archLabel(f Firmware) string {
	if !f.HasArch {
		return "-"
	}
	return f.Arch.String()
}

// requested is the first address the client's IA_NAs carry, or the zero Addr.
func requested(ianas []*dhcpv6.OptIANA) netip.Addr {
	for _, ia := range ianas {
		for _, a := range ia.Options.Addresses() {
			if ip, ok := netip.AddrFromSlice(a.IPv6Addr); ok && ip.Is6() {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// choose6 picks the address to advertise to hw and holds it; the zero
// Addr when the range is full.
func (s *Server6) choose6(hw net.HardwareAddr) netip.Addr {
	mac, now := hw.String(), s.now()
	p := s.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	ip, ok := p.pick(mac, now)
	if !ok {
		s.log.Warn("dhcp6: no free address in range", "mac", mac, "first", p.first, "last", p.last)
		return netip.Addr{}
	}
	p.hold(ip, mac, now)
	return ip
}

// commit grants hw an address (want if it may have it, else its own or a
// free one; for a Renew or Rebind only want), stores the lease and builds
// the Reply.
func (s *Server6) commit(ctx context.Context, msg *dhcpv6.Message, hw net.HardwareAddr, ianas []*dhcpv6.OptIANA,
	want netip.Addr, url string, httpClient, bootable bool) (*dhcpv6.Message, string, error) {
	mac, now := hw.String(), s.now()
	renew := msg.MessageType == dhcpv6.MessageTypeRenew || msg.MessageType == dhcpv6.MessageTypeRebind
	p := s.pool
	p.mu.Lock()
	var ip netip.Addr
	switch {
	case want.IsValid() && p.inRange(want) && p.freeFor(want, mac, now):
		ip = want
	case renew:
		// The client's address is not ours to extend: NoBinding, so it
		// starts over with a Solicit.
	default:
		ip, _ = p.pick(mac, now)
	}
	var prev Lease
	var hadPrev bool
	var lease Lease
	if ip.IsValid() {
		prev, hadPrev = p.byMAC[mac]
		_, held := p.byIP[ip]
		lease = Lease{MAC: append(net.HardwareAddr(nil), hw...), IP: ip, Expires: now.Add(s.cfg.LeaseTime), Hostname: fqdn(msg), Unclaimed: !held}
		p.put(mac, lease)
		p.dropOffer(ip)
	}
	p.mu.Unlock()

	if ip.IsValid() {
		if err := s.cfg.Leases.StoreLease(ctx, lease); err != nil {
			p.mu.Lock()
			p.restore(mac, ip, prev, hadPrev)
			p.mu.Unlock()
			return nil, "", fmt.Errorf("store lease %s for %s: %w", ip, mac, err)
		}
	}
	resp, err := dhcpv6.NewReplyFromMessage(msg, dhcpv6.WithServerID(s.serverID))
	if err != nil {
		return nil, "malformed", nil
	}
	missing := iana.StatusNoAddrsAvail
	if renew {
		missing = iana.StatusNoBinding
	}
	s.addIAs(resp, ianas, ip, missing)
	s.addOptions6(resp, url, httpClient, bootable)
	return resp, "", nil
}

func fqdn(msg *dhcpv6.Message) string {
	if f := msg.Options.FQDN(); f != nil && f.DomainName != nil && len(f.DomainName.Labels) > 0 {
		return f.DomainName.Labels[0]
	}
	return ""
}

func (s *Server6) release6(ctx context.Context, hw net.HardwareAddr, ip netip.Addr) error {
	mac := hw.String()
	p := s.pool
	p.mu.Lock()
	l, has := p.byMAC[mac]
	if !has || (ip.IsValid() && l.IP != ip) {
		p.mu.Unlock()
		return nil
	}
	prev := l
	l.Expires = s.now()
	p.put(mac, l)
	p.mu.Unlock()
	if err := s.cfg.Leases.StoreLease(ctx, l); err != nil {
		p.mu.Lock()
		p.put(mac, prev)
		p.mu.Unlock()
		return fmt.Errorf("store released lease %s for %s: %w", l.IP, mac, err)
	}
	return nil
}

// addIAs answers each of the client's IA_NAs: the first gets ip (if
// valid), the others, or all when ip is the zero Addr, status missing.
func (s *Server6) addIAs(resp *dhcpv6.Message, ianas []*dhcpv6.OptIANA, ip netip.Addr, missing iana.StatusCode) {
	lt := s.cfg.LeaseTime
	for i, ia := range ianas {
		out := &dhcpv6.OptIANA{IaId: ia.IaId}
		if i == 0 && ip.IsValid() {
			out.T1, out.T2 = lt/2, lt*4/5
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(ip.AsSlice()), PreferredLifetime: lt, ValidLifetime: lt})
		} else {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: missing, StatusMessage: "no address for this IA"})
		}
		resp.AddOption(out)
	}
}

// addOptions6 adds DNS and the boot options: 59 (the URL) and, for UEFI
// HTTP boot, 16 (enterprise 343, "HTTPClient").
func (s *Server6) addOptions6(resp *dhcpv6.Message, url string, httpClient, bootable bool) {
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, d := range s.cfg.DNS {
			ips[i] = net.IP(d.AsSlice())
		}
		resp.AddOption(dhcpv6.OptDNS(ips...))
	}
	if !bootable {
		return
	}
	resp.AddOption(dhcpv6.OptBootFileURL(url))
	if httpClient {
		resp.AddOption(&dhcpv6.OptVendorClass{EnterpriseNumber: enterprise343, Data: [][]byte{[]byte("HTTPClient")}})
	}
}

type metrics6 struct {
	received     *prometheus.CounterVec
	replies      *prometheus.CounterVec
	ignored      *prometheus.CounterVec
	errors       prometheus.Counter
	enlistErrors prometheus.Counter
}

func newMetrics6(reg prometheus.Registerer) (*metrics6, error) {
	m := &metrics6{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp6_requests_total", Help: "DHCPv6 requests received, by message type.",
		}, []string{"type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp6_replies_total", Help: "DHCPv6 replies built, by message type.",
		}, []string{"type"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp6_ignored_total", Help: "DHCPv6 requests answered with nothing, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironrack_dhcp6_errors_total", Help: "DHCPv6 requests not answered because a store or lookup failed.",
		}),
		enlistErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironrack_dhcp6_enlist_errors_total", Help: "Failed enlistments of DHCPv6 PXE clients.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.replies, m.ignored, m.errors, m.enlistErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// msgType6 names mt for a label; unknown values share one label.
func msgType6(mt dhcpv6.MessageType) string {
	if mt >= dhcpv6.MessageTypeSolicit && mt <= dhcpv6.MessageTypeRelayReply {
		return mt.String()
	}
	return "other"
}
