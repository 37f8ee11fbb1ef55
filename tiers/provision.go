package tiers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// ProvisionDeployer deploys real machines through the provision workflows
// (PXE, the agent writes the image, the boot server records the result),
// the same ones `ironrack deploy` and `ironrack release` run. The deployed
// OS runs a Consul client agent (joined to ConsulJoin, its node named by
// the host name, which is the machine ID) that registers the tier's services
// from the deploy spec (provision.SeedService) and runs their checks: "tcp"
// and "http:PATH" checks against the port on the machine itself.
type ProvisionDeployer struct {
	Workflows *provision.Deployer
	// ConsulJoin is the address the deployed machines' Consul agents join.
	ConsulJoin string
	// SSHKeys are root's authorized_keys lines on the deployed machines.
	// The deploy needs at least one: the images have no password login.
	SSHKeys []string
	// AllowReboot lets the workflows power-cycle a machine that is on.
	AllowReboot bool
	// AgentClient, if set, is the HTTP client that reaches the machines'
	// Consul agents (a test dials into its namespace with it). Its Timeout
	// should be set. If nil, a plain client with a 10s timeout.
	AgentClient *http.Client
	// AgentPort is the HTTP port of the machines' Consul agents (drain puts
	// their services in maintenance there). If 0, 8500.
	AgentPort int
	// AgentToken is the ACL token drain sends to the machines' agents; in
	// a cluster with ACLs it must allow writing their services. If empty,
	// CONSUL_HTTP_TOKEN.
	AgentToken string
	// Poll is the pause while waiting on a machine another run started to
	// deploy. If 0, 2s.
	Poll time.Duration
	// Timeout bounds each deploy or release. If 0, the workflows' defaults.
	Timeout time.Duration
}

func failures(rs []provision.Result) error {
	var errs []error
	for _, r := range rs {
		if !r.OK() {
			errs = append(errs, fmt.Errorf("machine %s: %s: %w", r.Machine, r.Step, r.Err))
		}
	}
	return errors.Join(errs...)
}

// Deploy deploys the allocated machines and waits for the ones an earlier,
// interrupted run left deploying.
func (d *ProvisionDeployer) Deploy(ctx context.Context, ms []*inventory.Machine, spec Spec) ([]*inventory.Machine, error) {
	var fresh, started []string
	owner := ""
	for _, m := range ms {
		switch m.State {
		case inventory.StateAllocated:
			fresh = append(fresh, m.ID)
			owner = m.Owner
		case inventory.StateDeploying:
			started = append(started, m.ID)
		default:
			return nil, fmt.Errorf("machine %s is %s, not allocated or deploying", m.ID, m.State)
		}
	}
	if len(fresh) > 0 {
		svcs, err := deployServices(spec)
		if err != nil {
			return nil, err
		}
		rs := d.Workflows.Deploy(ctx, fresh, provision.DeployRequest{
			Owner: owner, Tier: spec.Name, Image: spec.Image, UserData: spec.UserData, Role: spec.Name, RootDisk: spec.RootDisk, RootLayout: spec.RootLayout,
			ConsulJoin: d.ConsulJoin, SSHKeys: d.SSHKeys, Services: svcs, AllowReboot: d.AllowReboot, Timeout: d.Timeout,
			Reason: "tier " + spec.Name,
		})
		if err := failures(rs); err != nil {
			return nil, err
		}
	}
	out := make([]*inventory.Machine, 0, len(ms))
	poll := d.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	for _, m := range ms {
		for {
			got, err := d.Workflows.Store.Get(ctx, m.ID)
			if err != nil {
				return nil, err
			}
			if got.State == inventory.StateDeployed {
				out = append(out, got)
				break
			}
			if got.State != inventory.StateDeploying {
				return nil, fmt.Errorf("machine %s is %s after its deploy (see its history)", m.ID, got.State)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("machine %s still deploying: %w", m.ID, ctx.Err())
			case <-time.After(poll):
			}
		}
	}
	return out, nil
}

// deployServices are the tier's services as the deploy spec carries them,
// checked (inventory.ValidateServices: a "ttl" check, which nothing on a
// deployed machine would feed, is refused).
func deployServices(spec Spec) ([]inventory.DeployService, error) {
	var errs []error
	for _, e := range inventory.ValidateServices(spec.Services) {
		errs = append(errs, fmt.Errorf("tier %s: %w", spec.Name, e))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return append([]inventory.DeployService(nil), spec.Services...), nil
}

// Drain puts the machines' services in maintenance on their own Consul
// agents: the checks turn critical, so no new work is routed to them.
func (d *ProvisionDeployer) Drain(ctx context.Context, ms []*inventory.Machine, spec Spec) error {
	port := d.AgentPort
	if port == 0 {
		port = 8500
	}
	for _, m := range ms {
		if m.IP == "" {
			return fmt.Errorf("machine %s has no address to reach its Consul agent", m.ID)
		}
		cfg := api.DefaultNonPooledConfig()
		cfg.Address = net.JoinHostPort(m.IP, fmt.Sprint(port))
		if d.AgentToken != "" {
			cfg.Token = d.AgentToken
		}
		// The agent's maintenance call takes no context: bound it here.
		cfg.HttpClient = &http.Client{Timeout: 10 * time.Second}
		if d.AgentClient != nil {
			cfg.HttpClient = d.AgentClient
		}
		c, err := api.NewClient(cfg)
		if err != nil {
			return err
		}
		for _, svc := range spec.Services {
			if err := c.Agent().EnableServiceMaintenance(svc.Name, "drained by tier "+spec.Name); err != nil {
				return fmt.Errorf("machine %s: drain service %s: %w", m.ID, svc.Name, err)
			}
		}
	}
	return nil
}

// Release wipes the machines through the release workflow (power-cycling
// them into the wipe: they were drained first), and waits for the ones an
// interrupted run left releasing.
func (d *ProvisionDeployer) Release(ctx context.Context, ms []*inventory.Machine, spec Spec) error {
	var ids, started []string
	for _, m := range ms {
		if m.State == inventory.StateReleasing {
			started = append(started, m.ID)
		} else {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) > 0 {
		rs := d.Workflows.Release(ctx, ids, provision.ReleaseRequest{AllowReboot: true, Timeout: d.Timeout,
			Reason: "tier " + spec.Name})
		if err := failures(rs); err != nil {
			return err
		}
	}
	poll := d.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	for _, id := range started {
		for {
			got, err := d.Workflows.Store.Get(ctx, id)
			if err != nil {
				return err
			}
			if got.State == inventory.StateReady {
				break
			}
			if got.State != inventory.StateReleasing {
				return fmt.Errorf("machine %s is %s after its release (see its history)", id, got.State)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("machine %s still releasing: %w", id, ctx.Err())
			case <-time.After(poll):
			}
		}
	}
	return nil
}
