package ui

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/tiers/plans"
	"golang.org/x/sync/errgroup"
)

//go:embed assets
var assets embed.FS

// Config configures a Server. Store and Consul are required.
type Config struct {
	// Store is the inventory the pages show and the actions change.
	Store *inventory.Store
	// Consul holds the UI's tokens (under Prefix) and answers nothing else.
	Consul *api.Client
	// Prefix is the inventory's KV prefix. If empty, "ironrack".
	Prefix string
	// Listen is the address to serve on. If empty, 127.0.0.1:8081. An
	// address that is not loopback is refused unless TLSCert and TLSKey
	// are set.
	Listen string
	// Listener, if set, is served instead of listening on Listen (tests
	// pass one bound to port 0). It counts as loopback only if its address is.
	Listener net.Listener
	// TLSCert and TLSKey are PEM files; with both set the UI serves HTTPS.
	TLSCert, TLSKey string
	// Fleet returns the BMC workflows acting as who. If nil,
	// &provision.Fleet{Inventory: Store, Who: who, Logger: Logger}.
	Fleet func(who string) *provision.Fleet
	// Logger receives the server's logs. If nil, they are discarded.
	Logger *slog.Logger
	// WatchWait is the longest a blocking query waits. If 0, 1m.
	WatchWait time.Duration
	// PageSize is how many machines the table shows per page. If 0, 50.
	PageSize int
	// SessionTTL is how long a login lasts. If 0, 12h.
	SessionTTL time.Duration
}

// Server is the web UI.
type Server struct {
	cfg      Config
	log      *slog.Logger
	cache    *cache
	tokens   *Tokens
	sessions *sessions
	tmpl     *templates
	plans    *plans.Store
	tierLog  *tierLog
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Consul == nil {
		return nil, errors.New("ui: Store and Consul are required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8081"
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("ui: give both --tls-cert and --tls-key, or neither")
	}
	if cfg.WatchWait == 0 {
		cfg.WatchWait = time.Minute
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 50
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Fleet == nil {
		cfg.Fleet = func(who string) *provision.Fleet {
			return &provision.Fleet{Inventory: cfg.Store, Who: who, Logger: log}
		}
	}
	addr := cfg.Listen
	if cfg.Listener != nil {
		addr = cfg.Listener.Addr().String()
	}
	if err := checkListen(addr, cfg.TLSCert != ""); err != nil {
		return nil, err
	}
	t, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	c := newCache(cfg.Store, cfg.WatchWait, log)
	return &Server{cfg: cfg, log: log, cache: c,
		tokens: &Tokens{Client: cfg.Consul, Prefix: cfg.Prefix}, sessions: newSessions(cfg.SessionTTL), tmpl: t,
		plans:   plans.NewStore(cfg.Consul, cfg.Prefix),
		tierLog: &tierLog{store: cfg.Store, cache: c, events: map[string][]tierEvent{}}}, nil
}

// checkListen refuses a non-loopback address without TLS.
func checkListen(addr string, tls bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT: %w", addr, err)
	}
	if tls {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %s is not a loopback address: serving the UI beyond this host needs --tls-cert and --tls-key", addr)
	}
	return nil
}

// scheme is http, or https with TLS.
func (s *Server) scheme() string {
	if s.cfg.TLSCert != "" {
		return "https"
	}
	return "http"
}

// Serve serves until ctx is done, then closes its listener and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("ui: listen %s: %w", s.cfg.Listen, err)
		}
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ui: --tls-cert %s, --tls-key %s: %w", s.cfg.TLSCert, s.cfg.TLSKey, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.log.Info("ui serving", "url", s.scheme()+"://"+ln.Addr().String())
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.cache.run(gctx) })
	g.Go(func() error { return s.tierLog.run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
		return nil
	})
	g.Go(func() error {
		err := hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("ui: %w", err)
	})
	err := g.Wait()
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}
