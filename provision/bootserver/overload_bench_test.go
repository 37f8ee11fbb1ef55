package bootserver

// BenchmarkOverload: what the DHCP server completes past saturation, with
// and without shedding stale requests, in the same run:
//
//	go test -run '^$' -bench Overload -benchtime 1x -v ./provision/bootserver
//
// The real dhcp.Server (512 workers) and the boot server's real lease
// group commit (batcher: up to 64 leases a call, shedding by age unless
// off), over a commit that costs 4 ms per lease (as if the Raft log were
// slow), so the capacity is 250 leases/s whatever the host's load: far
// below what the server's CPU answers even on a busy machine, which is
// what lets this measure the queueing, not the host. A client in this
// process, over loopback (the server's socket on 127.0.0.1, the client a
// relay on 127.0.0.67:67), offers DISCOVERs at 1.0× and 1.3× that
// capacity for IRONRACK_BENCH_SECONDS (6) s, sends each REQUEST as its
// OFFER arrives, and counts an exchange complete when its OFFER came within
// 1 s of its DISCOVER and its ACK within 1 s of its REQUEST (perfdhcp's
// drop time). "shed=off" is the default (no limit anywhere); "shed=800ms"
// is `ironrack serve --shed` (dhcp.ShedAge at the socket, leaseMaxWait in
// the group commit). Needs root (port 67).

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// slowLeases is a dhcp.LeaseStore over the real lease batcher whose call
// costs perLease per lease.
type slowLeases struct {
	b *batcher[inventory.Lease, error]
}

func (slowLeases) Leases(context.Context) ([]dhcp.Lease, error) { return nil, nil }

func (s slowLeases) StoreLease(ctx context.Context, l dhcp.Lease) error {
	return s.b.do(ctx, inventory.Lease{MAC: l.MAC.String(), IP: l.IP.String(), Expires: l.Expires})
}

func BenchmarkOverload(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the client relays on port 67")
	}
	secs := 6
	if v, err := strconv.Atoi(os.Getenv("IRONRACK_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	const perLease = 4 * time.Millisecond
	const capacity = int(time.Second / perLease) // 250/s
	for _, over := range []float64{1.0, 1.3} {
		for _, age := range []time.Duration{0, dhcp.ShedAge} {
			name := "shed=off"
			if age > 0 {
				name = "shed=" + age.String()
			}
			b.Run(strconv.FormatFloat(over, 'f', 1, 64)+"x/"+name, func(b *testing.B) {
				rate := int(over * float64(capacity))
				got := overloadRun(b, age, rate, time.Duration(secs)*time.Second, perLease)
				b.ReportMetric(got, "DORA/s")
				b.ReportMetric(got/float64(capacity), "of-capacity")
				b.Logf("offered %d/s (%.1f× the store's %d/s), MaxQueueAge %v: %.0f DORA/s complete in time (%.0f %% of capacity)",
					rate, over, capacity, age, got, 100*got/float64(capacity))
			})
		}
	}
}

func overloadRun(b *testing.B, maxAge time.Duration, rate int, d time.Duration, perLease time.Duration) float64 {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	relay, err := net.ListenPacket("udp4", "127.0.0.67:67")
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	bt := &batcher[inventory.Lease, error]{inFlight: 1, call: func(_ context.Context, in []inventory.Lease) []error {
		time.Sleep(time.Duration(len(in)) * perLease)
		return make([]error, len(in))
	}}
	if maxAge > 0 {
		bt.maxWait, bt.stale = leaseMaxWait, staleLease
	}
	store := slowLeases{bt}
	s, err := dhcp.New(dhcp.Config{
		Address:     netip.MustParsePrefix("10.64.0.1/10"),
		RangeFirst:  netip.MustParseAddr("10.64.1.0"),
		RangeLast:   netip.MustParseAddr("10.127.255.254"),
		LeaseTime:   time.Hour,
		Leases:      store,
		Conn:        conn,
		PXEPort:     -1,
		Workers:     512, // as the boot server runs it
		MaxQueueAge: maxAge,
	})
	if err != nil {
		b.Fatal(err)
	}
	servetest.Run(b, 10*time.Second, s.Serve)
	srv := conn.LocalAddr()

	var discSent, reqSent sync.Map // xid -> time.Time
	var done, offers, acks, others atomic.Int64
	giaddr := net.IPv4(127, 0, 0, 67)
	go func() { // the receiver: OFFER -> REQUEST, ACK -> done
		buf := make([]byte, 1500)
		for {
			n, _, err := relay.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			now := time.Now()
			switch m.MessageType() {
			case dhcpv4.MessageTypeOffer:
				offers.Add(1)
				t0, ok := discSent.LoadAndDelete(m.TransactionID)
				if !ok || now.Sub(t0.(time.Time)) > time.Second {
					continue // late: perfdhcp has dropped it
				}
				req, err := dhcpv4.NewRequestFromOffer(m, dhcpv4.WithGatewayIP(giaddr))
				if err != nil {
					continue
				}
				req.TransactionID = m.TransactionID
				reqSent.Store(m.TransactionID, time.Now())
				relay.WriteTo(req.ToBytes(), srv)
			default:
				others.Add(1)
			case dhcpv4.MessageTypeAck:
				acks.Add(1)
				t0, ok := reqSent.LoadAndDelete(m.TransactionID)
				if ok && now.Sub(t0.(time.Time)) <= time.Second {
					done.Add(1)
				}
			}
		}
	}()
	// The sender: rate DISCOVERs a second, in 1 ms ticks, for d.
	start := time.Now()
	var seq uint32
	tick := time.NewTicker(time.Millisecond)
	for time.Since(start) < d {
		<-tick.C
		want := int(time.Since(start).Seconds() * float64(rate))
		for int(seq) < want {
			seq++
			mac := net.HardwareAddr{0x02, 0x99, 0, byte(seq >> 16), byte(seq >> 8), byte(seq)}
			var xid dhcpv4.TransactionID
			binary.BigEndian.PutUint32(xid[:], seq)
			m, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithTransactionID(xid), dhcpv4.WithGatewayIP(giaddr))
			if err != nil {
				b.Fatal(err)
			}
			discSent.Store(xid, time.Now())
			relay.WriteTo(m.ToBytes(), srv)
		}
	}
	tick.Stop()
	time.Sleep(1500 * time.Millisecond) // the last exchanges' replies
	b.Logf("sent %d DISCOVERs; got %d OFFERs, %d ACKs, %d others", seq, offers.Load(), acks.Load(), others.Load())
	return float64(done.Load()) / d.Seconds()
}
