package images_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
)

// TestNoCloudConsulAgent tests the Consul node decision against real
// Consul: a machine enlisted in the inventory (an external node named by
// its ID) and a client agent run from the config files NoCloud renders for
// that machine (only the loopback addresses, ports and data dir
// overridden), joined to the same dev server. After the agent has synced
// its node, service and check (the check passing), the inventory node's
// meta and address are unchanged, and the agent's own node carries the
// machine ID and role.
func TestNoCloudConsulAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real consul agent; skipped under -short")
	}
	ctx := context.Background()
	server, err := consuldev.Start(ctx, consuldev.Options{Bind: "127.0.30.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Stop() })
	client, err := api.NewClient(&api.Config{Address: server.Addr})
	if err != nil {
		t.Fatal(err)
	}
	store := inventory.New(client, inventory.Config{Who: "test"})
	m, _, err := store.Enlist(ctx, inventory.Sighting{Serial: "IM-NODE-1", MACs: []string{"52:54:00:30:00:10"}, Source: "test"}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	before, _, err := client.Catalog().Node(m.ID, nil)
	if err != nil || before == nil {
		t.Fatalf("inventory node %s: %v", m.ID, err)
	}
	self, err := client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	member := self["Member"]
	serfAddr := net.JoinHostPort(fmt.Sprint(member["Addr"]), fmt.Sprint(member["Port"]))

	// The service the machine runs, and its check's target.
	svc := tcpService(t, "127.0.30.2")
	port := svc.Addr().(*net.TCPAddr).Port

	const hostname = "im-web-1"
	seed := images.Seed{InstanceID: m.ID + "-1", Hostname: hostname + ".rack1.example", MachineID: m.ID, Role: "web",
		SSHAuthorizedKeys: []string{testKey}, ConsulJoin: []string{serfAddr}, ConsulBind: "127.0.30.2",
		Services: []images.Service{{Name: "web", Port: port, Tags: []string{"v1"},
			Check: &images.Check{TCP: svc.Addr().String(), Interval: time.Second}}}}
	files, err := seed.ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	waitPassing(t, client, "web", hostname, startAgent(t, files, "127.0.30.2"))
	// Anti-entropy has synced the agent's node (service and check sync
	// after it); one more sync round must not touch the inventory node.
	time.Sleep(2 * time.Second)
	after, _, err := client.Catalog().Node(m.ID, nil)
	if err != nil || after == nil {
		t.Fatalf("inventory node %s after the agent joined: %v", m.ID, err)
	}
	if diff := cmp.Diff(before.Node.Meta, after.Node.Meta); diff != "" {
		t.Errorf("inventory node meta changed (-before +after):\n%s", diff)
	}
	if before.Node.Address != after.Node.Address || len(after.Services) != len(before.Services) {
		t.Errorf("inventory node changed: address %s -> %s, services %d -> %d", before.Node.Address, after.Node.Address, len(before.Services), len(after.Services))
	}
	own, _, err := client.Catalog().Node(hostname, nil)
	if err != nil || own == nil {
		t.Fatalf("agent node %s: %v", hostname, err)
	}
	if own.Node.Meta[images.MetaMachine] != m.ID || own.Node.Meta[images.MetaRole] != "web" {
		t.Errorf("agent node meta %v, want %s=%s %s=web", own.Node.Meta, images.MetaMachine, m.ID, images.MetaRole)
	}
	if own.Node.Address != "127.0.30.2" {
		t.Errorf("agent node address %s, want its bind 127.0.30.2", own.Node.Address)
	}
	if s := own.Services["web"]; s == nil || s.Port != port || !cmp.Equal(s.Tags, []string{"v1"}) {
		t.Errorf("agent node's web service %+v, want port %d tags [v1]", s, port)
	}
	// The machine's services are found from its inventory ID.
	nodes, _, err := client.Catalog().Nodes(&api.QueryOptions{NodeMeta: map[string]string{images.MetaMachine: m.ID}})
	if err != nil || len(nodes) != 1 || nodes[0].Node != hostname {
		t.Errorf("nodes with %s=%s: %+v %v", images.MetaMachine, m.ID, nodes, err)
	}
	// The other choice, for the record (last: it damages the inventory
	// node): an agent whose node is the inventory node (node_name =
	// machine ID) has anti-entropy overwrite the inventory's meta.
	t.Run("shared node is overwritten", func(t *testing.T) {
		shared := seed
		shared.Hostname, shared.Services = m.ID, nil
		files, err := shared.ConsulFiles()
		if err != nil {
			t.Fatal(err)
		}
		// ConsulFiles itself never names the agent by the machine ID (it
		// adds images.OSNodeSuffix); force it, to show why.
		var cfg map[string]any
		if err := json.Unmarshal(files[images.ConsulConfigFile], &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg["node_name"] != m.ID+images.OSNodeSuffix {
			t.Fatalf("host name = machine ID rendered node_name %v, want %s", cfg["node_name"], m.ID+images.OSNodeSuffix)
		}
		cfg["node_name"] = m.ID
		if files[images.ConsulConfigFile], err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
		startAgent(t, files, "127.0.30.3")
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, _, err := client.Catalog().Node(m.ID, nil)
			if err == nil && n != nil && n.Node.Meta[images.MetaMachine] == m.ID {
				if n.Node.Meta["state"] != "" || n.Node.Meta["ironrack"] != "" {
					t.Errorf("inventory meta survived a shared node: %v", n.Node.Meta)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the shared agent never synced node %s: %+v %v", m.ID, n, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestNoCloudConsulAgentSecured: the inventory's cluster encrypts its
// gossip, enforces ACLs with default deny and verifies TLS on its RPC
// (verify_incoming), as a production cluster does. An agent run from the
// files NoCloud renders with the cluster's gossip key, a token scoped to
// node and service writes and the CA joins, gets its certificate from the
// server (auto_encrypt), registers its node with the machine's meta and its
// service, and the check passes. The server really enforces gossip
// encryption and ACLs: its serf pool is encrypted and an anonymous client
// sees no nodes.
func TestNoCloudConsulAgentSecured(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real consul agent; skipped under -short")
	}
	ctx := context.Background()
	hcl, ca := securedServer(t, testGossipKey, testMgmtToken)
	server, err := consuldev.Start(ctx, consuldev.Options{Bind: "127.0.31.1", Token: testMgmtToken, ExtraHCL: hcl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Stop() })
	admin, err := api.NewClient(&api.Config{Address: server.Addr, Token: testMgmtToken})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := api.NewClient(&api.Config{Address: server.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if nodes, _, err := anon.Catalog().Nodes(nil); err != nil || len(nodes) != 0 {
		t.Fatalf("anonymous catalog read = %d nodes, %v: ACLs are not enforced", len(nodes), err)
	}
	self, err := admin.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	if enc := self["Stats"]["serf_lan"].(map[string]any)["encrypted"]; enc != "true" {
		t.Fatalf("server serf_lan encrypted = %v", enc)
	}
	member := self["Member"]
	serfAddr := net.JoinHostPort(fmt.Sprint(member["Addr"]), fmt.Sprint(member["Port"]))

	// What an operator gives machines: writes to nodes and services, no more.
	pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "machine-agent",
		Rules: `node_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Description: "deployed machines", Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	svc := tcpService(t, "127.0.31.2")
	const hostname = "im-db-1"
	seed := images.Seed{InstanceID: "m-sec-1", Hostname: hostname, MachineID: "m-sec", Role: "db",
		SSHAuthorizedKeys: []string{testKey}, ConsulJoin: []string{serfAddr}, ConsulBind: "127.0.31.2",
		ConsulGossipKey: testGossipKey, ConsulToken: tok.SecretID, ConsulCACert: string(ca),
		Services: []images.Service{{Name: "db", Port: svc.Addr().(*net.TCPAddr).Port,
			Check: &images.Check{TCP: svc.Addr().String(), Interval: time.Second}}}}
	files, err := seed.ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	// auto_encrypt asks the join addresses for a certificate on the
	// agent's own ports.server (8300 on a machine); this server's differs.
	files["/etc/consul.d/zz-server-port.json"] = fmt.Appendf(nil, `{"ports": {"server": %v}}`, self["DebugConfig"]["ServerPort"])
	dir := startAgent(t, files, "127.0.31.2")
	waitPassing(t, admin, "db", hostname, dir)
	own, _, err := admin.Catalog().Node(hostname, nil)
	if err != nil || own == nil || own.Node.Meta[images.MetaMachine] != "m-sec" {
		t.Fatalf("agent node %s: %+v %v", hostname, own, err)
	}
	members, err := admin.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	joined := false
	for _, m := range members {
		joined = joined || (m.Name == hostname && m.Status == 1)
	}
	if !joined {
		t.Errorf("%s is not an alive member of the encrypted pool: %+v", hostname, members)
	}
	// The agent talks TLS to the servers with a certificate they issued.
	log, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	if !strings.Contains(string(log), "Auto-Encrypt-TLS: true") {
		t.Errorf("agent does not use auto_encrypt:\n%s", log)
	}
}

// waitPassing waits up to 60 s until service's one check passes on node,
// and fails the test with the agent's log (in dir) if it does not.
func waitPassing(t *testing.T, c *api.Client, service, node, dir string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		checks, _, err := c.Health().Checks(service, nil)
		if err == nil && len(checks) == 1 && checks[0].Status == api.HealthPassing && checks[0].Node == node {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Fatalf("service %s not passing on node %s within 60 s: %+v %v\nagent log:\n%s", service, node, checks, err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// securedServer is the config of a Consul server secured as a production
// one is: gossip encryption with key, default-deny ACLs with mgmt as the
// management (and its own agent) token, TLS with verify_incoming from a CA
// and server certificate that `consul tls` makes in a temporary dir, and
// auto_encrypt for clients. It returns the HCL and the CA's PEM.
func securedServer(t *testing.T, key, mgmt string) (hcl string, ca []byte) {
	t.Helper()
	bin, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}
	pki := t.TempDir()
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = pki
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
	ca, err = os.ReadFile(filepath.Join(pki, "consul-agent-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
encrypt = %q
tls {
  defaults {
    ca_file = %q
    cert_file = %q
    key_file = %q
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc { verify_server_hostname = true }
}
auto_encrypt { allow_tls = true }
`, key, filepath.Join(pki, "consul-agent-ca.pem"), filepath.Join(pki, "dc1-server-consul-0.pem"),
		filepath.Join(pki, "dc1-server-consul-0-key.pem")) + consuldev.ACL(mgmt), ca
}

// tcpService listens on a free port of host and closes every connection
// (what a TCP check needs), until the test ends.
func tcpService(t *testing.T, host string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l
}

// startAgent runs a Consul client agent (the pinned binary) from the
// rendered config files plus an override of what differs from a machine
// (data dir, client address, free ports on bind) and stops it by PID when
// the test ends. It returns the dir holding agent.log.
func startAgent(t *testing.T, files map[string][]byte, bind string) string {
	t.Helper()
	dir := t.TempDir()
	confDir := filepath.Join(dir, "consul.d")
	os.Mkdir(confDir, 0o755)
	ports := freePorts(t, bind, 2)
	over := map[string]any{
		"data_dir": filepath.Join(dir, "data"), "client_addr": bind,
		"ports":     map[string]int{"http": ports[0], "serf_lan": ports[1], "dns": -1, "grpc": -1, "grpc_tls": -1},
		"log_level": "warn",
	}
	for p, b := range files {
		target := filepath.Join(confDir, filepath.Base(p))
		if p == images.ConsulCAFile { // outside the config dir, as on a machine
			target = filepath.Join(dir, "ca.pem")
			over["tls"] = map[string]any{"defaults": map[string]any{"ca_file": target}}
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	override, _ := json.Marshal(over)
	if err := os.WriteFile(filepath.Join(confDir, "zz-test.json"), override, 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(bin, "agent", "-config-dir", confDir)
	agent.Stdout, agent.Stderr = logf, logf
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
			<-done
		}
		logf.Close()
	})
	return dir
}

func freePorts(t *testing.T, host string, n int) []int {
	t.Helper()
	var out []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		// serf also wants the UDP port.
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		u.Close()
		out = append(out, port)
	}
	return out
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHtu6m3w5Ig3cNn3cWd2s0HT0IGx8e2ejmLY+ieG3RyD test@ironrack"
