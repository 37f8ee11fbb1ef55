// Package consuldev starts and stops a real `consul agent -dev` on loopback
// for tests, benchmarks and the demo. It owns nothing else: it finds the
// pinned binary that scripts/setup built into the tools cache, picks free
// ports, waits for a leader and stops the agent by PID. StartCluster
// (cluster.go) runs a production-shaped cluster instead: three servers in
// their own network namespaces, a client agent, and faults to inject.
package consuldev

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ironrack/ironrack/internal/tools"
)

// Version is the Consul release that scripts/setup builds.
const Version = tools.ConsulVersion

// Binary returns the path of the pinned consul binary. IRONRACK_CONSUL_BIN
// overrides it; otherwise it is the tools cache's (tools.Consul). The file
// must exist.
func Binary() (string, error) {
	if p := os.Getenv("IRONRACK_CONSUL_BIN"); p != "" {
		if err := tools.Executable(p); err != nil {
			return "", fmt.Errorf("IRONRACK_CONSUL_BIN: %w", err)
		}
		return p, nil
	}
	return tools.Consul()
}

// Options configure an agent. The zero value works.
type Options struct {
	// Bind is the loopback address the agent binds. If empty, 127.0.0.1.
	Bind string
	// Log receives the agent's output. If nil, it is discarded.
	Log io.Writer
	// ExtraHCL is appended to the agent's config file.
	ExtraHCL string
	// Token is sent with the readiness checks: the management token, when
	// ExtraHCL enables ACLs with a default policy of deny.
	Token string
	// Server runs a production-shaped single server instead of -dev: its
	// Raft log and snapshots on disk under the agent's temporary dir
	// (fsync'd), and compact JSON responses (a dev agent keeps everything
	// in memory and pretty-prints every response). Benchmarks use it to
	// measure what a real inventory server does.
	Server bool
}

// ACL is the HCL that enables ACLs with a default policy of deny, with mgmt
// as the initial management token and the agent's own token (for
// Options.ExtraHCL, with mgmt as Options.Token, or for any server's config).
func ACL(mgmt string) string {
	return fmt.Sprintf(`
acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = %q
    agent = %q
  }
}
`, mgmt, mgmt)
}

// Agent is a running dev agent.
type Agent struct {
	// Addr is the HTTP API address, host:port.
	Addr  string
	cmd   *exec.Cmd
	dir   string
	done  chan struct{}
	token string
}

// Start starts `consul agent -dev` with free ports on opt.Bind and waits until
// it has elected itself leader. The caller must call Stop.
func Start(ctx context.Context, opt Options) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	bind := opt.Bind
	if bind == "" {
		bind = "127.0.0.1"
	}
	ports, err := freePorts(bind, 4)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "consuldev-")
	if err != nil {
		return nil, err
	}
	hcl := fmt.Sprintf(`
bind_addr = %q
client_addr = %q
advertise_addr = %q
ports {
  http = %d
  serf_lan = %d
  serf_wan = %d
  server = %d
  dns = -1
  grpc = -1
  grpc_tls = -1
}
limits { http_max_conns_per_client = 4096 }
disable_update_check = true
log_level = "warn"
%s
`, bind, bind, bind, ports[0], ports[1], ports[2], ports[3], opt.ExtraHCL)
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"agent", "-dev"}
	if opt.Server {
		args = []string{"agent", "-server", "-bootstrap-expect", "1", "-data-dir", filepath.Join(dir, "data")}
	}
	node := "dev-" + strings.ReplaceAll(bind, ".", "-")
	args = append(args, "-node", node, "-config-file", cfg)
	cmd := exec.Command(bin, args...)
	out := opt.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start consul: %w", err)
	}
	a := &Agent{Addr: fmt.Sprintf("%s:%d", bind, ports[0]), cmd: cmd, dir: dir, done: make(chan struct{}), token: opt.Token}
	go func() { cmd.Wait(); close(a.done) }()
	if err := a.waitLeader(ctx, node, 30*time.Second); err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// answers: GET path gives 200 and a body other than "", "null" or "{}".
func (a *Agent) answers(ctx context.Context, c *http.Client, path string) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+a.Addr+path, nil)
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := strings.Trim(string(b), `" `+"\n")
	return resp.StatusCode == 200 && body != "" && body != "null" && body != "{}"
}

// PID is the agent's process ID.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// waitLeader waits for a leader and then for the agent's own node in the
// catalog: a session (ironrack's journals hold one) is refused with
// "Missing node registration" until the agent has registered itself.
func (a *Agent) waitLeader(ctx context.Context, node string, max time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		if a.answers(ctx, c, "/v1/status/leader") && a.answers(ctx, c, "/v1/catalog/node/"+node) {
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("consul agent exited before electing a leader")
		case <-ctx.Done():
			return fmt.Errorf("consul agent on %s: no leader after %s", a.Addr, max)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop terminates the agent by PID (SIGTERM, then SIGKILL after 5 s) and
// removes its config dir. It is safe to call twice.
func (a *Agent) Stop() error {
	select {
	case <-a.done:
	default:
		_ = syscall.Kill(a.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
	}
	return os.RemoveAll(a.dir)
}

func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("find free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	// serf also needs the UDP port free; TCP-free ports nearly always are.
	return ports, nil
}
