package dhcp

import (
	"bytes"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestNewReplyMatchesLibrary: newReply builds the same packet as the
// library's NewReplyFromRequest (relayed, with a client identifier and
// relay agent information, broadcast flag set), byte for byte.
func TestNewReplyMatchesLibrary(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	req, err := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithGatewayIP(net.IPv4(198, 18, 0, 2)),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0, 0x12, 0x34, 0x56})),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))),
	)
	if err != nil {
		t.Fatal(err)
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.IPv4(198, 18, 1, 9))}
	want, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		t.Fatal(err)
	}
	got := newReply(req, mods...)
	if !bytes.Equal(got.ToBytes(), want.ToBytes()) {
		t.Errorf("newReply differs from NewReplyFromRequest:\n got %s\nwant %s", got.Summary(), want.Summary())
	}
}
