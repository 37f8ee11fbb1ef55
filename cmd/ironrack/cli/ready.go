package cli

import (
	"context"
	"fmt"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/ready"
)

// readyCommand is `ironrack wait-ready`: wait until deployed machines take
// SSH logins in a row and their own Consul agents report healthy.
func readyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "wait-ready",
		Usage:     "wait until deployed machines are ready: SSH logins that run a command, twice in a row, and their OS agent's checks passing",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "A deploy ends when the image is written; the machine then boots it, and cloud-init may still\n" +
			"restart sshd. This waits for what comes next: --logins logins in a row as --user with --identity\n" +
			"(or the ssh-agent) to the machine's inventory address, each running --command, then every check\n" +
			"of the node the deployed OS's own Consul agent registered passing (--no-health skips that).\n" +
			"Host keys are checked strictly against those the inventory recorded (a deployed machine reports\n" +
			"them at first boot, before sshd starts), or --known-hosts FILE.\n" +
			"Exits non-zero if any machine is not ready within --timeout.",
		Flags: append(append(selectionFlags(), loginFlags("")...),
			&cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"},
			&cli.StringFlag{Name: "command", Value: "true", Usage: "command each login runs; it must exit 0"},
			&cli.IntFlag{Name: "logins", Value: 2, Usage: "logins in a row that must succeed"},
			&cli.BoolFlag{Name: "no-health", Usage: "do not wait for the OS agent's Consul checks"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "how long to wait for every machine"},
		),
		Action: func(c *cli.Context) error {
			if c.Int("logins") < 1 {
				return fmt.Errorf("wait-ready: --logins %d: want 1 or more", c.Int("logins"))
			}
			sel, store, err := e.selectMachines(c)
			if err != nil {
				return err
			}
			login, err := newLogin(c, store, nil)
			if err != nil {
				return fmt.Errorf("wait-ready: %w", err)
			}
			defer login.Close()
			cfg := ready.Config{Command: c.String("command"), Logins: c.Int("logins"), Attempt: login.Timeout + 5*time.Second, Logger: e.log}
			if !c.Bool("no-health") {
				client, err := consulClient(c)
				if err != nil {
					return err
				}
				cfg.Health = ready.ConsulAgent{Client: client}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			type row struct {
				m    *inventory.Machine
				took time.Duration
				err  error
			}
			rows := make([]row, len(sel))
			var mu sync.Mutex
			g := new(errgroup.Group)
			g.SetLimit(32)
			start := time.Now()
			for i, s := range sel {
				rows[i].m = s.Machine
				g.Go(func() error {
					var err error
					if s.Machine.IP == "" {
						err = fmt.Errorf("%s has no address in the inventory (deployed? ironrack inventory show %s)", s.Machine.ID, s.Machine.ID)
					} else {
						// Each machine its own login: its recorded host
						// keys, asked for only their types.
						mc := cfg
						if mc.SSH, err = login.ClientConfig(ctx, s.Machine); err == nil {
							err = mc.Wait(ctx, ready.Target{ID: s.Machine.ID, Addr: login.Addr(s.Machine)})
						}
					}
					mu.Lock()
					rows[i].took, rows[i].err = time.Since(start), err
					mu.Unlock()
					return nil
				})
			}
			g.Wait()
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tADDRESS\tREADY\tAFTER\tDETAIL")
			failed := 0
			for _, r := range rows {
				res, detail := "yes", ""
				if r.err != nil {
					res, detail, failed = "no", r.err.Error(), failed+1
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.m.ID, r.m.IP, res, r.took.Round(100*time.Millisecond), detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("wait-ready: %d of %d machines not ready", failed, len(rows))
			}
			return nil
		},
	}
}
