// Package provider is the Pulumi provider `ironrack` on pulumi-go-provider's
// infer: the resource ironrack:index:Tier, a thin shell over
// tiers.Reconciler. cmd/pulumi-resource-ironrack serves it.
//
// Create and Update converge the tier (tiers.Reconciler.Apply); under a
// preview (DryRun) they only plan (tiers.Reconciler.Plan) and return the
// machines the step would add and remove as the outputs `added` and
// `removed`, and the tier after the step as `machineIds`. Delete drains and
// releases every machine. Claims carry the resource's URN as their owner,
// so a re-run after an interruption adopts what an earlier run claimed.
// The input `pick` (set by `ironrack scale` from the stack's joint plan)
// names exactly the machines a step up adds.
//
// A tier with the input `shards` keeps its rack-aware shard map in Consul
// KV through tiers/placement (the reconciler stores it after new machines
// are deployed and before removed ones are released; Delete removes it);
// the outputs `shardMoves` and `shardLoad` report the step, in a preview
// without writing.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/placement"
)

// Name is the provider's package name; Version its version.
const (
	Name    = "ironrack"
	Version = "0.1.0"
)

// Deployers maps a deployer name (the provider config `deployer`) to its
// constructor. cmd/pulumi-resource-ironrack builds the map (an explicit
// registry, no init()).
type Deployers map[string]func(DeployerEnv) (tiers.Deployer, error)

// DeployerEnv is what a deployer is built from: the configured inventory
// and the provider config's deploy settings.
type DeployerEnv struct {
	Store  *inventory.Store
	Client *api.Client
	Prefix string
	Who    string
	// ConsulJoin is the address deployed machines' Consul agents join.
	ConsulJoin string
	// AllowReboot lets a deploy power-cycle a machine that is on.
	AllowReboot bool
	// SSHKeys are root's authorized_keys lines on deployed machines.
	SSHKeys []string
	// ConsulToken is the provider's Consul ACL token (ironrack:consulToken,
	// else CONSUL_HTTP_TOKEN); a drain sends it to the machines' agents.
	ConsulToken string
	Logger      *slog.Logger
}

// New returns the provider with the given deployers.
func New(deployers Deployers) (p.Provider, error) {
	prov, err := infer.NewProviderBuilder().
		WithDisplayName("ironrack").
		WithDescription("Tiers of bare-metal machines from the ironrack inventory, deployed and serving Consul services.").
		WithNamespace("ironrack").
		WithConfig(infer.Config(&Config{deployers: deployers})).
		WithResources(infer.Resource(&Tier{})).
		Build()
	if err != nil {
		return p.Provider{}, err
	}
	// infer hands Create/Update/Delete the resource's name but not its
	// URN; the URN is the claims' owner, so pass it down in the context.
	create, update, del := prov.Create, prov.Update, prov.Delete
	prov.Create = func(ctx context.Context, req p.CreateRequest) (p.CreateResponse, error) {
		return create(withURN(ctx, req.Urn), req)
	}
	prov.Update = func(ctx context.Context, req p.UpdateRequest) (p.UpdateResponse, error) {
		return update(withURN(ctx, req.Urn), req)
	}
	prov.Delete = func(ctx context.Context, req p.DeleteRequest) error {
		return del(withURN(ctx, req.Urn), req)
	}
	return prov, nil
}

type urnKey struct{}

func withURN(ctx context.Context, urn presource.URN) context.Context {
	return context.WithValue(ctx, urnKey{}, string(urn))
}

func ownerOf(ctx context.Context) (string, error) {
	urn, _ := ctx.Value(urnKey{}).(string)
	if urn == "" {
		return "", errors.New("no resource URN in the request")
	}
	return tiers.Owner(urn), nil
}

// Config is the provider's configuration (stack config `ironrack:KEY`):
// tiers.ProviderConfig, which the tier program writes from the same tags.
type Config struct {
	tiers.ProviderConfig

	deployers Deployers
	rec       *tiers.Reconciler
}

// Annotate describes the configuration.
func (c *Config) Annotate(a infer.Annotator) {
	a.Describe(&c.Consul, "Consul HTTP address of the inventory (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500).")
	a.Describe(&c.ConsulToken, "Consul ACL token (default: CONSUL_HTTP_TOKEN).")
	a.Describe(&c.Prefix, "Consul KV prefix of the inventory (default: ironrack).")
	a.Describe(&c.KeyFile, "Key file that seals BMC credentials (default: ~/.ironrack/key); read only when a deployer powers machines.")
	a.Describe(&c.Deployer, "How machines are deployed: \"state\" (lifecycle and service registration only, no machine touched: tests and measurements) or another registered deployer.")
	a.Describe(&c.HealthTimeoutSeconds, "How long to wait for the services' health checks after a deploy (default 600).")
	a.Describe(&c.Who, "Who the machines' history names for the provider's changes (default: pulumi).")
	a.Describe(&c.ConsulJoin, "Address the deployed machines' Consul agents join (provision deployer; default: the consul address's host).")
	a.Describe(&c.AllowReboot, "Let the provision deployer power-cycle a claimed machine that is on.")
	a.Describe(&c.SSHKeys, "authorized_keys lines for root on machines the provision deployer deploys (at least one: the images have no password login).")
}

// Configure connects to Consul and builds the reconciler.
func (c *Config) Configure(ctx context.Context) error {
	cfg := api.DefaultConfig()
	if c.Consul != "" {
		addr := c.Consul
		if s, ok := strings.CutPrefix(addr, "https://"); ok {
			cfg.Scheme, addr = "https", s
		} else {
			addr = strings.TrimPrefix(addr, "http://")
		}
		cfg.Address = addr
	}
	if c.ConsulToken != "" {
		cfg.Token = c.ConsulToken
	}
	if cfg.Transport != nil {
		cfg.Transport.DisableCompression = true
	}
	client, err := inventory.NewConsulClient(cfg)
	if err != nil {
		return fmt.Errorf("ironrack:consul %q: %w", c.Consul, err)
	}
	who := c.Who
	if who == "" {
		who = "pulumi"
	}
	scfg := inventory.Config{Prefix: c.Prefix, Who: who, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if c.KeyFile != "" {
		s, err := inventory.LoadKeyFile(c.KeyFile, false)
		if err != nil {
			return fmt.Errorf("ironrack:keyFile: %w", err)
		}
		scfg.Sealer = s
	}
	store := inventory.New(client, scfg)
	mk, ok := c.deployers[c.Deployer]
	if !ok {
		var names []string
		for n := range c.deployers {
			names = append(names, n)
		}
		return fmt.Errorf("ironrack:deployer %q is not a deployer (want one of %v)", c.Deployer, names)
	}
	if len(c.SSHKeys) > 0 {
		// Checked here so a bad key fails the configuration, not each deploy.
		d := inventory.DeploySpec{Image: "x", ImageVersion: "x", Hostname: "x", SSHKeys: c.SSHKeys}
		if err := d.Validate(); err != nil {
			return fmt.Errorf("ironrack:sshKeys: %w", err)
		}
	}
	join := c.ConsulJoin
	if join == "" {
		join, _, _ = strings.Cut(cfg.Address, ":")
	}
	d, err := mk(DeployerEnv{Store: store, Client: client, Prefix: c.Prefix, Who: who, ConsulJoin: join,
		AllowReboot: c.AllowReboot, SSHKeys: c.SSHKeys, ConsulToken: cfg.Token, Logger: scfg.Logger})
	if err != nil {
		return fmt.Errorf("ironrack:deployer %s: %w", c.Deployer, err)
	}
	c.rec = &tiers.Reconciler{
		Store: store, Deployer: d, Health: &tiers.ConsulHealth{Client: client},
		HealthTimeout: time.Duration(c.HealthTimeoutSeconds) * time.Second, Who: who,
		Shards: placement.NewStore(client, placement.StoreConfig{Prefix: c.Prefix}),
		Logger: scfg.Logger,
	}
	return nil
}

// Tier is the resource ironrack:index:Tier.
type Tier struct{}

// Annotate describes the resource.
func (t *Tier) Annotate(a infer.Annotator) {
	a.SetToken("index", "Tier")
	a.Describe(&t, "A tier: `size` machines claimed from the ironrack inventory (matching `selector`, spread over racks), deployed with `image`, serving `services` with passing Consul health checks. Steps up claim and deploy only the new machines; steps down drain, release and wipe the ones rendezvous hashing on the URN and machine ID ranks lowest.")
}

// ServiceArgs is a Consul service each machine of the tier serves: the
// Pulumi input of an inventory.DeployService, the one definition, which
// it decodes into (spec). It is a type of its own because the schema
// needs pulumi tags and descriptions, and inventory does not know Pulumi;
// TestServiceArgsMatchDeployService fails when the two differ in fields.
type ServiceArgs struct {
	Name  string `pulumi:"name"`
	Port  int    `pulumi:"port"`
	Check string `pulumi:"check,optional"`
}

// Annotate describes a service.
func (s *ServiceArgs) Annotate(a infer.Annotator) {
	a.Describe(&s.Name, "Consul service name.")
	a.Describe(&s.Port, "TCP port the service listens on.")
	a.Describe(&s.Check, "Health check: tcp (default) or http:/PATH, run by the machine's Consul agent.")
}

// ShardsArgs make a tier sharded.
type ShardsArgs struct {
	Count    int `pulumi:"count"`
	Replicas int `pulumi:"replicas,optional"`
}

// Annotate describes the shard layout.
func (s *ShardsArgs) Annotate(a infer.Annotator) {
	a.Describe(&s.Count, "Number of shards (1-4096); 0 leaves the tier unsharded.")
	a.Describe(&s.Replicas, "Replicas of each shard, each on a machine in a different rack; the tier's machines must span this many racks. 0 or unset: the stored map's, or for a first map 3 (fewer if the tier's machines span fewer racks).")
}

// TierArgs are the inputs.
type TierArgs struct {
	Name         string        `pulumi:"name"`
	Size         int           `pulumi:"size"`
	Selector     string        `pulumi:"selector,optional"`
	Spread       string        `pulumi:"spread,optional"`
	Image        string        `pulumi:"image,optional"`
	UserData     string        `pulumi:"userData,optional"`
	RootDisk     string        `pulumi:"rootDisk,optional"`
	RootLayout   string        `pulumi:"rootLayout,optional"`
	Services     []ServiceArgs `pulumi:"services,optional"`
	DrainSeconds *int          `pulumi:"drainSeconds,optional"`
	Shards       *ShardsArgs   `pulumi:"shards,optional"`
	Pick         []string      `pulumi:"pick,optional"`
}

// Annotate describes the inputs.
func (t *TierArgs) Annotate(a infer.Annotator) {
	a.Describe(&t.Name, "Tier name recorded on its machines (ingestion, storage, query, or any other).")
	a.Describe(&t.Size, "Number of machines.")
	a.Describe(&t.Selector, "Where-expression machines must match to be claimed, e.g. `mem_gb >= 256 and cpu_cores >= 32`.")
	a.Describe(&t.Spread, "\"rack\" spreads the machines evenly over racks.")
	a.Describe(&t.Image, "OS image to deploy.")
	a.Describe(&t.UserData, "User data handed to the deployed OS.")
	a.Describe(&t.RootDisk, "Root-device hint: a where-expression over one disk's fields (name, serial, model, size_bytes, rotational, wwn), e.g. `not rotational and size_bytes < 1e12`. The smallest matching disk takes the OS (then the first by name); a machine with no match fails before anything is written. Unset: the first disk that fits.")
	a.Describe(&t.RootLayout, "How the root is laid out: `flat` (the default) writes the image to one disk; `mirror` builds a software RAID 1 (mdadm) over the two disks rootDisk chooses (the two smallest matches), writes the image to the array, and the OS boots from it, also with one disk gone. `mirror` needs a rootDisk that matches two disks.")
	a.Describe(&t.Services, "Consul services each machine serves; deploys wait until their health checks pass.")
	a.Describe(&t.DrainSeconds, "Seconds a removed machine gets to finish in-flight work after leaving its services (default 30).")
	a.Describe(&t.Pick, "Exactly the machines a step up adds, from a joint plan of the stack's tiers (ironrack scale computes it, so tiers sharing a hardware class never pick the same machine); machines the tier holds are skipped. If they are not what the step needs, or one is no longer ready, the step fails and claims nothing. Unset: the tier picks on its own.")
	a.Describe(&t.Shards, "Makes the tier sharded: every step keeps a rack-aware shard → machine map in Consul KV (<prefix>/shards/<name>), moving as few replicas as possible.")
}

// TierState is the outputs (with the inputs).
type TierState struct {
	TierArgs
	// MachineIds, Addresses and Racks are the tier's machines, sorted by ID.
	MachineIds []string `pulumi:"machineIds"`
	Addresses  []string `pulumi:"addresses"`
	Racks      []string `pulumi:"racks"`
	// Added and Removed are the last step's changes (under a preview: the
	// planned ones).
	Added   []string `pulumi:"added"`
	Removed []string `pulumi:"removed"`
	// Owner is the inventory owner of the claims.
	Owner string `pulumi:"owner"`
	// ShardMoves and ShardLoad (sharded tiers only): the replicas the last
	// step moved (in a preview: will move), and each machine's replica
	// count after it.
	ShardMoves *int           `pulumi:"shardMoves,optional"`
	ShardLoad  map[string]int `pulumi:"shardLoad,optional"`
}

// Annotate describes the outputs.
func (t *TierState) Annotate(a infer.Annotator) {
	a.Describe(&t.MachineIds, "Machine IDs of the tier, sorted.")
	a.Describe(&t.Addresses, "The machines' addresses, in machineIds order (empty while unknown).")
	a.Describe(&t.Racks, "The machines' racks, in machineIds order.")
	a.Describe(&t.Added, "Machines the last step added (in a preview: will add).")
	a.Describe(&t.Removed, "Machines the last step removed (in a preview: will remove).")
	a.Describe(&t.Owner, "Inventory owner of the tier's claims (from the resource URN).")
	a.Describe(&t.ShardMoves, "Sharded tiers: shard replicas the last step moved to another machine (in a preview: will move).")
	a.Describe(&t.ShardLoad, "Sharded tiers: shard replicas each machine holds after the last step.")
}

// DefaultDrainSeconds is the drain when drainSeconds is not set.
const DefaultDrainSeconds = 30

func (a TierArgs) spec() tiers.Spec {
	drain := DefaultDrainSeconds
	if a.DrainSeconds != nil {
		drain = *a.DrainSeconds
	}
	s := tiers.Spec{Name: a.Name, Size: a.Size, Selector: a.Selector, Spread: a.Spread, Image: a.Image,
		UserData: a.UserData, RootDisk: a.RootDisk, RootLayout: a.RootLayout, Drain: time.Duration(drain) * time.Second, Pick: a.Pick}
	for _, svc := range a.Services {
		s.Services = append(s.Services, inventory.DeployService{Name: svc.Name, Port: svc.Port, Check: svc.Check})
	}
	if a.Shards != nil && a.Shards.Count != 0 {
		s.Shards = &tiers.Shards{Count: a.Shards.Count, Replicas: a.Shards.Replicas}
	}
	return s
}

// Check decodes the inputs and names every bad one.
func (*Tier) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[TierArgs], error) {
	args, failures, err := infer.DefaultCheck[TierArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[TierArgs]{Inputs: args, Failures: failures}, err
	}
	// Unknown values (from other resources' outputs in a preview) are not
	// checked until they are known.
	for _, fe := range args.spec().Validate() {
		if v, ok := req.NewInputs.GetOk(strings.SplitN(fe.Field, "[", 2)[0]); ok && v.IsComputed() {
			continue
		}
		failures = append(failures, p.CheckFailure{Property: fe.Field, Reason: fe.Problem})
	}
	return infer.CheckResponse[TierArgs]{Inputs: args, Failures: failures}, nil
}

func reconciler(ctx context.Context) (*tiers.Reconciler, error) {
	c := infer.GetConfig[*Config](ctx)
	if c == nil || c.rec == nil {
		return nil, errors.New("the ironrack provider is not configured")
	}
	return c.rec, nil
}

func state(args TierArgs, owner string, machines []*inventory.Machine, plan *tiers.Plan) TierState {
	s := TierState{TierArgs: args, Owner: owner, MachineIds: []string{}, Addresses: []string{}, Racks: []string{},
		Added: tiers.IDs(plan.Add), Removed: tiers.IDs(plan.Remove)}
	if st := plan.Shards; st != nil && !st.Removed {
		moves := st.Moves
		s.ShardMoves = &moves
		s.ShardLoad = st.New.Load()
	}
	sort.Strings(s.Added)
	sort.Strings(s.Removed)
	for _, m := range machines {
		s.MachineIds = append(s.MachineIds, m.ID)
		s.Addresses = append(s.Addresses, m.IP)
		s.Racks = append(s.Racks, m.Rack)
	}
	return s
}

// converge plans (DryRun) or applies the step for the request's owner.
func converge(ctx context.Context, args TierArgs, dryRun bool) (TierState, error) {
	owner, err := ownerOf(ctx)
	if err != nil {
		return TierState{}, err
	}
	rec, err := reconciler(ctx)
	if err != nil {
		return TierState{}, err
	}
	spec := args.spec()
	if dryRun {
		plan, err := rec.Plan(ctx, owner, spec)
		if err != nil {
			return TierState{}, err
		}
		return state(args, owner, plan.Final(), plan), nil
	}
	plan, ms, err := rec.Apply(ctx, owner, spec)
	if err != nil {
		return TierState{}, err
	}
	return state(args, owner, ms, plan), nil
}

// Create claims, deploys and waits for health (under a preview: plans).
func (*Tier) Create(ctx context.Context, req infer.CreateRequest[TierArgs]) (infer.CreateResponse[TierState], error) {
	st, err := converge(ctx, req.Inputs, req.DryRun)
	if err != nil {
		return infer.CreateResponse[TierState]{}, err
	}
	return infer.CreateResponse[TierState]{ID: st.Owner, Output: st}, nil
}

// Update steps the tier to its new inputs (under a preview: plans).
func (*Tier) Update(ctx context.Context, req infer.UpdateRequest[TierArgs, TierState]) (infer.UpdateResponse[TierState], error) {
	st, err := converge(ctx, req.Inputs, req.DryRun)
	if err != nil {
		return infer.UpdateResponse[TierState]{}, err
	}
	return infer.UpdateResponse[TierState]{Output: st}, nil
}

// Delete drains and releases every machine of the tier.
func (*Tier) Delete(ctx context.Context, req infer.DeleteRequest[TierState]) (infer.DeleteResponse, error) {
	owner, err := ownerOf(ctx)
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	rec, err := reconciler(ctx)
	if err != nil {
		return infer.DeleteResponse{}, err
	}
	return infer.DeleteResponse{}, rec.Destroy(ctx, owner, req.State.TierArgs.spec())
}

// WireDependencies marks the plan's outputs known under a preview: the
// machine IDs, racks and the added and removed machines are what a preview
// is for. (Addresses stay unknown until machines are deployed.)
func (*Tier) WireDependencies(f infer.FieldSelector, args *TierArgs, state *TierState) {
	f.OutputField(&state.MachineIds).AlwaysKnown()
	f.OutputField(&state.Racks).AlwaysKnown()
	f.OutputField(&state.Added).AlwaysKnown()
	f.OutputField(&state.Removed).AlwaysKnown()
	f.OutputField(&state.Owner).AlwaysKnown()
	f.OutputField(&state.ShardMoves).AlwaysKnown()
	f.OutputField(&state.ShardLoad).AlwaysKnown()
}
