package bootserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
	"github.com/ironrack/ironrack/provision/ra"
	"github.com/ironrack/ironrack/provision/tftp"
)

// Config configures a Server: the settings of `ironrack serve`. The zero
// value of every optional field works.
type Config struct {
	// DHCP configures the DHCP server (see dhcp.Config). Its Interface and
	// Address are the whole boot server's, and both are required: DHCP,
	// TFTP and RA bind Interface only; the HTTP server listens on Address
	// only, and boot URLs use it. Unless Proxy, RangeFirst..RangeLast is
	// the authoritative dynamic range. Port and PXEPort override the
	// well-known ports 67 and 4011 (tests, benchmarks). The boot server
	// sets Boot, Enlister, Logger and Registerer, and, unless Proxy, Leases
	// and Reservations.
	DHCP dhcp.Config
	// DHCP6 configures DHCPv6 on the same interface (see dhcp.Config6) when
	// its Address is set: stateful with RangeFirst..RangeLast, else
	// stateless. The HTTP and TFTP servers then also listen on its address
	// (TFTPPort; UEFI PXE over IPv6 fetches tftp://[address]/ipxe.efi), scripts
	// fetched over IPv6 point there, and the router advertisement carries
	// its prefix with the M/O flags (see provision/ra). The boot server
	// sets Interface, Boot, Enlister, Leases (stateful), Logger and
	// Registerer.
	DHCP6 dhcp.Config6
	// IPv6Router advertises this host as the IPv6 default router (30
	// minutes) when DHCPv6 is configured (see ra.DHCP6.RouterLifetime).
	// If false, router lifetime 0; UEFI HTTP boot over IPv6 works either way.
	IPv6Router bool
	// HTTPPort is the boot HTTP server's port on Address. If 0, 8080.
	HTTPPort int
	// HTTPS, if set, serves the firmware's first fetch of a UEFI HTTP
	// boot (the iPXE binaries under /ipxe/) over TLS with this
	// certificate, on HTTPSPort of Address (and of DHCP6.Address), and
	// UEFI HTTP boot clients get its https:// URL (DHCPv4 option 67,
	// DHCPv6 option 59). What iPXE fetches next stays on HTTP (see
	// httpboot.FirmwareServer). If nil, no TLS.
	HTTPS *tls.Certificate
	// HTTPSPort is the TLS server's port. If 0, 8443.
	HTTPSPort int
	// DataDir holds images/<name>/<version>/; the agent is
	// images/agent/current/{vmlinuz,initrd.img}. Required.
	DataDir string
	// IPXEDir holds undionly.kpxe and ipxe.efi. If empty, /usr/lib/ipxe
	// (Debian's ipxe package). They are copied into DATA/ipxe/ at start,
	// symlinks resolved (Debian's ipxe.efi links to /boot), and TFTP and
	// HTTP serve that copy, confined to it.
	IPXEDir string
	// AgentCmdline is added to the agent's kernel command line. If empty,
	// the console on tty0 and ttyS0, and no_timer_check (ipxe.Env).
	AgentCmdline string
	// Store is the inventory. Required.
	Store *inventory.Store
	// Registry receives every server's metrics and is served on /metrics.
	// If nil, a new registry.
	Registry *prometheus.Registry
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
	// TFTPPort overrides the well-known TFTP port 69 (tests, benchmarks).
	// If 0, 69.
	TFTPPort int
	// HostCertLifetime is the lifetime of the host certificates signed
	// when deployed machines report their host keys. If 0, 1 year.
	HostCertLifetime time.Duration
	// NoRA disables the IPv6 router advertisements (which keep iPXE from
	// waiting about 16 s per stage for an IPv6 router).
	NoRA bool
	// NoDHCP4 serves no DHCPv4 (nor proxyDHCP): an IPv6-only boot LAN,
	// where no machine may be offered an IPv4 address. It needs stateful
	// DHCPv6 (DHCP6 with a range): the agent and the deployed OS take
	// their address from it. DHCP.Address is still this server's own IPv4
	// address, where HTTP and TFTP also listen.
	NoDHCP4 bool
}

// Part is one of a Server's servers with its name: "http", "https" (the
// firmware's TLS fetch), "tftp", "dhcp", "tftp6" and "dhcp6" (with
// DHCPv6), "macs" (the MAC index replica) or "ra".
type Part struct {
	Name string
	// Serve serves until ctx is done and then returns nil. It opens its
	// sockets before starting any goroutine.
	Serve func(ctx context.Context) error
}

// Server is the network boot server of one interface: DHCP (or
// proxyDHCP), TFTP, HTTP and RA, over one inventory.
type Server struct {
	// Backend is the adapter the protocol servers use.
	Backend *Backend
	// BaseURL is the HTTP server's base URL, e.g. http://192.0.2.1:8080.
	BaseURL string
	// BaseURL6 is its IPv6 base URL, e.g. http://[2001:db8::1]:8080, when
	// DHCPv6 is configured; else empty.
	BaseURL6 string
	// FirmwareURL is the TLS server's base URL for the firmware's first
	// fetch, e.g. https://192.0.2.1:8443, when Config.HTTPS is set; else
	// empty.
	FirmwareURL string
	parts       []Part
	log         *slog.Logger
}

// New checks cfg and builds the protocol servers. It does no network I/O
// (it checks that the data dir exists).
func New(cfg Config) (*Server, error) {
	if cfg.DHCP.Interface == "" {
		return nil, errors.New("bootserver: no interface")
	}
	if !cfg.DHCP.Address.IsValid() || !cfg.DHCP.Address.Addr().Is4() {
		return nil, fmt.Errorf("bootserver: address %v: need an IPv4 address with prefix", cfg.DHCP.Address)
	}
	if cfg.Store == nil {
		return nil, errors.New("bootserver: no inventory store")
	}
	if cfg.NoDHCP4 && (!cfg.DHCP6.Address.IsValid() || !cfg.DHCP6.RangeFirst.IsValid()) {
		return nil, errors.New("bootserver: no DHCPv4 needs stateful DHCPv6 (an IPv6 address and range): machines would get no address")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("bootserver: no data dir")
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bootserver: data dir %s: not a directory (%v)", cfg.DataDir, err)
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
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = 8443
	}
	if cfg.HTTPS != nil && cfg.HTTPSPort == cfg.HTTPPort {
		return nil, fmt.Errorf("bootserver: HTTPS port %d is the HTTP port", cfg.HTTPSPort)
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
		return nil, fmt.Errorf("bootserver: %w", err)
	}
	ifname := cfg.DHCP.Interface
	ip := cfg.DHCP.Address.Addr().String()
	httpAddr := net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPPort))
	base := "http://" + httpAddr
	inv := &Backend{Store: cfg.Store, DataDir: cfg.DataDir, BaseURL: base, Logger: log, HostCertLifetime: cfg.HostCertLifetime}
	var fw *httpboot.FirmwareServer
	var fwAddrs []string
	var fwBase, fwBase6 string
	if cfg.HTTPS != nil {
		fwAddrs = []string{net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPSPort))}
		fwBase = "https://" + fwAddrs[0]
		if cfg.DHCP6.Address.IsValid() {
			fwAddrs = append(fwAddrs, net.JoinHostPort(cfg.DHCP6.Address.Addr().String(), strconv.Itoa(cfg.HTTPSPort)))
			fwBase6 = "https://" + fwAddrs[1]
		}
		if fw, err = httpboot.NewFirmware(httpboot.FirmwareConfig{
			Addrs: fwAddrs, Certificate: *cfg.HTTPS, IPXEDir: ipxeDir, Logger: log,
		}); err != nil {
			return nil, err
		}
	}
	var d6 *dhcp.Server6
	var httpAddr6, base6 string
	if cfg.DHCP6.Address.IsValid() {
		httpAddr6 = net.JoinHostPort(cfg.DHCP6.Address.Addr().String(), strconv.Itoa(cfg.HTTPPort))
		base6 = "http://" + httpAddr6
		inv.BaseURL6 = base6
		c6 := cfg.DHCP6
		c6.Interface = ifname
		c6.Boot = dhcp.BootNames{HTTPBase: base6, FirmwareBase: fwBase6}
		c6.Enlister = inv
		c6.Logger, c6.Registerer = log, cfg.Registry
		if c6.RangeFirst.IsValid() || c6.RangeLast.IsValid() {
			c6.Leases = inv.Leases6()
		}
		if d6, err = dhcp.New6(c6); err != nil {
			return nil, err
		}
	}

	dcfg := cfg.DHCP
	dcfg.Boot = dhcp.BootNames{HTTPBase: base, FirmwareBase: fwBase}
	dcfg.Enlister = inv
	dcfg.Logger, dcfg.Registerer = log, cfg.Registry
	if !dcfg.Proxy {
		dcfg.Leases, dcfg.Reservations = inv, inv
	}
	var d *dhcp.Server
	if !cfg.NoDHCP4 {
		if d, err = dhcp.New(dcfg); err != nil {
			return nil, err
		}
	}
	h, err := httpboot.New(httpboot.Config{
		Addr:     httpAddr,
		Addr6:    httpAddr6,
		BaseURL6: base6,
		ImageDir: images.Root(cfg.DataDir),
		IPXEDir:  ipxeDir,
		Env:      ipxe.Env{BaseURL: base, AgentCmdline: cfg.AgentCmdline},
		Machines: inv, Boots: inv, Tokens: inv, Reports: inv, Deploys: inv, HostKeys: inv,
		Registerer: cfg.Registry, Gatherer: cfg.Registry,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	t := tftp.New(tftp.Config{
		Root:      ipxeDir,
		Addr:      net.JoinHostPort(ip, strconv.Itoa(cfg.TFTPPort)),
		Interface: ifname,
		Logger:    log,
	})
	s := &Server{Backend: inv, BaseURL: base, BaseURL6: base6, FirmwareURL: fwBase, log: log}
	s.parts = []Part{{"http", h.Serve}, {"tftp", t.Serve}}
	if !cfg.NoDHCP4 {
		s.parts = append(s.parts, Part{"dhcp", d.Serve})
	}
	if fw != nil {
		s.parts = append(s.parts, Part{"https", fw.Serve})
	}
	var ra6 ra.DHCP6
	if d6 != nil {
		// UEFI PXE over IPv6 gets tftp://[address6]/ipxe.efi: the same
		// files, the same rules, on the IPv6 address.
		t6 := tftp.New(tftp.Config{
			Root:      ipxeDir,
			Addr:      net.JoinHostPort(cfg.DHCP6.Address.Addr().String(), strconv.Itoa(cfg.TFTPPort)),
			Interface: ifname,
			Logger:    log,
		})
		s.parts = append(s.parts, Part{"tftp6", t6.Serve}, Part{"dhcp6", d6.Serve})
		ra6 = ra.DHCP6{Prefix: cfg.DHCP6.Address.Masked(), Stateful: d6.Stateful()}
		if cfg.IPv6Router {
			ra6.RouterLifetime = 30 * time.Minute
		}
	}
	if !dcfg.Proxy {
		s.parts = append(s.parts, Part{"macs", inv.ServeMACReplica})
	}
	if !cfg.NoRA {
		s.parts = append(s.parts, Part{"ra", ra.New(ra.Config{Interface: ifname, DHCP6: ra6, Logger: log}).Serve})
	}
	return s, nil
}

// Parts lists the servers. A caller that must open every socket on a
// particular thread (a test's network namespace) runs each Serve itself;
// everyone else calls Serve.
func (s *Server) Parts() []Part { return append([]Part(nil), s.parts...) }

// Serve runs every server until ctx is done or one of them fails; a
// failure stops the others and is returned, named.
func (s *Server) Serve(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, p := range s.parts {
		g.Go(func() error {
			if err := p.Serve(ctx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

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
