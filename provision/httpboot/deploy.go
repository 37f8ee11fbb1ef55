package httpboot

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
)

// Deploys answers the deploying agent and the deployed OS's cloud-init.
type Deploys interface {
	// DeployInstructions returns what machineID's agent writes. An error
	// wrapping ErrNoDeploy means the machine has nothing to deploy now
	// (409); other errors are store failures (503).
	DeployInstructions(ctx context.Context, machineID string) (wire.Instructions, error)
	// NoCloud returns one NoCloud file ("meta-data", "user-data",
	// "vendor-data") of the deploy that token belongs to. ok is false for
	// an unknown or revoked token; err is for a store failure only.
	NoCloud(ctx context.Context, token, file string) (data []byte, ok bool, err error)
}

// ErrNoDeploy: the machine is not deploying, or has no image to deploy.
var ErrNoDeploy = errors.New("nothing to deploy")

// NoCloudFiles are the files of the NoCloud endpoint.
var NoCloudFiles = []string{"meta-data", "user-data", "vendor-data"}

func (s *Server) agentAuth(w http.ResponseWriter, r *http.Request) (string, context.Context, context.CancelFunc, bool) {
	if s.cfg.Tokens == nil {
		http.Error(w, "agent API not configured", http.StatusServiceUnavailable)
		return "", nil, nil, false
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ironrack-agent"`)
		http.Error(w, "missing bearer token", http.StatusUnauthorized)
		return "", nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	id, ok, err := s.cfg.Tokens.VerifyBootToken(ctx, token)
	switch {
	case err != nil:
		cancel()
		s.log.Error("httpboot: verify token", "err", err)
		http.Error(w, "token store unavailable", http.StatusServiceUnavailable)
		return "", nil, nil, false
	case !ok:
		cancel()
		http.Error(w, "invalid boot token", http.StatusUnauthorized)
		return "", nil, nil, false
	}
	return id, ctx, cancel, true
}

// serveDeploy is GET /api/v1/deploy (wire.DeployPath): the deploy instructions of the
// machine the bearer token was issued to.
func (s *Server) serveDeploy(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Deploys == nil {
		http.Error(w, "deploy API not configured", http.StatusServiceUnavailable)
		return
	}
	id, ctx, cancel, ok := s.agentAuth(w, r)
	if !ok {
		return
	}
	defer cancel()
	in, err := s.cfg.Deploys.DeployInstructions(ctx, id)
	switch {
	case errors.Is(err, ErrNoDeploy):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.log.Error("httpboot: deploy instructions", "machine", id, "err", err)
		http.Error(w, "could not read the deploy", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(in)
}

// serveNoCloud is GET /nocloud/<token>/<file>, cloud-init's NoCloud seed
// (ds=nocloud-net;s=<base>/nocloud/<token>/). An unknown token is 404, the
// same as an unknown file, so the endpoint says nothing about tokens.
func (s *Server) serveNoCloud(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Deploys == nil {
		http.NotFound(w, r)
		return
	}
	token, file := r.PathValue("token"), r.PathValue("file")
	known := false
	for _, f := range NoCloudFiles {
		known = known || f == file
	}
	if !known || len(token) > 128 {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	b, ok, err := s.cfg.Deploys.NoCloud(ctx, token, file)
	switch {
	case err != nil:
		s.log.Error("httpboot: nocloud", "file", file, "err", err)
		http.Error(w, "could not read the deploy", http.StatusServiceUnavailable)
		return
	case !ok:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// sums caches each image version's SHA256SUMS by the file's mtime and size,
// so a served file's checksum header never costs a hash of the file.
type sums struct {
	mu sync.Mutex
	m  map[string]sumsEntry
}

type sumsEntry struct {
	mod  time.Time
	size int64
	sums map[string]string
}

// lookup returns the hex sha256 of file in dir's SHA256SUMS, or "".
func (c *sums) lookup(dir, file string) string {
	p := filepath.Join(dir, "SHA256SUMS")
	fi, err := os.Stat(p)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	e, ok := c.m[dir]
	c.mu.Unlock()
	if !ok || !e.mod.Equal(fi.ModTime()) || e.size != fi.Size() {
		e = sumsEntry{mod: fi.ModTime(), size: fi.Size(), sums: parseSums(p)}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]sumsEntry{}
		}
		c.m[dir] = e
		c.mu.Unlock()
	}
	return e.sums[file]
}

// parseSums reads sha256sum's format ("<64 hex>  <name>" or " *<name>").
func parseSums(p string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(p)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), " ")
		if !ok || len(sum) != 64 {
			continue
		}
		if _, err := hex.DecodeString(sum); err != nil {
			continue
		}
		name = strings.TrimPrefix(strings.TrimPrefix(name, " "), "*")
		out[name] = strings.ToLower(sum)
	}
	return out
}

// setChecksum sets X-Checksum-Sha256 (hex) and Digest (RFC 3230,
// sha-256=<base64>) for the whole file, when its version lists it.
func setChecksum(w http.ResponseWriter, sum string) {
	if sum == "" {
		return
	}
	raw, err := hex.DecodeString(sum)
	if err != nil {
		return
	}
	w.Header().Set("X-Checksum-Sha256", sum)
	w.Header().Set("Digest", fmt.Sprintf("sha-256=%s", base64.StdEncoding.EncodeToString(raw)))
}
