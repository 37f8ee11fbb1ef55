package cli

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/capacity"
	"github.com/ironrack/ironrack/tiers/placement"
	"github.com/ironrack/ironrack/tiers/plans"
	"github.com/urfave/cli/v2"
)

// scaleCommand is `ironrack scale`: sizing and stepping the tiers.
func scaleCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "scale",
		Usage: "size the tiers from a workload and step them",
		Subcommands: []*cli.Command{
			scalePlanCommand(e),
			scalePreviewCommand(e),
			scaleApplyCommand(e),
		},
	}
}

// stackFlags select the tier program's stack config file.
func stackFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "stack", Value: "dev", Usage: "stack name: its config is Pulumi.<stack>.yaml in the project dir"},
		&cli.StringFlag{Name: "project-dir", Value: ".", Usage: "the " + tiersProject + " Pulumi project directory"},
	}
}

// stackFileFrom validates --stack and --project-dir and returns the path of
// the stack config file.
func stackFileFrom(c *cli.Context) (string, error) {
	stack := c.String("stack")
	if !stackNameRE.MatchString(stack) {
		return "", fmt.Errorf("--stack %q: want letters, digits, _ . - (no path)", stack)
	}
	dir := c.String("project-dir")
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--project-dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("--project-dir %s: not a directory", dir)
	}
	return stackPath(dir, stack), nil
}

// planFlagOf maps the planner's input fields to the flags that set them.
var planFlagOf = map[string]string{
	"events_per_sec":  "--events-per-sec",
	"retention_days":  "--retention-days",
	"bytes_per_event": "--bytes-per-event",
	"queries_per_sec": "--queries-per-sec",
	"headroom":        "--headroom",
}

func scalePlanCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "size each tier from a workload and a capacity model, check the ready pool, write the stack config",
		Description: "Prints the step (current → target per tier, machines needed against ready per hardware class, " +
			"the racks they come from), then writes the tier sizes and selectors into Pulumi.<stack>.yaml. " +
			"A plan the ready pool cannot meet is refused: it names the shortfall per class, exits non-zero and writes nothing.",
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "events-per-sec", Required: true, Usage: "events ingested per second"},
			&cli.Float64Flag{Name: "retention-days", Required: true, Usage: "days events are kept"},
			&cli.Float64Flag{Name: "bytes-per-event", Required: true, Usage: "stored bytes per event (before replication)"},
			&cli.Float64Flag{Name: "queries-per-sec", Required: true, Usage: "queries per second"},
			&cli.Float64Flag{Name: "headroom", Value: capacity.DefaultHeadroom, Usage: "spare capacity: 0.3 plans for 1.3x the demand"},
			&cli.StringFlag{Name: "model", Usage: "capacity model: an embedded one by name (default: tiers/capacity/default-model.json; lab: tiers/capacity/lab-model.json, sized for `ironrack lab` VMs), else a model file (JSON)"},
		}, stackFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("scale plan: unexpected argument %q (all inputs are flags)", c.Args().First())
			}
			in := capacity.Input{
				EventsPerSec:  c.Float64("events-per-sec"),
				RetentionDays: c.Float64("retention-days"),
				BytesPerEvent: c.Float64("bytes-per-event"),
				QueriesPerSec: c.Float64("queries-per-sec"),
				Headroom:      c.Float64("headroom"),
			}
			if err := in.Validate(); err != nil {
				var ie *capacity.InputError
				if errors.As(err, &ie) {
					return fmt.Errorf("%s %s: want %s", planFlagOf[ie.Field], strconv.FormatFloat(ie.Value, 'g', -1, 64), ie.Want)
				}
				return err
			}
			model, err := loadModel(c.String("model"))
			if err != nil {
				return err
			}
			path, err := stackFileFrom(c)
			if err != nil {
				return err
			}
			sf, err := readStackFile(path)
			if err != nil {
				return err
			}
			current := map[string]capacity.Current{}
			for _, tier := range capacity.Tiers {
				n, err := sf.Int(sizeKey(tier))
				if err != nil {
					return err
				}
				sel, _, err := sf.String(selectorKey(tier))
				if err != nil {
					return err
				}
				current[tier] = capacity.Current{Size: n, Selector: sel}
			}
			s, err := e.store(c, false)
			if err != nil {
				return err
			}
			pool, err := capacity.ReadPool(c.Context, s, model)
			if err != nil {
				return err
			}
			plan, err := model.Plan(in, current, pool)
			var sf2 *capacity.ShortfallError
			if errors.As(err, &sf2) {
				e.printPlan(sf2.Plan, path, false, sf2.Short)
				return fmt.Errorf("%w\nnothing written to %s", err, path)
			}
			if err != nil {
				return err
			}
			for _, tp := range plan.Tiers {
				sf.Set(sizeKey(tp.Tier), tp.Target)
				sf.Set(selectorKey(tp.Tier), tp.Selector)
				if _, had, _ := sf.String(rootDiskKey(tp.Tier)); had || tp.RootDisk != "" {
					sf.Set(rootDiskKey(tp.Tier), tp.RootDisk)
				}
				if _, had, _ := sf.String(rootLayoutKey(tp.Tier)); had || tp.RootLayout != "" {
					sf.Set(rootLayoutKey(tp.Tier), tp.RootLayout)
				}
			}
			if err := sf.Write(); err != nil {
				return err
			}
			if err := e.storePlan(c, s, plan); err != nil {
				return fmt.Errorf("%w (the plan is in %s; the web UI shows the previous one)", err, path)
			}
			return e.printPlan(plan, path, true, nil)
		},
	}
}

// storePlan keeps the plan in Consul (plans/latest) with its storage
// shard moves, for the web UI.
func (e *env) storePlan(c *cli.Context, s *inventory.Store, plan *capacity.Plan) error {
	client, err := consulClient(c)
	if err != nil {
		return err
	}
	moves, note, err := plans.ShardMoves(c.Context, placement.NewStore(client, placement.StoreConfig{Prefix: c.String("prefix")}), s, plan)
	if err != nil {
		return err
	}
	return plans.NewStore(client, c.String("prefix")).Save(c.Context, plans.Record{At: time.Now().UTC(), Stack: c.String("stack"),
		Plan: *plan, ShardMoves: moves, ShardNote: note})
}

// loadModel reads --model: an embedded model's name (capacity.Models:
// default, lab), else a model file's path. "" is the default model.
func loadModel(file string) (*capacity.Model, error) {
	if file == "" {
		return capacity.DefaultModel()
	}
	if m, ok, err := capacity.NamedModel(file); ok {
		return m, err
	}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--model %s: neither an embedded model (%s) nor a file", file, strings.Join(capacity.Models, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	defer f.Close()
	m, err := capacity.ParseModel(file, f)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	return m, nil
}

// planOutput is `scale plan -o json`.
type planOutput struct {
	*capacity.Plan
	StackFile string `json:"stack_file"`
	// Written is false for a refused plan.
	Written bool                `json:"written"`
	Refused []capacity.ClassUse `json:"refused,omitempty"`
}

func (e *env) printPlan(p *capacity.Plan, path string, written bool, short []capacity.ClassUse) error {
	if e.format == "json" {
		return writeJSON(e.stdout, planOutput{Plan: p, StackFile: path, Written: written, Refused: short})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tCLASS\tSTEP\tDEMAND\tPER MACHINE\tFROM RACKS")
	for _, tp := range p.Tiers {
		step := fmt.Sprintf("%d → %d", tp.Current, tp.Target)
		switch {
		case tp.Add > 0:
			step += fmt.Sprintf(" (+%d)", tp.Add)
		case tp.Remove > 0:
			step += fmt.Sprintf(" (-%d, drained)", tp.Remove)
		}
		var racks []string
		for _, rc := range tp.Racks {
			racks = append(racks, fmt.Sprintf("%s:%d", rc.Rack, rc.Count))
		}
		if len(racks) == 0 {
			racks = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tp.Tier, tp.Class, step,
			quantity(tp.Demand, tp.Unit), quantity(tp.PerNode, tp.Unit), strings.Join(racks, " "))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CLASS\tNEEDED\tREADY\tSHORT\tTIERS\tWHERE")
	for _, u := range p.Classes {
		tiers := strings.Join(u.Tiers, ",")
		if tiers == "" {
			tiers = "-"
		}
		shortCol := strconv.Itoa(u.Short)
		if u.RacksShort != "" {
			shortCol += " (racks)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", u.Class, u.Needed, u.Ready, shortCol, tiers, u.Where)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nreplication factor %d, headroom %g\n", p.ReplicationFactor, p.Input.Headroom)
	if written {
		fmt.Fprintf(e.stdout, "wrote %s\n", path)
	}
	return nil
}

// quantity prints a demand: bytes in decimal units, whole rates in full,
// others with four significant digits.
func quantity(v float64, unit string) string {
	if unit == "bytes" {
		units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
		i := 0
		for v >= 1000 && i < len(units)-1 {
			v /= 1000
			i++
		}
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + " " + units[i]
	}
	if v == math.Trunc(v) && v < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
}
