package dhcp_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/ironrack/ironrack/provision/dhcp"
)

// The hot paths of both servers, per client exchange, as the read loop and
// a worker run them: parse the request's bytes, Reply, serialize the reply.
// Each iteration is a new client (its own MAC) in a 2^20-address range, as
// in bench/dhcp; the lease store is in memory, so these measure the
// server's own CPU, not Consul. Profile with
//
//	go test ./provision/dhcp -run '^$' -bench 'Exchange' -cpuprofile /tmp/cpu.out

func benchMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// BenchmarkExchange6 is one Solicit→Advertise, Request→Reply exchange.
func BenchmarkExchange6(b *testing.B) {
	serverMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	s, err := dhcp.New6(dhcp.Config6{
		Address:    netip.MustParsePrefix("2001:db8:b::1/64"),
		RangeFirst: netip.MustParseAddr("2001:db8:b::10:0"),
		RangeLast:  netip.MustParseAddr("2001:db8:b::1f:ffff"),
		ServerMAC:  serverMAC,
		Leases:     newMemStore(),
	})
	if err != nil {
		b.Fatal(err)
	}
	sid := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: serverMAC}
	peer := netip.MustParseAddr("fe80::1")
	// perfdhcp's packets: a DUID-LLT per client, one IA_NA, elapsed time.
	sol := make([][]byte, b.N)
	req := make([][]byte, b.N)
	for i := range b.N {
		duid := &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1, LinkLayerAddr: benchMAC(i)}
		m := msg6(b, dhcpv6.MessageTypeSolicit, duid, dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
		m.AddOption(dhcpv6.OptElapsedTime(0))
		sol[i] = m.ToBytes()
		m = msg6(b, dhcpv6.MessageTypeRequest, duid, dhcpv6.WithIAID([4]byte{0, 0, 0, 1}), dhcpv6.WithServerID(sid))
		req[i] = m.ToBytes()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for _, raw := range [][]byte{sol[i], req[i]} {
			pkt, err := dhcpv6.FromBytes(raw)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := s.Reply6(ctx, pkt, peer)
			if err != nil || resp == nil {
				b.Fatalf("client %d: reply %v, err %v", i, resp, err)
			}
			_ = resp.ToBytes()
		}
	}
}

// BenchmarkExchange4 is one DISCOVER→OFFER, REQUEST→ACK exchange, for
// comparison with BenchmarkExchange6.
func BenchmarkExchange4(b *testing.B) {
	first := netip.MustParseAddr("198.18.1.0")
	s, err := dhcp.New(dhcp.Config{
		Address:    netip.MustParsePrefix("198.18.0.1/15"),
		RangeFirst: first,
		RangeLast:  netip.MustParseAddr("198.19.255.254"),
		Leases:     newMemStore(),
		PXEPort:    -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	server := net.IP{198, 18, 0, 1}
	disc := make([][]byte, b.N)
	req := make([][]byte, b.N)
	ip := first
	for i := range b.N {
		d, err := dhcpv4.NewDiscovery(benchMAC(i), dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}))
		if err != nil {
			b.Fatal(err)
		}
		disc[i] = d.ToBytes()
		// The pool hands out the range in order, so client i is offered first+i.
		d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice())))
		d.UpdateOption(dhcpv4.OptServerIdentifier(server))
		req[i] = d.ToBytes()
		ip = ip.Next()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for _, raw := range [][]byte{disc[i], req[i]} {
			pkt, err := dhcpv4.FromBytes(raw)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := s.Reply(ctx, pkt)
			if err != nil || resp == nil {
				b.Fatalf("client %d: reply %v, err %v", i, resp, err)
			}
			if resp.MessageType() == dhcpv4.MessageTypeNak {
				b.Fatalf("client %d: NAK %s", i, resp.Message())
			}
			_ = resp.ToBytes()
		}
	}
}
