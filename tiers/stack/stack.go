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
// The files: tiers.go the tiers (TierDef, DefaultTiers, Specs),
// program.go the program, workspace.go the workspace, the stack settings
// and the file backend's locks, events.go the engine's events turned into
// Steps, stack.go the options and the Runner.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ironrack/ironrack/internal/tools"
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
	Config map[string]string
	// Tiers are the program's tiers. If nil, DefaultTiers().
	Tiers []TierDef
	// Provider is the ironrack provider's configuration (stack config
	// ironrack:KEY).
	Provider tiers.ProviderConfig
	// DrainSeconds, if set, overrides every tier's drain.
	DrainSeconds *int
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
	return ordered(r.o.Tiers, steps), nil
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
