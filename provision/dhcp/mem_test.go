package dhcp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/ironrack/ironrack/provision/dhcp"
)

// memStore is an in-memory LeaseStore; failNext makes the next store fail.
type memStore struct {
	mu       sync.Mutex
	leases   map[string]dhcp.Lease
	stores   int
	failNext bool
	// inUse makes the next store answer ErrAddressInUse (another server
	// leased the address first).
	inUse bool
}

func newMemStore() *memStore { return &memStore{leases: map[string]dhcp.Lease{}} }

func (m *memStore) Leases(context.Context) ([]dhcp.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dhcp.Lease
	for _, l := range m.leases {
		out = append(out, l)
	}
	return out, nil
}

func (m *memStore) StoreLease(_ context.Context, l dhcp.Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failNext {
		m.failNext = false
		return errors.New("store unavailable")
	}
	if m.inUse {
		m.inUse = false
		return fmt.Errorf("address %s is leased to another MAC: %w", l.IP, dhcp.ErrAddressInUse)
	}
	m.stores++
	m.leases[l.MAC.String()] = l
	return nil
}

func (m *memStore) get(mac string) (dhcp.Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[mac]
	return l, ok
}

type memReservations map[string]netip.Addr

func (r memReservations) Reservation(_ context.Context, mac net.HardwareAddr) (netip.Addr, error) {
	return r[mac.String()], nil
}

type memEnlister struct {
	mu   sync.Mutex
	macs []string
}

func (e *memEnlister) EnlistPXE(_ context.Context, mac net.HardwareAddr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.macs = append(e.macs, mac.String())
	return nil
}

func (e *memEnlister) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.macs...)
}
