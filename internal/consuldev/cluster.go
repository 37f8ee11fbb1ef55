package consuldev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/netns"
)

// A Cluster is a production-shaped Consul: three (or ClusterOptions.Servers)
// servers with Raft on disk and raft_multiplier 1, each in its own network
// namespace, their veths joined by a bridge in a "host" namespace, where a
// client agent runs as on every host that runs ironrack. ironrack talks to
// the client agent; every HTTP API is a unix socket (namespace-blind), so a
// test process in the root namespace reaches any of them without a route.
//
//	ns host: bridge br0 10.77.0.100/24, client agent (10.77.0.100)
//	ns s1..s3: veth to br0, server i on 10.77.0.i
//
// Faults: Kill (SIGKILL), Stop/Cont (SIGSTOP/SIGCONT), Restart (start a
// killed server again on its data dir), Cut/Heal (its veth on the bridge side
// down/up). WaitHealthy waits until autopilot reports every server a healthy
// voter: a restarted server is not a voter until then, and a second fault
// before that can leave the cluster without quorum.
//
// Every process is killed by PID when tb's cleanup runs (and dies with the
// test process through Pdeathsig); the namespaces are deleted.
type Cluster struct {
	// Client is the client agent's HTTP address, "unix:///…/client.sock"
	// (an api.Config.Address, or ironrack's --consul).
	Client  string
	Servers []*Server

	tb     testing.TB
	opt    ClusterOptions
	dir    string
	host   *netns.NS
	client *proc
}

// ClusterOptions configure a Cluster. The zero value works.
type ClusterOptions struct {
	// Servers is the number of servers. If 0, 3.
	Servers int
	// Log receives every agent's output. If nil, it is discarded.
	Log io.Writer
	// ExtraHCL is appended to every agent's config.
	ExtraHCL string
}

// Server is one server of a Cluster.
type Server struct {
	// Name is its node name, "s1"…; Addr its cluster address (10.77.0.i).
	Name, Addr string
	// HTTP is its own HTTP API, "unix:///…/sN.sock": a client on its side
	// of a cut.
	HTTP string
	ns   *netns.NS
	veth string // the bridge-side end, in the host namespace
	cfg  string
	p    atomic.Pointer[proc]
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

var clusterSeq atomic.Uint32

// StartCluster starts a cluster for tb (a *testing.T or a *testing.B) and
// waits until it has a leader, every server is a healthy voter and the
// client agent has joined. Under -short tb is skipped.
func StartCluster(tb testing.TB, opt ClusterOptions) *Cluster {
	tb.Helper()
	netns.Require(tb)
	bin, err := Binary()
	if err != nil {
		tb.Fatalf("consul: %v", err)
	}
	if opt.Servers == 0 {
		opt.Servers = 3
	}
	if opt.Log == nil {
		opt.Log = io.Discard
		if os.Getenv("IRONRACK_CONSUL_LOG") != "" {
			opt.Log = os.Stderr
		}
	}
	dir, err := os.MkdirTemp("", "icl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	c := &Cluster{tb: tb, opt: opt, dir: dir}
	c.host = netns.New(tb)
	c.host.AddBridge("br0", "10.77.0.100/24")
	seq := clusterSeq.Add(1)
	var joins []string
	for i := 1; i <= opt.Servers; i++ {
		joins = append(joins, fmt.Sprintf("%q", fmt.Sprintf("10.77.0.%d", i)))
	}
	join := strings.Join(joins, ", ")
	for i := 1; i <= opt.Servers; i++ {
		s := &Server{Name: fmt.Sprintf("s%d", i), Addr: fmt.Sprintf("10.77.0.%d", i), ns: netns.New(tb)}
		s.veth = fmt.Sprintf("v%ds%d", seq, i)
		c.host.AddVeth(s.veth, "eth0", "br0", s.ns)
		s.ns.Run("ip", "addr", "add", s.Addr+"/24", "dev", "eth0")
		sock := filepath.Join(dir, s.Name+".sock")
		s.HTTP = "unix://" + sock
		s.cfg = filepath.Join(dir, s.Name+".hcl")
		hcl := fmt.Sprintf(`
node_name = %q
server = true
bootstrap_expect = %d
data_dir = %q
bind_addr = %q
advertise_addr = %q
addresses { http = "unix://%s" }
ports { dns = -1, grpc = -1, grpc_tls = -1 }
retry_join = [%s]
retry_interval = "1s"
performance { raft_multiplier = 1 }
limits { http_max_conns_per_client = 4096 }
disable_update_check = true
log_level = "warn"
%s
`, s.Name, opt.Servers, filepath.Join(dir, s.Name+"-data"), s.Addr, s.Addr, sock, join, opt.ExtraHCL)
		if err := os.WriteFile(s.cfg, []byte(hcl), 0o600); err != nil {
			tb.Fatal(err)
		}
		c.Servers = append(c.Servers, s)
		if err := c.start(bin, s.ns, s.cfg, &s.p); err != nil {
			tb.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "client.sock")
	c.Client = "unix://" + sock
	ccfg := filepath.Join(dir, "client.hcl")
	hcl := fmt.Sprintf(`
node_name = "host"
data_dir = %q
bind_addr = "10.77.0.100"
addresses { http = "unix://%s" }
ports { dns = -1, grpc = -1, grpc_tls = -1 }
retry_join = [%s]
retry_interval = "1s"
limits { http_max_conns_per_client = 4096 }
disable_update_check = true
log_level = "warn"
%s
`, filepath.Join(dir, "client-data"), sock, join, opt.ExtraHCL)
	if err := os.WriteFile(ccfg, []byte(hcl), 0o600); err != nil {
		tb.Fatal(err)
	}
	var cp atomic.Pointer[proc]
	if err := c.start(bin, c.host, ccfg, &cp); err != nil {
		tb.Fatal(err)
	}
	c.client = cp.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		tb.Fatal(err)
	}
	// The client agent registers itself once it has joined: sessions (the
	// journals hold one) need its node in the catalog.
	if err := c.waitFor(ctx, "the client agent's node registration", func(cl *api.Client) (bool, error) {
		n, _, err := cl.Catalog().Node("host", nil)
		return n != nil && n.Node != nil, err
	}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// start runs `consul agent -config-file cfg` inside ns and records it in p.
func (c *Cluster) start(bin string, ns *netns.NS, cfg string, p *atomic.Pointer[proc]) error {
	cmd := ns.Command(context.Background(), bin, "agent", "-config-file", cfg)
	cmd.Stdout, cmd.Stderr = c.opt.Log, c.opt.Log
	// `ip netns exec` execs consul: this PID is consul's, and it dies with
	// the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul (%s): %w", cfg, err)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(pr.done) }()
	p.Store(pr)
	c.tb.Cleanup(func() { pr.kill() })
	return nil
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT) // a stopped process dies only once it runs
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// API returns a client for an HTTP address of the cluster (c.Client or a
// server's HTTP).
func API(addr string) (*api.Client, error) {
	return api.NewClient(&api.Config{Address: addr})
}

// PID is the server's current process ID (0 when it is not running).
func (s *Server) PID() int {
	p := s.p.Load()
	if p == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Kill kills the server with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(s *Server) {
	if p := s.p.Load(); p != nil {
		p.kill()
	}
}

// Stop stalls the server with SIGSTOP; Cont resumes it.
func (c *Cluster) Stop(s *Server) { _ = syscall.Kill(s.PID(), syscall.SIGSTOP) }

// Cont resumes a server stalled by Stop.
func (c *Cluster) Cont(s *Server) { _ = syscall.Kill(s.PID(), syscall.SIGCONT) }

// Restart starts a killed server again on its data dir (it kills it first
// if it still runs).
func (c *Cluster) Restart(s *Server) {
	c.tb.Helper()
	c.Kill(s)
	bin, err := Binary()
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := c.start(bin, s.ns, s.cfg, &s.p); err != nil {
		c.tb.Fatal(err)
	}
}

// Cut takes the server's link to the bridge down: it is cut off from the
// other servers and the client agent, and only its own HTTP API reaches it.
func (c *Cluster) Cut(s *Server) { c.host.Run("ip", "link", "set", s.veth, "down") }

// Heal brings a cut server's link back up and has it join the others
// at once (serf would retry on its own only every 30 s).
func (c *Cluster) Heal(s *Server) {
	c.host.Run("ip", "link", "set", s.veth, "up")
	cl, err := API(s.HTTP)
	if err != nil {
		return
	}
	for _, o := range c.Servers {
		if o != s {
			_ = cl.Agent().Join(o.Addr, false)
		}
	}
}

// Leader returns the current leader as the client agent sees it.
func (c *Cluster) Leader(ctx context.Context) (*Server, error) {
	var leader *Server
	err := c.waitFor(ctx, "a leader", func(cl *api.Client) (bool, error) {
		addr, err := cl.Status().Leader()
		if err != nil || addr == "" {
			return false, err
		}
		host, _, _ := net.SplitHostPort(addr)
		for _, s := range c.Servers {
			if s.Addr == host {
				leader = s
				return true, nil
			}
		}
		return false, fmt.Errorf("leader %s is no server of the cluster", addr)
	})
	return leader, err
}

// Followers returns the servers other than the leader.
func (c *Cluster) Followers(ctx context.Context) ([]*Server, error) {
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Server
	for _, s := range c.Servers {
		if s != l {
			out = append(out, s)
		}
	}
	return out, nil
}

// WaitHealthy waits until autopilot reports the cluster healthy with every
// server a voter.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	// A server killed a moment ago still reads healthy until autopilot
	// notices: ask for five healthy reports in a row (half a second).
	streak := 0
	return c.waitFor(ctx, "autopilot to report every server a healthy voter", func(*api.Client) (bool, error) {
		if err := c.healthy(ctx); err != nil {
			streak = 0
			return false, err
		}
		streak++
		return streak >= 5, nil
	})
}

// healthy asks autopilot once: nil if every server is a healthy voter.
func (c *Cluster) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://consul/v1/operator/autopilot/health", nil)
	if err != nil {
		return err
	}
	r, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	var h struct {
		Healthy bool
		Servers []struct {
			Name       string
			Healthy    bool
			Voter      bool
			SerfStatus string
		}
	}
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		return fmt.Errorf("autopilot health: %s: %s", r.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
		return err
	}
	if !h.Healthy || len(h.Servers) != len(c.Servers) {
		return fmt.Errorf("autopilot: healthy %v, %d of %d servers", h.Healthy, len(h.Servers), len(c.Servers))
	}
	for _, s := range h.Servers {
		if !s.Healthy || !s.Voter || s.SerfStatus != "alive" {
			return fmt.Errorf("autopilot: server %s healthy %v voter %v serf %s", s.Name, s.Healthy, s.Voter, s.SerfStatus)
		}
	}
	return nil
}

// httpClient talks to the client agent's socket.
func (c *Cluster) httpClient() *http.Client {
	sock := strings.TrimPrefix(c.Client, "unix://")
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
}

// waitFor polls ok through the client agent every 100ms until it is true
// or ctx ends; the error then carries the last reason.
func (c *Cluster) waitFor(ctx context.Context, what string, ok func(*api.Client) (bool, error)) error {
	cl, err := API(c.Client)
	if err != nil {
		return err
	}
	start := time.Now()
	var last error
	for {
		done, err := ok(cl)
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul cluster: waited %s for %s: %v", time.Since(start).Round(time.Millisecond), what, last)
		case <-c.client.done:
			return fmt.Errorf("consul cluster: the client agent exited while waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
