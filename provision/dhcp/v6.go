package dhcp

// DHCPv6: the server of one interface, stateful (a range, IA_NA) or
// stateless (information only, addresses from SLAAC), with the same boot
// decision as DHCPv4 (BootFor) and its leases in the same kind of store.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
)

// Config6 configures a Server6. The zero value of every optional field works.
type Config6 struct {
	// Interface is the only interface Serve6 binds (SO_BINDTODEVICE) and
	// where it joins ff02::1:2. Required for Serve unless Conn is set.
	Interface string
	// Address is this server's IPv6 address on Interface with its prefix,
	// e.g. 2001:db8::1/64. Clients are told the prefix is on link (by the
	// router advertisement, not here), TFTP URLs point at it, and a
	// Confirm is answered NotOnLink for addresses outside it. Required.
	Address netip.Prefix
	// RangeFirst and RangeLast bound the stateful range, inclusive, inside
	// Address's prefix. If both are the zero Addr, the server is
	// stateless: it answers Information-Request only (with boot options
	// and DNS), and clients take their address by SLAAC.
	RangeFirst, RangeLast netip.Addr
	// DNS servers are sent as option 23. If empty, none are sent.
	DNS []netip.Addr
	// LeaseTime is the valid lifetime of an address; the preferred
	// lifetime is the same, T1 half and T2 four fifths of it. If 0, 1h.
	LeaseTime time.Duration
	// Boot names the boot files. HTTPBase must be the IPv6 base URL, e.g.
	// "http://[2001:db8::1]:8080"; if empty it is built from Address's IP
	// and port 8080. TFTP files are handed out as tftp://[Address]/FILE.
	Boot BootNames
	// Leases stores leases (keyed by MAC). Required unless stateless.
	Leases LeaseStore
	// Enlister enlists unknown PXE clients. If nil, nobody is enlisted.
	Enlister Enlister
	// ServerMAC is the link-layer address in the server's DUID-LL. If
	// nil, Interface's hardware address; if that is unknown, one derived
	// from Address.
	ServerMAC net.HardwareAddr
	// Port is the server port. If 0, 547.
	Port int
	// Conn, if set, is the server's socket: Serve answers on it instead of
	// opening one on Interface and Port, and closes it.
	Conn net.PacketConn
	// Workers bounds the requests handled at once. If 0, DefaultWorkers.
	Workers int
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Registerer receives the server's metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Server6 is a DHCPv6 server for one interface. Make one with New6.
type Server6 struct {
	cfg      Config6
	log      *slog.Logger
	now      func() time.Time
	subnet   netip.Prefix
	server   netip.Addr
	serverID dhcpv6.DUID
	pool     *pool
	enlist   *enlistCache
	metrics  *metrics6
}

// maxRange6 bounds a stateful range: the allocator's scan for a free
// address is linear in it.
const maxRange6 = 1 << 20

// New6 checks cfg, fills its defaults and returns a Server6. It does no
// network I/O (it reads Interface's hardware address).
func New6(cfg Config6) (*Server6, error) {
	if !cfg.Address.IsValid() || !cfg.Address.Addr().Is6() || cfg.Address.Addr().Is4In6() {
		return nil, fmt.Errorf("dhcp6: address %v: need an IPv6 address with prefix, e.g. 2001:db8::1/64", cfg.Address)
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.LeaseTime < 0 {
		return nil, fmt.Errorf("dhcp6: lease time %v is negative", cfg.LeaseTime)
	}
	if cfg.Boot.HTTPBase == "" {
		cfg.Boot.HTTPBase = "http://" + net.JoinHostPort(cfg.Address.Addr().String(), "8080")
	}
	cfg.Boot = cfg.Boot.withDefaults()
	if cfg.Port == 0 {
		cfg.Port = dhcpv6.DefaultServerPort
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range cfg.DNS {
		if !d.Is6() || d.Is4In6() {
			return nil, fmt.Errorf("dhcp6: dns server %v is not IPv6", d)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server6{
		cfg:    cfg,
		log:    log,
		now:    cfg.Now,
		subnet: cfg.Address.Masked(),
		server: cfg.Address.Addr(),
		enlist: &enlistCache{seen: map[string]bool{}},
	}
	first, last := cfg.RangeFirst, cfg.RangeLast
	if first.IsValid() || last.IsValid() {
		if !first.Is6() || !last.Is6() || first.Is4In6() || last.Is4In6() || last.Less(first) {
			return nil, fmt.Errorf("dhcp6: range %v-%v: need two IPv6 addresses, first <= last", first, last)
		}
		if !s.subnet.Contains(first) || !s.subnet.Contains(last) {
			return nil, fmt.Errorf("dhcp6: range %v-%v is not inside prefix %v", first, last, s.subnet)
		}
		if rangeSize6(first, last) > maxRange6 {
			return nil, fmt.Errorf("dhcp6: range %v-%v holds more than %d addresses", first, last, maxRange6)
		}
		if cfg.Leases == nil {
			return nil, errors.New("dhcp6: a stateful range needs a lease store")
		}
		s.pool = newPool(first, last, s.subnet, s.server)
	}
	mac := cfg.ServerMAC
	if len(mac) == 0 && cfg.Interface != "" {
		if ifi, err := net.InterfaceByName(cfg.Interface); err == nil {
			mac = ifi.HardwareAddr
		}
	}
	if len(mac) != 6 {
		sum := sha256.Sum256(s.server.AsSlice())
		mac = net.HardwareAddr{sum[0]&^1 | 2, sum[1], sum[2], sum[3], sum[4], sum[5]}
	}
	s.serverID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: append(net.HardwareAddr(nil), mac...)}
	m, err := newMetrics6(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dhcp6: register metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}

// Stateful reports whether s hands out addresses.
func (s *Server6) Stateful() bool { return s.pool != nil }

func rangeSize6(first, last netip.Addr) uint64 {
	a, b := first.As16(), last.As16()
	if !bytes.Equal(a[:8], b[:8]) {
		return ^uint64(0)
	}
	var x, y uint64
	for i := 8; i < 16; i++ {
		x, y = x<<8|uint64(a[i]), y<<8|uint64(b[i])
	}
	return y - x + 1
}

// MACSource says how a DHCPv6 client's MAC was found.
type MACSource string

// The ways to a client's MAC, in the order ClientMAC tries them.
const (
	MACFromDUID      MACSource = "duid"         // DUID-LL or DUID-LLT with an Ethernet address
	MACFromLinkLocal MACSource = "link-local"   // EUI-64 interface ID of the client's fe80:: source address
	MACFromRelay     MACSource = "relay-opt-79" // a relay agent's Client Link-Layer Address option
	MACUnknown       MACSource = ""             // none of these: see docs/boot-server.md
)

// ClientMAC finds the MAC of the client that sent msg: from its DUID if
// that is a DUID-LL or DUID-LLT of an Ethernet address, else from the
// EUI-64 interface ID of its link-local source address (peer; for a
// relayed message the innermost relay's peer-address), else from option
// 79 of the innermost relay. relay is nil for a message received directly.
// It is pure and never fails: a client none of these identifies gets
// (nil, MACUnknown).
func ClientMAC(msg *dhcpv6.Message, peer netip.Addr, relay *dhcpv6.RelayMessage) (net.HardwareAddr, MACSource) {
	switch d := msg.Options.ClientID().(type) {
	case *dhcpv6.DUIDLL:
		if d.HWType == iana.HWTypeEthernet && validMAC(d.LinkLayerAddr) {
			return d.LinkLayerAddr, MACFromDUID
		}
	case *dhcpv6.DUIDLLT:
		if d.HWType == iana.HWTypeEthernet && validMAC(d.LinkLayerAddr) {
			return d.LinkLayerAddr, MACFromDUID
		}
	}
	inner := innermostRelay(relay)
	if inner != nil {
		if a, ok := netip.AddrFromSlice(inner.PeerAddr); ok {
			peer = a
		}
	}
	if mac := eui64MAC(peer); mac != nil {
		return mac, MACFromLinkLocal
	}
	if inner != nil {
		if ht, lla := inner.Options.ClientLinkLayerAddress(); ht == iana.HWTypeEthernet && validMAC(lla) {
			return lla, MACFromRelay
		}
	}
	return nil, MACUnknown
}

func validMAC(m net.HardwareAddr) bool {
	return len(m) == 6 && m[0]&1 == 0 && !isZero(m)
}

// innermostRelay returns the relay closest to the client in a chain.
func innermostRelay(r *dhcpv6.RelayMessage) *dhcpv6.RelayMessage {
	for i := 0; r != nil && i < 32; i++ {
		next, ok := r.Options.RelayMessage().(*dhcpv6.RelayMessage)
		if !ok {
			return r
		}
		r = next
	}
	return r
}

// eui64MAC returns the MAC an fe80::/64 address's EUI-64 interface ID
// encodes (ff:fe in the middle, universal/local bit flipped), or nil.
func eui64MAC(a netip.Addr) net.HardwareAddr {
	if !a.Is6() || !a.IsLinkLocalUnicast() {
		return nil
	}
	b := a.As16()
	if b[11] != 0xff || b[12] != 0xfe {
		return nil
	}
	mac := net.HardwareAddr{b[8] ^ 2, b[9], b[10], b[13], b[14], b[15]}
	if !validMAC(mac) {
		return nil
	}
	return mac
}

// ClassifyFirmware6 reads the boot-relevant options of a DHCPv6 message
// into the same Firmware as ClassifyFirmware does for DHCPv4, so BootFor
// decides for both: option 61 (client architecture), option 16 (vendor
// class "PXEClient"/"HTTPClient", with an "…:Arch:NNNNN" fallback) and
// option 15 (user class "iPXE"). It is pure and never fails.
func ClassifyFirmware6(msg *dhcpv6.Message) Firmware {
	var f Firmware
	var vc string
	for _, o := range msg.Options.VendorClasses() {
		for _, d := range o.Data {
			switch {
			case bytes.HasPrefix(d, []byte("HTTPClient")):
				f.PXE, f.HTTPClient = true, true
				vc = string(d)
			case bytes.HasPrefix(d, []byte("PXEClient")):
				f.PXE = true
				if vc == "" {
					vc = string(d)
				}
			}
		}
	}
	if archs := msg.Options.ArchTypes(); len(archs) > 0 {
		f.PXE, f.HasArch, f.Arch = true, true, archs[0]
	} else if arch, ok := archFromVendorClass(vc); ok {
		f.Arch, f.HasArch = arch, true
	}
	for _, uc := range msg.Options.UserClasses() {
		if string(uc) == "iPXE" {
			f.IPXE = true
		}
	}
	return f
}

// Enterprise343 is Intel's enterprise number, under which UEFI's vendor
// class option 16 carries "HTTPClient".
const enterprise343 = 343

// BootURL6 is BootFor for DHCPv6: the boot-file URL (option 59) for f and
// whether option 16 "HTTPClient" must be in the reply (EDK2's HTTP boot
// ignores an advertise without it). A TFTP file becomes
// tftp://[server]/FILE. ok is false as for BootFor.
func BootURL6(f Firmware, mac string, n BootNames, server netip.Addr) (url string, httpClient bool, ok bool) {
	b, ok := BootFor(f, mac, n)
	if !ok {
		return "", false, false
	}
	if b.TFTP {
		return "tftp://[" + server.String() + "]/" + b.File, false, true
	}
	return b.File, b.VendorClass == "HTTPClient", true
}
