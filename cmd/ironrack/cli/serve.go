package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/pprofhttp"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/httpboot"
)

// serveCommand is `ironrack serve`: the network boot server of one interface.
func serveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the network boot server (DHCP or proxyDHCP, TFTP, iPXE over HTTP, IPv6 RA) on one interface",
		UsageText: "ironrack serve --interface IF --address IP/PREFIX (--dhcp-range FIRST-LAST | --proxy-dhcp)\n" +
			"   [--router IP] [--dns IP,...] [--lease-time 1h] [--http-port 8080] [--data-dir DIR]\n" +
			"   [--address6 IP6/PREFIX [--dhcp6-range FIRST-LAST] [--dns6 IP6,...] [--ipv6-router]]\n" +
			"   [--https-cert FILE --https-key FILE [--https-port 8443]] [--pprof 127.0.0.1:PORT]",
		Description: "Every machine that network-boots on --interface gets the iPXE script its lifecycle state asks for\n" +
			"(see docs/boot-server.md). Leases, enlisted machines, facts and boots go to the inventory in Consul\n" +
			"(--consul). DHCP, TFTP and RA bind --interface only; HTTP listens on --address only (and --address6).\n" +
			"With --address6, DHCPv6 runs too: stateful with --dhcp6-range, else stateless (SLAAC), the RA's M/O flags to match.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "interface", Usage: "the only interface DHCP, TFTP and RA bind (required)"},
			&cli.StringFlag{Name: "address", Usage: "this server's IPv4 address on --interface with prefix, e.g. 192.0.2.1/24 (required)"},
			&cli.StringFlag{Name: "dhcp-range", Usage: "authoritative mode: the dynamic range FIRST-LAST, inside --address's subnet"},
			&cli.BoolFlag{Name: "proxy-dhcp", Usage: "proxyDHCP mode: another DHCP server owns the addresses; answer PXE clients' boot options only"},
			&cli.StringFlag{Name: "router", Usage: "default gateway handed to clients (option 3)"},
			&cli.StringFlag{Name: "dns", Usage: "DNS servers handed to clients, comma-separated (option 6)"},
			&cli.DurationFlag{Name: "lease-time", Value: time.Hour, Usage: "DHCP lease time"},
			&cli.StringFlag{Name: "address6", Usage: "DHCPv6 on: this server's IPv6 address on --interface with prefix, e.g. 2001:db8::1/64 (HTTP and TFTP listen there too)"},
			&cli.BoolFlag{Name: "no-dhcp4", Usage: "an IPv6-only boot LAN: serve no DHCPv4 (needs --address6 and --dhcp6-range; --address is still this server's own IPv4 address, where HTTP and TFTP listen)"},
			&cli.StringFlag{Name: "dhcp6-range", Usage: "stateful DHCPv6: the range FIRST-LAST inside --address6's prefix (without it, stateless: SLAAC)"},
			&cli.BoolFlag{Name: "ipv6-router", Usage: "advertise this host as the IPv6 default router (it does not forward)"},
			&cli.StringFlag{Name: "dns6", Usage: "IPv6 DNS servers handed to DHCPv6 clients, comma-separated (option 23)"},
			&cli.IntFlag{Name: "http-port", Value: 8080, Usage: "port of the boot HTTP server on --address"},
			&cli.StringFlag{Name: "https-cert", Usage: "UEFI HTTPS boot: the TLS certificate (PEM, leaf first) the firmware's fetch of ipxe.efi is served with; UEFI HTTP boot clients then get an https:// URL"},
			&cli.StringFlag{Name: "https-key", Usage: "the private key (PEM) of --https-cert"},
			&cli.IntFlag{Name: "https-port", Value: 8443, Usage: "port of the TLS server for the firmware's fetch, on --address (and --address6)"},
			&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "boot artifacts: images/<name>/<version>/, the agent in images/agent/current/"},
			&cli.StringFlag{Name: "pprof", Aliases: []string{"pprof-address"}, Usage: "serve Go's runtime profiles (/debug/pprof/: CPU, heap, goroutines, block, mutex) on this loopback HOST:PORT, e.g. 127.0.0.1:6060 (off by default; loopback only)"},
			&cli.StringFlag{Name: "cert-lifetime", Value: "365d", Usage: "lifetime of the host certificates signed when deployed machines report their host keys (with an SSH CA and the key file; Nd or a Go duration)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("serve: unexpected argument %q (all settings are flags)", c.Args().First())
			}
			cfg, err := serveConfig(c)
			if err != nil {
				return err
			}
			var prof *pprofhttp.Server
			if a := c.String("pprof"); a != "" {
				if prof, err = pprofhttp.New(a, e.log); err != nil {
					return fmt.Errorf("--pprof: %w", err)
				}
			}
			if cfg.HTTPS != nil && cfg.HTTPS.Leaf.PublicKeyAlgorithm != x509.RSA {
				// What OVMF 2022.11 offers (docs/boot-server.md, HTTPS
				// boot): RSA signatures only, no elliptic curves. Other
				// firmware may do better, so this only warns.
				e.log.Warn("serve: --https-cert has a "+cfg.HTTPS.Leaf.PublicKeyAlgorithm.String()+" key; EDK2 firmware such as OVMF 2022.11 accepts RSA server keys only",
					"file", c.String("https-cert"))
			}
			if _, err := net.InterfaceByName(cfg.DHCP.Interface); err != nil {
				return fmt.Errorf("--interface %s: %w", cfg.DHCP.Interface, err)
			}
			agent := images.AgentDir(cfg.DataDir)
			for _, f := range []string{images.KernelFile, images.InitrdFile} {
				if _, err := os.Stat(filepath.Join(agent, f)); err != nil {
					e.log.Warn("serve: the discovery environment is missing; machines that boot the agent will fail to boot",
						"file", filepath.Join(agent, f), "fix", "scripts/boot-artifacts --install "+cfg.DataDir)
				}
			}
			// The key file opens the Consul agent secrets that deploy seeds
			// carry (`ironrack consul-agent set`) and the SSH CA that signs
			// the host keys deployed machines report. Without one the boot
			// server runs; a seed is then refused only if secrets are set,
			// and host keys are recorded without certificates.
			var sl *inventory.Sealer
			if kf := c.String("key-file"); missing(kf) {
				e.log.Info("serve: no key file; deploys cannot be given Consul agent secrets", "key_file", kf)
			} else if sl, err = inventory.LoadKeyFile(kf, false); err != nil {
				return err
			}
			st, err := e.sealedStore(c, sl)
			if err != nil {
				return err
			}
			cfg.Store = st
			cfg.Logger = e.log
			b, err := bootserver.New(cfg)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			if os.Getenv("GOGC") == "" {
				// The boot server's live heap is small (tens of MB), and at
				// thousands of DHCP requests a second the default collector
				// took a quarter of its CPU (perf, bench/dhcp). GOGC set in
				// the environment wins.
				debug.SetGCPercent(serveGCPercent)
			}
			e.log.Info("serve: starting", "interface", cfg.DHCP.Interface, "address", cfg.DHCP.Address, "proxy", cfg.DHCP.Proxy, "http", b.BaseURL,
				"address6", cfg.DHCP6.Address, "http6", b.BaseURL6, "https_firmware", b.FirmwareURL)
			if prof == nil {
				return b.Serve(c.Context)
			}
			g, ctx := errgroup.WithContext(c.Context)
			g.Go(func() error { return b.Serve(ctx) })
			g.Go(func() error { return prof.Serve(ctx) })
			return g.Wait()
		},
	}
}

// serveGCPercent is the boot server's GC target unless GOGC is set.
const serveGCPercent = 400

func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".ironrack/boot"
	}
	return filepath.Join(home, ".ironrack", "boot")
}

// serveConfig reads and checks serve's flags; every error names its flag.
func serveConfig(c *cli.Context) (bootserver.Config, error) {
	var cfg bootserver.Config
	cfg.DHCP.Interface = strings.TrimSpace(c.String("interface"))
	if cfg.DHCP.Interface == "" {
		return cfg, errors.New("--interface is required: the one interface to serve DHCP, TFTP and RA on")
	}
	addr := c.String("address")
	if addr == "" {
		return cfg, errors.New("--address is required: this server's IPv4 address on --interface with its prefix, e.g. 192.0.2.1/24")
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil || !p.Addr().Is4() {
		return cfg, fmt.Errorf("--address %q: want an IPv4 address with prefix, e.g. 192.0.2.1/24", addr)
	}
	if p.Bits() > 30 || p.Bits() < 8 {
		return cfg, fmt.Errorf("--address %q: prefix /%d leaves no room for clients; want /8 to /30", addr, p.Bits())
	}
	if p.Addr() == p.Masked().Addr() {
		return cfg, fmt.Errorf("--address %q is the subnet's network address; give this server's own address", addr)
	}
	cfg.DHCP.Address = p
	subnet := p.Masked()

	rng, proxy := c.String("dhcp-range"), c.Bool("proxy-dhcp")
	switch {
	case c.Bool("no-dhcp4"):
		if rng != "" || proxy {
			return cfg, errors.New("--no-dhcp4 excludes --dhcp-range and --proxy-dhcp: no DHCPv4 is served")
		}
		if c.String("address6") == "" || c.String("dhcp6-range") == "" {
			return cfg, errors.New("--no-dhcp4 needs --address6 and --dhcp6-range: on an IPv6-only LAN machines take their address from stateful DHCPv6")
		}
		cfg.NoDHCP4 = true
	case rng != "" && proxy:
		return cfg, errors.New("--dhcp-range and --proxy-dhcp exclude each other: give --dhcp-range to own the addresses, or --proxy-dhcp when another DHCP server does")
	case rng == "" && !proxy:
		return cfg, errors.New("need exactly one of --dhcp-range FIRST-LAST (authoritative) or --proxy-dhcp (another DHCP server owns the addresses), or --no-dhcp4 on an IPv6-only LAN")
	case proxy:
		cfg.DHCP.Proxy = true
		if c.IsSet("lease-time") {
			return cfg, errors.New("--lease-time applies to --dhcp-range only: in --proxy-dhcp mode the other server leases the addresses")
		}
	default:
		first, last, ok := strings.Cut(rng, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if !ok || err1 != nil || err2 != nil || !a.Is4() || !b.Is4() {
			return cfg, fmt.Errorf("--dhcp-range %q: want FIRST-LAST, two IPv4 addresses, e.g. 192.0.2.100-192.0.2.200", rng)
		}
		if b.Less(a) {
			return cfg, fmt.Errorf("--dhcp-range %q: FIRST is after LAST", rng)
		}
		if !subnet.Contains(a) || !subnet.Contains(b) {
			return cfg, fmt.Errorf("--dhcp-range %q is not inside --address's subnet %s", rng, subnet)
		}
		cfg.DHCP.RangeFirst, cfg.DHCP.RangeLast = a, b
	}
	if r := c.String("router"); r != "" {
		ip, err := netip.ParseAddr(r)
		if err != nil || !ip.Is4() {
			return cfg, fmt.Errorf("--router %q: want an IPv4 address", r)
		}
		if !subnet.Contains(ip) {
			return cfg, fmt.Errorf("--router %s is not inside --address's subnet %s; clients could not reach it", ip, subnet)
		}
		cfg.DHCP.Router = ip
	}
	if d := c.String("dns"); d != "" {
		for _, f := range strings.Split(d, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil || !ip.Is4() {
				return cfg, fmt.Errorf("--dns %q: %q is not an IPv4 address (want IP,IP,...)", d, strings.TrimSpace(f))
			}
			cfg.DHCP.DNS = append(cfg.DHCP.DNS, ip)
		}
	}
	lt := c.Duration("lease-time")
	if lt < time.Minute || lt > 365*24*time.Hour {
		return cfg, fmt.Errorf("--lease-time %v: want between 1m and 8760h", lt)
	}
	cfg.DHCP.LeaseTime = lt
	if err := serveConfig6(c, &cfg); err != nil {
		return cfg, err
	}
	port := c.Int("http-port")
	if port < 1 || port > 65535 {
		return cfg, fmt.Errorf("--http-port %d: want 1 to 65535", port)
	}
	cfg.HTTPPort = port
	if err := serveConfigHTTPS(c, &cfg); err != nil {
		return cfg, err
	}
	dd := c.String("data-dir")
	if dd == "" {
		return cfg, errors.New("--data-dir is empty: give the directory holding images/ (default ~/.ironrack/boot)")
	}
	fi, err := os.Stat(dd)
	if err != nil {
		return cfg, fmt.Errorf("--data-dir %s: %w (create it, and install the agent with scripts/boot-artifacts --install %s)", dd, err, dd)
	}
	if !fi.IsDir() {
		return cfg, fmt.Errorf("--data-dir %s is not a directory", dd)
	}
	cfg.DataDir = dd
	life, err := parseDays(c.String("cert-lifetime"))
	if err != nil || life <= 0 {
		return cfg, fmt.Errorf("--cert-lifetime %q: want Nd (days) or a Go duration such as 8760h", c.String("cert-lifetime"))
	}
	cfg.HostCertLifetime = life
	if pa := c.String("pprof"); pa != "" {
		if _, err := pprofhttp.New(pa, nil); err != nil {
			return cfg, fmt.Errorf("--pprof: %w", err)
		}
	}
	return cfg, nil
}

// serveConfig6 reads the DHCPv6 flags into cfg.DHCP6.
func serveConfig6(c *cli.Context, cfg *bootserver.Config) error {
	addr := c.String("address6")
	if addr == "" {
		for _, f := range []string{"dhcp6-range", "dns6", "ipv6-router"} {
			if c.IsSet(f) {
				return fmt.Errorf("--%s needs --address6 (this server's IPv6 address with prefix, e.g. 2001:db8::1/64)", f)
			}
		}
		return nil
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return fmt.Errorf("--address6 %q: want an IPv6 address with prefix, e.g. 2001:db8::1/64", addr)
	}
	if p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() {
		return fmt.Errorf("--address6 %q: want a global or unique-local address, not link-local or multicast", addr)
	}
	if p.Bits() > 120 {
		return fmt.Errorf("--address6 %q: prefix /%d leaves no room for clients; want at most /120 (/64 for SLAAC)", addr, p.Bits())
	}
	cfg.DHCP6.Address = p
	prefix := p.Masked()
	if rng := c.String("dhcp6-range"); rng != "" {
		first, last, ok := strings.Cut(rng, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if !ok || err1 != nil || err2 != nil || !a.Is6() || !b.Is6() || a.Is4In6() || b.Is4In6() {
			return fmt.Errorf("--dhcp6-range %q: want FIRST-LAST, two IPv6 addresses, e.g. 2001:db8::100-2001:db8::1ff", rng)
		}
		if b.Less(a) {
			return fmt.Errorf("--dhcp6-range %q: FIRST is after LAST", rng)
		}
		if !prefix.Contains(a) || !prefix.Contains(b) {
			return fmt.Errorf("--dhcp6-range %q is not inside --address6's prefix %s", rng, prefix)
		}
		cfg.DHCP6.RangeFirst, cfg.DHCP6.RangeLast = a, b
	} else if p.Bits() != 64 {
		return fmt.Errorf("--address6 %q: stateless DHCPv6 (no --dhcp6-range) needs a /64 for SLAAC, not /%d", addr, p.Bits())
	}
	if d := c.String("dns6"); d != "" {
		for _, f := range strings.Split(d, ",") {
			ip, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil || !ip.Is6() || ip.Is4In6() {
				return fmt.Errorf("--dns6 %q: %q is not an IPv6 address (want IP6,IP6,...)", d, strings.TrimSpace(f))
			}
			cfg.DHCP6.DNS = append(cfg.DHCP6.DNS, ip)
		}
	}
	cfg.DHCP6.LeaseTime = cfg.DHCP.LeaseTime
	cfg.IPv6Router = c.Bool("ipv6-router")
	return nil
}

// loopbackAddr checks flag's value v, a HOST:PORT whose host is a loopback
// serveConfigHTTPS reads --https-cert, --https-key and --https-port: the
// certificate is loaded (and a bad file refused, named) before anything
// starts.
func serveConfigHTTPS(c *cli.Context, cfg *bootserver.Config) error {
	cert, key := c.String("https-cert"), c.String("https-key")
	switch {
	case cert == "" && key == "":
		if c.IsSet("https-port") {
			return errors.New("--https-port needs --https-cert and --https-key")
		}
		return nil
	case cert == "":
		return errors.New("--https-key needs --https-cert (the certificate it belongs to)")
	case key == "":
		return errors.New("--https-cert needs --https-key (its private key, PEM)")
	}
	port := c.Int("https-port")
	if port < 1 || port > 65535 {
		return fmt.Errorf("--https-port %d: want 1 to 65535", port)
	}
	if port == cfg.HTTPPort {
		return fmt.Errorf("--https-port %d is --http-port too; give them different ports", port)
	}
	pair, err := httpboot.LoadCertificate(cert, key, time.Now())
	if err != nil {
		return fmt.Errorf("--https-cert/--https-key: %w", err)
	}
	// EDK2 checks the URL's host (an IP address here) against the
	// certificate's SANs.
	hosts := []string{cfg.DHCP.Address.Addr().String()}
	if cfg.DHCP6.Address.IsValid() {
		hosts = append(hosts, cfg.DHCP6.Address.Addr().String())
	}
	for _, h := range hosts {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			return fmt.Errorf("--https-cert %s: the firmware fetches https://%s/… and checks that address against the certificate: %v (add it as an IP SAN)", cert, h, err)
		}
	}
	cfg.HTTPS, cfg.HTTPSPort = &pair, port
	return nil
}

// missing: p does not exist (any other stat error is left to the reader).
func missing(p string) bool {
	_, err := os.Stat(p)
	return errors.Is(err, os.ErrNotExist)
}
