package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/tools"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/placement"
	"github.com/ironrack/ironrack/tiers/stack"
	"github.com/urfave/cli/v2"
)

// engineFlags are the flags of `scale preview|apply`: which stack, which
// backend, where the engine and the provider are, and the provider's
// deployer.
func engineFlags() []cli.Flag {
	return append(stackFlags(),
		&cli.StringFlag{Name: "backend", EnvVars: []string{"IRONRACK_PULUMI_BACKEND"},
			Usage: "Pulumi state backend URL (default file://~/.ironrack/pulumi; never Pulumi Cloud unless you name it)"},
		&cli.StringFlag{Name: "passphrase-env", Value: "PULUMI_CONFIG_PASSPHRASE",
			Usage: "name of the environment variable holding the stack's secrets passphrase"},
		&cli.StringFlag{Name: "pulumi-dir", EnvVars: []string{"IRONRACK_PULUMI_DIR"}, Value: defaultPulumiDir(),
			Usage: "directory with bin/pulumi (scripts/setup builds it there)"},
		&cli.StringFlag{Name: "provider-dir", EnvVars: []string{"IRONRACK_PROVIDER_DIR"},
			Usage: "directory with pulumi-resource-ironrack (default: beside this program, else PATH)"},
		&cli.StringFlag{Name: "deployer", EnvVars: []string{"IRONRACK_DEPLOYER"},
			Usage: "how the provider deploys machines: provision (PXE, image, the agent; as `ironrack deploy`) or state (lifecycle and service registration only; no machine is touched)"},
		&cli.StringSliceFlag{Name: "ssh-key", Usage: "authorized_keys file for root on machines the provision deployer deploys (repeatable; at least one for provision)"},
		&cli.StringFlag{Name: "consul-join", Usage: "Consul address the deployed machines' agents join (provision; default: the --consul host)"},
		&cli.BoolFlag{Name: "allow-reboot", Usage: "let the provision deployer power-cycle a claimed machine that is on"},
		&cli.IntFlag{Name: "drain-seconds", Value: -1, Usage: "seconds a removed machine gets to finish in-flight work (default: the provider's, 30)"},
		&cli.IntFlag{Name: "health-timeout", Usage: "seconds to wait for health checks after a deploy (default 600)"},
	)
}

// defaultPulumiDir is the tools cache's pinned engine (tools.PulumiDir).
func defaultPulumiDir() string {
	d, err := tools.PulumiDir()
	if err != nil {
		return ""
	}
	return d
}

// scalePreviewCommand is `ironrack scale preview`.
func scalePreviewCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "preview",
		Usage: "show the step the stack config asks for: per tier, the machines added and removed (changes nothing)",
		Flags: engineFlags(),
		Action: func(c *cli.Context) error {
			o, err := e.stackOptions(c)
			if err != nil {
				return err
			}
			steps, err := stack.Preview(c.Context, o)
			if err != nil {
				return err
			}
			return e.printSteps(steps, "preview")
		},
	}
}

// scaleApplyCommand is `ironrack scale apply`.
func scaleApplyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name: "apply",
		Usage: "step the tiers to the stack config: plan every tier's machines together (as `scale preview` listed them), " +
			"check the ready pool can meet them at once, then claim, deploy, drain and release",
		Flags: append(engineFlags(),
			&cli.BoolFlag{Name: "replan", Usage: "take the step planned now even if it differs from the last `scale preview` of the same config (the pool changed since); without it such a step is refused"}),
		Action: func(c *cli.Context) error {
			o, err := e.stackOptions(c)
			if err != nil {
				return err
			}
			// stack.Apply plans every tier together in-process first (one
			// read of the ready pool, a joint, disjoint pick; a sharded
			// tier's map checked against its racks), refuses a step the
			// pool cannot meet or one that differs from the last preview,
			// before anything is claimed, and passes each tier its picks.
			o.Replan = c.Bool("replan")
			steps, err := stack.Apply(c.Context, o)
			if perr := e.printSteps(steps, "apply"); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
}

// stackOptions gathers the engine's options from the flags, the
// environment and the stack config file.
func (e *env) stackOptions(c *cli.Context) (stack.Options, error) {
	if c.NArg() > 0 {
		return stack.Options{}, fmt.Errorf("%s: unexpected argument %q", c.Command.FullName(), c.Args().First())
	}
	path, err := stackFileFrom(c)
	if err != nil {
		return stack.Options{}, err
	}
	defs := stack.DefaultTiers()
	cfg, err := readTierConfig(path, defs)
	if err != nil {
		return stack.Options{}, err
	}
	passEnv := c.String("passphrase-env")
	pass := os.Getenv(passEnv)
	if pass == "" {
		return stack.Options{}, fmt.Errorf("--passphrase-env %s: the variable is empty or unset; the stack's secrets need a passphrase", passEnv)
	}
	backend := c.String("backend")
	if backend != "" && !strings.Contains(backend, "://") {
		return stack.Options{}, fmt.Errorf("--backend %q: want a URL (file:///path, s3://bucket, ...)", backend)
	}
	provDir := c.String("provider-dir")
	if provDir == "" {
		if exe, err := os.Executable(); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(exe), "pulumi-resource-ironrack")); err == nil {
				provDir = filepath.Dir(exe)
			}
		}
	}
	if provDir == "" {
		return stack.Options{}, errors.New("--provider-dir: pulumi-resource-ironrack is not beside this program; build it (go build ./cmd/pulumi-resource-ironrack) and name its directory")
	}
	dep := c.String("deployer")
	if dep == "" {
		return stack.Options{}, errors.New("--deployer: required: provision (deploys the machines) or state (lifecycle and service registration only, no machine touched)")
	}
	pc := tiers.ProviderConfig{Prefix: c.String("prefix"), Deployer: dep, ConsulToken: c.String("consul-token"),
		HealthTimeoutSeconds: c.Int("health-timeout"), ConsulJoin: c.String("consul-join"), AllowReboot: c.Bool("allow-reboot")}
	for _, f := range c.StringSlice("ssh-key") {
		keys, err := readKeys(f)
		if err != nil {
			return stack.Options{}, fmt.Errorf("--ssh-key: %w", err)
		}
		pc.SSHKeys = append(pc.SSHKeys, keys...)
	}
	if c.IsSet("consul") || os.Getenv("CONSUL_HTTP_ADDR") == "" {
		pc.Consul = c.String("consul")
	} else {
		pc.Consul = api.DefaultConfig().Address
	}
	if kf := c.String("key-file"); kf != "" {
		if _, err := os.Stat(kf); err == nil {
			pc.KeyFile = kf // the provision deployer powers machines with the sealed BMC passwords
		}
	}
	var drain *int
	if d := c.Int("drain-seconds"); d >= 0 {
		drain = &d
	}
	// The joint plan reads the inventory (and the shard maps) in-process.
	st, err := e.store(c, false)
	if err != nil {
		return stack.Options{}, err
	}
	client, err := consulClient(c)
	if err != nil {
		return stack.Options{}, err
	}
	return stack.Options{
		Store: st, Shards: placement.NewStore(client, placement.StoreConfig{Prefix: c.String("prefix")}),
		Stack: c.String("stack"), Backend: backend, Passphrase: pass, PulumiDir: c.String("pulumi-dir"),
		ProviderDir: provDir, Config: cfg, Tiers: defs, Provider: pc, DrainSeconds: drain,
		Progress: e.stderrIfDebug(), Logger: e.log,
	}, nil
}

// readTierConfig reads the keys of the tiers defs (ironrack-tiers:*) from
// the stack config file `scale plan` writes; every tier's size must be set.
func readTierConfig(path string, defs []stack.TierDef) (map[string]string, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stack config %s does not exist: write it with `ironrack scale plan`", path)
	}
	sf, err := readStackFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, t := range defs {
		if _, err := sf.Int(sizeKey(t.Name)); err != nil {
			return nil, err
		}
		keys := []string{sizeKey(t.Name), selectorKey(t.Name), rootDiskKey(t.Name), rootLayoutKey(t.Name)}
		if t.Sharded {
			// The shard layout, when set (stack.Specs and the program
			// check the values and apply the defaults).
			shards, replicas := stack.ShardsKeys(t.Name)
			keys = append(keys, tiersProject+":"+shards, tiersProject+":"+replicas)
		}
		for _, k := range keys {
			v, ok, err := sf.String(k)
			if err != nil {
				return nil, err
			}
			if ok {
				out[k] = v
			} else if k == sizeKey(t.Name) {
				return nil, fmt.Errorf("stack config %s: %s is not set (ironrack scale plan writes it)", path, k)
			}
		}
	}
	// The operator's keys for every tier (docs/tiers.md): the image, and the
	// user-data the machines run.
	for _, k := range []string{tiersProject + ":image", tiersProject + ":userData"} {
		if v, ok, err := sf.String(k); err != nil {
			return nil, err
		} else if ok {
			out[k] = v
		}
	}
	return out, nil
}

// stderrIfDebug is where the engine's own output goes: stderr at
// --log-level debug, else nowhere.
func (e *env) stderrIfDebug() io.Writer {
	if e.log != nil && e.log.Enabled(context.Background(), slog.LevelDebug) {
		return e.stderr
	}
	return io.Discard
}

// printSteps writes the per-tier step.
func (e *env) printSteps(steps []stack.Step, what string) error {
	if e.format == "json" {
		if steps == nil {
			steps = []stack.Step{}
		}
		return writeJSON(e.stdout, steps)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tSTEP\tADD\tREMOVE")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%d → %d\t%d\t%d\n", s.Tier, s.From, s.To, len(s.Add), len(s.Remove))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := map[string][2]string{"preview": {"will add", "will remove"}, "apply": {"added", "removed"}}[what]
	for _, s := range steps {
		rack := map[string]string{}
		for i, id := range s.MachineIDs {
			if i < len(s.Racks) {
				rack[id] = s.Racks[i]
			}
		}
		for _, id := range s.Add {
			fmt.Fprintf(e.stdout, "+ %s %s %s (rack %s)\n", s.Tier, id, verb[0], orDash(rack[id]))
		}
		for _, id := range s.Remove {
			fmt.Fprintf(e.stdout, "- %s %s %s\n", s.Tier, id, verb[1])
		}
		if s.ShardMoves != nil {
			fmt.Fprintf(e.stdout, "~ %s shard replicas %s: %d\n", s.Tier, map[string]string{"preview": "that will move", "apply": "moved"}[what], *s.ShardMoves)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
