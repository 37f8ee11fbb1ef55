package httpboot

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ironrack/ironrack/internal/pemcert"
)

// FirmwareConfig configures a FirmwareServer. The zero value of every
// optional field works.
type FirmwareConfig struct {
	// Addrs are the listen addresses, e.g. "192.0.2.1:8443" and
	// "[2001:db8::1]:8443". Required unless Listeners is set.
	Addrs []string
	// Listeners, if set, are served instead of listening on Addrs (plain
	// TCP listeners; the server adds TLS). Serve closes them.
	Listeners []net.Listener
	// Certificate is the server's certificate chain and key (see
	// LoadCertificate). Required.
	Certificate tls.Certificate
	// IPXEDir holds the iPXE binaries served under /ipxe/. Required.
	IPXEDir string
	// Logger receives logs: each file served, each TLS handshake error
	// (the firmware refusing the certificate shows here), and each
	// ClientHello at debug level. If nil, logs are discarded.
	Logger *slog.Logger
	// ShutdownTimeout bounds the wait for requests in flight on stop. If 0, 5s.
	ShutdownTimeout time.Duration
}

// FirmwareServer serves the firmware's first fetch of a UEFI HTTPS boot:
// the iPXE binaries under /ipxe/, over TLS, and nothing else. What iPXE
// fetches afterwards (its script, kernels, images, the agent API) stays on
// the plain HTTP Server, authenticated by per-boot tokens: Debian's iPXE
// trusts only iPXE's own root CA (docs/boot-server.md, HTTPS boot).
type FirmwareServer struct {
	cfg   FirmwareConfig
	log   *slog.Logger
	tls   *tls.Config
	files *Server
}

// firmwareCipherSuites are the TLS 1.2 suites offered to firmware. Go's
// default list has only ECDHE key exchange, and OVMF 2022.11 (Debian's
// build, seen in TestUEFIHTTPSBoot's ClientHello) offers no elliptic
// curves at all: TLS 1.0-1.2 with DHE_RSA suites (which Go does not
// implement) and RSA key exchange (TLS_RSA_WITH_AES_{128,256}_{GCM,CBC}).
// So the RSA key exchange suites follow the ECDHE ones, which a client
// that can use them still gets.
var firmwareCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// NewFirmware checks cfg and returns a FirmwareServer. It does no I/O.
func NewFirmware(cfg FirmwareConfig) (*FirmwareServer, error) {
	if len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil {
		return nil, errors.New("httpboot: firmware server: no TLS certificate")
	}
	if len(cfg.Addrs) == 0 && len(cfg.Listeners) == 0 {
		return nil, errors.New("httpboot: firmware server: no listen address")
	}
	if cfg.IPXEDir == "" {
		return nil, errors.New("httpboot: firmware server: no iPXE dir")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FirmwareServer{cfg: cfg, log: log, files: &Server{log: log}}
	s.tls = &tls.Config{
		Certificates: []tls.Certificate{cfg.Certificate},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: firmwareCipherSuites,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			s.log.Debug("httpboot: TLS client hello", "remote", h.Conn.RemoteAddr().String(), "server_name", h.ServerName,
				"versions", versionNames(h.SupportedVersions), "suites", suiteNames(h.CipherSuites),
				"curves", fmt.Sprint(h.SupportedCurves), "sig_schemes", fmt.Sprint(h.SignatureSchemes))
			return nil, nil
		},
	}
	return s, nil
}

// Handler serves GET and HEAD /ipxe/<file> from IPXEDir (404 for
// anything else), logging each answer with its TLS version and suite.
func (s *FirmwareServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ipxe/", func(w http.ResponseWriter, r *http.Request) {
		rel := strings.TrimPrefix(r.URL.Path, "/ipxe/")
		if !safeRel(rel, 1) {
			http.Error(w, "path: want /ipxe/<file>", http.StatusBadRequest)
			return
		}
		var ver, suite string
		if r.TLS != nil {
			ver, suite = tls.VersionName(r.TLS.Version), tls.CipherSuiteName(r.TLS.CipherSuite)
		}
		s.log.Info("httpboot: firmware fetch over TLS", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "tls", ver, "suite", suite)
		s.files.serveFrom(w, r, s.cfg.IPXEDir, rel, nil)
	})
	return mux
}

// Serve listens (or uses Config.Listeners) and serves TLS until ctx is
// done, then shuts down, waiting at most ShutdownTimeout for requests in
// flight, and returns nil.
func (s *FirmwareServer) Serve(ctx context.Context) error {
	lns := s.cfg.Listeners
	if len(lns) == 0 {
		for _, a := range s.cfg.Addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				for _, o := range lns {
					o.Close()
				}
				return fmt.Errorf("httpboot: firmware server: listen on %s: %w", a, err)
			}
			lns = append(lns, l)
		}
	}
	tlns := make([]net.Listener, len(lns))
	for i, l := range lns {
		tlns[i] = tls.NewListener(l, s.tls)
		s.log.Info("httpboot: serving the firmware's fetch over TLS", "addr", l.Addr().String())
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// "http: TLS handshake error from …: remote error: tls: unknown
		// certificate authority" is how a firmware without the CA shows.
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	return serveListeners(ctx, srv, tlns, s.cfg.ShutdownTimeout)
}

// serveListeners serves srv on every listener until ctx is done or one of
// them fails, then shuts srv down (at most timeout for requests in
// flight) and returns the first failure, or nil on a clean stop.
func serveListeners(ctx context.Context, srv *http.Server, lns []net.Listener, timeout time.Duration) error {
	errc := make(chan error, len(lns))
	for _, l := range lns {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("httpboot: serve %s: %w", l.Addr(), err)
				return
			}
			errc <- nil
		}()
	}
	var first error
	select {
	case first = <-errc:
		if first == nil {
			first = errors.New("httpboot: a listener stopped")
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	n := len(lns)
	if first != nil {
		n--
	}
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LoadCertificate reads a TLS server certificate (PEM, the leaf first,
// then any intermediates) and its private key (PEM) for the
// FirmwareServer. Every error names the file it is about (FILE:LINE for a
// bad PEM block). A certificate outside its validity period at now is
// refused: the firmware would refuse it too.
func LoadCertificate(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate: %w", err)
	}
	certs, err := pemcert.Parse(certFile, certPEM, "the key goes in the key file")
	if err != nil {
		return tls.Certificate{}, err
	}
	if len(certs) == 0 {
		return tls.Certificate{}, fmt.Errorf("%s: no PEM CERTIFICATE block in it", certFile)
	}
	leaf := certs[0]
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("%s: certificate %q is not valid before %s", certFile, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%s: certificate %q expired at %s", certFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS key: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return tls.Certificate{}, fmt.Errorf("%s: no PEM PRIVATE KEY block in it", keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, fmt.Errorf("%s: the key does not match the certificate in %s", keyFile, certFile)
		}
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyFile, err)
	}
	return pair, nil
}

func versionNames(vs []uint16) string {
	n := make([]string, len(vs))
	for i, v := range vs {
		n[i] = tls.VersionName(v)
	}
	return strings.Join(n, ",")
}

func suiteNames(cs []uint16) string {
	n := make([]string, len(cs))
	for i, c := range cs {
		n[i] = tls.CipherSuiteName(c)
	}
	return strings.Join(n, ",")
}
