package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"

	"github.com/ironrack/ironrack/tiers"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
)

func home() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return "."
	}
	return h
}

// open upserts the stack with its config.
func open(ctx context.Context, o *Options, picks func() map[string][]string) (auto.Stack, error) {
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
	ws0, err := auto.NewLocalWorkspace(ctx, auto.Program(Program(o.Tiers, o.DrainSeconds, picks)),
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
	cm, err := providerSettings(o.Provider)
	if err != nil {
		return auto.Stack{}, err
	}
	for k, v := range o.Config {
		if !strings.HasPrefix(k, Project+":") {
			return auto.Stack{}, fmt.Errorf("config key %s: not in project %s", k, Project)
		}
		key, err := config.ParseKey(k)
		if err != nil {
			return auto.Stack{}, fmt.Errorf("config key %s: %w", k, err)
		}
		cm[key] = config.NewValue(v)
	}
	settings.Config = cm
	if err := ws.SaveStackSettings(ctx, o.Stack, settings); err != nil {
		return auto.Stack{}, fmt.Errorf("stack %s settings: %w", o.Stack, err)
	}
	// The secret is passed through the environment, never stored.
	if o.Provider.ConsulToken != "" {
		ws.SetEnvVar("CONSUL_HTTP_TOKEN", o.Provider.ConsulToken)
	}
	if err := clearDeadLocks(o); err != nil {
		return auto.Stack{}, err
	}
	return st, nil
}

// providerSettings are pc's set fields as stack config ironrack:KEY, KEY
// each field's pulumi tag (the provider decodes the same tags). Secret
// fields (provider:"secret") are left out: open passes them in the
// environment.
func providerSettings(pc tiers.ProviderConfig) (config.Map, error) {
	cm := config.Map{}
	v := reflect.ValueOf(pc)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("pulumi"), ",")
		if name == "" || f.Tag.Get("provider") == "secret" || v.Field(i).IsZero() {
			continue
		}
		key, err := config.ParseKey("ironrack:" + name)
		if err != nil {
			return nil, fmt.Errorf("config key ironrack:%s: %w", name, err)
		}
		switch x := v.Field(i).Interface().(type) {
		case string:
			cm[key] = config.NewValue(x)
		case int:
			cm[key] = config.NewValue(strconv.Itoa(x))
		case bool:
			cm[key] = config.NewValue(strconv.FormatBool(x))
		case []string:
			if len(x) == 0 {
				continue
			}
			b, err := json.Marshal(x)
			if err != nil {
				return nil, fmt.Errorf("config key %s: %w", key, err)
			}
			cm[key] = config.NewObjectValue(string(b))
		default:
			return nil, fmt.Errorf("config key %s: a %T cannot be written", key, x)
		}
	}
	return cm, nil
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
	if errors.Is(err, os.ErrNotExist) {
		return nil // no locks
	}
	if err != nil {
		return fmt.Errorf("stack locks: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("stack locks: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("stack lock: %w", err)
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
