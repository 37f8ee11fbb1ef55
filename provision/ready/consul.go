package ready

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/images"
)

// ConsulAgent is Health from Consul's catalog. The deployed OS's own agent
// is a node whose meta names its machine (images.MetaMachine); the machine
// is healthy when such a node is registered and every check on it (the
// agent's serfHealth and each service's checks) passes.
type ConsulAgent struct {
	Client *api.Client
	// Timeout bounds one read. If 0, 10s.
	Timeout time.Duration
	// SkipServiceMaintenance leaves out the critical checks Consul adds to
	// a service in maintenance: a drained machine is waited on until its
	// own checks pass, before it is undrained (playbooks' wait-healthy).
	SkipServiceMaintenance bool
}

// ServiceMaintPrefix starts the CheckID of the check Consul adds to a
// service in maintenance (the agent's _service_maintenance:<service ID>).
const ServiceMaintPrefix = "_service_maintenance:"

// Healthy implements Health.
func (h ConsulAgent) Healthy(ctx context.Context, machineID string) error {
	d := h.Timeout
	if d <= 0 {
		d = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	q := (&api.QueryOptions{NodeMeta: map[string]string{images.MetaMachine: machineID}}).WithContext(ctx)
	nodes, _, err := h.Client.Catalog().Nodes(q)
	if err != nil {
		return fmt.Errorf("read the catalog: %w", err)
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no Consul agent of its own has joined yet (no node with meta %s=%s)", images.MetaMachine, machineID)
	}
	var bad []string
	for _, n := range nodes {
		checks, _, err := h.Client.Health().Node(n.Node, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("read node %s's checks: %w", n.Node, err)
		}
		counted := 0
		for _, c := range checks {
			if h.SkipServiceMaintenance && strings.HasPrefix(c.CheckID, ServiceMaintPrefix) {
				continue
			}
			counted++
			if c.Status != api.HealthPassing {
				out := strings.TrimSpace(c.Output)
				if len(out) > 120 {
					out = out[:120] + "…"
				}
				bad = append(bad, fmt.Sprintf("node %s check %q is %s: %s", n.Node, c.Name, c.Status, out))
			}
		}
		if counted == 0 {
			bad = append(bad, fmt.Sprintf("node %s has no checks", n.Node))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}
