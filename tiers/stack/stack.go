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
// The program (DefaultTiers) is the same as the shipped YAML project
// (deploy/pulumi/tiers): same project name, same resource names and
// inputs, same stack config keys, so both drive the same tiers.
//
// Tiers that share a hardware class would each pick from the ready pool on
// their own, so a preview could list one machine under two tiers. Preview
// and Up therefore plan the whole stack's step in-process first
// (tiers.Reconciler.PlanStack: one read of the pool, a joint, disjoint,
// deterministic pick) and pass each tier its machines as the `pick` input,
// which the provider claims exactly. Preview records the plan; Up refuses
// a step that differs from it (the pool changed in between) unless told
// to re-plan.
//
// The files: tiers.go the tiers (TierDef, DefaultTiers, Specs),
// joint.go the joint plan and the preview record, program.go the program, workspace.go the workspace, the stack settings
// and the file backend's locks, events.go the engine's events turned into
// Steps, stack.go the options and the Runner.
package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ironrack/ironrack/internal/tools"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
)

// Project is the tier program's Pulumi project name; its stack config keys
// are Project:<tier>Size, Project:<tier>Selector and Project:image.
const Project = "ironrack-tiers"

// EngineVersion is the Pulumi engine scripts/setup builds into the tools
// cache (tools.PulumiVersion); the Automation API is pinned to its SDK.
const EngineVersion = tools.PulumiVersion

// Options configure a run. Stack, Passphrase, PulumiDir and ProviderDir
// are required.
type Options struct {
	Stack string
	// Backend is the state backend URL. If empty, file://~/.ironrack/pulumi.
	Backend string
	// Home is PULUMI_HOME. If empty, ~/.ironrack/pulumi-home.
	Home string
	// WorkDir holds the program's Pulumi.yaml and Pulumi.<stack>.yaml
	// (config, encryption salt). If empty, Home/work/<hash of Backend>.
	WorkDir string
	// Passphrase protects the stack's secrets.
	Passphrase string
	// PulumiDir holds bin/pulumi (and bin/pulumi-language-yaml).
	PulumiDir string
	// ProviderDir holds pulumi-resource-ironrack.
	ProviderDir string
	// Config are the tier program's values: Project:<tier>Size,
	// Project:<tier>Selector, Project:image (as `scale plan` writes them).
	Config map[string]string
	// Tiers are the program's tiers. If nil, DefaultTiers().
	Tiers []TierDef
	// Provider is the ironrack provider's configuration (stack config
	// ironrack:KEY).
	Provider tiers.ProviderConfig
	// DrainSeconds, if set, overrides every tier's drain.
	DrainSeconds *int
	// Store is the inventory the provider claims from (the same Consul
	// and prefix as Provider): Preview and Up plan the stack's step from
	// it first (Runner.Plan), so the tiers' new machines are picked
	// jointly and disjointly, and pass each tier its picks. Required for
	// Preview and Up.
	Store *inventory.Store
	// Shards is the shard map store (the same Consul and prefix); with
	// it, Plan checks a sharded tier's map over the machines after the
	// step as the provider will. Required when a tier is sharded.
	Shards tiers.ShardStore
	// Replan lets Up take a step that differs from the last Preview of
	// the same config (the pool changed in between); it logs the
	// difference. Without it Up refuses such a step, claiming nothing.
	Replan bool
	// Progress receives the engine's output. If nil, discarded.
	Progress io.Writer
	Logger   *slog.Logger
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
		// One work dir per backend: a stack's settings file there keeps the
		// encryption salt of its backend's secrets, so the same stack name
		// in another backend (another passphrase) must not find it.
		sum := sha256.Sum256([]byte(o.Backend))
		o.WorkDir = filepath.Join(o.Home, "work", hex.EncodeToString(sum[:6]))
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
	if o.Tiers == nil {
		o.Tiers = DefaultTiers()
	}
	return nil
}

// Runner runs the engine on one opened stack (`scale apply` previews and
// updates through the same one: the engine's version check and the stack
// selection run once).
type Runner struct {
	st auto.Stack
	o  Options
	// picks are the tiers' `pick` inputs for the next run.
	picks map[string][]string
}

// Open opens (or creates) the stack and writes its config.
func Open(ctx context.Context, o Options) (*Runner, error) {
	r := &Runner{o: o}
	st, err := open(ctx, &r.o, func() map[string][]string { return r.picks })
	if err != nil {
		return nil, err
	}
	r.st = st
	return r, nil
}

// Preview plans the step and changes nothing: the stack's joint plan
// (Plan) picks every tier's new machines, the provider is asked under a
// preview (DryRun) with those picks, which claims nothing, and the plan is
// recorded in the work directory for Up to hold to.
func (r *Runner) Preview(ctx context.Context) ([]Step, error) {
	plans, err := r.Plan(ctx)
	if err != nil {
		return nil, fmt.Errorf("preview of stack %s: %w", r.o.Stack, err)
	}
	r.picks = picks(plans)
	steps, err := r.preview(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.savePreview(plans); err != nil {
		return steps, err
	}
	return steps, nil
}

func (r *Runner) preview(ctx context.Context) ([]Step, error) {
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
	return ordered(r.o.Tiers, steps), nil
}

// Up plans the stack's step jointly (Plan), holds it to the last Preview
// of the same config (a different step is refused, claiming nothing,
// unless Options.Replan), runs the update with the picks, and returns the
// steps taken.
func (r *Runner) Up(ctx context.Context) ([]Step, error) {
	plans, err := r.Plan(ctx)
	if err != nil {
		return nil, fmt.Errorf("up of stack %s: refused, nothing claimed: %w", r.o.Stack, err)
	}
	if err := r.checkPreview(plans); err != nil {
		return nil, fmt.Errorf("up of stack %s: refused, nothing claimed: %w", r.o.Stack, err)
	}
	r.picks = picks(plans)
	steps, err := r.up(ctx)
	if err != nil {
		return steps, err
	}
	r.dropPreview()
	return steps, nil
}

func (r *Runner) up(ctx context.Context) ([]Step, error) {
	ch := make(chan events.EngineEvent)
	done := make(chan map[string]Step, 1)
	var diags []string
	go collect(ch, done, &diags)
	_, err := r.st.Up(ctx, optup.EventStreams(ch), optup.ProgressStreams(r.o.Progress),
		optup.ErrorProgressStreams(r.o.Progress), optup.SuppressProgress())
	steps := wait(done)
	if err != nil {
		return ordered(r.o.Tiers, steps), fmt.Errorf("up of stack %s: %w", r.o.Stack, engineError(err, diags))
	}
	return ordered(r.o.Tiers, steps), nil
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
