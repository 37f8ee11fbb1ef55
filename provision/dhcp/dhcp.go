// Package dhcp owns ironrack's DHCP servers for network boot: DHCPv4
// (Server: address leases in authoritative mode, PXE boot options in both
// authoritative and proxyDHCP mode) and DHCPv6 (Server6: stateful or
// stateless, the client's MAC found from its DUID, EUI-64 link-local
// address or relay option 79), and the one choice of boot file per client
// firmware both use (BootFor).
//
// The protocol cores, Reply, ReplyPXE and Reply6, map one request to at
// most one reply; Serve puts them on sockets bound to exactly one interface. The state
// it needs from the inventory comes through the small interfaces below,
// which *inventory.Store (or bootserver.Backend, its adapter) satisfies.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Lease is one address handed to one client.
type Lease struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Expires  time.Time
	Hostname string
}

// LeaseStore keeps leases durably. The inventory implements it in Consul
// and records the lease's address as the machine's ip.
type LeaseStore interface {
	// Leases returns every stored lease, expired ones included. Serve calls
	// it once at start so that a restarted server knows every address in
	// use and never hands one to another client.
	Leases(ctx context.Context) ([]Lease, error)
	// StoreLease stores l durably, replacing any lease of l.MAC. The server
	// sends the ACK only after StoreLease returned nil; on an error that
	// wraps ErrAddressInUse (another server leased the address first) it
	// sends a NAK and offers that address to nobody for a lease time; on
	// any other error it sends nothing and the client retries.
	StoreLease(ctx context.Context, l Lease) error
}

// ErrAddressInUse is a LeaseStore's answer when another client (leased by
// another server sharing the range) holds the address.
var ErrAddressInUse = errors.New("address in use")

// ErrStale, wrapped by a LeaseStore's error, says the lease was not
// written because its request waited too long for a commit (the store's
// queue was past saturation): the server sends nothing, as for any store
// error, but counts the request as ironrack_dhcp_ignored_total{reason=
// "stale"} and does not log it as a failure.
var ErrStale = errors.New("request too old to answer")

// Reservations finds the static address of a known machine.
type Reservations interface {
	// Reservation returns the address reserved for mac, or the zero Addr
	// when there is none. Reserved addresses should lie outside the dynamic
	// range; inside it they are still honoured for their MAC, and the
	// allocator avoids them only once they are leased.
	Reservation(ctx context.Context, mac net.HardwareAddr) (netip.Addr, error)
}

// Enlister adds machines that network-boot from unknown MACs.
type Enlister interface {
	// EnlistPXE creates a machine in state new with source=pxe when mac is
	// unknown; for a known MAC it does nothing and returns nil. It is
	// called for PXE clients only (option 60 PXEClient/HTTPClient or option
	// 93), before their offer is sent, at most once per MAC per process
	// lifetime unless it failed. It must return within a few seconds.
	EnlistPXE(ctx context.Context, mac net.HardwareAddr) error
}

// Config configures a Server. The zero value of every optional field works.
type Config struct {
	// Interface is the only interface Serve binds (SO_BINDTODEVICE):
	// packets arriving on any other interface never reach the server.
	// Required for Serve unless Conn and PXEConn (or a negative PXEPort)
	// are set.
	Interface string
	// Address is this server's address on Interface with its prefix, e.g.
	// 192.0.2.1/24. It is the server identifier and TFTP next-server, and
	// the prefix is the subnet handed to clients. Required.
	Address netip.Prefix
	// Proxy selects proxyDHCP mode: the server hands out no addresses and
	// answers only PXE clients, with boot options. RangeFirst, RangeLast,
	// Leases and Reservations are then unused.
	Proxy bool
	// RangeFirst and RangeLast bound the dynamic range, inclusive, inside
	// Address's subnet. Required unless Proxy.
	RangeFirst, RangeLast netip.Addr
	// Router is sent as option 3. If the zero Addr, no router is sent.
	Router netip.Addr
	// DNS servers are sent as option 6. If empty, none are sent.
	DNS []netip.Addr
	// LeaseTime is the lease duration. If 0, 1h.
	LeaseTime time.Duration
	// Boot names the boot files. If Boot.HTTPBase is empty,
	// "http://<Address's IP>:8080".
	Boot BootNames
	// Leases stores leases. Required unless Proxy.
	Leases LeaseStore
	// Reservations finds static addresses. If nil, there are none.
	Reservations Reservations
	// Enlister enlists unknown PXE clients. If nil, nobody is enlisted.
	Enlister Enlister
	// Port is the DHCP server port. If 0, 67.
	Port int
	// PXEPort is the PXE boot-server port answered in both modes (proxyDHCP
	// requests, as Pixiecore and smee do). If 0, 4011; if negative, none.
	PXEPort int
	// Conn, if set, is the DHCP port's socket: Serve answers on it instead
	// of opening one on Interface and Port, and closes it. It should be
	// bound to Interface and allow broadcast, as server4.NewIPv4UDPConn's
	// socket is.
	Conn net.PacketConn
	// PXEConn, if set, is the PXE port's socket, as Conn is the DHCP
	// port's; PXEPort is then ignored.
	PXEConn net.PacketConn
	// Workers bounds the requests handled at once. If 0, 4×GOMAXPROCS.
	Workers int
	// MaxQueueAge, if positive, sheds load: a request that has waited
	// longer than this since the kernel received it (in the socket's
	// buffer or for a free worker) is dropped unanswered, before any work,
	// and counted as ironrack_dhcp_ignored_total{reason="stale"}. Its
	// reply could no longer reach its client in time, and answering it
	// would only delay the fresh ones behind it. ShedAge is the value
	// `ironrack serve --shed` uses. If 0 or negative, nothing is shed
	// (the default: on the 3-server cluster benchmark shedding cost
	// throughput below saturation, see docs/benchmarks.md).
	MaxQueueAge time.Duration
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Registerer receives the server's metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// ChainFirstTFTP (tests) answers the first DHCP exchange (transaction
	// ID) of each MAC as if its firmware were a plain PXE ROM even when it
	// is iPXE already: QEMU's NIC ROMs are all iPXE, so this is how a VM
	// takes real hardware's path, BIOS to undionly.kpxe over TFTP (or UEFI
	// to ipxe.efi), which then asks again as iPXE and gets its script.
	ChainFirstTFTP bool
}

// Server is a DHCPv4 server for one interface. Make one with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	subnet  netip.Prefix
	server  netip.Addr
	metrics *metrics
	pool    *pool
	enlist  *enlistCache
	chained sync.Map // ChainFirstTFTP: MAC -> first transaction ID
}

// New checks cfg, fills its defaults and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if !cfg.Address.IsValid() || !cfg.Address.Addr().Is4() {
		return nil, fmt.Errorf("dhcp: address %v: need an IPv4 address with prefix, e.g. 192.0.2.1/24", cfg.Address)
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.LeaseTime < 0 {
		return nil, fmt.Errorf("dhcp: lease time %v is negative", cfg.LeaseTime)
	}
	if cfg.Boot.HTTPBase == "" {
		cfg.Boot.HTTPBase = fmt.Sprintf("http://%s:8080", cfg.Address.Addr())
	}
	cfg.Boot = cfg.Boot.withDefaults()
	if cfg.Port == 0 {
		cfg.Port = 67
	}
	if cfg.PXEPort == 0 {
		cfg.PXEPort = 4011
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range cfg.DNS {
		if !d.Is4() {
			return nil, fmt.Errorf("dhcp: dns server %v is not IPv4", d)
		}
	}
	if cfg.Router.IsValid() && !cfg.Router.Is4() {
		return nil, fmt.Errorf("dhcp: router %v is not IPv4", cfg.Router)
	}
	s := &Server{
		cfg:    cfg,
		log:    log,
		now:    cfg.Now,
		subnet: cfg.Address.Masked(),
		server: cfg.Address.Addr(),
		enlist: &enlistCache{seen: map[string]bool{}},
	}
	if !cfg.Proxy {
		if cfg.Leases == nil {
			return nil, errors.New("dhcp: authoritative mode needs a lease store")
		}
		first, last := cfg.RangeFirst, cfg.RangeLast
		if !first.Is4() || !last.Is4() || last.Less(first) {
			return nil, fmt.Errorf("dhcp: range %v-%v: need two IPv4 addresses, first <= last", first, last)
		}
		if !s.subnet.Contains(first) || !s.subnet.Contains(last) {
			return nil, fmt.Errorf("dhcp: range %v-%v is not inside subnet %v", first, last, s.subnet)
		}
		s.pool = newPool(first, last, s.subnet, s.server)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dhcp: register metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}
