package dhcp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzReply feeds arbitrary bytes through the parser and both servers'
// Reply and ReplyPXE, and checks that any reply is a sane answer to the
// request. Seeds: testdata/fuzz/FuzzReply plus the typical clients below.
func FuzzReply(f *testing.F) {
	for _, d := range []*dhcpv4.DHCPv4{
		discover("52:54:00:00:00:01"),
		discover("52:54:00:00:00:02", arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001"), userClass("iPXE")),
		discover("52:54:00:00:00:03", arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001")),
		discover("52:54:00:00:00:04", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 100)))),
		discover("52:54:00:00:00:05", dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 7))),
		discover("52:54:00:00:00:06", dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 100))),
	} {
		f.Add(d.ToBytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		store := newMemStore()
		auth := authoritative(t, store)
		prox := proxy(t)
		ctx := context.Background()
		for _, c := range []struct {
			name  string
			proxy bool
			reply func(context.Context, *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error)
		}{
			{"authoritative", false, auth.srv.Reply},
			{"authoritative:4011", true, auth.srv.ReplyPXE},
			{"proxy", true, prox.srv.Reply},
			{"proxy:4011", true, prox.srv.ReplyPXE},
		} {
			resp, err := c.reply(ctx, req)
			if err != nil {
				t.Fatalf("%s: error from an in-memory store: %v", c.name, err)
			}
			if resp == nil {
				continue
			}
			if err := checkReply(req, resp, c.proxy); err != nil {
				t.Fatalf("%s: %v\nrequest:\n%s\nreply:\n%s", c.name, err, req.Summary(), resp.Summary())
			}
		}
	})
}

func checkReply(req, resp *dhcpv4.DHCPv4, proxy bool) error {
	if resp.OpCode != dhcpv4.OpcodeBootReply {
		return fmt.Errorf("opcode %v", resp.OpCode)
	}
	if resp.TransactionID != req.TransactionID {
		return fmt.Errorf("xid %v for request %v", resp.TransactionID, req.TransactionID)
	}
	if len(req.ClientHWAddr) != 6 || resp.ClientHWAddr.String() != req.ClientHWAddr.String() {
		return fmt.Errorf("chaddr %v for request %v", resp.ClientHWAddr, req.ClientHWAddr)
	}
	switch resp.MessageType() {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
	default:
		return fmt.Errorf("reply type %v", resp.MessageType())
	}
	if !resp.ServerIdentifier().Equal(net.IPv4(192, 0, 2, 1)) {
		return fmt.Errorf("server identifier %v", resp.ServerIdentifier())
	}
	if yi := resp.YourIPAddr; yi != nil && !yi.IsUnspecified() {
		if proxy {
			return fmt.Errorf("proxy reply hands out %v", yi)
		}
		ip, _ := netip.AddrFromSlice(yi.To4())
		inRange := !ip.Less(netip.MustParseAddr("192.0.2.100")) && !netip.MustParseAddr("192.0.2.103").Less(ip)
		if !inRange && ip != netip.MustParseAddr("192.0.2.50") {
			return fmt.Errorf("yiaddr %v outside range and reservations", ip)
		}
	}
	if resp.MessageType() == dhcpv4.MessageTypeOffer && !proxy && resp.YourIPAddr.IsUnspecified() {
		return fmt.Errorf("offer without an address")
	}
	if file := resp.BootFileName; file != "" {
		ok := file == "undionly.kpxe" || file == "ipxe.efi" || file == "http://192.0.2.1:8080/ipxe/ipxe.efi" ||
			file == "http://192.0.2.1:8080/boot.ipxe?mac="+req.ClientHWAddr.String()
		if !ok || !strings.HasPrefix(file, "http") && !resp.ServerIPAddr.Equal(net.IPv4(192, 0, 2, 1)) {
			return fmt.Errorf("boot file %q from %v", file, resp.ServerIPAddr)
		}
	}
	back, err := dhcpv4.FromBytes(resp.ToBytes())
	if err != nil {
		return fmt.Errorf("reply does not parse back: %v", err)
	}
	if back.MessageType() != resp.MessageType() {
		return fmt.Errorf("reply type changed on the wire: %v", back.MessageType())
	}
	return nil
}
