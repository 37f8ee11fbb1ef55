package dhcp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzReply6 feeds arbitrary bytes, from a link-local or a relay's
// address, through the DHCPv6 parser and a stateful and a stateless
// server's Reply6, and checks that any reply is a sane answer. Seeds:
// testdata/fuzz/FuzzReply6 plus the typical clients below.
func FuzzReply6(f *testing.F) {
	sid := llDUID(net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe})
	http := []dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64_HTTP), vendorClass("HTTPClient:Arch:00016:UNDI:003016")}
	for _, m := range []dhcpv6.DHCPv6{
		msg6(f, dhcpv6.MessageTypeSolicit, llDUID1, iana6(1, "")),
		msg6(f, dhcpv6.MessageTypeSolicit, uuidDUID, append(http, iana6(1, ""))...),
		msg6(f, dhcpv6.MessageTypeSolicit, lltDUID1, dhcpv6.WithRapidCommit, iana6(1, "")),
		msg6(f, dhcpv6.MessageTypeRequest, llDUID1, dhcpv6.WithServerID(sid), iana6(1, "2001:db8::100")),
		msg6(f, dhcpv6.MessageTypeRenew, llDUID1, dhcpv6.WithServerID(sid), iana6(1, "2001:db8::100")),
		msg6(f, dhcpv6.MessageTypeRebind, llDUID1, iana6(1, "2001:db8::100")),
		msg6(f, dhcpv6.MessageTypeConfirm, llDUID1, iana6(1, "2001:db8:9::1")),
		msg6(f, dhcpv6.MessageTypeRelease, llDUID1, dhcpv6.WithServerID(sid), iana6(1, "2001:db8::100")),
		msg6(f, dhcpv6.MessageTypeDecline, llDUID1, dhcpv6.WithServerID(sid), iana6(1, "2001:db8::101")),
		msg6(f, dhcpv6.MessageTypeInformationRequest, uuidDUID, dhcpv6.WithUserClass([]byte("iPXE"))),
		relayed(f, msg6(f, dhcpv6.MessageTypeSolicit, uuidDUID, iana6(1, "")), privLL,
			dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, mac3), dhcpv6.OptInterfaceID([]byte("p1"))),
	} {
		f.Add(m.ToBytes(), true)
		f.Add(m.ToBytes(), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, fromLinkLocal bool) {
		pkt, err := dhcpv6.FromBytes(data)
		if err != nil {
			return
		}
		peer := eui64LL1
		if !fromLinkLocal {
			peer = netip.MustParseAddr("2001:db8:1::1")
		}
		ctx := context.Background()
		for _, stateful := range []bool{true, false} {
			s := server6(t, newMemStore(), &memEnlister{}, stateful)
			resp, err := s.Reply6(ctx, pkt, peer)
			if err != nil {
				t.Fatalf("stateful=%v: error from an in-memory store: %v", stateful, err)
			}
			if resp == nil {
				continue
			}
			if err := checkReply6(pkt, resp, stateful); err != nil {
				t.Fatalf("stateful=%v: %v\nrequest:\n%s\nreply:\n%s", stateful, err, pkt.Summary(), resp.Summary())
			}
		}
	})
}

func checkReply6(req, resp dhcpv6.DHCPv6, stateful bool) error {
	if req.IsRelay() != resp.IsRelay() {
		return fmt.Errorf("relayed request %v, relayed reply %v", req.IsRelay(), resp.IsRelay())
	}
	if req.IsRelay() && resp.Type() != dhcpv6.MessageTypeRelayReply {
		return fmt.Errorf("relay answered with %v", resp.Type())
	}
	var in, out *dhcpv6.Message
	var err error
	if in, err = dhcpv6.MessageFromBytes(req.ToBytes()); req.IsRelay() || err != nil {
		r, _ := req.(*dhcpv6.RelayMessage)
		if in, err = r.GetInnerMessage(); err != nil {
			return fmt.Errorf("request: %v", err)
		}
	}
	switch r := resp.(type) {
	case *dhcpv6.RelayMessage:
		if out, err = r.GetInnerMessage(); err != nil {
			return fmt.Errorf("relay reply without a message: %v", err)
		}
	case *dhcpv6.Message:
		out = r
	}
	if out.TransactionID != in.TransactionID {
		return fmt.Errorf("xid %v for request %v", out.TransactionID, in.TransactionID)
	}
	switch out.MessageType {
	case dhcpv6.MessageTypeAdvertise, dhcpv6.MessageTypeReply:
	default:
		return fmt.Errorf("reply type %v", out.MessageType)
	}
	if c := in.Options.ClientID(); c != nil && !bytes.Equal(c.ToBytes(), out.Options.ClientID().ToBytes()) {
		return fmt.Errorf("client ID %v for %v", out.Options.ClientID(), c)
	}
	if out.Options.ServerID() == nil {
		return fmt.Errorf("no server ID")
	}
	for _, ia := range out.Options.IANA() {
		for _, a := range ia.Options.Addresses() {
			ip, _ := netip.AddrFromSlice(a.IPv6Addr)
			if !stateful {
				return fmt.Errorf("stateless server handed out %v", ip)
			}
			if ip != netip.MustParseAddr("2001:db8::100") && ip != netip.MustParseAddr("2001:db8::101") {
				return fmt.Errorf("address %v outside the range", ip)
			}
		}
	}
	if u := out.Options.BootFileURL(); u != "" && !strings.HasPrefix(u, "http://[2001:db8::1]:8080/") && u != "tftp://[2001:db8::1]/ipxe.efi" && u != "tftp://[2001:db8::1]/undionly.kpxe" {
		return fmt.Errorf("boot URL %q", u)
	}
	back, err := dhcpv6.FromBytes(resp.ToBytes())
	if err != nil {
		return fmt.Errorf("reply does not parse back: %v", err)
	}
	if back.Type() != resp.Type() {
		return fmt.Errorf("reply type changed on the wire: %v", back.Type())
	}
	return nil
}
