package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/internal/treehash"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/book"
	"github.com/ironrack/ironrack/playbooks/fanout"
)

// cluster is a Consul server and, per test host, a client agent of its own
// (as a deployed machine runs: node meta ironrack_machine=ID) with the
// host's service "app" registered, its HTTP check served by the test.
type cluster struct {
	server *api.Client
	agents map[string]string // node name → agent HTTP address
	nodes  map[string]string // machine ID → node name
}

func startCluster(t *testing.T, ids []string, checkURL func(id string) string) *cluster {
	t.Helper()
	srv := consuldev.T(t)
	sc := srv.Client(t)
	self, err := sc.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	serf := self["Member"]["Port"]
	cl := &cluster{server: sc, agents: map[string]string{}, nodes: map[string]string{}}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(context.Background())
	for i, id := range ids {
		dataDir := t.TempDir()
		g.Go(func() error {
			bind := fmt.Sprintf("127.0.0.%d", 41+i)
			a, err := consuldev.Start(ctx, consuldev.Options{Bind: bind, ExtraHCL: fmt.Sprintf(`
server = false
bootstrap = false
data_dir = %q
retry_join = ["127.0.0.1:%v"]
node_meta = { ironrack_machine = %q }
`, dataDir, serf, id)})
			if err != nil {
				return fmt.Errorf("agent of %s: %w", id, err)
			}
			t.Cleanup(func() { a.Stop() })
			c, err := api.NewClient(&api.Config{Address: a.Addr})
			if err != nil {
				return err
			}
			if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "app", Port: 8080,
				Check: &api.AgentServiceCheck{Name: "app health", HTTP: checkURL(id), Interval: "1s", Timeout: "2s"}}); err != nil {
				return fmt.Errorf("register app on %s: %w", id, err)
			}
			node := "dev-" + strings.ReplaceAll(bind, ".", "-")
			mu.Lock()
			cl.agents[node], cl.nodes[id] = a.Addr, node
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// The node meta arrives with the agent's first anti-entropy sync.
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			ns, _, err := sc.Catalog().Nodes(&api.QueryOptions{NodeMeta: map[string]string{"ironrack_machine": id}})
			if err == nil && len(ns) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node of %s not in the catalog with its meta: %v", id, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return cl
}

// maintenance reports whether the machine's service is in maintenance.
func (cl *cluster) maintenance(t *testing.T, id string) bool {
	t.Helper()
	checks, _, err := cl.server.Health().Node(cl.nodes[id], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if strings.HasPrefix(c.CheckID, "_service_maintenance:") {
			return true
		}
	}
	return false
}

// The built-in deploy across 6 hosts on real sshd, gated on Consul health:
// a host whose service never gets healthy on the new release stops the
// roll at the threshold, untouched hosts stay on the old release, --check
// changes nothing, and the rollback restores the old release everywhere it
// had moved (and only there).
func TestDeployAcrossSixHosts(t *testing.T) {
	ids := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	const bad = "h3" // app-2 never gets healthy here
	root := t.TempDir()
	// Hosts: a real sshd each in its own network and mount namespaces, with
	// a private /srv (hostDir on this side), logged in to as root with host
	// keys checked strictly.
	hosts := sshhosts.Start(t, len(ids))
	hostDir := func(id string) string {
		for i, x := range ids {
			if x == id {
				return filepath.Join(hosts.Hosts[i].Dir, "srv")
			}
		}
		return filepath.Join(root, "no-such-host") // health reads fail: critical
	}

	// Each host's "service" runs what the last restart saw as current;
	// its health check is served here from that file.
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/h/")
		b, err := os.ReadFile(filepath.Join(hostDir(id), "running"))
		running := strings.TrimSpace(string(b))
		switch {
		case err != nil:
			http.Error(w, "not started", http.StatusServiceUnavailable)
		case id == bad && running == "releases/app-2":
			http.Error(w, "app-2 crashes on "+id, http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok", running)
		}
	}))
	t.Cleanup(health.Close)

	cl := startCluster(t, ids, func(id string) string { return health.URL + "/h/" + id })

	// Releases: tarballs with a VERSION file.
	for _, v := range []string{"app-1", "app-2", "app-3"} {
		src := filepath.Join(root, "src", v)
		if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command("tar", "-czf", filepath.Join(root, v+".tar.gz"), "-C", src, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v: %s", err, b)
		}
	}

	// Each host's systemctl stand-in records its calls and "starts" the
	// current release.
	var targets []book.Target
	for i, id := range ids {
		h := hosts.Hosts[i]
		script := "#!/bin/sh\necho \"$*\" >> /srv/systemctl.log\n" +
			"if [ \"$1\" = restart ]; then readlink /srv/app/current > /srv/running; fi\n"
		if err := os.MkdirAll(filepath.Join(hostDir(id), "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hostDir(id), "bin/systemctl"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, book.Target{
			Machine: &inventory.Machine{ID: id, IP: h.IP, Tier: "ingestion"},
			Host:    fanout.Host{ID: id, Addr: h.Addr, User: "root"},
		})
	}
	pb, err := Load("deploy")
	if err != nil {
		t.Fatal(err)
	}
	gate := &book.Consul{Client: cl.server, AgentAddr: func(n *api.Node) string { return cl.agents[n.Node] }}
	dialOpts := fanout.Plan{}.Dial
	dialOpts.HostKeyCallback = hosts.HostKeyCallback()
	dialOpts.Auth = []ssh.AuthMethod{ssh.PublicKeys(hosts.Signer)}
	vars := func(kv ...string) map[string]string {
		m := map[string]string{
			"service":        "app",
			"systemctl":      "/srv/bin/systemctl",
			"health_timeout": "8s",
			"health_settle":  "2500ms", // the checks run every 1s
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	run := func(name string, batch string, check bool, v map[string]string) (*book.Report, error) {
		t.Helper()
		plan := fanout.Plan{Dial: dialOpts, Timeout: 2 * time.Minute}
		if batch != "" {
			if plan.Batches, err = fanout.ParseBatch(batch); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		rep, err := pb.Run(ctx, targets, v, plan, book.Options{Check: check, Gate: gate, Poll: 300 * time.Millisecond})
		if rep == nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %s, err %v", name, time.Since(start).Round(time.Millisecond), err)
		for _, r := range rep.Results {
			t.Logf("  %s batch %d %s exit %d %s", r.Host.ID, r.Batch, r.Status, r.Exit, r.Error)
			if r.Status != fanout.StatusOK && r.Status != fanout.StatusSkipped {
				t.Logf("  output:\n%s", r.Output)
			}
		}
		return rep, err
	}
	current := func(id string) string {
		l, _ := os.Readlink(filepath.Join(hostDir(id), "app/current"))
		return l
	}
	restarts := func(id string) int {
		b, _ := os.ReadFile(filepath.Join(hostDir(id), "systemctl.log"))
		return strings.Count(string(b), "restart app\n")
	}
	allHosts := func() string {
		var b strings.Builder
		for _, id := range ids {
			b.WriteString(treehash.Of(t, hostDir(id)))
		}
		return b.String()
	}
	status := func(rep *book.Report) string {
		var s []string
		for _, r := range rep.Results {
			s = append(s, r.Host.ID+"="+string(r.Status))
		}
		return strings.Join(s, " ")
	}

	// The gate names a machine without an agent of its own.
	if err := gate.Drain(context.Background(), "h9", "test"); err == nil || !strings.Contains(err.Error(), "no Consul agent of machine h9 has joined") {
		t.Errorf("drain of a machine without an agent: %v", err)
	}
	if err := gate.Healthy(context.Background(), "h9"); err == nil || !strings.Contains(err.Error(), "ironrack_machine=h9") {
		t.Errorf("health of a machine without an agent: %v", err)
	}
	if err := gate.Healthy(context.Background(), "h1"); err == nil || !strings.Contains(err.Error(), `check "app health" is critical`) {
		t.Errorf("health of h1 before its first deploy: %v", err)
	}

	// 1. app-1 everywhere, one batch.
	if rep, err := run("deploy app-1", "", false, vars("release", filepath.Join(root, "app-1.tar.gz"))); err != nil || rep.Failed() > 0 {
		t.Fatalf("deploy app-1: %v (%s)", err, status(rep))
	}
	for _, id := range ids {
		if current(id) != "releases/app-1" || restarts(id) != 1 || cl.maintenance(t, id) {
			t.Fatalf("%s after app-1: current %q, %d restarts, maintenance %v", id, current(id), restarts(id), cl.maintenance(t, id))
		}
		if b, _ := os.ReadFile(filepath.Join(hostDir(id), "app/current/VERSION")); string(b) != "app-1\n" {
			t.Fatalf("%s: current/VERSION %q", id, b)
		}
	}

	// 2. app-2 in batches of 2: h3 never gets healthy, so batch 2 exceeds
	// the threshold (0); h4, in flight beside it, finishes; h5 and h6 are
	// never touched.
	rep, err := run("deploy app-2", "2", false, vars("release", filepath.Join(root, "app-2.tar.gz")))
	if !errors.Is(err, fanout.ErrAborted) {
		t.Fatalf("deploy app-2: err %v, want aborted", err)
	}
	if got, want := status(rep), "h1=ok h2=ok h3=failed h4=ok h5=skipped h6=skipped"; got != want {
		t.Errorf("deploy app-2: %s, want %s", got, want)
	}
	if out := string(rep.Results[2].Output); !strings.Contains(out, "builtin/deploy.yaml:") || !strings.Contains(out, "wait-healthy") || !strings.Contains(out, "app-2 crashes on h3") {
		t.Errorf("h3's output does not name the step and the check:\n%s", out)
	}
	want := map[string]string{"h1": "releases/app-2", "h2": "releases/app-2", "h3": "releases/app-2", "h4": "releases/app-2", "h5": "releases/app-1", "h6": "releases/app-1"}
	for _, id := range ids {
		if current(id) != want[id] {
			t.Errorf("%s after the stopped roll: current %q, want %q", id, current(id), want[id])
		}
	}
	for _, id := range []string{"h5", "h6"} {
		if _, err := os.Stat(filepath.Join(hostDir(id), "app/releases/app-2")); err == nil || restarts(id) != 1 || cl.maintenance(t, id) {
			t.Errorf("untouched %s was touched: app-2 unpacked (stat err %v), %d restarts, maintenance %v", id, err, restarts(id), cl.maintenance(t, id))
		}
	}
	if !cl.maintenance(t, bad) {
		t.Errorf("%s is not drained after failing its health gate", bad)
	}
	for _, id := range []string{"h1", "h2", "h4"} {
		if cl.maintenance(t, id) {
			t.Errorf("%s still drained", id)
		}
	}

	// 3. --check of the rollback changes nothing on any host.
	before := allHosts()
	rep, err = run("rollback --check", "2", true, vars("rollback", "true", "version", "app-2"))
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("rollback --check: %v (%s)", err, status(rep))
	}
	if after := allHosts(); after != before {
		t.Errorf("--check changed the hosts:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !cl.maintenance(t, bad) || cl.maintenance(t, "h1") {
		t.Error("--check changed a drain")
	}
	if s := rep.Steps["h5"]; len(s) == 0 || s[0].Status != book.Unchanged || s[1].Status != book.Skipped {
		t.Errorf("--check on h5 (not on app-2): %+v", s)
	}

	// 4. The rollback of app-2: every host that moved goes back to app-1
	// (h3 gets healthy there and is undrained); h5 and h6 are left alone.
	rep, err = run("rollback", "2", false, vars("rollback", "true", "version", "app-2"))
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("rollback: %v (%s)", err, status(rep))
	}
	for _, id := range ids {
		wantRestarts := 3
		if id == "h5" || id == "h6" {
			wantRestarts = 1
		}
		if current(id) != "releases/app-1" || restarts(id) != wantRestarts || cl.maintenance(t, id) {
			t.Errorf("%s after the rollback: current %q, %d restarts (want %d), maintenance %v", id, current(id), restarts(id), wantRestarts, cl.maintenance(t, id))
		}
		if err := gate.Healthy(context.Background(), id); err != nil {
			t.Errorf("%s after the rollback: %v", id, err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(hostDir("h1"), "app/previous")); l != "releases/app-2" {
		t.Errorf("h1 previous %q, want releases/app-2 (a second rollback rolls forward)", l)
	}

	// 5. A release the hosts fetch themselves over HTTP (as from the boot
	// server), onto h5 and h6: the version comes from the URL's file name.
	l, err := net.Listen("tcp", net.JoinHostPort(hosts.Subnet.Addr().Next().String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	files := httptest.NewUnstartedServer(http.FileServer(http.Dir(root)))
	files.Listener.Close()
	files.Listener = l
	files.Start()
	t.Cleanup(files.Close)
	all := targets
	targets = all[4:]
	rep, err = run("deploy app-2 by URL onto h5, h6", "", false, vars("release", files.URL+"/app-2.tar.gz", "health_timeout", "15s"))
	targets = all
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("deploy by URL: %v (%s)", err, status(rep))
	}
	for _, id := range []string{"h5", "h6"} {
		if b, _ := os.ReadFile(filepath.Join(hostDir(id), "app/current/VERSION")); current(id) != "releases/app-2" || string(b) != "app-2\n" {
			t.Errorf("%s after the deploy by URL: current %q, VERSION %q", id, current(id), b)
		}
	}
	if s := rep.Steps["h5"]; s[2].Status != book.Changed || s[3].Status != book.Skipped {
		t.Errorf("h5's fetch and copy steps: %+v", s)
	}

	// 6. app-3 onto h5 keeping 1: app-3 (current) and app-2 (previous)
	// stay, app-1 and its tarball go.
	targets = all[4:5]
	rep, err = run("deploy app-3 onto h5, keep 1", "", false, vars("release", filepath.Join(root, "app-3.tar.gz"), "keep", "1"))
	targets = all
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("deploy app-3: %v (%s)", err, status(rep))
	}
	ents, err := os.ReadDir(filepath.Join(hostDir("h5"), "app/releases"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != ".app-2.tar .app-3.tar app-2 app-3" {
		t.Errorf("h5's releases after keeping 1: %s", got)
	}
}
