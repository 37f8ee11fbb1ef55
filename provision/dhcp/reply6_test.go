package dhcp_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/ironrack/ironrack/provision/dhcp"
)

var (
	mac1     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	mac2     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	mac3     = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}
	eui64LL1 = netip.MustParseAddr("fe80::5054:ff:fe00:1") // EUI-64 of mac1
	eui64LL2 = netip.MustParseAddr("fe80::5054:ff:fe00:2") // EUI-64 of mac2
	privLL   = netip.MustParseAddr("fe80::1c2d:3e4f:5a6b:7c8d")
	uuidDUID = &dhcpv6.DUIDUUID{UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	llDUID1  = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac1}
	lltDUID1 = &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 7, LinkLayerAddr: mac1}
)

// msg6 builds a client message of type mt with client ID duid and mods.
func msg6(t testing.TB, mt dhcpv6.MessageType, duid dhcpv6.DUID, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewMessage(append([]dhcpv6.Modifier{dhcpv6.WithClientID(duid)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = mt
	return m
}

// relayed wraps m in a Relay-Forward from peer (the client's address) with
// the given options.
func relayed(t testing.TB, m dhcpv6.DHCPv6, peer netip.Addr, opts ...dhcpv6.Option) *dhcpv6.RelayMessage {
	t.Helper()
	r, err := dhcpv6.EncapsulateRelay(m, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:1::1"), net.IP(peer.AsSlice()))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		r.AddOption(o)
	}
	return r
}

// TestClientMACOrder checks the identification order: DUID-LL/LLT, then
// the EUI-64 link-local source (for a relayed message, the relay's
// peer-address), then relay option 79; and what identifies nobody.
func TestClientMACOrder(t *testing.T) {
	opt79 := dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, mac3)
	tests := map[string]struct {
		duid  dhcpv6.DUID
		peer  netip.Addr
		relay func(*dhcpv6.Message) *dhcpv6.RelayMessage
		want  net.HardwareAddr
		from  dhcp.MACSource
	}{
		"DUID-LL wins over link-local":  {llDUID1, eui64LL2, nil, mac1, dhcp.MACFromDUID},
		"DUID-LLT":                      {lltDUID1, privLL, nil, mac1, dhcp.MACFromDUID},
		"DUID-UUID, EUI-64 link-local":  {uuidDUID, eui64LL2, nil, mac2, dhcp.MACFromLinkLocal},
		"DUID-UUID, privacy link-local": {uuidDUID, privLL, nil, nil, dhcp.MACUnknown},
		"DUID-UUID, global source":      {uuidDUID, netip.MustParseAddr("2001:db8::5054:ff:fe00:2"), nil, nil, dhcp.MACUnknown},
		"DUID-LL of a multicast MAC": {&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}},
			eui64LL2, nil, mac2, dhcp.MACFromLinkLocal},
		"DUID-LL not Ethernet": {&dhcpv6.DUIDLL{HWType: iana.HWTypeInfiniband, LinkLayerAddr: mac1}, privLL, nil, nil, dhcp.MACUnknown},
		"relayed: peer-address EUI-64 before option 79": {uuidDUID, netip.MustParseAddr("2001:db8:1::1"),
			func(m *dhcpv6.Message) *dhcpv6.RelayMessage { return relayed(t, m, eui64LL2, opt79) }, mac2, dhcp.MACFromLinkLocal},
		"relayed: option 79": {uuidDUID, netip.MustParseAddr("2001:db8:1::1"),
			func(m *dhcpv6.Message) *dhcpv6.RelayMessage { return relayed(t, m, privLL, opt79) }, mac3, dhcp.MACFromRelay},
		"relayed twice: the innermost relay's option 79": {uuidDUID, netip.MustParseAddr("2001:db8:2::1"),
			func(m *dhcpv6.Message) *dhcpv6.RelayMessage {
				inner := relayed(t, m, privLL, opt79)
				outer, err := dhcpv6.EncapsulateRelay(inner, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:2::1"), net.ParseIP("2001:db8:1::1"))
				if err != nil {
					t.Fatal(err)
				}
				return outer
			}, mac3, dhcp.MACFromRelay},
		"relayed, DUID-LL still first": {llDUID1, netip.MustParseAddr("2001:db8:1::1"),
			func(m *dhcpv6.Message) *dhcpv6.RelayMessage { return relayed(t, m, eui64LL2, opt79) }, mac1, dhcp.MACFromDUID},
		"relayed without either": {uuidDUID, netip.MustParseAddr("2001:db8:1::1"),
			func(m *dhcpv6.Message) *dhcpv6.RelayMessage { return relayed(t, m, privLL) }, nil, dhcp.MACUnknown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := msg6(t, dhcpv6.MessageTypeSolicit, tc.duid)
			var r *dhcpv6.RelayMessage
			if tc.relay != nil {
				r = tc.relay(m)
			}
			got, from := dhcp.ClientMAC(m, tc.peer, r)
			if got.String() != tc.want.String() || from != tc.from {
				t.Errorf("ClientMAC = %v (%q), want %v (%q)", got, from, tc.want, tc.from)
			}
		})
	}
}

func vendorClass(data string) dhcpv6.Modifier {
	return dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte(data)}})
}

// TestBootURL6 checks option 59 and option 16 per client: the decision is
// BootFor's, the same as for DHCPv4. A UEFI PXE client (arch 7 or 9, no
// "HTTPClient") gets ipxe.efi over TFTP on the IPv6 address and no option
// 16 (see TestReply6UEFIPXE).
func TestBootURL6(t *testing.T) {
	names := dhcp.BootNames{HTTPBase: "http://[2001:db8::1]:8080"}
	server := netip.MustParseAddr("2001:db8::1")
	type want struct {
		URL        string
		HTTPClient bool
		OK         bool
	}
	pxe := want{"tftp://[2001:db8::1]/ipxe.efi", false, true}
	tests := map[string]struct {
		mods []dhcpv6.Modifier
		want want
	}{
		"plain client": {nil, want{}},
		"EDK2 HTTP boot (arch 16, HTTPClient)": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64_HTTP), vendorClass("HTTPClient:Arch:00016:UNDI:003016")},
			want{"http://[2001:db8::1]:8080/ipxe/ipxe.efi", true, true}},
		"EDK2 PXEv6 (arch 7, PXEClient)": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64), vendorClass("PXEClient:Arch:00007:UNDI:003016")},
			pxe},
		"UEFI PXE arch 9 (EFI BC)": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_BC), vendorClass("PXEClient:Arch:00009:UNDI:003016")},
			pxe},
		"arch 7 without a vendor class": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64)},
			pxe},
		"PXEClient vendor class, arch only there": {
			[]dhcpv6.Modifier{vendorClass("PXEClient:Arch:00007:UNDI:003016")},
			pxe},
		"BIOS arch 0 over DHCPv6": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.INTEL_X86PC), vendorClass("PXEClient:Arch:00000:UNDI:002001")},
			want{"tftp://[2001:db8::1]/undionly.kpxe", false, true}},
		"PXEClient of another arch": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_ARM64), vendorClass("PXEClient:Arch:00011")},
			want{}},
		"HTTPClient vendor class, arch only there": {
			[]dhcpv6.Modifier{vendorClass("HTTPClient:Arch:00016:UNDI:003016")},
			want{"http://[2001:db8::1]:8080/ipxe/ipxe.efi", true, true}},
		"HTTPClient of another arch": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_ARM64_HTTP), vendorClass("HTTPClient")},
			want{}},
		"iPXE (user class)": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64), dhcpv6.WithUserClass([]byte("iPXE"))},
			want{"http://[2001:db8::1]:8080/boot.ipxe?mac=52:54:00:00:00:01", false, true}},
		"iPXE with a PXEClient vendor class": {
			[]dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64), vendorClass("PXEClient:Arch:00007:UNDI:003016"), dhcpv6.WithUserClass([]byte("iPXE"))},
			want{"http://[2001:db8::1]:8080/boot.ipxe?mac=52:54:00:00:00:01", false, true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fw := dhcp.ClassifyFirmware6(msg6(t, dhcpv6.MessageTypeSolicit, llDUID1, tc.mods...))
			var got want
			got.URL, got.HTTPClient, got.OK = dhcp.BootURL6(fw, mac1.String(), names, server)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("BootURL6 (-want +got):\n%s", d)
			}
		})
	}
}

// TestReply6UEFIPXE walks EDK2's PXEv6 exchange as OVMF sends it (DUID-UUID,
// arch 7, vendor class PXEClient, the MAC only in the EUI-64 link-local
// source): the Advertise and the Reply carry an address and option 59
// tftp://[server]/ipxe.efi, the lease is stored under the MAC and the
// machine enlisted. They carry no option 16: EDK2 (UefiPxeBcDxe) takes an
// offer with an address and "PXEClient" as a "DHCP BINL" offer, and then,
// option 59 or not, asks ff02::1:2 port 4011 again for its boot file and
// gives up ("PXE-E16: No valid offer received") when nothing answers there
// (seen in TestUEFIPXEBootIPv6). Without option 16 the offer is "DHCP only
// with a boot file URL", which it boots from directly.
func TestReply6UEFIPXE(t *testing.T) {
	store, enl := newMemStore(), &memEnlister{}
	s := server6(t, store, enl, true)
	pxe := []dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64), vendorClass("PXEClient:Arch:00007:UNDI:003016"),
		dhcpv6.WithRequestedOptions(dhcpv6.OptionBootfileURL, dhcpv6.OptionBootfileParam, dhcpv6.OptionVendorClass)}
	check := func(what string, m *dhcpv6.Message, mt dhcpv6.MessageType) {
		t.Helper()
		if m == nil || m.MessageType != mt {
			t.Fatalf("%s answered %v, want %s", what, m, mt)
		}
		if got := addrOf(m); got != "2001:db8::100" {
			t.Errorf("%s: address %s", what, got)
		}
		if got := m.Options.BootFileURL(); got != "tftp://[2001:db8::1]/ipxe.efi" {
			t.Errorf("%s: option 59 %q", what, got)
		}
		if vc := m.Options.VendorClasses(); len(vc) != 0 {
			t.Errorf("%s: option 16 %v: EDK2 then asks port 4011 for its boot file", what, vc)
		}
	}
	adv := reply6(t, s, msg6(t, dhcpv6.MessageTypeSolicit, uuidDUID, append(pxe, iana6(1, ""))...), eui64LL1)
	check("Solicit", adv, dhcpv6.MessageTypeAdvertise)
	req := msg6(t, dhcpv6.MessageTypeRequest, uuidDUID, append(pxe, dhcpv6.WithServerID(adv.Options.ServerID()), iana6(1, "2001:db8::100"))...)
	check("Request", reply6(t, s, req, eui64LL1), dhcpv6.MessageTypeReply)
	if l, ok := store.get(mac1.String()); !ok || l.IP.String() != "2001:db8::100" {
		t.Errorf("stored lease %+v, %v", l, ok)
	}
	if d := cmp.Diff([]string{mac1.String()}, enl.list()); d != "" {
		t.Errorf("enlisted (-want +got):\n%s", d)
	}
}

func server6(t testing.TB, store *memStore, enl dhcp.Enlister, stateful bool) *dhcp.Server6 {
	t.Helper()
	cfg := dhcp.Config6{
		Address:   netip.MustParsePrefix("2001:db8::1/64"),
		ServerMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe},
		DNS:       []netip.Addr{netip.MustParseAddr("2001:db8::53")},
		LeaseTime: 30 * time.Minute,
		Enlister:  enl,
	}
	if stateful {
		cfg.RangeFirst = netip.MustParseAddr("2001:db8::100")
		cfg.RangeLast = netip.MustParseAddr("2001:db8::101")
		cfg.Leases = store
	}
	s, err := dhcp.New6(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func iana6(id byte, addr string) dhcpv6.Modifier {
	if addr == "" {
		return dhcpv6.WithIAID([4]byte{0, 0, 0, id})
	}
	return dhcpv6.WithIANA(dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr)})
}

func reply6(t *testing.T, s *dhcp.Server6, req dhcpv6.DHCPv6, peer netip.Addr) *dhcpv6.Message {
	t.Helper()
	resp, err := s.Reply6(context.Background(), req, peer)
	if err != nil {
		t.Fatalf("Reply6: %v", err)
	}
	if resp == nil {
		return nil
	}
	m, ok := resp.(*dhcpv6.Message)
	if !ok {
		t.Fatalf("reply is %T", resp)
	}
	return m
}

func addrOf(m *dhcpv6.Message) string {
	if ia := m.Options.OneIANA(); ia != nil {
		if a := ia.Options.OneAddress(); a != nil {
			return a.IPv6Addr.String()
		}
		if st := ia.Options.Status(); st != nil {
			return "status " + st.StatusCode.String()
		}
	}
	return ""
}

// TestReply6Stateful walks a UEFI HTTP boot client through Solicit,
// Request, Renew and Release, checks the lease is stored before the Reply,
// that a store failure sends nothing, and that the range runs out cleanly.
func TestReply6Stateful(t *testing.T) {
	store, enl := newMemStore(), &memEnlister{}
	s := server6(t, store, enl, true)
	http := []dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64_HTTP), vendorClass("HTTPClient:Arch:00016:UNDI:003016")}

	sol := msg6(t, dhcpv6.MessageTypeSolicit, uuidDUID, append(http, iana6(1, ""))...)
	adv := reply6(t, s, sol, eui64LL1)
	if adv == nil || adv.MessageType != dhcpv6.MessageTypeAdvertise {
		t.Fatalf("Solicit answered %v", adv)
	}
	if got := addrOf(adv); got != "2001:db8::100" {
		t.Errorf("advertised %s", got)
	}
	if got := adv.Options.BootFileURL(); got != "http://[2001:db8::1]:8080/ipxe/ipxe.efi" {
		t.Errorf("option 59 %q", got)
	}
	if vc := adv.Options.VendorClass(343); len(vc) != 1 || string(vc[0]) != "HTTPClient" {
		t.Errorf("option 16 %q, want HTTPClient under enterprise 343", vc)
	}
	if store.stores != 0 {
		t.Errorf("an Advertise stored a lease")
	}
	if d := cmp.Diff([]string{mac1.String()}, enl.list()); d != "" {
		t.Errorf("enlisted (-want +got):\n%s", d)
	}

	req := msg6(t, dhcpv6.MessageTypeRequest, uuidDUID, append(http, dhcpv6.WithServerID(adv.Options.ServerID()), iana6(1, "2001:db8::100"))...)
	store.failNext = true
	if resp, err := s.Reply6(context.Background(), req, eui64LL1); err == nil || resp != nil {
		t.Fatalf("store failure: reply %v, err %v; want no reply and an error", resp, err)
	}
	rep := reply6(t, s, req, eui64LL1)
	if rep == nil || rep.MessageType != dhcpv6.MessageTypeReply || addrOf(rep) != "2001:db8::100" {
		t.Fatalf("Request answered %v", rep)
	}
	if l, ok := store.get(mac1.String()); !ok || l.IP.String() != "2001:db8::100" {
		t.Errorf("stored lease %+v, %v", l, ok)
	}

	// Another client asking for the same address gets the other one.
	sol2 := msg6(t, dhcpv6.MessageTypeSolicit, llDUID(mac2), iana6(1, ""))
	if got := addrOf(reply6(t, s, sol2, privLL)); got != "2001:db8::101" {
		t.Errorf("second client advertised %s", got)
	}
	req2 := msg6(t, dhcpv6.MessageTypeRequest, llDUID(mac2), dhcpv6.WithServerID(adv.Options.ServerID()), iana6(1, "2001:db8::100"))
	if got := addrOf(reply6(t, s, req2, privLL)); got != "2001:db8::101" {
		t.Errorf("second client asking for a taken address got %s", got)
	}
	// The range is full now.
	sol3 := msg6(t, dhcpv6.MessageTypeSolicit, llDUID(mac3), iana6(1, ""))
	if got := addrOf(reply6(t, s, sol3, privLL)); got != "status NoAddrsAvail" {
		t.Errorf("third client: %s", got)
	}
	// Renew of a lease not ours: NoBinding.
	ren3 := msg6(t, dhcpv6.MessageTypeRenew, llDUID(mac3), dhcpv6.WithServerID(adv.Options.ServerID()), iana6(1, "2001:db8::100"))
	if got := addrOf(reply6(t, s, ren3, privLL)); got != "status NoBinding" {
		t.Errorf("renew of another's address: %s", got)
	}
	// Another server's Request is ignored.
	other := msg6(t, dhcpv6.MessageTypeRequest, uuidDUID, dhcpv6.WithServerID(llDUID(mac3)), iana6(1, "2001:db8::100"))
	if got := reply6(t, s, other, eui64LL1); got != nil {
		t.Errorf("request to another server answered: %v", got)
	}
	// Release ends the lease; the address is kept for its client.
	rel := msg6(t, dhcpv6.MessageTypeRelease, uuidDUID, dhcpv6.WithServerID(adv.Options.ServerID()), iana6(1, "2001:db8::100"))
	if rep := reply6(t, s, rel, eui64LL1); rep == nil || rep.Options.Status() == nil || rep.Options.Status().StatusCode != iana.StatusSuccess {
		t.Errorf("release answered %v", rep)
	}
	if l, _ := store.get(mac1.String()); l.Expires.After(time.Now()) {
		t.Errorf("released lease still valid: %+v", l)
	}

	// A client that names no firmware gets an address and no boot file,
	// and is not enlisted.
	s2 := server6(t, newMemStore(), enl, true)
	plain := reply6(t, s2, msg6(t, dhcpv6.MessageTypeSolicit, uuidDUID, iana6(9, "")), eui64LL2)
	if got := plain.Options.BootFileURL(); got != "" || addrOf(plain) != "2001:db8::100" {
		t.Errorf("plain Solicit: option 59 %q, address %s", got, addrOf(plain))
	}
	if d := cmp.Diff([]string{mac1.String()}, enl.list()); d != "" {
		t.Errorf("a plain client was enlisted (-want +got):\n%s", d)
	}

	// A client nobody can identify gets nothing in stateful mode.
	if got := reply6(t, s, msg6(t, dhcpv6.MessageTypeSolicit, uuidDUID, iana6(1, "")), privLL); got != nil {
		t.Errorf("unidentified client answered: %v", got)
	}
}

func llDUID(mac net.HardwareAddr) dhcpv6.DUID {
	return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}
}

// TestReply6StatelessAndRelay: stateless answers Information-Request only;
// a relayed request is answered inside a Relay-Reply to the same relay.
func TestReply6StatelessAndRelay(t *testing.T) {
	s := server6(t, nil, nil, false)
	if got := reply6(t, s, msg6(t, dhcpv6.MessageTypeSolicit, llDUID1, iana6(1, "")), eui64LL1); got != nil {
		t.Errorf("stateless server answered a Solicit: %v", got)
	}
	ir := msg6(t, dhcpv6.MessageTypeInformationRequest, llDUID1, dhcpv6.WithArchType(iana.EFI_X86_64), dhcpv6.WithUserClass([]byte("iPXE")))
	rep := reply6(t, s, ir, eui64LL1)
	if rep == nil || rep.MessageType != dhcpv6.MessageTypeReply {
		t.Fatalf("Information-Request answered %v", rep)
	}
	if got := rep.Options.BootFileURL(); !strings.HasSuffix(got, "/boot.ipxe?mac=52:54:00:00:00:01") {
		t.Errorf("option 59 %q", got)
	}
	if d := rep.Options.DNS(); len(d) != 1 || d[0].String() != "2001:db8::53" {
		t.Errorf("DNS %v", d)
	}

	r := relayed(t, ir, privLL, dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, mac3),
		dhcpv6.OptInterfaceID([]byte("port7")))
	// The client ID is a UUID, so option 79 identifies it.
	r.Options.Del(dhcpv6.OptionRelayMsg)
	inner := msg6(t, dhcpv6.MessageTypeInformationRequest, uuidDUID, dhcpv6.WithUserClass([]byte("iPXE")))
	r.AddOption(dhcpv6.OptRelayMessage(inner))
	resp, err := s.Reply6(context.Background(), r, netip.MustParseAddr("2001:db8:1::1"))
	if err != nil {
		t.Fatal(err)
	}
	rr, ok := resp.(*dhcpv6.RelayMessage)
	if !ok || rr.MessageType != dhcpv6.MessageTypeRelayReply || string(rr.Options.InterfaceID()) != "port7" {
		t.Fatalf("relayed request answered %v", resp)
	}
	m, err := rr.GetInnerMessage()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Options.BootFileURL(); !strings.HasSuffix(got, "mac=52:54:00:00:00:03") {
		t.Errorf("relayed option 59 %q", got)
	}
}
