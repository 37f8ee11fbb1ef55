package dhcp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestPoolManyOffers: with 100,000 offers pending, a client's own pending
// offer is found again, another client never gets it, a sweep drops only
// expired offers, and holding and picking stay cheap (they once scanned
// every offer, which made DISCOVER cost O(offers) under load).
func TestPoolManyOffers(t *testing.T) {
	p := newPool(netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.3.255.250"),
		netip.MustParsePrefix("10.0.0.0/14"), netip.MustParseAddr("10.0.0.1"))
	p.loaded = true
	now := time.Unix(1e9, 0)
	const n = 100_000
	start := time.Now()
	first := map[string]netip.Addr{}
	for i := range n {
		mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
		ip, ok := p.pick(mac, now)
		if !ok {
			t.Fatalf("client %d: no address", i)
		}
		p.hold(ip, mac, now)
		if i%1000 == 0 {
			first[mac] = ip
		}
	}
	for mac, ip := range first {
		again, ok := p.pick(mac, now.Add(time.Second))
		if !ok || again != ip {
			t.Errorf("%s: picked %v again, want its pending offer %v", mac, again, ip)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("%d offers took %v: holding or picking scans the offers", n, el)
	}
	if len(p.offers) != n || len(p.offerOf) != n {
		t.Fatalf("%d offers, %d by MAC; want %d", len(p.offers), len(p.offerOf), n)
	}
	// Past the hold: the next hold sweeps every expired offer.
	later := now.Add(offerHold + time.Second)
	p.swept = 0
	ip, _ := p.pick("02:ff:00:00:00:01", later)
	p.hold(ip, "02:ff:00:00:00:01", later)
	if len(p.offers) != 1 || len(p.offerOf) != 1 {
		t.Errorf("after the sweep: %d offers, %d by MAC; want 1", len(p.offers), len(p.offerOf))
	}
}
