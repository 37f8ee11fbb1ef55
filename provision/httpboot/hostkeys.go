package httpboot

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/ironrack/ironrack/agent/wire"
)

// HostKeys records the SSH host keys a deployed OS reports on its first
// boot (POST wire.HostKeysPath).
type HostKeys interface {
	// RecordHostKeys records keys (as wire.ParseHostKeysReport returns
	// them) for the deploy token belongs to, burning the token, and
	// returns the host certificates signed for them (none without an SSH
	// CA). An error wrapping ErrHostKeyToken is a refused token (403),
	// ErrBadHostKeys keys the store refuses (400); others are store
	// failures (503). machineID is the token's machine when it names one.
	RecordHostKeys(ctx context.Context, token string, keys []string) (machineID string, certs []string, err error)
}

// Errors a HostKeys implementation wraps.
var (
	// ErrHostKeyToken: the host-key token is malformed, unknown, already
	// used, expired, or not the current deploy's.
	ErrHostKeyToken = errors.New("host-key token refused")
	// ErrBadHostKeys: the keys are not host keys the inventory records.
	ErrBadHostKeys = errors.New("bad host keys")
)

// serveHostKeys is POST /api/v1/host-keys (wire.HostKeysPath): the
// deployed OS's one report of its host public keys, authenticated by its
// deploy's single-use token; the answer carries the host certificates.
// Every refusal is logged with the client's address.
func (s *Server) serveHostKeys(w http.ResponseWriter, r *http.Request) {
	if s.cfg.HostKeys == nil {
		http.Error(w, "host-key API not configured", http.StatusServiceUnavailable)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || len(token) > 128 {
		s.hostKeys.WithLabelValues("unauthenticated").Inc()
		s.log.Warn("httpboot: host keys without a token refused", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="ironrack-host-keys"`)
		http.Error(w, "missing bearer token (the deploy's host-key token)", http.StatusUnauthorized)
		return
	}
	rep, err := wire.ParseHostKeysReport(http.MaxBytesReader(w, r.Body, wire.MaxHostKeyReport+1))
	if err != nil {
		s.hostKeys.WithLabelValues("invalid").Inc()
		s.log.Warn("httpboot: host keys refused", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*lookupTimeout)
	defer cancel()
	id, certs, err := s.cfg.HostKeys.RecordHostKeys(ctx, token, rep.Keys)
	switch {
	case errors.Is(err, ErrHostKeyToken):
		s.hostKeys.WithLabelValues("bad_token").Inc()
		s.log.Warn("httpboot: host-key token refused; keys not recorded", "machine", id, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case errors.Is(err, ErrBadHostKeys):
		s.hostKeys.WithLabelValues("invalid").Inc()
		s.log.Warn("httpboot: host keys refused", "machine", id, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case err != nil:
		s.hostKeys.WithLabelValues("error").Inc()
		s.log.Error("httpboot: record host keys", "machine", id, "remote", r.RemoteAddr, "err", err)
		http.Error(w, "could not record the host keys", http.StatusServiceUnavailable)
		return
	}
	s.hostKeys.WithLabelValues("ok").Inc()
	s.log.Info("httpboot: host keys recorded", "machine", id, "keys", len(rep.Keys), "certificates", len(certs), "remote", r.RemoteAddr)
	if certs == nil {
		certs = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(wire.HostKeysReply{Certificates: certs})
}
