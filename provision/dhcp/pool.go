package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// offerHold is how long an offered address stays held for its client.
const offerHold = 30 * time.Second

type offer struct {
	mac   string
	until time.Time
}

// pool is the in-memory index of the lease store plus pending offers. The
// store is the truth; the pool is loaded from it once and then updated
// before each store write (and reverted if the write fails).
type pool struct {
	mu          sync.Mutex
	loaded      bool
	first, last netip.Addr
	subnet      netip.Prefix
	server      netip.Addr
	byMAC       map[string]Lease
	byIP        map[netip.Addr]string
	offers      map[netip.Addr]offer
	// offerOf indexes offers by MAC, so that finding a client's pending
	// offer does not scan every offer (it did, and under load the scan
	// made each DISCOVER cost O(offers)).
	offerOf map[string]netip.Addr
	// swept is len(offers) after the last sweep of expired offers; the
	// next sweep waits until offers doubled, so sweeps cost O(1) amortized.
	swept    int
	declined map[netip.Addr]time.Time
	cursor   netip.Addr
}

func newPool(first, last netip.Addr, subnet netip.Prefix, server netip.Addr) *pool {
	return &pool{
		first: first, last: last, subnet: subnet, server: server, cursor: first,
		byMAC:    map[string]Lease{},
		byIP:     map[netip.Addr]string{},
		offers:   map[netip.Addr]offer{},
		offerOf:  map[string]netip.Addr{},
		declined: map[netip.Addr]time.Time{},
	}
}

// loadFrom fills the pool from the store once (the DHCPv4 and the DHCPv6
// server each call it before their first use of the pool).
func (p *pool) loadFrom(ctx context.Context, store LeaseStore) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loaded {
		return nil
	}
	leases, err := store.Leases(ctx)
	if err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	p.load(leases)
	return nil
}

// load replaces the index with leases. Caller holds mu.
func (p *pool) load(leases []Lease) {
	for _, l := range leases {
		if len(l.MAC) == 0 || !l.IP.IsValid() {
			continue
		}
		mac := l.MAC.String()
		if old, ok := p.byMAC[mac]; ok && old.Expires.After(l.Expires) {
			continue
		}
		p.put(mac, l)
	}
	p.loaded = true
}

// put records l for mac, dropping mac's previous address. Caller holds mu.
func (p *pool) put(mac string, l Lease) {
	if old, ok := p.byMAC[mac]; ok && p.byIP[old.IP] == mac {
		delete(p.byIP, old.IP)
	}
	p.byMAC[mac] = l
	p.byIP[l.IP] = mac
}

// restore undoes put(mac, ...) given what byMAC held before. Caller holds mu.
func (p *pool) restore(mac string, ip netip.Addr, prev Lease, hadPrev bool) {
	if p.byIP[ip] == mac {
		delete(p.byIP, ip)
	}
	delete(p.byMAC, mac)
	if hadPrev {
		p.put(mac, prev)
	}
}

func (p *pool) inRange(ip netip.Addr) bool {
	return ip.Is4() == p.first.Is4() && !ip.Less(p.first) && !p.last.Less(ip) && p.usable(ip)
}

// usable: in the subnet, not the server, not the network or (IPv4)
// broadcast address.
func (p *pool) usable(ip netip.Addr) bool {
	if !p.subnet.Contains(ip) || ip == p.server || ip == p.subnet.Addr() {
		return false
	}
	if ip.Is4() && p.subnet.Bits() <= 30 && ip == broadcast(p.subnet) {
		return false
	}
	return true
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1<<hostBits - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// freeFor says whether ip may be given to mac now. Caller holds mu.
func (p *pool) freeFor(ip netip.Addr, mac string, now time.Time) bool {
	if holder, ok := p.byIP[ip]; ok && holder != mac && !p.byMAC[holder].Expires.Before(now) {
		return false
	}
	if o, ok := p.offers[ip]; ok && o.mac != mac && o.until.After(now) {
		return false
	}
	if until, ok := p.declined[ip]; ok && until.After(now) {
		return false
	}
	return true
}

// pick chooses a dynamic address for mac: its current lease if still in
// range, its pending offer, a never-used address, and last the address
// whose lease expired longest ago. Caller holds mu.
func (p *pool) pick(mac string, now time.Time) (netip.Addr, bool) {
	if l, ok := p.byMAC[mac]; ok && p.inRange(l.IP) && p.freeFor(l.IP, mac, now) {
		return l.IP, true
	}
	if ip, ok := p.offerOf[mac]; ok {
		if o := p.offers[ip]; o.mac == mac && o.until.After(now) && p.freeFor(ip, mac, now) {
			return ip, true
		}
	}
	// A never-leased address, scanning on from the cursor; bounded by the range size.
	ip := p.cursor
	for {
		if _, leased := p.byIP[ip]; !leased && p.inRange(ip) && p.freeFor(ip, mac, now) {
			p.cursor = p.advance(ip)
			return ip, true
		}
		ip = p.advance(ip)
		if ip == p.cursor {
			break
		}
	}
	// Reuse the longest-expired lease.
	var best netip.Addr
	var bestExp time.Time
	for ip, holder := range p.byIP {
		exp := p.byMAC[holder].Expires
		if p.inRange(ip) && exp.Before(now) && p.freeFor(ip, mac, now) && (!best.IsValid() || exp.Before(bestExp)) {
			best, bestExp = ip, exp
		}
	}
	return best, best.IsValid()
}

func (p *pool) advance(ip netip.Addr) netip.Addr {
	if ip == p.last || ip.Is4() != p.first.Is4() {
		return p.first
	}
	return ip.Next()
}

// hold marks ip offered to mac. Caller holds mu.
func (p *pool) hold(ip netip.Addr, mac string, now time.Time) {
	p.dropOfferOf(mac)
	p.offers[ip] = offer{mac: mac, until: now.Add(offerHold)}
	p.offerOf[mac] = ip
	if len(p.offers) > max(4096, 2*p.swept) {
		for a, o := range p.offers {
			if !o.until.After(now) {
				p.dropOffer(a)
			}
		}
		p.swept = len(p.offers)
	}
}

// dropOffer forgets the offer of ip. Caller holds mu.
func (p *pool) dropOffer(ip netip.Addr) {
	if o, ok := p.offers[ip]; ok {
		delete(p.offers, ip)
		if p.offerOf[o.mac] == ip {
			delete(p.offerOf, o.mac)
		}
	}
}

// dropOfferOf forgets mac's offer. Caller holds mu.
func (p *pool) dropOfferOf(mac string) {
	if ip, ok := p.offerOf[mac]; ok {
		delete(p.offerOf, mac)
		if p.offers[ip].mac == mac {
			delete(p.offers, ip)
		}
	}
}
