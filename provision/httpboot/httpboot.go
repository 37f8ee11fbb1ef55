// Package httpboot owns the boot server's HTTP side: the iPXE script per
// machine (from the boot decision in provision/ipxe), the image files
// (/images/<name>/<version>/<file> from Config.ImageDir) and the iPXE
// binaries, with Range support, their sha256 from the version's SHA256SUMS
// and no path escape, the agent API (its wire format is agent/wire's)
// authenticated by a per-boot token (reports, deploy instructions),
// cloud-init's NoCloud seed per deploy token, the deployed OS's one report
// of its SSH host keys (per-deploy single-use token), /healthz and /metrics.
// FirmwareServer serves only the iPXE binaries over TLS, for the firmware's
// first fetch of a UEFI HTTPS boot.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// Machines looks machines up for their boot scripts.
type Machines interface {
	// MachineByMAC returns the machine whose interface has mac. An unknown
	// MAC is not an error: it returns Machine{State: ipxe.StateUnknown}.
	// It is called once per script request and must not reach the BMC.
	MachineByMAC(ctx context.Context, mac net.HardwareAddr) (ipxe.Machine, error)
}

// BootRecorder writes each boot decision into the machine's history.
type BootRecorder interface {
	// RecordBoot records that m's boot got decision d. Errors are logged;
	// the machine still gets its script.
	RecordBoot(ctx context.Context, m ipxe.Machine, d ipxe.Decision) error
}

// Tokens verifies the per-boot tokens carried in the scripts.
type Tokens interface {
	// VerifyBootToken returns the machine a token was issued to. ok is
	// false for an unknown, expired or revoked token; err is for a store
	// failure only.
	VerifyBootToken(ctx context.Context, token string) (machineID string, ok bool, err error)
}

// Reports receives the agent's reports.
type Reports interface {
	// RecordReport stores one validated report of machineID.
	RecordReport(ctx context.Context, machineID string, r wire.Report) error
}

// Config configures a Server. The zero value of every optional field works.
type Config struct {
	// Addr is the listen address. If empty, ":8080". Ignored if Listener is set.
	Addr string
	// Listener, if set, is served instead of listening on Addr; Serve closes it.
	Listener net.Listener
	// Addr6 is a second listen address (the boot server's IPv6 one), e.g.
	// "[2001:db8::1]:8080". If empty, none.
	Addr6 string
	// BaseURL6 is where scripts fetched over IPv6 point, e.g.
	// "http://[2001:db8::1]:8080". If empty, Env.BaseURL.
	BaseURL6 string
	// ImageDir is the tree served under /images/: <name>/<version>/<file>
	// (images.Root of the data dir). If empty, /images/ answers 404.
	ImageDir string
	// IPXEDir holds the iPXE binaries served under /ipxe/. If empty, /usr/lib/ipxe.
	IPXEDir string
	// Env says where scripts point; Env.BaseURL is required for scripts.
	Env ipxe.Env
	// Machines looks machines up. Required for /boot.ipxe.
	Machines Machines
	// Boots records boot decisions. If nil, they are only logged.
	Boots BootRecorder
	// Tokens and Reports serve the agent API. If either is nil, the API answers 503.
	Tokens  Tokens
	Reports Reports
	// Deploys serves GET /api/v1/deploy and /nocloud/. If nil, they answer
	// 503 and 404.
	Deploys Deploys
	// HostKeys records deployed machines' host keys (POST
	// /api/v1/host-keys). If nil, it answers 503.
	HostKeys HostKeys
	// MaxReportBytes bounds a report body. If 0, 1 MiB.
	MaxReportBytes int64
	// Registerer receives this server's metrics; Gatherer is served on
	// /metrics. If nil, metrics are not registered / /metrics is empty.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
	// ShutdownTimeout bounds the wait for requests in flight on stop. If 0, 5s.
	ShutdownTimeout time.Duration
}

// Server is the boot HTTP server. Make one with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	scripts *prometheus.CounterVec
	reports *prometheus.CounterVec
	// hostKeys counts host-key reports by result.
	hostKeys *prometheus.CounterVec
	handler  http.Handler
	sums     sums
}

// New checks cfg and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = "/usr/lib/ipxe"
	}
	if cfg.MaxReportBytes <= 0 {
		cfg.MaxReportBytes = 1 << 20
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Machines != nil && cfg.Env.BaseURL == "" {
		return nil, errors.New("httpboot: Env.BaseURL is required to render scripts")
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.scripts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ironrack_boot_scripts_total", Help: "iPXE scripts served, by boot action.",
	}, []string{"action"})
	s.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ironrack_agent_reports_total", Help: "Agent API reports, by result.",
	}, []string{"result"})
	s.hostKeys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ironrack_host_key_reports_total", Help: "Host-key reports of deployed machines, by result.",
	}, []string{"result"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.scripts, s.reports, s.hostKeys} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("httpboot: register metrics: %w", err)
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	gatherer := cfg.Gatherer
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /boot.ipxe", s.serveScript)
	mux.HandleFunc("GET /images/", s.serveImage)
	mux.HandleFunc("GET /ipxe/", s.serveIPXE)
	mux.HandleFunc("POST "+wire.ReportPath, s.serveReport)
	mux.HandleFunc("GET "+wire.DeployPath, s.serveDeploy)
	mux.HandleFunc("POST "+wire.HostKeysPath, s.serveHostKeys)
	mux.HandleFunc("GET /nocloud/{token}/{file}", s.serveNoCloud)
	s.handler = mux
	return s, nil
}

// Handler is the server's HTTP handler, for mounting elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve listens (or uses Config.Listener) and serves until ctx is done,
// then shuts down, waiting at most ShutdownTimeout for requests in flight,
// and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("httpboot: listen on %s: %w", s.cfg.Addr, err)
		}
	}
	var ln6 net.Listener
	if s.cfg.Addr6 != "" {
		var err error
		if ln6, err = net.Listen("tcp", s.cfg.Addr6); err != nil {
			ln.Close()
			return fmt.Errorf("httpboot: listen on %s: %w", s.cfg.Addr6, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	lns := []net.Listener{ln}
	if ln6 != nil {
		lns = append(lns, ln6)
	}
	for _, l := range lns {
		s.log.Info("httpboot: serving", "addr", l.Addr().String())
	}
	return serveListeners(ctx, srv, lns, s.cfg.ShutdownTimeout)
}
