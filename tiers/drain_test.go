package tiers_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
)

// TestDrainSendsAgentToken: in a cluster with default-deny ACLs, a drain
// puts the machine's service in maintenance on its agent only with a token
// that may write it (AgentToken, the provider's Consul token); without one
// the agent refuses and the drain fails naming the machine and service.
func TestDrainSendsAgentToken(t *testing.T) {
	const mgmt = "0c6e1f0e-7d1a-4a51-9c36-1f2e3d4c5b6a"
	agent := consuldev.TWith(t, consuldev.Options{Bind: "127.0.32.1", Token: mgmt, ExtraHCL: consuldev.ACL(mgmt)})
	admin, err := api.NewClient(&api.Config{Address: agent.Addr, Token: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(agent.Addr)
	p, _ := strconv.Atoi(port)
	m := &inventory.Machine{ID: "m-drain", IP: host}
	spec := tiers.Spec{Name: "query", Services: []inventory.DeployService{{Name: "web", Port: 80}}}
	t.Setenv("CONSUL_HTTP_TOKEN", "")

	d := &tiers.ProvisionDeployer{AgentPort: p}
	err = d.Drain(context.Background(), []*inventory.Machine{m}, spec)
	if err == nil || !strings.Contains(err.Error(), "m-drain") || !strings.Contains(err.Error(), "web") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("drain without a token: %v, want a 403 naming m-drain and web", err)
	}
	d.AgentToken = mgmt
	if err := d.Drain(context.Background(), []*inventory.Machine{m}, spec); err != nil {
		t.Fatalf("drain with the token: %v", err)
	}
	checks, err := admin.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if c := checks["_service_maintenance:web"]; c == nil || c.Status != api.HealthCritical {
		t.Errorf("web not in maintenance after the drain: %+v", checks)
	}
}
