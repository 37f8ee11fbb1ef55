package bootserver_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// BenchmarkDORA runs full DISCOVER-OFFER-REQUEST-ACK exchanges of distinct
// plain DHCP clients through the DHCP core (no sockets) over the inventory
// adapter on a real Consul dev agent, many clients at once: the server-side
// cost of a lease, for profiling (bench/dhcp measures it on the wire).
func BenchmarkDORA(b *testing.B) {
	inv := benchBackend(b)
	srv, err := dhcp.New(dhcp.Config{
		Address:    netip.MustParsePrefix("198.18.0.1/15"),
		RangeFirst: netip.MustParseAddr("198.18.1.0"), RangeLast: netip.MustParseAddr("198.19.255.254"),
		Leases: inv, Reservations: inv, Enlister: inv,
	})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Uint32
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for pb.Next() {
			i := n.Add(1)
			mac := net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			d, _ := dhcpv4.NewDiscovery(mac)
			offer, err := srv.Reply(ctx, d)
			if err != nil || offer == nil {
				b.Errorf("discover %s: %v %v", mac, offer, err)
				return
			}
			r, _ := dhcpv4.NewRequestFromOffer(offer)
			ack, err := srv.Reply(ctx, r)
			if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				b.Errorf("request %s: %v %v", mac, ack, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "DORA/s")
}

// BenchmarkSARR is BenchmarkDORA for DHCPv6: Solicit-Advertise-Request-Reply
// exchanges of distinct clients (a DUID-LLT each, as perfdhcp -6 sends)
// through the DHCPv6 core over the adapter's leases6 store on a real Consul
// dev agent. Compare its CPU profile with BenchmarkDORA's:
//
//	go test ./provision/bootserver -run '^$' -bench 'DORA|SARR' -benchtime 20000x -cpuprofile /tmp/cpu.out
func BenchmarkSARR(b *testing.B) {
	inv := benchBackend(b)
	srv, err := dhcp.New6(dhcp.Config6{
		Address:    netip.MustParsePrefix("2001:db8:b::1/64"),
		RangeFirst: netip.MustParseAddr("2001:db8:b::10:0"), RangeLast: netip.MustParseAddr("2001:db8:b::1f:ffff"),
		ServerMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe},
		Leases:    inv.Leases6(), Enlister: inv,
	})
	if err != nil {
		b.Fatal(err)
	}
	peer := netip.MustParseAddr("fe80::1")
	var n atomic.Uint32
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for pb.Next() {
			i := n.Add(1)
			duid := &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1,
				LinkLayerAddr: net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}}
			sol, _ := dhcpv6.NewMessage(dhcpv6.WithClientID(duid), dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
			adv, err := srv.Reply6(ctx, sol, peer)
			if err != nil || adv == nil {
				b.Errorf("solicit %s: %v %v", duid, adv, err)
				return
			}
			req, _ := dhcpv6.NewRequestFromAdvertise(adv.(*dhcpv6.Message))
			rep, err := srv.Reply6(ctx, req, peer)
			if err != nil || rep == nil || rep.(*dhcpv6.Message).Options.OneIANA().Options.OneAddress() == nil {
				b.Errorf("request %s: %v %v", duid, rep, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "SARR/s")
}

// benchBackend is the boot server's inventory adapter on a real Consul dev
// agent, as the benchmarks use it.
func benchBackend(b *testing.B) *bootserver.Backend {
	agent := consuldev.T(b)
	cfg := api.DefaultConfig()
	cfg.Address = agent.Addr
	if os.Getenv("BENCH_CONSUL_GZIP") == "" {
		// Consul gzips large responses when asked; the Go transport asks by
		// default. Turning it off saves CPU on both sides of loopback.
		cfg.Transport.DisableCompression = true
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return &bootserver.Backend{Store: inventory.New(c, inventory.Config{Who: "bench"})}
}
