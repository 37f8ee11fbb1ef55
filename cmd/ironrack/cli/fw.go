package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/mesh"
	"github.com/ironrack/ironrack/playbooks/netpolicy"
	"github.com/ironrack/ironrack/tiers/stack"
)

// fwCommand is `ironrack fw`: the nftables policy rendered from the
// inventory, pushed over SSH (see docs/network-policy.md).
func fwCommand(e *env) *cli.Command {
	policyFlag := &cli.StringFlag{Name: "policy", Aliases: []string{"p"}, Required: true, Usage: "policy file (YAML, see docs/network-policy.md)"}
	sshFlags := append(loginFlags(""),
		&cli.StringFlag{Name: "state-dir", Value: netpolicy.DefaultStateDir, Usage: "the machines' directory for the pending rollback"},
		&cli.IntFlag{Name: "parallel", Value: 16, Usage: "machines worked on at once"},
	)
	sel := func(extra ...cli.Flag) []cli.Flag {
		fl := append(selectionFlags(), &cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"})
		return append(append(fl, sshFlags...), extra...)
	}
	return &cli.Command{
		Name:  "fw",
		Usage: "nftables firewalls rendered from the inventory: plan, apply, confirm, status, watch",
		Subcommands: []*cli.Command{
			{
				Name:      "plan",
				Usage:     "per machine, what applying the policy changes against what the machine runs now",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     sel(policyFlag),
				Action: func(c *cli.Context) error {
					return e.fwEach(c, true, func(ctx context.Context, fw *netpolicy.Firewall, m *inventory.Machine, rs *netpolicy.Ruleset) (string, error) {
						hs, err := fw.Read(ctx, m)
						if err != nil {
							return "", err
						}
						d := netpolicy.Diff(hs, rs)
						if len(d) == 0 {
							return "no change (" + rs.Version + ")", nil
						}
						return strings.Join(d, "\n"), nil
					})
				},
			},
			{
				Name:      "apply",
				Usage:     "install each machine's ruleset in one nft transaction, with a rollback armed on the machine",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Description: "The rollback is a process on the machine, detached from the SSH session, that restores the\n" +
					"previous ruleset after --confirm-within unless confirmed. apply confirms by itself only over a\n" +
					"new SSH connection made through the new rules; --no-confirm leaves that to `fw confirm`.",
				Flags: sel(policyFlag,
					&cli.DurationFlag{Name: "confirm-within", Value: netpolicy.DefaultConfirmWithin, Usage: "the rollback runs unless confirmed within this"},
					&cli.BoolFlag{Name: "no-confirm", Usage: "do not confirm; run `ironrack fw confirm` after your own checks"}),
				Action: func(c *cli.Context) error {
					if d := c.Duration("confirm-within"); d < time.Second || d > time.Hour {
						return fmt.Errorf("fw apply: --confirm-within %v: want 1s to 1h", d)
					}
					return e.fwEach(c, true, func(ctx context.Context, fw *netpolicy.Firewall, m *inventory.Machine, rs *netpolicy.Ruleset) (string, error) {
						res, err := fw.Apply(ctx, m, rs, !c.Bool("no-confirm"))
						if err != nil {
							return "", err
						}
						if res.Confirmed {
							return "applied and confirmed " + res.Version, nil
						}
						return fmt.Sprintf("applied %s; rolls back at %s unless confirmed", res.Version, res.RollbackAt.Format(time.TimeOnly)), nil
					})
				},
			},
			{
				Name:      "confirm",
				Usage:     "stop the pending rollback on each machine (over a new SSH connection)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     sel(),
				Action: func(c *cli.Context) error {
					return e.fwEach(c, false, func(ctx context.Context, fw *netpolicy.Firewall, m *inventory.Machine, _ *netpolicy.Ruleset) (string, error) {
						if err := fw.Confirm(ctx, m, ""); err != nil {
							return "", err
						}
						return "confirmed", nil
					})
				},
			},
			{
				Name:      "status",
				Usage:     "each machine's ruleset version against the policy's, a pending rollback, and its last apply",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     sel(policyFlag),
				Action: func(c *cli.Context) error {
					return e.fwEach(c, true, func(ctx context.Context, fw *netpolicy.Firewall, m *inventory.Machine, rs *netpolicy.Ruleset) (string, error) {
						hs, err := fw.Read(ctx, m)
						if err != nil {
							return "", err
						}
						st := "current"
						switch {
						case !hs.Present:
							st = "no ironrack table"
						case hs.Version != rs.Version:
							st = "behind: runs " + hs.Version
						}
						if pending, err := fw.Pending(ctx, m); err == nil && pending {
							st += "; rollback pending"
						}
						rec, err := fw.Records.Get(ctx, m.ID)
						switch {
						case err != nil:
							st += "; last apply: " + err.Error()
						case rec == nil:
							st += "; never applied"
						default:
							conf := "unconfirmed"
							if rec.Confirmed {
								conf = "confirmed"
							}
							st += fmt.Sprintf("; last apply %s %s by %s, %s", rec.Version, rec.AppliedAt.Format(time.RFC3339), rec.By, conf)
						}
						return fmt.Sprintf("want %s: %s", rs.Version, st), nil
					})
				},
			},
			{
				Name:  "watch",
				Usage: "follow the inventory and update the sets of every machine the firewall was applied to, until interrupted",
				Flags: append(sshFlags[:len(sshFlags):len(sshFlags)], policyFlag),
				Action: func(c *cli.Context) error {
					store, err := e.store(c, false)
					if err != nil {
						return err
					}
					p, fw, err := e.fwSetup(c, store)
					if err != nil {
						return err
					}
					e.log.Info("watching the inventory", "policy", p.File)
					return (&netpolicy.Watcher{Inventory: store, Policy: p, Firewall: fw, Parallel: c.Int("parallel"), Logger: e.log}).Serve(c.Context)
				},
			},
		},
	}
}

// fwSetup loads the policy against the whole inventory and builds the
// firewall's SSH dialer.
func (e *env) fwSetup(c *cli.Context, store *inventory.Store) (*netpolicy.Policy, *netpolicy.Firewall, error) {
	name := commandPath(c)
	dial, err := fwDialer(c, store)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	client, err := consulClient(c)
	if err != nil {
		return nil, nil, err
	}
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		who += "@" + host
	}
	fw := &netpolicy.Firewall{Dial: dial, ConfirmWithin: c.Duration("confirm-within"), StateDir: c.String("state-dir"), Logger: e.log,
		Records: &netpolicy.Records{Client: client, Prefix: c.String("prefix"), Who: who}}
	if !c.IsSet("policy") && c.String("policy") == "" {
		return nil, fw, nil
	}
	all, err := store.List(c.Context, inventory.Query{})
	if err != nil {
		return nil, nil, err
	}
	var tiers []string
	for _, t := range stack.DefaultTiers() {
		tiers = append(tiers, t.Name)
	}
	known := netpolicy.Known{Tiers: tiers, Machines: all}
	peers, err := (&mesh.Store{Client: client, Prefix: c.String("prefix")}).List(c.Context)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range peers {
		if p.Kind == mesh.Admin {
			known.MeshAdmins++
		}
	}
	p, warn, err := netpolicy.Load(c.String("policy"), known)
	for _, w := range warn {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, fw, nil
}

// fwEach runs fn on every selected machine, at most --parallel at once,
// and prints one block per machine. Any failure makes the command fail.
func (e *env) fwEach(c *cli.Context, withPolicy bool, fn func(context.Context, *netpolicy.Firewall, *inventory.Machine, *netpolicy.Ruleset) (string, error)) error {
	sel, store, err := e.selectMachines(c)
	if err != nil {
		return err
	}
	p, fw, err := e.fwSetup(c, store)
	if err != nil {
		return err
	}
	var compiled *netpolicy.Compiled
	if withPolicy {
		all, err := store.List(c.Context, inventory.Query{})
		if err != nil {
			return err
		}
		compiled = netpolicy.Compile(p, all)
	}
	type row struct {
		id, out string
		err     error
	}
	rows := make([]row, len(sel))
	var mu sync.Mutex
	g := new(errgroup.Group)
	g.SetLimit(max(1, c.Int("parallel")))
	for i, s := range sel {
		m := s.Machine
		g.Go(func() error {
			r := row{id: m.ID}
			if m.IP == "" {
				r.err = errors.New("no address in the inventory")
			} else {
				var rs *netpolicy.Ruleset
				if compiled != nil {
					rs = compiled.Render(m)
				}
				r.out, r.err = fn(c.Context, fw, m, rs)
			}
			mu.Lock()
			rows[i] = r
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	failed := 0
	if e.format == "json" {
		type jrow struct {
			Machine string `json:"machine"`
			Result  string `json:"result,omitempty"`
			Error   string `json:"error,omitempty"`
		}
		out := make([]jrow, len(rows))
		for i, r := range rows {
			out[i] = jrow{Machine: r.id, Result: r.out}
			if r.err != nil {
				out[i].Error, failed = r.err.Error(), failed+1
			}
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		for _, r := range rows {
			text := r.out
			if r.err != nil {
				text, failed = "FAILED: "+r.err.Error(), failed+1
			}
			for i, line := range strings.Split(text, "\n") {
				id := r.id
				if i > 0 {
					id = ""
				}
				fmt.Fprintf(tw, "%s\t%s\n", id, line)
			}
		}
		tw.Flush()
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d machines failed", commandPath(c), failed, len(rows))
	}
	return nil
}

// fwDialer connects to a machine's inventory address with the CLI's one
// SSH login (sshLogin): host keys as the inventory recorded them, read at
// each dial, or --known-hosts.
func fwDialer(c *cli.Context, store *inventory.Store) (netpolicy.Dialer, error) {
	l, err := newLogin(c, store, nil)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, m *inventory.Machine) (netpolicy.Runner, error) {
		return l.Dial(ctx, m)
	}, nil
}
