// Package stack runs the tier program, the ingestion, storage and query
// tiers as ironrack:index:Tier resources, as a Pulumi Automation API inline
// Go program: no Go language host, only the engine (`pulumi`) and the
// provider (`pulumi-resource-ironrack`). `ironrack scale preview|apply` is
// a thin shell over Preview and Apply.
//
// The engine runs offline: a file:// backend (default
// file://~/.ironrack/pulumi), a passphrase secrets provider, PULUMI_HOME set
// and the update check off. Pulumi Cloud is never asked.
//
// The program is the same as the shipped YAML project
// (deploy/pulumi/tiers): same project name, same resource names and
// inputs, same stack config keys, so both drive the same tiers.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pconfig "github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// Project is the tier program's Pulumi project name; its stack config keys
// are Project:<tier>Size, Project:<tier>Selector and Project:image.
const Project = "ironrack-tiers"

// TierDef is one tier of the program.
type TierDef struct {
	Name     string
	Spread   string
	Services []inventory.DeployService
	// Sharded tiers keep a shard map: Project:<tier>Shards shards (default
	// DefaultShards; 0: unsharded) with Project:<tier>Replicas replicas
	// (default 0: the stored map's, or for a first map 3, fewer if the
	// tier's machines span fewer racks; see tiers.Shards).
	Sharded bool
}

// DefaultShards is a sharded tier's shard count when the stack config
// does not set it.
const DefaultShards = 256

// Tiers are the program's tiers, in the order they are listed.
var Tiers = []TierDef{
	{Name: "ingestion", Spread: "rack", Services: []inventory.DeployService{{Name: "ingestion", Port: 9000}}},
	{Name: "storage", Spread: "rack", Services: []inventory.DeployService{{Name: "storage", Port: 9100}}, Sharded: true},
	{Name: "query", Spread: "rack", Services: []inventory.DeployService{{Name: "query", Port: 9200}}},
}

// ProviderConfig is the ironrack provider's configuration (stack config
// ironrack:KEY).
type ProviderConfig struct {
	Consul, ConsulToken, Prefix, KeyFile, Deployer string
	HealthTimeoutSeconds                           int
	// ConsulJoin, SSHKeys and AllowReboot are the provision deployer's
	// (ironrack:consulJoin, ironrack:sshKeys, ironrack:allowReboot).
	ConsulJoin  string
	SSHKeys     []string
	AllowReboot bool
	// DrainSeconds, if set, overrides every tier's drain.
	DrainSeconds *int
}

// Options configure a run. Stack, Passphrase, PulumiDir and ProviderDir
// are required.
type Options struct {
	Stack string
	// Backend is the state backend URL. If empty, file://~/.ironrack/pulumi.
	Backend string
	// Home is PULUMI_HOME. If empty, ~/.ironrack/pulumi-home.
	Home string
	// WorkDir holds the program's Pulumi.yaml and Pulumi.<stack>.yaml
	// (config, encryption salt). If empty, Home/work.
	WorkDir string
	// Passphrase protects the stack's secrets.
	Passphrase string
	// PulumiDir holds bin/pulumi (and bin/pulumi-language-yaml).
	PulumiDir string
	// ProviderDir holds pulumi-resource-ironrack.
	ProviderDir string
	// Config are the tier program's values: Project:<tier>Size,
	// Project:<tier>Selector, Project:image (as `scale plan` writes them).
	Config   map[string]string
	Provider ProviderConfig
	// Progress receives the engine's output. If nil, discarded.
	Progress io.Writer
	Logger   *slog.Logger
}

// Step is one tier's change.
type Step struct {
	Tier       string   `json:"tier"`
	From       int      `json:"from"`
	To         int      `json:"to"`
	Op         string   `json:"op"`
	Add        []string `json:"add"`
	Remove     []string `json:"remove"`
	MachineIDs []string `json:"machine_ids"`
	Racks      []string `json:"racks"`
	// ShardMoves (sharded tiers): shard replicas the step moves.
	ShardMoves *int `json:"shard_moves,omitempty"`
}

func home() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return "."
	}
	return h
}

func (o *Options) defaults() error {
	if o.Stack == "" {
		return errors.New("stack: no stack name")
	}
	if o.Backend == "" {
		o.Backend = "file://" + filepath.Join(home(), ".ironrack", "pulumi")
	}
	if o.Home == "" {
		o.Home = filepath.Join(home(), ".ironrack", "pulumi-home")
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(o.Home, "work")
	}
	if o.Passphrase == "" {
		return errors.New("no passphrase: the stack's secrets need one (PULUMI_CONFIG_PASSPHRASE or --passphrase-env)")
	}
	if path, ok := strings.CutPrefix(o.Backend, "file://"); ok {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("backend %s: %w", o.Backend, err)
		}
	}
	for _, d := range []string{o.Home, o.WorkDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(o.PulumiDir, "bin", "pulumi")); err != nil {
		return fmt.Errorf("pulumi engine: %w (scripts/setup builds it)", err)
	}
	if _, err := os.Stat(filepath.Join(o.ProviderDir, "pulumi-resource-ironrack")); err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// tierResource is the client side of ironrack:index:Tier.
type tierResource struct {
	pulumi.CustomResourceState
	MachineIds pulumi.StringArrayOutput `pulumi:"machineIds"`
	Racks      pulumi.StringArrayOutput `pulumi:"racks"`
	Added      pulumi.StringArrayOutput `pulumi:"added"`
	Removed    pulumi.StringArrayOutput `pulumi:"removed"`
	ShardMoves pulumi.IntPtrOutput      `pulumi:"shardMoves"`
}

// Program is the tier program.
func Program(defs []TierDef, drain *int) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg := pconfig.New(ctx, Project)
		for _, t := range defs {
			key := t.Name + "Size"
			raw, ok := cfg.Try(key)
			if ok != nil {
				return fmt.Errorf("%s:%s is not set (ironrack scale plan writes it)", Project, key)
			}
			size, err := strconv.Atoi(strings.TrimSpace(raw))
			if err != nil || size < 0 {
				return fmt.Errorf("%s:%s is %q, not a size (a whole number >= 0)", Project, key, raw)
			}
			svcs := pulumi.Array{}
			for _, s := range t.Services {
				m := pulumi.Map{"name": pulumi.String(s.Name), "port": pulumi.Int(s.Port)}
				if s.Check != "" {
					m["check"] = pulumi.String(s.Check)
				}
				svcs = append(svcs, m)
			}
			in := pulumi.Map{
				"name":     pulumi.String(t.Name),
				"size":     pulumi.Int(size),
				"selector": pulumi.String(cfg.Get(t.Name + "Selector")),
				"spread":   pulumi.String(t.Spread),
				"image":    pulumi.String(cfg.Get("image")),
				"services": svcs,
			}
			if drain != nil {
				in["drainSeconds"] = pulumi.Int(*drain)
			}
			if t.Sharded {
				count, replicas, err := shardsConfig(func(k string) (string, bool) { v, err := cfg.Try(k); return v, err == nil }, t.Name)
				if err != nil {
					return err
				}
				in["shards"] = pulumi.Map{"count": pulumi.Int(count), "replicas": pulumi.Int(replicas)}
			}
			var res tierResource
			if err := ctx.RegisterResource("ironrack:index:Tier", t.Name, in, &res); err != nil {
				return err
			}
			ctx.Export(t.Name+"MachineIds", res.MachineIds)
		}
		return nil
	}
}

// ShardsKeys are a sharded tier's layout keys in the stack config, without
// the project prefix: its shard count and replication factor.
func ShardsKeys(tier string) (shards, replicas string) { return tier + "Shards", tier + "Replicas" }

// shardsConfig reads a sharded tier's layout from the stack config (get
// looks a key up without the project prefix): <tier>Shards (default
// DefaultShards) and <tier>Replicas (default 0).
func shardsConfig(get func(key string) (string, bool), tier string) (count, replicas int, err error) {
	num := func(key string, def int) (int, error) {
		raw, ok := get(key)
		if !ok {
			return def, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s:%s is %q, not a whole number >= 0", Project, key, raw)
		}
		return n, nil
	}
	shardsKey, replicasKey := ShardsKeys(tier)
	if count, err = num(shardsKey, DefaultShards); err != nil {
		return 0, 0, err
	}
	if replicas, err = num(replicasKey, 0); err != nil {
		return 0, 0, err
	}
	return count, replicas, nil
}

// open upserts the stack with its config.
func open(ctx context.Context, o *Options) (auto.Stack, error) {
	if err := o.defaults(); err != nil {
		return auto.Stack{}, err
	}
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: o.PulumiDir, SkipVersionCheck: true})
	if err != nil {
		return auto.Stack{}, fmt.Errorf("pulumi engine in %s: %w", o.PulumiDir, err)
	}
	env := map[string]string{
		"PULUMI_CONFIG_PASSPHRASE":             o.Passphrase,
		"PULUMI_HOME":                          o.Home,
		"PULUMI_SKIP_UPDATE_CHECK":             "true",
		"PULUMI_BACKEND_URL":                   o.Backend,
		"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
		"PATH": filepath.Join(o.PulumiDir, "bin") + string(os.PathListSeparator) + o.ProviderDir +
			string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	proj := workspace.Project{
		Name:    tokens.PackageName(Project),
		Runtime: workspace.NewProjectRuntimeInfo("go", nil),
		Backend: &workspace.ProjectBackend{URL: o.Backend},
		Plugins: &workspace.Plugins{Providers: []workspace.PluginOptions{{Name: "ironrack", Path: o.ProviderDir}}},
	}
	ws0, err := auto.NewLocalWorkspace(ctx, auto.Program(Program(Tiers, o.Provider.DrainSeconds)),
		auto.Pulumi(cmd), auto.WorkDir(o.WorkDir), auto.PulumiHome(o.Home), auto.EnvVars(env),
		auto.Project(proj), auto.SecretsProvider("passphrase"))
	if err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s: %w", o.Stack, err)
	}
	// A stack the file backend already holds is selected (one engine
	// process); only a new one is created. (UpsertStack tries to create
	// first: one process more on every run.)
	var st auto.Stack
	if exists(o) {
		st, err = auto.SelectStack(ctx, o.Stack, ws0)
	} else {
		st, err = auto.UpsertStack(ctx, o.Stack, ws0)
	}
	if err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s: %w", o.Stack, err)
	}
	// The config goes straight into the stack settings file: one write,
	// no `pulumi config` process per key.
	ws := st.Workspace()
	settings, err := ws.StackSettings(ctx, o.Stack)
	if err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s settings: %w", o.Stack, err)
	}
	cm := config.Map{}
	set := func(k, v string, secret bool) error {
		key, err := config.ParseKey(k)
		if err != nil {
			return fmt.Errorf("config key %s: %w", k, err)
		}
		if secret {
			return nil // passed through the environment instead, never stored
		}
		cm[key] = config.NewValue(v)
		return nil
	}
	for k, v := range o.Config {
		if !strings.HasPrefix(k, Project+":") {
			return auto.Stack{}, fmt.Errorf("config key %s: not in project %s", k, Project)
		}
		if err := set(k, v, false); err != nil {
			return auto.Stack{}, err
		}
	}
	pc := o.Provider
	for k, v := range map[string]string{"consul": pc.Consul, "prefix": pc.Prefix, "keyFile": pc.KeyFile, "deployer": pc.Deployer, "consulJoin": pc.ConsulJoin} {
		if v != "" {
			if err := set("ironrack:"+k, v, false); err != nil {
				return auto.Stack{}, err
			}
		}
	}
	if pc.HealthTimeoutSeconds > 0 {
		set("ironrack:healthTimeoutSeconds", strconv.Itoa(pc.HealthTimeoutSeconds), false)
	}
	if pc.AllowReboot {
		set("ironrack:allowReboot", "true", false)
	}
	if len(pc.SSHKeys) > 0 {
		b, err := json.Marshal(pc.SSHKeys)
		if err != nil {
			return auto.Stack{}, err
		}
		cm[config.MustMakeKey("ironrack", "sshKeys")] = config.NewObjectValue(string(b))
	}
	settings.Config = cm
	if err := ws.SaveStackSettings(ctx, o.Stack, settings); err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s settings: %w", o.Stack, err)
	}
	if pc.ConsulToken != "" {
		ws.SetEnvVar("CONSUL_HTTP_TOKEN", pc.ConsulToken)
	}
	if err := clearDeadLocks(o); err != nil {
		return auto.Stack{}, err
	}
	return st, nil
}

// exists reports whether the file backend holds the stack already.
func exists(o *Options) bool {
	root, ok := strings.CutPrefix(o.Backend, "file://")
	if !ok {
		return false
	}
	_, err := os.Stat(filepath.Join(root, ".pulumi", "stacks", Project, o.Stack+".json"))
	return err == nil
}

// clearDeadLocks removes the file backend's locks on this stack that a
// process on this host held and that is gone (an `up` killed midway), so
// the next run can converge. Locks of live processes or other hosts stay.
func clearDeadLocks(o *Options) error {
	root, ok := strings.CutPrefix(o.Backend, "file://")
	if !ok {
		return nil
	}
	dir := filepath.Join(root, ".pulumi", "locks", "organization", Project, o.Stack)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // no locks
	}
	host, _ := os.Hostname()
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var l struct {
			Pid      int    `json:"pid"`
			Hostname string `json:"hostname"`
		}
		if json.Unmarshal(b, &l) != nil || l.Hostname != host || l.Pid <= 0 || pidAlive(l.Pid) {
			continue
		}
		if o.Logger != nil {
			o.Logger.Warn("removing the stack lock of a dead engine", "lock", p, "pid", l.Pid)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("stale stack lock %s: %w", p, err)
		}
	}
	return nil
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// collect turns the engine's events into steps, one per tier resource.
func collect(ch <-chan events.EngineEvent, done chan<- map[string]Step, diags *[]string) {
	steps := map[string]Step{}
	for ev := range ch {
		if d := ev.DiagnosticEvent; d != nil && (d.Severity == "error") {
			*diags = append(*diags, strings.TrimSpace(d.Message))
		}
		var md *apitype.StepEventMetadata
		if ev.ResOutputsEvent != nil {
			md = &ev.ResOutputsEvent.Metadata
		}
		if md == nil || md.Type != "ironrack:index:Tier" {
			continue
		}
		s := Step{Tier: urnName(md.URN), Op: string(md.Op)}
		if md.New != nil {
			out := md.New.Outputs
			s.MachineIDs = strs(out["machineIds"])
			s.Racks = strs(out["racks"])
			s.Add = strs(out["added"])
			s.Remove = strs(out["removed"])
			s.To = len(s.MachineIDs)
			s.From = s.To - len(s.Add) + len(s.Remove)
			if v, ok := out["shardMoves"].(float64); ok {
				n := int(v)
				s.ShardMoves = &n
			}
		}
		if md.Op == apitype.OpSame && md.Old != nil {
			s.MachineIDs = strs(md.Old.Outputs["machineIds"])
			s.Racks = strs(md.Old.Outputs["racks"])
			s.From, s.To = len(s.MachineIDs), len(s.MachineIDs)
			s.Add, s.Remove = nil, nil
			if _, ok := md.Old.Outputs["shardMoves"]; ok {
				zero := 0
				s.ShardMoves = &zero
			}
		}
		steps[s.Tier] = s
	}
	done <- steps
}

func urnName(urn string) string {
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		return urn[i+2:]
	}
	return urn
}

func strs(v any) []string {
	a, _ := v.([]any)
	out := []string{}
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func ordered(steps map[string]Step) []Step {
	var out []Step
	for _, t := range Tiers {
		if s, ok := steps[t.Name]; ok {
			out = append(out, s)
			delete(steps, t.Name)
		}
	}
	var rest []string
	for k := range steps {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, steps[k])
	}
	return out
}

// wait takes the collected steps. The engine closes the event stream when
// it ends; one that died before streaming never does, so the wait is
// bounded (the collector then ends with the process).
func wait(done <-chan map[string]Step) map[string]Step {
	select {
	case s := <-done:
		return s
	case <-time.After(10 * time.Second):
		return map[string]Step{}
	}
}

func engineError(err error, diags []string) error {
	if len(diags) > 0 {
		return fmt.Errorf("%s", strings.Join(diags, "\n"))
	}
	return err
}

// Runner runs the engine on one opened stack (`scale apply` previews and
// updates through the same one: the engine's version check and the stack
// selection run once).
type Runner struct {
	st auto.Stack
	o  Options
}

// Open opens (or creates) the stack and writes its config.
func Open(ctx context.Context, o Options) (*Runner, error) {
	st, err := open(ctx, &o)
	if err != nil {
		return nil, err
	}
	return &Runner{st: st, o: o}, nil
}

// Preview plans the step and changes nothing: the provider is asked under
// a preview (DryRun), which claims nothing.
func (r *Runner) Preview(ctx context.Context) ([]Step, error) {
	ch := make(chan events.EngineEvent)
	done := make(chan map[string]Step, 1)
	var diags []string
	go collect(ch, done, &diags)
	_, err := r.st.Preview(ctx, optpreview.EventStreams(ch), optpreview.ProgressStreams(r.o.Progress),
		optpreview.ErrorProgressStreams(r.o.Progress), optpreview.SuppressProgress())
	steps := wait(done)
	if err != nil {
		return nil, fmt.Errorf("preview of stack %s: %w", r.o.Stack, engineError(err, diags))
	}
	return ordered(steps), nil
}

// Up runs the update and returns the steps taken.
func (r *Runner) Up(ctx context.Context) ([]Step, error) {
	ch := make(chan events.EngineEvent)
	done := make(chan map[string]Step, 1)
	var diags []string
	go collect(ch, done, &diags)
	_, err := r.st.Up(ctx, optup.EventStreams(ch), optup.ProgressStreams(r.o.Progress),
		optup.ErrorProgressStreams(r.o.Progress), optup.SuppressProgress())
	steps := wait(done)
	if err != nil {
		return ordered(steps), fmt.Errorf("up of stack %s: %w", r.o.Stack, engineError(err, diags))
	}
	return ordered(steps), nil
}

// Destroy deletes every tier of the stack (drained and released; a
// sharded tier's map removed).
func (r *Runner) Destroy(ctx context.Context) error {
	if _, err := r.st.Destroy(ctx, optdestroy.ProgressStreams(r.o.Progress), optdestroy.SuppressProgress()); err != nil {
		return fmt.Errorf("destroy of stack %s: %w", r.o.Stack, err)
	}
	return nil
}

// Preview opens the stack and previews it.
func Preview(ctx context.Context, o Options) ([]Step, error) {
	r, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	return r.Preview(ctx)
}

// Apply opens the stack and updates it.
func Apply(ctx context.Context, o Options) ([]Step, error) {
	r, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	return r.Up(ctx)
}

// Owner is the inventory owner of a tier's claims in a stack: the owner
// the provider derives from the resource's URN.
func Owner(stackName, tier string) string {
	return tiers.Owner("urn:pulumi:" + stackName + "::" + Project + "::ironrack:index:Tier::" + tier)
}

// Specs are the program's tiers as tiers.Specs from the config (size,
// selector, spread, shards; what sizing, claiming and the shard map's racks
// depend on).
func Specs(cfg map[string]string) ([]tiers.Spec, error) {
	var out []tiers.Spec
	for _, t := range Tiers {
		raw := cfg[Project+":"+t.Name+"Size"]
		size, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s:%sSize is %q, not a size (a whole number >= 0)", Project, t.Name, raw)
		}
		sp := tiers.Spec{Name: t.Name, Size: size, Selector: cfg[Project+":"+t.Name+"Selector"], Spread: t.Spread}
		sp.Services = append([]inventory.DeployService(nil), t.Services...)
		if t.Sharded {
			count, replicas, err := shardsConfig(func(k string) (string, bool) { v, ok := cfg[Project+":"+k]; return v, ok }, t.Name)
			if err != nil {
				return nil, err
			}
			if count > 0 {
				sp.Shards = &tiers.Shards{Count: count, Replicas: replicas}
			}
		}
		out = append(out, sp)
	}
	return out, nil
}

// EngineVersion is the Pulumi engine scripts/setup builds and the tools
// cache is keyed by.
const EngineVersion = "v3.256.0"
