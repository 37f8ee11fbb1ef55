package ra_test

import (
	"context"
	"github.com/ironrack/ironrack/internal/servetest"
	"net"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/provision/ra"
)

func TestAdvertisementBytes(t *testing.T) {
	b, err := ra.Advertisement(net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, ra.DHCP6{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := icmp.ParseMessage(58, b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != ipv6.ICMPTypeRouterAdvertisement {
		t.Fatalf("type %v", m.Type)
	}
	body := m.Body.(*icmp.RawBody).Data
	if lifetime := int(body[2])<<8 | int(body[3]); lifetime != 0 || body[1] != 0 {
		t.Errorf("router lifetime %d flags %#x, want 0 and 0", lifetime, body[1])
	}
	if len(body) != 20 || body[12] != 1 || body[13] != 1 || net.HardwareAddr(body[14:20]).String() != "52:54:00:01:02:03" {
		t.Errorf("source link-layer option: % x", body[12:])
	}
}

type lan struct{ srv, cli *netns.NS }

func newLAN(t *testing.T) lan {
	netns.Require(t, "rdisc6")
	l := lan{srv: netns.New(t), cli: netns.New(t)}
	l.srv.AddBridge("br0")
	l.srv.AddVeth("v0", "c0", "br0", l.cli)
	l.srv.AddBridge("br1")
	l.srv.AddVeth("v1", "c1", "br1", l.cli)
	return l
}

func (l lan) serve(t *testing.T, cfg ra.Config) {
	servetest.Run(t, 10*time.Second, func(ctx context.Context) error {
		return l.srv.Do(func() error { return ra.New(cfg).Serve(ctx) })
	})
	time.Sleep(200 * time.Millisecond)
}

func TestSolicitedRealClient(t *testing.T) {
	l := newLAN(t)
	l.serve(t, ra.Config{Interface: "br0", Interval: time.Hour})
	// rdisc6 sends router solicitations and prints the advertisement.
	out, err := l.cli.Output(20*time.Second, "rdisc6", "-1", "-r", "3", "-w", "1000", "c0")
	if err != nil {
		t.Fatalf("rdisc6 on c0: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`Router lifetime\s*:\s*0 \(0x00000000\) seconds`).MatchString(out) {
		t.Errorf("rdisc6 output lacks router lifetime 0:\n%s", out)
	}
	// Solicitations on another interface get no answer.
	if out, err := l.cli.Output(20*time.Second, "rdisc6", "-1", "-r", "2", "-w", "500", "c1"); err == nil {
		t.Errorf("server on br0 answered a solicitation on br1:\n%s", out)
	}
}

func TestUnsolicited(t *testing.T) {
	l := newLAN(t)
	// Listen first, in the client namespace, for advertisements nobody asked for.
	var pc *ipv6.PacketConn
	var conn net.PacketConn
	if err := l.cli.Do(func() (err error) {
		conn, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		pc = ipv6.NewPacketConn(conn)
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeRouterAdvertisement)
		if err := pc.SetICMPFilter(&f); err != nil {
			return err
		}
		return pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true)
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l.serve(t, ra.Config{Interface: "br0", Interval: 300 * time.Millisecond})
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	got := 0
	for got < 2 {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d advertisements: %v", got, err)
		}
		if n < 16 || buf[0] != byte(ipv6.ICMPTypeRouterAdvertisement) {
			continue
		}
		if cm.HopLimit != 255 {
			t.Errorf("advertisement from %v with hop limit %d, want 255", src, cm.HopLimit)
		}
		if ip := src.(*net.IPAddr).IP; !ip.IsLinkLocalUnicast() {
			t.Errorf("advertisement from %v, want a link-local source", ip)
		}
		got++
	}
}

func TestAdvertisementDHCP6Flags(t *testing.T) {
	for name, tc := range map[string]struct {
		stateful  bool
		flags, pf byte
	}{
		"stateful":  {true, 0xc0, 0x80},  // M and O; prefix on-link, not autonomous
		"stateless": {false, 0x40, 0xc0}, // O only; prefix on-link and autonomous (SLAAC)
	} {
		t.Run(name, func(t *testing.T) {
			b, err := ra.Advertisement(net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3},
				ra.DHCP6{Prefix: netip.MustParsePrefix("2001:db8:0:1::1/64"), Stateful: tc.stateful})
			if err != nil {
				t.Fatal(err)
			}
			m, err := icmp.ParseMessage(58, b)
			if err != nil {
				t.Fatal(err)
			}
			body := m.Body.(*icmp.RawBody).Data
			if body[1] != tc.flags || body[2] != 0 || body[3] != 0 {
				t.Errorf("flags %#x lifetime %d, want %#x and 0", body[1], int(body[2])<<8|int(body[3]), tc.flags)
			}
			pi := body[12:44]
			if pi[0] != 3 || pi[1] != 4 || pi[2] != 64 || pi[3] != tc.pf {
				t.Errorf("prefix option header % x, want 03 04 40 %02x", pi[:4], tc.pf)
			}
			if got := netip.AddrFrom16([16]byte(pi[16:32])); got != netip.MustParseAddr("2001:db8:0:1::") {
				t.Errorf("prefix %v", got)
			}
		})
	}
	// With a router lifetime (UEFI HTTP boot over IPv6), capped at 9000 s.
	for lt, want := range map[time.Duration]int{30 * time.Minute: 1800, 10 * time.Hour: 9000} {
		b, err := ra.Advertisement(nil, ra.DHCP6{Prefix: netip.MustParsePrefix("2001:db8::/64"), Stateful: true, RouterLifetime: lt})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := icmp.ParseMessage(58, b)
		body := m.Body.(*icmp.RawBody).Data
		if got := int(body[2])<<8 | int(body[3]); got != want {
			t.Errorf("router lifetime %v: advertised %d s, want %d", lt, got, want)
		}
	}
	if _, err := ra.Advertisement(nil, ra.DHCP6{Prefix: netip.MustParsePrefix("192.0.2.0/24")}); err == nil {
		t.Error("an IPv4 prefix was accepted")
	}
}

// TestSourceLinkAddressFollowsInterface: a bridge's MAC changes when ports
// join it (as when the lab adds a VM's tap after the server started); the
// advertisement's source link-layer option names the new MAC, not the one
// the interface had when Serve began (a stale one sends clients' routed
// traffic, e.g. OVMF's HTTP boot over IPv6, to a MAC nobody owns).
func TestSourceLinkAddressFollowsInterface(t *testing.T) {
	l := newLAN(t)
	l.serve(t, ra.Config{Interface: "br0", Interval: time.Hour})
	l.srv.Run("ip", "link", "set", "br0", "address", "02:00:5e:10:20:30")
	out, err := l.cli.Output(20*time.Second, "rdisc6", "-1", "-r", "3", "-w", "1000", "c0")
	if err != nil {
		t.Fatalf("rdisc6 on c0: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?i)source link-layer address\s*:\s*02:00:5e:10:20:30`).MatchString(out) {
		t.Errorf("advertisement does not carry br0's new MAC 02:00:5e:10:20:30:\n%s", out)
	}
}
