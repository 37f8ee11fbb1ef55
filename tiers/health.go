package tiers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
)

// ConsulHealth waits on Consul's health API. A machine serves a service
// when the service has an instance on the machine's catalog node (named by
// its ID) or at its address. The checks are whatever registered the
// service runs: the Consul agent on a deployed machine, or the
// StateDeployer's stand-in.
type ConsulHealth struct {
	Client *api.Client
	// Poll is the pause between reads. If 0, 500ms.
	Poll time.Duration
}

func (h *ConsulHealth) poll() time.Duration {
	if h.Poll == 0 {
		return 500 * time.Millisecond
	}
	return h.Poll
}

// instances maps machine ID → the service's entry on it.
func (h *ConsulHealth) instances(ctx context.Context, ms []*inventory.Machine, svc string, passingOnly bool) (map[string]*api.ServiceEntry, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, _, err := h.Client.Health().Service(svc, "", passingOnly, (&api.QueryOptions{}).WithContext(rctx))
	if err != nil {
		return nil, fmt.Errorf("read health of service %s: %w", svc, err)
	}
	byNode := map[string]*api.ServiceEntry{}
	byAddr := map[string]*api.ServiceEntry{}
	for _, e := range entries {
		byNode[e.Node.Node] = e
		// The deployed OS's agent is a node of its own that names its
		// machine in meta (images.MetaMachine); that match wins.
		if id := e.Node.Meta[images.MetaMachine]; id != "" {
			byNode[id] = e
		}
		if e.Service.Address != "" {
			byAddr[e.Service.Address] = e
		}
		byAddr[e.Node.Address] = e
	}
	out := map[string]*api.ServiceEntry{}
	for _, m := range ms {
		if e, ok := byNode[m.ID]; ok {
			out[m.ID] = e
		} else if e, ok := byAddr[m.IP]; ok && m.IP != "" {
			out[m.ID] = e
		}
	}
	return out, nil
}

// WaitHealthy returns once every machine serves every service with all its
// checks passing (and at least one check).
func (h *ConsulHealth) WaitHealthy(ctx context.Context, ms []*inventory.Machine, services []inventory.DeployService) error {
	for {
		var failing []string
		for _, svc := range services {
			got, err := h.instances(ctx, ms, svc.Name, false)
			if err != nil {
				return err
			}
			for _, m := range ms {
				e := got[m.ID]
				switch {
				case e == nil:
					failing = append(failing, fmt.Sprintf("%s on %s: not registered", svc.Name, m.ID))
				case len(serviceChecks(e)) == 0:
					failing = append(failing, fmt.Sprintf("%s on %s: no health check", svc.Name, m.ID))
				case e.Checks.AggregatedStatus() != api.HealthPassing:
					failing = append(failing, fmt.Sprintf("%s on %s: %s", svc.Name, m.ID, checkOutput(e)))
				}
			}
		}
		if len(failing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(failing)
			if len(failing) > 10 {
				failing = append(failing[:10], fmt.Sprintf("and %d more", len(failing)-10))
			}
			return fmt.Errorf("not healthy: %s: %w", strings.Join(failing, "; "), ctx.Err())
		case <-time.After(h.poll()):
		}
	}
}

// WaitGone returns once no machine of ms serves any of the services with
// passing checks (deregistered, or in maintenance).
func (h *ConsulHealth) WaitGone(ctx context.Context, ms []*inventory.Machine, services []inventory.DeployService) error {
	for {
		var still []string
		for _, svc := range services {
			got, err := h.instances(ctx, ms, svc.Name, true)
			if err != nil {
				return err
			}
			for id := range got {
				still = append(still, svc.Name+" on "+id)
			}
		}
		if len(still) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(still)
			return fmt.Errorf("still registered: %s: %w", strings.Join(still, ", "), ctx.Err())
		case <-time.After(h.poll()):
		}
	}
}

// serviceChecks are an entry's checks other than the node's serfHealth.
func serviceChecks(e *api.ServiceEntry) api.HealthChecks {
	var out api.HealthChecks
	for _, c := range e.Checks {
		if c.ServiceID != "" {
			out = append(out, c)
		}
	}
	return out
}

func checkOutput(e *api.ServiceEntry) string {
	for _, c := range e.Checks {
		if c.Status != api.HealthPassing {
			out := strings.TrimSpace(c.Output)
			if len(out) > 120 {
				out = out[:120] + "…"
			}
			return fmt.Sprintf("check %s is %s %s", c.Name, c.Status, out)
		}
	}
	return "failing"
}
