package dhcp_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/client4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// lan is the test network: the server's namespace has br0 (192.0.2.1/24,
// the boot interface) and br1 (198.51.100.1/24, another interface); the
// client's namespace holds c0 on br0 and c1 on br1. Nothing connects to a
// real interface.
type lan struct {
	srv, cli *netns.NS
}

func newLAN(t *testing.T, tools ...string) lan {
	netns.Require(t, tools...)
	l := lan{srv: netns.New(t), cli: netns.New(t)}
	l.srv.AddBridge("br0", "192.0.2.1/24")
	l.srv.AddVeth("v0", "c0", "br0", l.cli)
	l.srv.AddBridge("br1", "198.51.100.1/24")
	l.srv.AddVeth("v1", "c1", "br1", l.cli)
	return l
}

// serve runs s in the server namespace until the returned stop is called
// (or the test ends); stop waits for Serve and fails the test on its error.
func (l lan) serve(t *testing.T, s *dhcp.Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.srv.Do(func() error { return s.Serve(ctx) }) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return 10s after its context was cancelled")
		}
	}
	t.Cleanup(stop)
	time.Sleep(100 * time.Millisecond) // let Serve bind before clients start; clients retry anyway
	return stop
}

func newServer(t *testing.T, store *memStore, proxy bool, enl dhcp.Enlister) *dhcp.Server {
	t.Helper()
	cfg := dhcp.Config{
		Interface: "br0",
		Address:   netip.MustParsePrefix("192.0.2.1/24"),
		Proxy:     proxy,
		Router:    netip.MustParseAddr("192.0.2.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		LeaseTime: 30 * time.Minute,
		Enlister:  enl,
	}
	if !proxy {
		cfg.RangeFirst = netip.MustParseAddr("192.0.2.100")
		cfg.RangeLast = netip.MustParseAddr("192.0.2.199")
		cfg.Leases = store
	}
	s, err := dhcp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// udhcpc runs busybox udhcpc on c0 once and returns the variables its
// script saw when the lease was bound.
func (l lan) udhcpc(t *testing.T, extra ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "bound.env")
	script := filepath.Join(dir, "script.sh")
	body := "#!/bin/sh\n[ \"$1\" = bound ] && env > " + out + "\nexit 0\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"busybox", "udhcpc", "-i", "c0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script}, extra...)
	if o, err := l.cli.Output(30*time.Second, argv...); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, o)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("udhcpc bound no lease: %v", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// exchange runs insomniacslk's client4 (raw sockets, bound to ifname) in
// the client namespace: a full DORA, or as far as the server answers. It
// returns the messages exchanged.
func (l lan) exchange(ifname string, timeout time.Duration, mods ...dhcpv4.Modifier) ([]*dhcpv4.DHCPv4, error) {
	var conv []*dhcpv4.DHCPv4
	err := l.cli.Do(func() (err error) {
		c := client4.NewClient()
		c.ReadTimeout, c.WriteTimeout = timeout, timeout
		conv, err = c.Exchange(ifname, mods...)
		return err
	})
	return conv, err
}

// lease runs a DORA for mac on c0 and returns the ACK.
func (l lan) lease(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	conv, err := l.exchange("c0", 3*time.Second, append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...)
	if err != nil {
		t.Fatalf("DORA for %s: %v (after %d messages)", mac, err, len(conv))
	}
	return conv[len(conv)-1]
}

func TestServeUdhcpcGetsLease(t *testing.T) {
	l := newLAN(t, "busybox")
	store := newMemStore()
	enl := &memEnlister{}
	l.serve(t, newServer(t, store, false, enl))

	env := l.udhcpc(t)
	for k, want := range map[string]string{"router": "192.0.2.1", "dns": "192.0.2.53", "subnet": "255.255.255.0", "lease": "1800", "serverid": "192.0.2.1"} {
		if got := strings.TrimSpace(env[k]); got != want {
			t.Errorf("udhcpc %s = %q, want %q", k, got, want)
		}
	}
	ip := netip.MustParseAddr(env["ip"])
	if ip.Less(netip.MustParseAddr("192.0.2.100")) || netip.MustParseAddr("192.0.2.199").Less(ip) {
		t.Errorf("leased %s outside the range", ip)
	}
	if env["boot_file"] != "" {
		t.Errorf("plain client got boot file %q", env["boot_file"])
	}
	if len(enl.list()) != 0 {
		t.Errorf("plain DHCP client was enlisted: %v", enl.list())
	}
	// The lease was stored, with the MAC of c0.
	mac := strings.TrimSpace(l.cli.Run("cat", "/sys/class/net/c0/address"))
	if got, ok := store.get(mac); !ok || got.IP != ip {
		t.Errorf("stored lease for %s = %+v (%v), want %s", mac, got, ok, ip)
	}

	// udhcpc as a BIOS PXE client: option 60 and option 93 = 0.
	env = l.udhcpc(t, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if env["boot_file"] != "undionly.kpxe" || env["siaddr"] != "192.0.2.1" {
		t.Errorf("PXE udhcpc: boot_file %q siaddr %q", env["boot_file"], env["siaddr"])
	}
	if got := enl.list(); len(got) != 1 || got[0] != mac {
		t.Errorf("enlisted %v, want [%s]", got, mac)
	}
}

func TestServePXEVariants(t *testing.T) {
	l := newLAN(t)
	l.serve(t, newServer(t, newMemStore(), false, nil))
	tests := map[string]struct {
		mods     []dhcpv4.Modifier
		file     string
		vendor   string
		tftpFrom string
	}{
		"bios":      {mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001")}, file: "undionly.kpxe", tftpFrom: "192.0.2.1"},
		"uefi":      {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016")}, file: "ipxe.efi", tftpFrom: "192.0.2.1"},
		"ipxe":      {mods: []dhcpv4.Modifier{arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE")}, file: "http://192.0.2.1:8080/boot.ipxe?mac=52:54:00:aa:00:"},
		"uefi-http": {mods: []dhcpv4.Modifier{arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001")}, file: "http://192.0.2.1:8080/ipxe/ipxe.efi", vendor: "HTTPClient"},
	}
	i := 0
	for name, tc := range tests {
		i++
		t.Run(name, func(t *testing.T) {
			mac := net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0, byte(i)}
			ack := l.lease(t, mac, tc.mods...)
			want := tc.file
			if strings.HasSuffix(want, "mac=52:54:00:aa:00:") {
				want += mac.String()[15:]
			}
			if ack.BootFileName != want || ack.BootFileNameOption() != want {
				t.Errorf("boot file %q (option 67 %q), want %q", ack.BootFileName, ack.BootFileNameOption(), want)
			}
			if tc.tftpFrom != "" && ack.ServerIPAddr.String() != tc.tftpFrom {
				t.Errorf("next-server %s, want %s", ack.ServerIPAddr, tc.tftpFrom)
			}
			if ack.ClassIdentifier() != tc.vendor {
				t.Errorf("option 60 %q, want %q", ack.ClassIdentifier(), tc.vendor)
			}
			if ack.YourIPAddr.IsUnspecified() {
				t.Error("authoritative ACK without an address")
			}
		})
	}
}

func TestServeRestartKeepsLeases(t *testing.T) {
	l := newLAN(t)
	store := newMemStore()
	stop := l.serve(t, newServer(t, store, false, nil))
	first := map[string]bool{}
	for i := range 3 {
		ack := l.lease(t, net.HardwareAddr{0x52, 0x54, 0, 0xbb, 0, byte(i)})
		first[ack.YourIPAddr.String()] = true
	}
	stop()
	l.serve(t, newServer(t, store, false, nil))
	for i := range 3 {
		ack := l.lease(t, net.HardwareAddr{0x52, 0x54, 0, 0xcc, 0, byte(i)})
		if ip := ack.YourIPAddr.String(); first[ip] {
			t.Errorf("restarted server handed %s, leased before the restart, to a new client", ip)
		}
	}
}

func TestServeIgnoresOtherInterface(t *testing.T) {
	l := newLAN(t)
	l.serve(t, newServer(t, newMemStore(), false, nil))
	if conv, err := l.exchange("c1", 3*time.Second, arch(iana.INTEL_X86PC)); err == nil || len(conv) > 1 {
		t.Fatalf("server bound to br0 answered a client on br1: %d messages, err %v", len(conv), err)
	}
	// Control: the same client on c0 is answered.
	if conv, err := l.exchange("c0", 3*time.Second, arch(iana.INTEL_X86PC)); err != nil {
		t.Fatalf("client on c0: %v after %d messages", err, len(conv))
	}
}

func TestServeProxyDHCP(t *testing.T) {
	l := newLAN(t)
	enl := &memEnlister{}
	l.serve(t, newServer(t, nil, true, enl))
	// Port 67: an offer with boot options and no address; no ACK follows
	// (the site's own DHCP server owns the addresses).
	mac := net.HardwareAddr{0x52, 0x54, 0, 0xdd, 0, 1}
	conv, err := l.exchange("c0", 2*time.Second, dhcpv4.WithHwAddr(mac), arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"))
	if len(conv) < 2 {
		t.Fatalf("no proxy offer: %v", err)
	}
	if err == nil {
		t.Errorf("proxy server ACKed a request on port 67")
	}
	offer := conv[1]
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "undionly.kpxe" || offer.ClassIdentifier() != "PXEClient" {
		t.Errorf("proxy offer: yiaddr %s file %q vendor %q", offer.YourIPAddr, offer.BootFileName, offer.ClassIdentifier())
	}
	if got := enl.list(); len(got) != 1 || got[0] != mac.String() {
		t.Errorf("enlisted %v", got)
	}
	// A plain client gets nothing from a proxy.
	if conv, _ := l.exchange("c0", 2*time.Second); len(conv) > 1 {
		t.Errorf("proxy answered a plain client: %s", conv[1].Summary())
	}

	// Port 4011: a unicast request from a client that has its address.
	l.cli.Run("ip", "addr", "add", "192.0.2.77/24", "dev", "c0")
	req := discover(mac.String(), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 77)),
		arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))
	var ack *dhcpv4.DHCPv4
	err = l.cli.Do(func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 77)})
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 1500)
		for range 5 {
			if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4011}); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				continue
			}
			ack, err = dhcpv4.FromBytes(buf[:n])
			return err
		}
		return errors.New("no answer from port 4011 after 5 tries")
	})
	if err != nil {
		t.Fatal(err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" || !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("port 4011 reply: %s", ack.Summary())
	}
}

// TestServeGivenConns serves sockets the caller bound (Config.Conn and
// PXEConn) instead of opening its own: a unicast request on the PXE socket
// is answered to its sender, and Serve closes both sockets when it stops.
// Loopback only: no namespace, no privilege.
func TestServeGivenConns(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := dhcp.New(dhcp.Config{Address: netip.MustParsePrefix("192.0.2.1/24"), Proxy: true, Conn: conn, PXEConn: pconn})
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this check runs after servetest's stop.
	t.Cleanup(func() {
		defer client.Close()
		for name, c := range map[string]net.PacketConn{"Conn": conn, "PXEConn": pconn} {
			if _, err := c.WriteTo([]byte{0}, client.LocalAddr()); !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Serve returned: write error %v, want net.ErrClosed", name, err)
			}
		}
	})
	servetest.Run(t, 10*time.Second, s.Serve)
	req := discover("52:54:00:ee:00:01", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 77)),
		arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))
	if _, err := client.WriteTo(req.ToBytes(), pconn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer on the given PXE socket: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" {
		t.Errorf("PXE socket reply: %s", ack.Summary())
	}
}

// TestServeShedsStaleRequests: a request that waited in the socket's
// buffer past MaxQueueAge (the server was not reading: here, not yet
// started) is dropped unanswered, and a fresh one behind it is answered;
// with shedding off (negative) both are answered. The age is the kernel's
// receive stamp (SO_TIMESTAMPNS), on a real loopback socket.
func TestServeShedsStaleRequests(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxAge  time.Duration
		wantOld bool
	}{{"shed", 200 * time.Millisecond, false}, {"off", -1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			pconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s, err := dhcp.New(dhcp.Config{Address: netip.MustParsePrefix("192.0.2.1/24"), Proxy: true, Conn: conn, PXEConn: pconn, MaxQueueAge: tc.maxAge})
			if err != nil {
				t.Fatal(err)
			}
			client, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			req := func(mac string) *dhcpv4.DHCPv4 {
				r := discover(mac, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 77)),
					arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016"))
				if _, err := client.WriteTo(r.ToBytes(), pconn.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				return r
			}
			// Serve turns the kernel's receive stamps on as it starts; this
			// request is queued before, so the test turns them on as Serve
			// would have had it been running (idle) already.
			raw, err := pconn.(*net.UDPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) })
			// The kernel turns receive stamping on asynchronously (a static
			// key flipped from a work queue): a packet right after the
			// option would be stamped only when read.
			time.Sleep(100 * time.Millisecond)
			old := req("52:54:00:ee:00:01") // queued while nothing reads
			time.Sleep(400 * time.Millisecond)
			servetest.Run(t, 10*time.Second, s.Serve)
			fresh := req("52:54:00:ee:00:02")
			got := map[string]bool{} // by client MAC (discover's xid is fixed)
			client.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, _, err := client.ReadFrom(buf)
				if err != nil {
					break // the deadline: every reply is in
				}
				if r, err := dhcpv4.FromBytes(buf[:n]); err == nil {
					got[r.ClientHWAddr.String()] = true
				}
			}
			if !got[fresh.ClientHWAddr.String()] {
				t.Error("the fresh request was not answered")
			}
			if got[old.ClientHWAddr.String()] != tc.wantOld {
				t.Errorf("the request that waited 400 ms: answered %v, want %v (MaxQueueAge %v)", got[old.ClientHWAddr.String()], tc.wantOld, tc.maxAge)
			}
		})
	}
}
