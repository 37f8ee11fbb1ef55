package cli

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/playbooks/book"
	"github.com/ironrack/ironrack/playbooks/builtin"
	"github.com/ironrack/ironrack/playbooks/fanout"
)

// playbookCommand is `ironrack playbook run|list`.
func playbookCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "playbook",
		Usage: "run playbooks (YAML files of steps) across machines over SSH; list and show the built-ins",
		Subcommands: []*cli.Command{{
			Name:      "run",
			Usage:     "run a playbook (a built-in's NAME or a FILE) on machines, in batches, stopping at a failure threshold",
			ArgsUsage: "NAME|FILE [ID...]",
			Description: "The playbook is parsed and planned for every selected machine before any is touched: a bad\n" +
				"playbook, an unknown or missing --var, or a template that fails on one machine is refused\n" +
				"with FILE:LINE. Then each batch runs the steps on its machines over SSH, as `ironrack run`\n" +
				"does (same selection, batch and threshold flags). --check shows what each step would change\n" +
				"and changes nothing. See docs/playbooks.md; `ironrack playbook list` shows the built-ins.",
			Flags: append(fanoutFlags(),
				&cli.StringSliceFlag{Name: "var", Usage: "K=V: set the playbook's var K (repeatable; a value may use {{.Machine.ID}} and earlier vars)"},
				&cli.BoolFlag{Name: "check", Usage: "show what each step would change; change nothing"},
				&cli.BoolFlag{Name: "rollback", Usage: "--var rollback=true, for playbooks that declare it (deploy: switch back to the previous release)"},
				&cli.IntFlag{Name: "agent-port", Value: 8500, Usage: "HTTP port of the machines' own Consul agents (drain and undrain set maintenance there)"},
			),
			Action: func(c *cli.Context) error {
				args := c.Args().Slice()
				if len(args) == 0 {
					return errors.New("playbook run: give a playbook: a built-in's NAME (ironrack playbook list) or a FILE")
				}
				pb, err := loadPlaybook(args[0])
				if err != nil {
					return err
				}
				vars, err := parseVars(c.StringSlice("var"))
				if err != nil {
					return err
				}
				if c.Bool("rollback") {
					if v, ok := vars["rollback"]; ok && v != "true" {
						return fmt.Errorf("--rollback and --var rollback=%s disagree", v)
					}
					vars["rollback"] = "true"
				}
				if err := pb.CheckVars(vars); err != nil {
					return err
				}
				if p := c.Int("agent-port"); p < 1 || p > 65535 {
					return fmt.Errorf("--agent-port %d: want 1-65535", p)
				}
				ms, err := e.fanoutMachines(c, args[1:])
				if err != nil {
					return err
				}
				hosts, err := hostsOf(commandPath(c), ms, c.String("user"), c.Int("port"))
				if err != nil {
					return err
				}
				byID := map[string]book.Target{}
				for _, m := range ms {
					byID[m.ID] = book.Target{Machine: m}
				}
				targets := make([]book.Target, 0, len(hosts))
				for _, h := range hosts {
					t := byID[h.ID]
					t.Host = h
					targets = append(targets, t)
				}
				client, err := consulClient(c)
				if err != nil {
					return err
				}
				token := c.String("consul-token")
				if token == "" {
					token = os.Getenv("CONSUL_HTTP_TOKEN")
				}
				opt := book.Options{Check: c.Bool("check"),
					Gate: &book.Consul{Client: client, Token: token, AgentPort: c.Int("agent-port")}}
				pr, err := pb.Prepare(targets, vars, opt)
				if err != nil {
					return err
				}
				plan, closeAuth, err := e.fanoutPlan(c, ms)
				if err != nil {
					return err
				}
				defer closeAuth()
				if opt.Check {
					fmt.Fprintf(e.stderr, "check: %s on %d machines; nothing is changed\n", pb.File, len(hosts))
				}
				rep, err := e.runFanout(c, pr.Hosts(), plan, pr.Doing, pr.Work)
				if rep == nil {
					return err
				}
				if perr := e.printPlaybook(rep, pr.Steps()); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("playbook %s: %w", pb.File, err)
				}
				if n := rep.Failed(); n > 0 {
					return fmt.Errorf("playbook %s: %d of %d machines failed", pb.File, n, len(rep.Results))
				}
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "print a built-in playbook's file (to read it, or to copy and adapt it)",
			ArgsUsage: "NAME",
			Action: func(c *cli.Context) error {
				if c.Args().Len() != 1 {
					return errors.New("playbook show: give one built-in's NAME (ironrack playbook list)")
				}
				b, err := builtin.Source(c.Args().First())
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(b)
				return err
			},
		}, {
			Name:  "list",
			Usage: "list the built-in playbooks and their vars",
			Action: func(c *cli.Context) error {
				if c.Args().Len() > 0 {
					return fmt.Errorf("playbook list takes no arguments")
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVARS\tDESCRIPTION")
				for _, n := range builtin.Names() {
					pb, err := builtin.Load(n)
					if err != nil {
						return err
					}
					var vs []string
					for _, v := range pb.Vars {
						if v.Default == nil {
							vs = append(vs, v.Name+" (required)")
						} else {
							vs = append(vs, v.Name)
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", n, strings.Join(vs, ", "), pb.Description)
				}
				return tw.Flush()
			},
		}},
	}
}

// loadPlaybook reads a playbook: a path (it has a '/' or ends in .yaml or
// .yml) is a file; a bare name is a built-in, or else a regular file of
// that name. A directory of the same name (the repository's deploy/, say)
// never hides the built-in.
func loadPlaybook(arg string) (*book.Playbook, error) {
	if strings.ContainsRune(arg, '/') || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		return book.LoadFile(arg)
	}
	if slices.Contains(builtin.Names(), arg) {
		return builtin.Load(arg)
	}
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		return book.LoadFile(arg)
	}
	return builtin.Load(arg) // its error lists the built-ins
}

// parseVars reads --var K=V flags; a K given twice is an error.
func parseVars(flags []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--var %q: want K=V", f)
		}
		if _, dup := vars[k]; dup {
			return nil, fmt.Errorf("--var %s given twice", k)
		}
		vars[k] = v
	}
	return vars, nil
}

// printPlaybook writes a playbook run as printRun writes `run`'s, and with
// -o json each machine's step results too.
func (e *env) printPlaybook(rep *fanout.Report, steps map[string][]book.StepResult) error {
	if e.format != "json" {
		return e.printRun(rep)
	}
	type machine struct {
		runJSON
		Steps []book.StepResult `json:"steps"`
	}
	out := struct {
		Machines []machine `json:"machines"`
		Batches  []int     `json:"batches"`
		Aborted  string    `json:"aborted,omitempty"`
	}{Machines: []machine{}, Batches: rep.Batches, Aborted: rep.Aborted}
	for _, r := range rep.Results {
		st := steps[r.Host.ID]
		if st == nil {
			st = []book.StepResult{}
		}
		out.Machines = append(out.Machines, machine{runJSON{ID: r.Host.ID, Addr: r.Host.Addr, Batch: r.Batch, Result: string(r.Status),
			Exit: r.Exit, Seconds: r.Duration.Seconds(), Output: string(r.Output), Error: r.Error}, st})
	}
	return writeJSON(e.stdout, out)
}
