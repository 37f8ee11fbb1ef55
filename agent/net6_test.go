package agent

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

func TestIPv6URL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://[2001:db8:b007::1]:8080": true,
		"http://[fd00::1]/":              true,
		"http://192.0.2.1:8080":          false,
		"http://[::ffff:192.0.2.1]:8080": false,
		"http://boot.example:8080":       false,
		"http://[fe80::1%25br0]:8080":    true,
		"":                               false,
		"http://[2001:db8::1":            false,
	} {
		if got := IPv6URL(u); got != want {
			t.Errorf("IPv6URL(%q) = %v, want %v", u, got, want)
		}
	}
}

func reply6(t *testing.T, opts ...dhcpv6.Option) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = dhcpv6.MessageTypeReply
	for _, o := range opts {
		m.AddOption(o)
	}
	return m
}

func TestLeaseAddr6(t *testing.T) {
	ia := func(ips ...string) *dhcpv6.OptIANA {
		o := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 1}}
		for _, ip := range ips {
			o.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(ip), PreferredLifetime: 600e9, ValidLifetime: 600e9})
		}
		return o
	}
	expired := ia("2001:db8:b007::99")
	expired.Options.Options[0].(*dhcpv6.OptIAAddress).ValidLifetime = 0
	ok := reply6(t, expired, ia("fe80::1", "2001:db8:b007::100"))
	got, err := LeaseAddr6(ok)
	if err != nil || got != netip.MustParseAddr("2001:db8:b007::100") {
		t.Errorf("LeaseAddr6 = %v, %v; want 2001:db8:b007::100 (global, not expired)", got, err)
	}

	noAddrs := ia()
	noAddrs.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "range full"})
	adv := reply6(t, ia("2001:db8::5"))
	adv.MessageType = dhcpv6.MessageTypeAdvertise
	for name, c := range map[string]struct {
		m    *dhcpv6.Message
		want string
	}{
		"nil":          {nil, "no reply"},
		"advertise":    {adv, "not a Reply"},
		"no IA_NA":     {reply6(t), "grants no address"},
		"NoAddrsAvail": {reply6(t, noAddrs), "range full"},
		"top status":   {reply6(t, &dhcpv6.OptStatusCode{StatusCode: iana.StatusUnspecFail, StatusMessage: "store down"}, ia("2001:db8::5")), "store down"},
	} {
		if _, err := LeaseAddr6(c.m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
}

func TestInet6State(t *testing.T) {
	proc := []byte(`00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000505400fffe600066 02 40 20 80     eth0
20010db8b00700000000000000000100 02 40 00 c0     eth0
20010db8b00700000000000000000101 03 40 00 88     eth1
`)
	for name, c := range map[string]struct {
		nic, ip string
		want    Inet6Addr
		ok      bool
	}{
		"tentative":  {"eth0", "2001:db8:b007::100", Inet6Addr{Tentative: true}, true},
		"ready":      {"eth0", "fe80::5054:ff:fe60:66", Inet6Addr{}, true},
		"dad failed": {"eth1", "2001:db8:b007::101", Inet6Addr{Failed: true}, true},
		"other nic":  {"eth1", "2001:db8:b007::100", Inet6Addr{}, false},
		"absent":     {"eth0", "2001:db8::9", Inet6Addr{}, false},
	} {
		got, ok := Inet6State(proc, c.nic, netip.MustParseAddr(c.ip))
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %+v %v, want %+v %v", name, got, ok, c.want, c.ok)
		}
	}
}
