package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/provision/ipxe"
)

const lookupTimeout = 5 * time.Second

// env is where r's script points: at BaseURL6 when r came in over IPv6
// and BaseURL6 is set, so a machine that booted over IPv6 stays on it.
func (s *Server) env(r *http.Request) ipxe.Env {
	env := s.cfg.Env
	if s.cfg.BaseURL6 == "" {
		return env
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := la.(*net.TCPAddr); ok && ta.IP.To4() == nil {
			env.BaseURL = s.cfg.BaseURL6
		}
	}
	return env
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Machines == nil {
		http.Error(w, "no inventory configured", http.StatusServiceUnavailable)
		return
	}
	mac, err := net.ParseMAC(r.URL.Query().Get("mac"))
	if err != nil || len(mac) != 6 {
		http.Error(w, "mac: want ?mac=aa:bb:cc:dd:ee:ff", http.StatusBadRequest)
		return
	}
	env := s.env(r)
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	m, err := s.cfg.Machines.MachineByMAC(ctx, mac)
	if err != nil {
		// The inventory is down: tell iPXE to retry rather than fall through
		// to the local disk with an unknown decision.
		s.log.Error("httpboot: look up machine", "mac", mac.String(), "err", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "#!ipxe\necho ironrack: inventory unavailable, retrying in 10s\nsleep 10\nchain --replace %s%s?mac=%s\n",
			env.BaseURL, "/boot.ipxe", mac)
		s.scripts.WithLabelValues("retry").Inc()
		return
	}
	if m.MAC == "" {
		m.MAC = mac.String()
	}
	if m.State == "" {
		m.State = ipxe.StateUnknown
	}
	d := ipxe.Decide(m)
	s.log.Info("httpboot: boot", "mac", m.MAC, "machine", m.ID, "state", m.State, "action", string(d.Action), "mode", d.Mode)
	if s.cfg.Boots != nil {
		if err := s.cfg.Boots.RecordBoot(ctx, m, d); err != nil {
			s.log.Error("httpboot: record boot", "mac", m.MAC, "machine", m.ID, "err", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, ipxe.Render(d, m, env))
	s.scripts.WithLabelValues(string(d.Action)).Inc()
}

// safeRel checks that rel is a clean relative path of exactly n segments,
// none empty, "." or "..", with no backslash or NUL.
func safeRel(rel string, n int) bool {
	if strings.ContainsAny(rel, "\\\x00") {
		return false
	}
	parts := strings.Split(rel, "/")
	if len(parts) != n {
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return false
		}
	}
	return true
}

func (s *Server) serveImage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ImageDir == "" {
		http.NotFound(w, r)
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, "/images/")
	if !safeRel(rel, 3) {
		http.Error(w, "path: want /images/<name>/<version>/<file>", http.StatusBadRequest)
		return
	}
	dir := s.cfg.ImageDir
	s.serveFrom(w, r, dir, rel, func() string {
		return s.sums.lookup(path.Join(dir, path.Dir(rel)), path.Base(rel))
	})
}

func (s *Server) serveIPXE(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(r.URL.Path, "/ipxe/")
	if !safeRel(rel, 1) {
		http.Error(w, "path: want /ipxe/<file>", http.StatusBadRequest)
		return
	}
	s.serveFrom(w, r, s.cfg.IPXEDir, rel, nil)
}

// serveFrom serves rel from inside dir, with Range support. os.Root keeps
// the open inside dir: ".." and symlinks that lead out of it fail. sum, if
// set, gives the file's sha256 for the checksum headers ("" for none).
func (s *Server) serveFrom(w http.ResponseWriter, r *http.Request, dir, rel string, sum func() string) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		s.log.Error("httpboot: open root", "dir", dir, "err", err)
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("httpboot: refused file", "dir", dir, "path", rel, "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if sum != nil {
		setChecksum(w, sum())
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func (s *Server) serveReport(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Tokens == nil || s.cfg.Reports == nil {
		http.Error(w, "agent API not configured", http.StatusServiceUnavailable)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		s.reports.WithLabelValues("unauthenticated").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="ironrack-agent"`)
		http.Error(w, "missing bearer token", http.StatusUnauthorized)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	id, ok, err := s.cfg.Tokens.VerifyBootToken(ctx, token)
	switch {
	case err != nil:
		s.log.Error("httpboot: verify token", "err", err)
		http.Error(w, "token store unavailable", http.StatusServiceUnavailable)
		return
	case !ok:
		s.reports.WithLabelValues("bad_token").Inc()
		http.Error(w, "invalid boot token", http.StatusUnauthorized)
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxReportBytes)
	rep, err := wire.ParseReport(body)
	if err != nil {
		s.reports.WithLabelValues("invalid").Inc()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("report larger than %d bytes", tooBig.Limit), http.StatusBadRequest)
			return
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.cfg.Reports.RecordReport(ctx, id, rep); err != nil {
		s.log.Error("httpboot: record report", "machine", id, "err", err)
		http.Error(w, "could not record report", http.StatusServiceUnavailable)
		return
	}
	s.reports.WithLabelValues("ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}
