// Package tftp owns ironrack's read-only TFTP server, which hands the iPXE
// binaries (undionly.kpxe, ipxe.efi) to firmware that can only fetch by
// TFTP. It serves files inside one root directory and nothing else: no
// writes, no absolute paths, no "..", no symlink out of the root. One
// Server listens on one address, IPv4 or IPv6 (UEFI PXE over IPv6 fetches
// tftp://[addr]/file); the boot server runs one per address, over the same
// root.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"
)

// Config configures a Server. The zero value of every field works.
type Config struct {
	// Root is the directory served. If empty, /usr/lib/ipxe (Debian's ipxe package).
	Root string
	// Addr is the UDP listen address, IPv4 or IPv6 (e.g.
	// "192.0.2.1:69", "[2001:db8::1]:69"). If empty, ":69". Ignored if
	// Conn is set.
	Addr string
	// Interface, if set, binds the listening socket to that interface only
	// (SO_BINDTODEVICE). Transfers then answer from the address the
	// request reached. Ignored if Conn is set.
	Interface string
	// Conn, if set, is served instead of a socket Serve opens on Addr;
	// Serve closes it.
	Conn net.PacketConn
	// Timeout is the per-packet retransmit timeout. If 0, 2s.
	Timeout time.Duration
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Server is a read-only TFTP server. Make one with New.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New fills cfg's defaults and returns a Server. It does no I/O.
func New(cfg Config) *Server {
	if cfg.Root == "" {
		cfg.Root = "/usr/lib/ipxe"
	}
	if cfg.Addr == "" && cfg.Conn == nil {
		cfg.Addr = ":69"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}
}

// Serve listens (unless Config.Conn is set) and serves until ctx is done,
// then stops accepting, waits for transfers in flight (each bounded by
// Timeout and the library's retries) and returns nil.
//
// pin/tftp opens one socket per transfer from its read loop, which runs
// on Serve's goroutine: run Serve on a thread inside a network namespace
// and the transfers stay inside it too.
func (s *Server) Serve(ctx context.Context) error {
	root, err := os.OpenRoot(s.cfg.Root)
	if err != nil {
		if s.cfg.Conn != nil {
			s.cfg.Conn.Close()
		}
		return fmt.Errorf("tftp: open root %s: %w", s.cfg.Root, err)
	}
	defer root.Close()
	conn := s.cfg.Conn
	if conn == nil {
		if conn, err = s.listen(ctx); err != nil {
			return err
		}
	}
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error { return s.read(root, name, rf) }, nil)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(5)
	addr := conn.LocalAddr().String()
	s.log.Info("tftp: serving", "addr", addr, "root", s.cfg.Root, "interface", s.cfg.Interface)
	// srv.Serve runs on this goroutine: pin/tftp opens each transfer's
	// socket in its read loop, so they are opened where Serve was called
	// (a test's network namespace, when Serve runs on a thread inside it).
	stop := context.AfterFunc(ctx, srv.Shutdown)
	defer stop()
	err = srv.Serve(conn)
	if ctx.Err() != nil {
		srv.Shutdown() // waits for the transfers in flight
		return nil
	}
	conn.Close()
	return fmt.Errorf("tftp: serve %s: %w", addr, err)
}

// listen opens the socket on Addr, bound to Interface if one is set.
func (s *Server) listen(ctx context.Context) (net.PacketConn, error) {
	lc := net.ListenConfig{}
	if s.cfg.Interface != "" {
		ifname := s.cfg.Interface
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) }); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := lc.ListenPacket(ctx, "udp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: listen on %s (interface %q): %w", s.cfg.Addr, s.cfg.Interface, err)
	}
	return conn, nil
}

// ErrRefused is returned to clients for paths outside the root.
var errRefused = errors.New("access violation")

func (s *Server) read(root *os.Root, name string, rf io.ReaderFrom) error {
	peer := ""
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		a := ot.RemoteAddr()
		peer = a.String()
	}
	f, err := root.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.log.Info("tftp: no such file", "file", name, "peer", peer)
			return fmt.Errorf("file not found: %s", name)
		}
		s.log.Warn("tftp: refused", "file", name, "peer", peer, "err", err)
		return errRefused
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.log.Warn("tftp: refused non-regular file", "file", name, "peer", peer)
		return errRefused
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(fi.Size()) // answers the tsize option
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		s.log.Warn("tftp: transfer failed", "file", name, "peer", peer, "bytes", n, "err", err)
		return fmt.Errorf("send %s: %w", name, err)
	}
	s.log.Info("tftp: sent", "file", name, "peer", peer, "bytes", n)
	return nil
}
