package tiers

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"golang.org/x/sync/errgroup"
)

// StateDeployer deploys nothing: it moves machines through the lifecycle
// (allocated → deploying → deployed; deployed → releasing → ready) with
// every step in their history, and registers their services in the Consul
// catalog on the machine's node with a passing check, as the Consul agent
// on a deployed machine would. It stands in for the provision workflow in
// tests and measurements that have no machines to boot; tests that use it
// say so in their names.
type StateDeployer struct {
	Store  *inventory.Store
	Client *api.Client
	// Who is recorded in history. If empty, the store's.
	Who string
}

const stateNote = "state-level deployer: lifecycle only, no machine touched"

// Deploy registers the services and marks the machines deployed, 8 at a
// time.
func (d *StateDeployer) Deploy(ctx context.Context, ms []*inventory.Machine, spec Spec) ([]*inventory.Machine, error) {
	out := make([]*inventory.Machine, len(ms))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, m := range ms {
		g.Go(func() error {
			m, err := d.deploy(ctx, m, spec)
			out[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func (d *StateDeployer) deploy(ctx context.Context, m *inventory.Machine, spec Spec) (*inventory.Machine, error) {
	if m.State == inventory.StateAllocated {
		var err error
		m, err = d.Store.SetState(ctx, m.ID, inventory.StateDeploying, inventory.System,
			inventory.Change{What: "deploy", Why: fmt.Sprintf("image %q for tier %s (%s)", spec.Image, spec.Name, stateNote), Who: d.Who})
		if err != nil {
			return nil, err
		}
	}
	if m.State != inventory.StateDeploying {
		return nil, fmt.Errorf("machine %s is %s, not allocated or deploying", m.ID, m.State)
	}
	if err := d.register(ctx, m, spec); err != nil {
		return nil, err
	}
	return d.Store.SetState(ctx, m.ID, inventory.StateDeployed, inventory.System,
		inventory.Change{What: "deployed", Why: stateNote, Who: d.Who})
}

func (d *StateDeployer) register(ctx context.Context, m *inventory.Machine, spec Spec) error {
	addr := m.IP
	if addr == "" {
		addr = "0.0.0.0" // as the inventory registers a machine without a lease
	}
	for _, svc := range spec.Services {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := d.Client.Catalog().Register(&api.CatalogRegistration{
			Node: m.ID, Address: addr, SkipNodeUpdate: true,
			Service: &api.AgentService{ID: svc.Name, Service: svc.Name, Port: svc.Port, Address: m.IP,
				Meta: map[string]string{"ironrack-tier": spec.Name}},
			Check: &api.AgentCheck{Node: m.ID, CheckID: "service:" + svc.Name, Name: svc.Name + " " + checkName(svc),
				Status: api.HealthPassing, ServiceID: svc.Name, Output: stateNote},
		}, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		if err != nil {
			return fmt.Errorf("machine %s: register service %s: %w", m.ID, svc.Name, err)
		}
	}
	return nil
}

func checkName(s inventory.DeployService) string {
	kind, path, _ := s.CheckKind()
	if kind == "http" {
		return "http " + path
	}
	return kind
}

// Drain deregisters the machines' services.
func (d *StateDeployer) Drain(ctx context.Context, ms []*inventory.Machine, spec Spec) error {
	for _, m := range ms {
		for _, svc := range spec.Services {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := d.Client.Catalog().Deregister(&api.CatalogDeregistration{Node: m.ID, ServiceID: svc.Name},
				(&api.WriteOptions{}).WithContext(rctx))
			cancel()
			if err != nil {
				return fmt.Errorf("machine %s: deregister service %s: %w", m.ID, svc.Name, err)
			}
		}
	}
	return nil
}

// Release runs the release path: → releasing (the wipe would run here) →
// ready, both in history.
func (d *StateDeployer) Release(ctx context.Context, ms []*inventory.Machine, spec Spec) error {
	for _, m := range ms {
		var err error
		if err := d.Drain(ctx, []*inventory.Machine{m}, spec); err != nil {
			return err
		}
		if m.State != inventory.StateReleasing {
			m, err = d.Store.SetState(ctx, m.ID, inventory.StateReleasing, inventory.System,
				inventory.Change{What: "wipe", Why: fmt.Sprintf("release from tier %s (%s)", spec.Name, stateNote), Who: d.Who})
			if err != nil {
				return err
			}
		}
		if _, err = d.Store.SetState(ctx, m.ID, inventory.StateReady, inventory.System,
			inventory.Change{What: "released", Why: "wiped (" + stateNote + ")", Who: d.Who}); err != nil {
			return err
		}
	}
	return nil
}
