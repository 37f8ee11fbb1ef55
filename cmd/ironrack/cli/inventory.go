package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/urfave/cli/v2"
)

// selectionFlags are the flags of every command that takes a selection.
func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "where", Aliases: []string{"w"}, Usage: `selection expression, e.g. 'rack == "r2" and mem_gb >= 128'`},
		&cli.StringFlag{Name: "state", Usage: "only machines in this state"},
		&cli.StringFlag{Name: "rack", Usage: "only machines in this rack"},
		&cli.StringFlag{Name: "tier", Usage: "only machines in this tier"},
	}
}

func queryFrom(c *cli.Context) (inventory.Query, error) {
	var q inventory.Query
	w, err := inventory.ParseWhere(c.String("where"))
	if err != nil {
		return q, fmt.Errorf("--where: %w", err)
	}
	q.Where = w
	if s := c.String("state"); s != "" {
		st, err := inventory.ParseState(s)
		if err != nil {
			return q, fmt.Errorf("--state: %w", err)
		}
		q.State = st
	}
	q.Rack, q.Tier = c.String("rack"), c.String("tier")
	return q, nil
}

func reasonFlag() cli.Flag {
	return &cli.StringFlag{Name: "reason", Aliases: []string{"m"}, Usage: "why, for the machines' history"}
}

func inventoryCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "inventory",
		Aliases: []string{"inv"},
		Usage:   "the machines: import rack sheets, query, tag, change state, allocate",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import a rack sheet (CSV), all or nothing",
				ArgsUsage: "FILE.csv",
				Flags:     []cli.Flag{reasonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("import: want exactly one FILE.csv")
					}
					file := c.Args().First()
					f, err := os.Open(file)
					if err != nil {
						return fmt.Errorf("import: %w", err)
					}
					defer f.Close()
					rows, err := inventory.ParseSheet(file, f)
					if err != nil {
						return importFailed(err)
					}
					if err := resolvePins(c.Context, file, rows, 10*time.Second, e.askPin); err != nil {
						return importFailed(err)
					}
					s, err := e.store(c, needsKey(rows))
					if err != nil {
						return err
					}
					res, err := s.Import(c.Context, file, rows, inventory.Change{Why: c.String("reason")})
					if err != nil {
						return importFailed(err)
					}
					if e.format == "json" {
						return writeJSON(e.stdout, res)
					}
					fmt.Fprintf(e.stdout, "%s: %d created, %d updated, %d unchanged\n", file, len(res.Created), len(res.Updated), res.Unchanged)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list machines",
				Flags: selectionFlags(),
				Action: func(c *cli.Context) error {
					ms, err := e.list(c)
					if err != nil {
						return err
					}
					return e.printMachines(ms)
				},
			},
			{
				Name:      "show",
				Usage:     "show one machine",
				ArgsUsage: "ID|SERIAL|MAC",
				Action: func(c *cli.Context) error {
					m, s, err := e.findOne(c)
					if err != nil {
						return err
					}
					var why *inventory.HistoryEntry
					if e.format == "table" {
						// Why it is in its state: the entry that moved it there.
						h, err := s.History(c.Context, m.ID)
						if err != nil {
							return err
						}
						for i := len(h) - 1; i >= 0 && why == nil; i-- {
							if h[i].To == m.State {
								why = &h[i]
							}
						}
					}
					return e.printMachine(m, why)
				},
			},
			{
				Name:      "history",
				Usage:     "show a machine's history",
				ArgsUsage: "ID|SERIAL|MAC",
				Action: func(c *cli.Context) error {
					m, s, err := e.findOne(c)
					if err != nil {
						return err
					}
					h, err := s.History(c.Context, m.ID)
					if err != nil {
						return err
					}
					if e.format == "json" {
						return writeJSON(e.stdout, h)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SEQ\tAT\tWHO\tWHAT\tSTATE\tWHY")
					for _, x := range h {
						st := ""
						if x.From != "" || x.To != "" {
							st = strings.TrimPrefix(string(x.From)+" → "+string(x.To), " → ")
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", x.Seq, x.At.Format("2006-01-02 15:04:05"), x.Who, x.What, st, x.Why)
					}
					return tw.Flush()
				},
			},
			{
				Name:      "tag",
				Usage:     "set tags (KEY=VALUE) or remove them (KEY=)",
				ArgsUsage: "ID|SERIAL|MAC KEY=VALUE...",
				Flags:     []cli.Flag{reasonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return errors.New("tag: want a machine and at least one KEY=VALUE")
					}
					tags := map[string]string{}
					for _, a := range c.Args().Slice()[1:] {
						k, v, ok := strings.Cut(a, "=")
						if !ok || k == "" {
							return fmt.Errorf("tag: %q is not KEY=VALUE (KEY= removes a tag)", a)
						}
						tags[k] = v
					}
					m, s, err := e.findOne(c)
					if err != nil {
						return err
					}
					m, err = s.Tag(c.Context, m.ID, tags, inventory.Change{Why: c.String("reason")})
					if err != nil {
						return err
					}
					return e.printMachine(m, nil)
				},
			},
			{
				Name:      "set-state",
				Usage:     "operator transitions: mark broken or retired, or send back to commissioning",
				ArgsUsage: "ID|SERIAL|MAC STATE",
				Flags:     []cli.Flag{reasonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return errors.New("set-state: want a machine and a state")
					}
					to, err := inventory.ParseState(c.Args().Get(1))
					if err != nil {
						return fmt.Errorf("set-state: %w", err)
					}
					m, s, err := e.findOne(c)
					if err != nil {
						return err
					}
					m, err = s.SetState(c.Context, m.ID, to, inventory.Operator, inventory.Change{What: "set-state", Why: c.String("reason")})
					if err != nil {
						return err
					}
					return e.printMachine(m, nil)
				},
			},
			rackCommand(e),
			{
				Name:      "export",
				Usage:     "write the machines as a rack sheet (credential references, never passwords)",
				ArgsUsage: "[FILE.csv]",
				Flags:     selectionFlags(),
				Action: func(c *cli.Context) error {
					ms, err := e.list(c)
					if err != nil {
						return err
					}
					out := e.stdout
					if c.NArg() > 0 && c.Args().First() != "-" {
						f, err := os.Create(c.Args().First())
						if err != nil {
							return err
						}
						defer f.Close()
						out = f
					}
					skipped, err := inventory.WriteSheet(out, ms)
					if err != nil {
						return err
					}
					for _, m := range skipped {
						e.log.Warn("not exported: no rack, serial or BMC yet", "machine", m.ID)
					}
					return nil
				},
			},
			{
				Name:  "commission",
				Usage: "record hand-entered hardware facts and commission those machines (new → commissioning → ready)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "facts", Required: true, Usage: "JSON array of {serial, cpu_cores, mem_gb, disks, nics}"},
					reasonFlag(),
				},
				Action: func(c *cli.Context) error {
					f, err := os.Open(c.String("facts"))
					if err != nil {
						return fmt.Errorf("--facts: %w", err)
					}
					defer f.Close()
					facts, err := inventory.ParseFactsFile(c.String("facts"), f)
					if err != nil {
						return err
					}
					s, err := e.store(c, false)
					if err != nil {
						return err
					}
					var out []*inventory.Machine
					for _, fa := range facts {
						m, err := s.Find(c.Context, fa.Serial)
						if err != nil {
							return fmt.Errorf("facts for serial %s: %w", fa.Serial, err)
						}
						if m.State == inventory.StateReady && m.CPUCores == fa.CPUCores && m.MemGB == fa.MemGB {
							out = append(out, m)
							continue // already commissioned with these facts
						}
						m, err = s.Commission(c.Context, m.ID, fa, inventory.Change{Why: c.String("reason")})
						if err != nil {
							return err
						}
						out = append(out, m)
					}
					inventory.SortMachines(out)
					return e.printMachines(out)
				},
			},
			{
				Name:  "allocate",
				Usage: "claim N ready machines for an owner, all or none",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Required: true, Usage: "how many machines"},
					&cli.StringFlag{Name: "where", Aliases: []string{"w"}, Usage: "only machines matching this expression"},
					&cli.StringFlag{Name: "spread", Usage: "spread the claim evenly: rack"},
					&cli.StringFlag{Name: "owner", Required: true, Usage: "who claims them"},
					&cli.StringFlag{Name: "tier", Usage: "tier to record on the machines"},
					reasonFlag(),
				},
				Action: func(c *cli.Context) error {
					w, err := inventory.ParseWhere(c.String("where"))
					if err != nil {
						return fmt.Errorf("--where: %w", err)
					}
					s, err := e.store(c, false)
					if err != nil {
						return err
					}
					ms, err := s.Allocate(c.Context, inventory.AllocateRequest{
						Count: c.Int("count"), Where: w, Spread: c.String("spread"), Owner: c.String("owner"),
						Tier: c.String("tier"), Change: inventory.Change{Why: c.String("reason")},
					})
					if err != nil {
						return err
					}
					return e.printMachines(ms)
				},
			},
			{
				Name:      "release",
				Usage:     "return allocated machines to the pool (by owner, IDs or selection)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     append(selectionFlags(), &cli.StringFlag{Name: "owner", Usage: "release everything this owner holds"}, reasonFlag()),
				Action: func(c *cli.Context) error {
					s, err := e.store(c, false)
					if err != nil {
						return err
					}
					var ms []*inventory.Machine
					if c.NArg() > 0 {
						for _, k := range c.Args().Slice() {
							m, err := s.Find(c.Context, k)
							if err != nil {
								return err
							}
							ms = append(ms, m)
						}
					} else {
						if c.String("owner") == "" && c.String("where") == "" {
							return errors.New("release: name machines, or give --owner or --where")
						}
						q, err := queryFrom(c)
						if err != nil {
							return err
						}
						q.State = inventory.StateAllocated
						all, err := s.List(c.Context, q)
						if err != nil {
							return err
						}
						for _, m := range all {
							if o := c.String("owner"); o == "" || m.Owner == o {
								ms = append(ms, m)
							}
						}
					}
					if len(ms) == 0 {
						return errors.New("release: no allocated machine matches")
					}
					out, err := s.Release(c.Context, ms, inventory.Change{Why: c.String("reason")})
					if err != nil {
						return err
					}
					return e.printMachines(out)
				},
			},
		},
	}
}

// flagsFirst refuses flags given after positional arguments: urfave/cli
// stops parsing flags at the first argument, and a silently ignored
// --reason or --where is worse than an error.
func flagsFirst(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		if len(a) > 1 && strings.HasPrefix(a, "-") && !isMACorNumber(a) {
			return fmt.Errorf("%s: flag %s comes after the arguments; put flags first: ironrack %s [flags] %s", c.Command.Name, a, c.Command.FullName(), c.Command.ArgsUsage)
		}
	}
	return nil
}

func isMACorNumber(a string) bool {
	_, err := strconv.ParseFloat(a, 64)
	return err == nil
}

// list runs the selection flags' query.
func (e *env) list(c *cli.Context) ([]*inventory.Machine, error) {
	q, err := queryFrom(c)
	if err != nil {
		return nil, err
	}
	s, err := e.store(c, false)
	if err != nil {
		return nil, err
	}
	return s.List(c.Context, q)
}

// findOne resolves the first argument to one machine.
func (e *env) findOne(c *cli.Context) (*inventory.Machine, *inventory.Store, error) {
	if c.NArg() < 1 {
		return nil, nil, fmt.Errorf("%s: name a machine by ID, serial or MAC", c.Command.Name)
	}
	s, err := e.store(c, false)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.Find(c.Context, c.Args().First())
	return m, s, err
}

func needsKey(rows []inventory.SheetRow) bool {
	for _, r := range rows {
		if r.BMCPassword != "" {
			return true
		}
	}
	return false
}

// importFailed prints every problem of a refused import, one per line.
func importFailed(err error) error {
	var se inventory.SheetErrors
	if errors.As(err, &se) {
		return fmt.Errorf("import refused, nothing stored (%d problems):\n%w", len(se), se)
	}
	return err
}

// rackCommand is `inventory rack`: racks' own records (their height).
func rackCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "rack",
		Usage: "racks' own records: their height (the web UI's elevation draws it)",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "set a rack's height in rack units (default 42)",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{&cli.IntFlag{Name: "height", Required: true,
					Usage: fmt.Sprintf("rack units, 1-%d", inventory.MaxRackHeight)}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("rack set: want exactly one rack NAME")
					}
					s, err := e.store(c, false)
					if err != nil {
						return err
					}
					return s.SetRack(c.Context, inventory.Rack{Name: c.Args().First(), Height: c.Int("height")})
				},
			},
			{
				Name:  "list",
				Usage: "racks with a stored record, and their height",
				Action: func(c *cli.Context) error {
					s, err := e.store(c, false)
					if err != nil {
						return err
					}
					rs, err := s.Racks(c.Context)
					if err != nil {
						return err
					}
					return e.printRacks(rs)
				},
			},
		},
	}
}

func (e *env) printRacks(rs []inventory.Rack) error {
	switch e.format {
	case "json":
		return writeJSON(e.stdout, rs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RACK\tHEIGHT")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%dU\n", r.Name, r.Units())
	}
	return tw.Flush()
}
