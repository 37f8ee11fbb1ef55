package tiers

import (
	"strings"
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// TestDeployServices: the tier's services become the deploy spec's (which
// the deployed OS's Consul agent registers); a ttl check, which nothing on
// a deployed machine would feed, is refused naming the field.
func TestDeployServices(t *testing.T) {
	spec := Spec{Name: "query", Services: []inventory.DeployService{{Name: "ssh", Port: 22}, {Name: "api", Port: 8080, Check: "http:/healthz"}}}
	got, err := deployServices(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (inventory.DeployService{Name: "ssh", Port: 22}) ||
		got[1] != (inventory.DeployService{Name: "api", Port: 8080, Check: "http:/healthz"}) {
		t.Fatalf("deploy services %+v", got)
	}
	spec.Services[1].Check = "ttl"
	if _, err := deployServices(spec); err == nil || !strings.Contains(err.Error(), "services[1].check") {
		t.Fatalf("ttl check: %v, want refused naming services[1].check", err)
	}
}
