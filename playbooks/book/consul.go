package book

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/provision/ready"
)

// Consul is the Gate on Consul. A machine's services are those registered
// on its deployed OS's own Consul agent: the node whose meta
// ironrack_machine (images.MetaMachine) names the machine. Maintenance is
// the agent's to set, so drain and undrain talk to that agent's HTTP API
// at the node's address (the seed makes it listen there); health is read
// from the catalog: every check of the node passing, except the checks
// a drain adds (a batch waits for health while still drained).
type Consul struct {
	// Client reads the catalog and health. Required.
	Client *api.Client
	// Token is sent to the machines' agents (the agents enforce ACLs when
	// the cluster does). If empty, none.
	Token string
	// AgentPort is the machines' agents' HTTP port. If 0, 8500.
	AgentPort int
	// AgentAddr, if set, gives a node's agent HTTP address (host:port) in
	// place of the node's address and AgentPort: for agents that listen
	// elsewhere (tests run several on one host).
	AgentAddr func(node *api.Node) string
	// Timeout bounds each call. If 0, 10s.
	Timeout time.Duration
}

func (c *Consul) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 10 * time.Second
	}
	return c.Timeout
}

// agents returns a client per node of the machine's OS agent(s).
func (c *Consul) agents(ctx context.Context, machineID string) (map[string]*api.Client, error) {
	q := (&api.QueryOptions{NodeMeta: map[string]string{images.MetaMachine: machineID}}).WithContext(ctx)
	nodes, _, err := c.Client.Catalog().Nodes(q)
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no Consul agent of machine %s has joined (no node with meta %s=%s)", machineID, images.MetaMachine, machineID)
	}
	out := map[string]*api.Client{}
	for _, n := range nodes {
		addr := ""
		if c.AgentAddr != nil {
			addr = c.AgentAddr(n)
		} else {
			port := c.AgentPort
			if port == 0 {
				port = 8500
			}
			addr = net.JoinHostPort(n.Address, strconv.Itoa(port))
		}
		cfg := api.DefaultNonPooledConfig()
		cfg.Address, cfg.Token = addr, c.Token
		cfg.HttpClient = &http.Client{Timeout: c.timeout()}
		cl, err := api.NewClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("node %s's agent at %s: %w", n.Node, addr, err)
		}
		out[n.Node] = cl
	}
	return out, nil
}

// maintenance enables or disables maintenance of every service of the
// machine's agent(s).
func (c *Consul) maintenance(ctx context.Context, machineID, reason string, enable bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	agents, err := c.agents(ctx, machineID)
	if err != nil {
		return err
	}
	nodes := make([]string, 0, len(agents))
	for n := range agents {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	count := 0
	for _, node := range nodes {
		a := agents[node].Agent()
		q := (&api.QueryOptions{}).WithContext(ctx)
		svcs, err := a.ServicesWithFilterOpts("", q)
		if err != nil {
			return fmt.Errorf("node %s: list its agent's services: %w", node, err)
		}
		ids := make([]string, 0, len(svcs))
		for id := range svcs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if enable {
				err = a.EnableServiceMaintenanceOpts(id, reason, q)
			} else {
				err = a.DisableServiceMaintenanceOpts(id, q)
			}
			if err != nil {
				return fmt.Errorf("node %s: service %s maintenance: %w", node, id, err)
			}
			count++
		}
	}
	if count == 0 && enable {
		return fmt.Errorf("machine %s's Consul agent has no services to drain", machineID)
	}
	return nil
}

// Drain puts every service of the machine's agent in maintenance: its
// checks turn critical, so nothing routes new work to it.
func (c *Consul) Drain(ctx context.Context, machineID, reason string) error {
	return c.maintenance(ctx, machineID, reason, true)
}

// Undrain takes the machine's services out of maintenance.
func (c *Consul) Undrain(ctx context.Context, machineID string) error {
	return c.maintenance(ctx, machineID, "", false)
}

// Healthy is nil when every check of the machine's agent's node passes,
// the drain's service maintenance checks aside (a batch is waited on while
// still drained): provision/ready's definition of a healthy machine.
func (c *Consul) Healthy(ctx context.Context, machineID string) error {
	return ready.ConsulAgent{Client: c.Client, Timeout: c.timeout(), SkipServiceMaintenance: true}.Healthy(ctx, machineID)
}
