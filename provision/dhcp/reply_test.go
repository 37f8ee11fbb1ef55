package dhcp_test

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironrack/ironrack/provision/dhcp"
)

var update = flag.Bool("update", os.Getenv("UPDATE_GOLDEN") == "1", "rewrite golden files")

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func arch(a iana.Arch) dhcpv4.Modifier {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(a))
	return dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, b)
}

func vendor(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s))
}

func userClass(s string) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte(s))
}

func discover(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	mods = append([]dhcpv4.Modifier{dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})}, mods...)
	d, err := dhcpv4.NewDiscovery(mustMAC(mac), mods...)
	if err != nil {
		panic(err)
	}
	return d
}

func request(offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		panic(err)
	}
	return r
}

type fixture struct {
	srv   *dhcp.Server
	store *memStore
	enl   *memEnlister
	now   *time.Time
}

func authoritative(t testing.TB, store *memStore, mods ...func(*dhcp.Config)) fixture {
	t.Helper()
	now := t0
	enl := &memEnlister{}
	cfg := dhcp.Config{
		Interface:    "br0",
		Address:      netip.MustParsePrefix("192.0.2.1/24"),
		RangeFirst:   netip.MustParseAddr("192.0.2.100"),
		RangeLast:    netip.MustParseAddr("192.0.2.103"),
		Router:       netip.MustParseAddr("192.0.2.254"),
		DNS:          []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		LeaseTime:    10 * time.Minute,
		Leases:       store,
		Reservations: memReservations{"52:54:00:00:00:aa": netip.MustParseAddr("192.0.2.50")},
		Enlister:     enl,
		Now:          func() time.Time { return now },
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := dhcp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{srv: srv, store: store, enl: enl, now: &now}
}

func proxy(t testing.TB) fixture {
	t.Helper()
	enl := &memEnlister{}
	srv, err := dhcp.New(dhcp.Config{
		Interface: "br0",
		Address:   netip.MustParsePrefix("192.0.2.1/24"),
		Proxy:     true,
		Enlister:  enl,
		Now:       func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{srv: srv, enl: enl}
}

// dora runs discover/offer/request/ack and returns the ACK.
func (f fixture) dora(t testing.TB, d *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	ctx := context.Background()
	offer, err := f.srv.Reply(ctx, d)
	if err != nil || offer == nil {
		t.Fatalf("discover from %s: offer %v, err %v", d.ClientHWAddr, offer, err)
	}
	// Real PXE clients repeat their identity options in the request.
	var copied []dhcpv4.Modifier
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionClassIdentifier, dhcpv4.OptionClientSystemArchitectureType, dhcpv4.OptionUserClassInformation} {
		if d.Options.Has(o) {
			copied = append(copied, dhcpv4.WithOptionCopied(d, o))
		}
	}
	ack, err := f.srv.Reply(ctx, request(offer, copied...))
	if err != nil || ack == nil {
		t.Fatalf("request from %s: ack %v, err %v", d.ClientHWAddr, ack, err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request from %s: got %s: %s", d.ClientHWAddr, ack.MessageType(), ack.Message())
	}
	return ack
}

func TestBootFor(t *testing.T) {
	names := dhcp.BootNames{HTTPBase: "http://192.0.2.1:8080"}
	tests := map[string]struct {
		mods []dhcpv4.Modifier
		want dhcp.Boot
		ok   bool
	}{
		"plain dhcp client":        {},
		"bios pxe":                 {mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001")}, want: dhcp.Boot{File: "undionly.kpxe", TFTP: true}, ok: true},
		"bios pxe, vendor only":    {mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001")}, want: dhcp.Boot{File: "undionly.kpxe", TFTP: true}, ok: true},
		"uefi x64":                 {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016")}, want: dhcp.Boot{File: "ipxe.efi", TFTP: true}, ok: true},
		"uefi bc":                  {mods: []dhcpv4.Modifier{arch(iana.EFI_BC)}, want: dhcp.Boot{File: "ipxe.efi", TFTP: true}, ok: true},
		"ovmf pxe without 77":      {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64)}, want: dhcp.Boot{File: "ipxe.efi", TFTP: true}, ok: true},
		"qemu bios rom says iPXE":  {mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE")}, want: dhcp.Boot{File: "http://192.0.2.1:8080/boot.ipxe?mac=52:54:00:12:34:56"}, ok: true},
		"ipxe by option 175":       {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{1, 1, 1})}, want: dhcp.Boot{File: "http://192.0.2.1:8080/boot.ipxe?mac=52:54:00:12:34:56"}, ok: true},
		"uefi http boot":           {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001")}, want: dhcp.Boot{File: "http://192.0.2.1:8080/ipxe/ipxe.efi", VendorClass: "HTTPClient"}, ok: true},
		"arm64 http boot: no file": {mods: []dhcpv4.Modifier{arch(iana.EFI_ARM64_HTTP), vendor("HTTPClient:Arch:00019")}},
		"arm64 pxe: no file":       {mods: []dhcpv4.Modifier{arch(iana.EFI_ARM64), vendor("PXEClient:Arch:00011")}},
		"odd-length option 93":     {mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0}), vendor("PXEClient")}},
		"garbage vendor arch":      {mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:0x7")}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := discover("52:54:00:12:34:56", tc.mods...)
			got, ok := dhcp.BootFor(dhcp.ClassifyFirmware(req), req.ClientHWAddr.String(), names)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("boot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthoritativeDORA(t *testing.T) {
	f := authoritative(t, newMemStore())
	ack := f.dora(t, discover("52:54:00:00:00:01", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001")))
	if got := ack.YourIPAddr.String(); got != "192.0.2.100" {
		t.Errorf("yiaddr = %s, want 192.0.2.100", got)
	}
	if ack.BootFileName != "undionly.kpxe" || !ack.ServerIPAddr.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Errorf("boot file %q from %s, want undionly.kpxe from 192.0.2.1", ack.BootFileName, ack.ServerIPAddr)
	}
	l, ok := f.store.get("52:54:00:00:00:01")
	if !ok || l.IP != netip.MustParseAddr("192.0.2.100") || !l.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("stored lease = %+v, %v", l, ok)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:01"}, f.enl.list()); diff != "" {
		t.Errorf("enlisted (-want +got):\n%s", diff)
	}
	// A plain DHCP client gets a lease but is not enlisted.
	ack2 := f.dora(t, discover("52:54:00:00:00:02"))
	if ack2.YourIPAddr.String() != "192.0.2.101" || ack2.BootFileName != "" {
		t.Errorf("plain client: yiaddr %s file %q", ack2.YourIPAddr, ack2.BootFileName)
	}
	if len(f.enl.list()) != 1 {
		t.Errorf("plain client was enlisted: %v", f.enl.list())
	}
	// Same client again: same address.
	if again := f.dora(t, discover("52:54:00:00:00:01")); !again.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("renewal moved client to %s", again.YourIPAddr)
	}
}

func TestReservation(t *testing.T) {
	f := authoritative(t, newMemStore())
	ack := f.dora(t, discover("52:54:00:00:00:aa"))
	if got := ack.YourIPAddr.String(); got != "192.0.2.50" {
		t.Errorf("reserved client got %s, want 192.0.2.50", got)
	}
	// Another client may not request the reserved address... unless free in range; 192.0.2.50 is outside the range.
	r := discover("52:54:00:00:00:bb", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 50))))
	nak, err := f.srv.Reply(context.Background(), r)
	if err != nil || nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request of someone else's reserved address: %v %v", nak, err)
	}
}

func TestRestartNeverReassignsLeasedAddress(t *testing.T) {
	store := newMemStore()
	first := authoritative(t, store)
	a := first.dora(t, discover("52:54:00:00:00:01"))
	b := first.dora(t, discover("52:54:00:00:00:02"))

	// A new server instance over the same store: a third client must get neither address.
	second := authoritative(t, store)
	c := second.dora(t, discover("52:54:00:00:00:03"))
	for _, used := range []net.IP{a.YourIPAddr, b.YourIPAddr} {
		if c.YourIPAddr.Equal(used) {
			t.Fatalf("restarted server handed %s (leased) to another client", used)
		}
	}
	// And the first client keeps its address.
	if a2 := second.dora(t, discover("52:54:00:00:00:01")); !a2.YourIPAddr.Equal(a.YourIPAddr) {
		t.Errorf("client 1 moved from %s to %s after restart", a.YourIPAddr, a2.YourIPAddr)
	}
	// Requesting a leased address for another MAC is refused.
	r := discover("52:54:00:00:00:04", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(b.YourIPAddr)))
	if nak, _ := second.srv.Reply(context.Background(), r); nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a leased address: got %v, want NAK", nak)
	}
}

func TestPoolExhaustionAndExpiry(t *testing.T) {
	f := authoritative(t, newMemStore())
	for i := range 4 {
		f.dora(t, discover(fmt.Sprintf("52:54:00:00:01:%02x", i)))
	}
	ctx := context.Background()
	if offer, err := f.srv.Reply(ctx, discover("52:54:00:00:02:00")); offer != nil || err != nil {
		t.Fatalf("full pool: offer %v err %v, want nothing", offer, err)
	}
	*f.now = t0.Add(11 * time.Minute) // every lease expired
	if offer, err := f.srv.Reply(ctx, discover("52:54:00:00:02:00")); offer == nil || err != nil {
		t.Fatalf("expired pool: offer %v err %v, want an offer", offer, err)
	}
}

func TestStoreFailureSendsNoAck(t *testing.T) {
	f := authoritative(t, newMemStore())
	ctx := context.Background()
	offer, _ := f.srv.Reply(ctx, discover("52:54:00:00:00:01"))
	f.store.failNext = true
	ack, err := f.srv.Reply(ctx, request(offer))
	if ack != nil || err == nil {
		t.Fatalf("store failed: ack %v err %v, want no ack and an error", ack, err)
	}
	// The client retries and now succeeds with the same address.
	ack, err = f.srv.Reply(ctx, request(offer))
	if err != nil || ack == nil || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("retry: ack %v err %v", ack, err)
	}
}

// TestAddressInUseNaks: when another server sharing the range leased the
// address first, the request is NAKed and the client's next offer is
// another address.
func TestAddressInUseNaks(t *testing.T) {
	f := authoritative(t, newMemStore())
	ctx := context.Background()
	offer, _ := f.srv.Reply(ctx, discover("52:54:00:00:00:01"))
	f.store.inUse = true
	nak, err := f.srv.Reply(ctx, request(offer))
	if err != nil || nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("address in use: reply %v err %v, want a NAK", nak, err)
	}
	again, _ := f.srv.Reply(ctx, discover("52:54:00:00:00:01"))
	if again == nil || again.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("after the NAK the offer is %v again, want another address", again.YourIPAddr)
	}
	ack, err := f.srv.Reply(ctx, request(again))
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request of the new offer: %v %v", ack, err)
	}
}

func TestRequestForOtherServerIsIgnored(t *testing.T) {
	f := authoritative(t, newMemStore())
	offer, _ := f.srv.Reply(context.Background(), discover("52:54:00:00:00:01"))
	r := request(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 9))))
	if resp, err := f.srv.Reply(context.Background(), r); resp != nil || err != nil {
		t.Fatalf("request for another server: %v %v", resp, err)
	}
}

func TestProxyAnswersOnlyPXE(t *testing.T) {
	f := proxy(t)
	ctx := context.Background()
	if resp, _ := f.srv.Reply(ctx, discover("52:54:00:00:00:01")); resp != nil {
		t.Fatalf("proxy answered a plain DHCP client: %s", resp.Summary())
	}
	resp, err := f.srv.Reply(ctx, discover("52:54:00:00:00:02", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001")))
	if err != nil || resp == nil {
		t.Fatalf("proxy offer: %v %v", resp, err)
	}
	if !resp.YourIPAddr.IsUnspecified() || resp.BootFileName != "undionly.kpxe" || resp.ClassIdentifier() != "PXEClient" {
		t.Errorf("proxy offer: yiaddr %s file %q vendor %q", resp.YourIPAddr, resp.BootFileName, resp.ClassIdentifier())
	}
	// Port 4011.
	req := discover("52:54:00:00:00:02", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))
	ack, err := f.srv.ReplyPXE(ctx, req)
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" || !ack.YourIPAddr.IsUnspecified() {
		t.Fatalf("port 4011 ack: %v %v", ack, err)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:02"}, f.enl.list()); diff != "" {
		t.Errorf("enlisted (-want +got):\n%s", diff)
	}
}

func TestMetricsOnInjectedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := authoritative(t, newMemStore(), func(c *dhcp.Config) { c.Registerer = reg })
	f.dora(t, discover("52:54:00:00:00:01"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "ironrack_dhcp_replies_total" {
			n = len(mf.GetMetric())
		}
	}
	if n != 2 {
		t.Errorf("replies series = %d; want 2 (offer, ack)", n)
	}
	// A second server on the same registry must fail loudly, not share counters silently.
	if _, err := dhcp.New(dhcp.Config{Address: netip.MustParsePrefix("192.0.2.1/24"), Proxy: true, Registerer: reg}); err == nil {
		t.Error("two servers registered the same metrics without error")
	}
}

// TestGoldenReplies renders the replies to typical clients into
// testdata/replies/*.golden. UPDATE_GOLDEN=1 rewrites them.
func TestGoldenReplies(t *testing.T) {
	cases := map[string]struct {
		proxy bool
		req   *dhcpv4.DHCPv4
	}{
		"plain-discover":     {req: discover("52:54:00:00:00:01", dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter))},
		"bios-pxe-discover":  {req: discover("52:54:00:00:00:02", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"))},
		"qemu-ipxe-discover": {req: discover("52:54:00:00:00:03", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE"))},
		"uefi-pxe-discover":  {req: discover("52:54:00:00:00:04", arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))},
		"uefi-http-discover": {req: discover("52:54:00:00:00:05", arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001"))},
		"proxy-bios-discover": {proxy: true, req: discover("52:54:00:00:00:06", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"),
			dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)))},
		"proxy-uefi-discover": {proxy: true, req: discover("52:54:00:00:00:07", arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var f fixture
			if tc.proxy {
				f = proxy(t)
			} else {
				f = authoritative(t, newMemStore())
			}
			resp, err := f.srv.Reply(context.Background(), tc.req)
			if err != nil || resp == nil {
				t.Fatalf("no reply: %v", err)
			}
			got := resp.Summary() + "\n"
			path := filepath.Join("testdata", "replies", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create)", err)
			}
			if diff := cmp.Diff(strings.TrimSpace(string(want)), strings.TrimSpace(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}
