package bootserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
	"github.com/ironrack/ironrack/provision/ra"
	"github.com/ironrack/ironrack/provision/tftp"
)

// Config configures a BootServer: the settings of `ironrack serve`. The
// zero value of every optional field works.
type Config struct {
	// Interface is the only interface DHCP, TFTP and RA bind. Required.
	Interface string
	// Address is this server's address on Interface with its prefix, e.g.
	// 192.0.2.1/24. Boot URLs use it; the HTTP server listens on it only;
	// the prefix is the subnet mask handed out. Required.
	Address netip.Prefix
	// Proxy selects proxyDHCP mode (no addresses handed out). Otherwise
	// RangeFirst..RangeLast is the authoritative dynamic range.
	Proxy                 bool
	RangeFirst, RangeLast netip.Addr
	// Router (option 3) and DNS (option 6) are sent when set.
	Router netip.Addr
	DNS    []netip.Addr
	// LeaseTime is the DHCP lease time. If 0, 1h.
	LeaseTime time.Duration
	// HTTPPort is the boot HTTP server's port on Address. If 0, 8080.
	HTTPPort int
	// DataDir holds images/<name>/<version>/; the agent is
	// images/agent/current/{vmlinuz,initrd.img}. Required.
	DataDir string
	// IPXEDir holds undionly.kpxe and ipxe.efi. If empty, /usr/lib/ipxe
	// (Debian's ipxe package). They are copied into DATA/ipxe/ at start,
	// symlinks resolved (Debian's ipxe.efi links to /boot), and TFTP and
	// HTTP serve that copy, confined to it.
	IPXEDir string
	// AgentCmdline is added to the agent's kernel command line. If empty,
	// the console on tty0 and ttyS0.
	AgentCmdline string
	// Store is the inventory. Required.
	Store *inventory.Store
	// Registry receives every server's metrics and is served on /metrics.
	// If nil, a new registry.
	Registry *prometheus.Registry
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
	// DHCPPort, PXEPort and TFTPPort override the well-known ports 67, 4011
	// and 69 (tests, benchmarks). If 0, the well-known port; PXEPort < 0
	// disables the PXE port.
	DHCPPort, PXEPort, TFTPPort int
	// NoRA disables the IPv6 router advertisements (which keep iPXE from
	// waiting about 16 s per stage for an IPv6 router).
	NoRA bool
	// ChainFirstTFTP: see dhcp.Config (tests only; no flag sets it).
	ChainFirstTFTP bool
}

// Server is one protocol server of a BootServer.
type Server interface {
	// Serve serves until ctx is done and then returns nil. It opens its
	// sockets before starting any goroutine.
	Serve(ctx context.Context) error
}

// Named is a protocol server with its name ("dhcp", "tftp", "http", "ra").
type Named struct {
	Name   string
	Server Server
}

// BootServer is the network boot server of one interface: DHCP (or
// proxyDHCP), TFTP, HTTP and RA, over one inventory.
type BootServer struct {
	// Inventory is the adapter the protocol servers use.
	Inventory *Inventory
	// BaseURL is the HTTP server's base URL, e.g. http://192.0.2.1:8080.
	BaseURL string
	servers []Named
	log     *slog.Logger
}

// NewBootServer checks cfg and builds the protocol servers. It does no
// network I/O (it checks that the data dir exists).
func NewBootServer(cfg Config) (*BootServer, error) {
	if cfg.Interface == "" {
		return nil, errors.New("provision: no interface")
	}
	if !cfg.Address.IsValid() || !cfg.Address.Addr().Is4() {
		return nil, fmt.Errorf("provision: address %v: need an IPv4 address with prefix", cfg.Address)
	}
	if cfg.Store == nil {
		return nil, errors.New("provision: no inventory store")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("provision: no data dir")
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("provision: data dir %s: not a directory (%v)", cfg.DataDir, err)
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8080
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = "/usr/lib/ipxe"
	}
	if cfg.TFTPPort == 0 {
		cfg.TFTPPort = 69
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ipxeDir, err := stageIPXE(cfg.IPXEDir, filepath.Join(cfg.DataDir, "ipxe"))
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	ip := cfg.Address.Addr().String()
	httpAddr := net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPPort))
	base := "http://" + httpAddr
	inv := &Inventory{Store: cfg.Store, DataDir: cfg.DataDir, BaseURL: base, Logger: log}

	dcfg := dhcp.Config{
		Interface: cfg.Interface,
		Address:   cfg.Address,
		Proxy:     cfg.Proxy,
		Router:    cfg.Router,
		DNS:       cfg.DNS,
		LeaseTime: cfg.LeaseTime,
		Boot:      dhcp.BootNames{HTTPBase: base},
		Enlister:  inv,
		Port:      cfg.DHCPPort,
		PXEPort:   cfg.PXEPort,
		// Requests wait on Consul, not on CPU; many in flight let their
		// leases share one group commit.
		Workers: 512,
		Logger:  log, Registerer: cfg.Registry,
		ChainFirstTFTP: cfg.ChainFirstTFTP,
	}
	if !cfg.Proxy {
		dcfg.RangeFirst, dcfg.RangeLast = cfg.RangeFirst, cfg.RangeLast
		dcfg.Leases, dcfg.Reservations = inv, inv
	}
	d, err := dhcp.New(dcfg)
	if err != nil {
		return nil, err
	}
	h, err := httpboot.New(httpboot.Config{
		Addr:     httpAddr,
		DataDir:  cfg.DataDir,
		IPXEDir:  ipxeDir,
		Env:      ipxe.Env{BaseURL: base, AgentCmdline: cfg.AgentCmdline},
		Machines: inv, Boots: inv, Tokens: inv, Reports: inv, Deploys: inv,
		Registerer: cfg.Registry, Gatherer: cfg.Registry,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	t := tftp.New(tftp.Config{
		Root:      ipxeDir,
		Addr:      net.JoinHostPort(ip, strconv.Itoa(cfg.TFTPPort)),
		Interface: cfg.Interface,
		Logger:    log,
	})
	b := &BootServer{Inventory: inv, BaseURL: base, log: log}
	b.servers = []Named{{"http", h}, {"tftp", t}, {"dhcp", d}}
	if !cfg.Proxy {
		b.servers = append(b.servers, Named{"macs", inv.MACReplica()})
	}
	if !cfg.NoRA {
		b.servers = append(b.servers, Named{"ra", ra.New(ra.Config{Interface: cfg.Interface, Logger: log})})
	}
	return b, nil
}

// Servers lists the protocol servers. A caller that must open every socket
// on a particular thread (a test's network namespace) runs each Serve
// itself; everyone else calls Serve.
func (b *BootServer) Servers() []Named { return append([]Named(nil), b.servers...) }

// Serve runs every protocol server until ctx is done or one of them fails;
// a failure stops the others and is returned, named.
func (b *BootServer) Serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range b.servers {
		g.Go(func() error {
			if err := s.Server.Serve(ctx); err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// AgentDir is where the discovery environment lives in a data dir.
func AgentDir(dataDir string) string { return filepath.Join(dataDir, "images", "agent", "current") }

// ipxeFiles are the iPXE binaries the boot server hands out.
var ipxeFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

// stageIPXE copies the iPXE binaries from src (following symlinks) into
// dst, rewriting only those that changed, and returns dst. undionly.kpxe
// and ipxe.efi are required.
func stageIPXE(src, dst string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("iPXE dir %s: %w", dst, err)
	}
	for _, name := range ipxeFiles {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			if name == "snponly.efi" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", fmt.Errorf("iPXE binary: %w (install Debian's ipxe package)", err)
		}
		to := filepath.Join(dst, name)
		if old, err := os.ReadFile(to); err == nil && bytes.Equal(old, b) {
			continue
		}
		tmp := to + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return "", fmt.Errorf("stage iPXE binary: %w", err)
		}
		if err := os.Rename(tmp, to); err != nil {
			return "", fmt.Errorf("stage iPXE binary: %w", err)
		}
	}
	return dst, nil
}
