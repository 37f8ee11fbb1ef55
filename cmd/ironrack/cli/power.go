package cli

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// confirmAbove is how many machines an action may change without asking.
const confirmAbove = 10

// bmcFlags are the flags of every bulk BMC command.
func bmcFlags(change bool) []cli.Flag {
	fs := append(selectionFlags(),
		&cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "deadline of each BMC call"},
		&cli.IntFlag{Name: "retries", Value: 2, Usage: "more attempts for a BMC that timed out or was unreachable (0: none)"},
		&cli.IntFlag{Name: "concurrency", Value: 64, Usage: "BMCs at once"},
		&cli.IntFlag{Name: "per-bmc", Value: 2, Usage: "calls at once per BMC"},
	)
	if change {
		fs = append(fs,
			&cli.BoolFlag{Name: "dry-run", Usage: "read the BMCs and print what would happen; change nothing"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: fmt.Sprintf("do not ask before changing more than %d machines", confirmAbove)},
			reasonFlag(),
		)
	}
	return fs
}

func powerCommand(e *env) *cli.Command {
	sub := func(action ipmi.PowerAction, usage string) *cli.Command {
		flags := bmcFlags(true)
		if action != ipmi.On {
			flags = append(flags, &cli.BoolFlag{Name: "allow-reboot", Usage: "allow turning off, cycling or resetting machines that are on"})
		}
		return &cli.Command{
			Name:      string(action),
			Usage:     usage,
			ArgsUsage: "[ID|SERIAL|MAC...]",
			Flags:     flags,
			Action: func(c *cli.Context) error {
				return e.bmcRun(c, true, func(f *provision.Fleet, sel []provision.Selected) []provision.Outcome {
					return f.Power(c.Context, sel, action, provision.PowerRequest{
						AllowReboot: c.Bool("allow-reboot"), DryRun: c.Bool("dry-run"), Reason: c.String("reason")})
				})
			},
		}
	}
	return &cli.Command{
		Name:  "power",
		Usage: "read or change the power of machines through their BMCs",
		Description: "Select machines by ID, serial or MAC, or with --where/--rack/--state/--tier/--all.\n" +
			"on never cycles and leaves a machine that is on alone. off, cycle and reset of a machine\n" +
			"that is on need --allow-reboot, and a deployed machine is turned off, cycled or reset only\n" +
			"when named by its machine ID. Changes are recorded in each machine's history.",
		Subcommands: []*cli.Command{
			{
				Name:      "status",
				Usage:     "read the power state (recorded nowhere)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     bmcFlags(false),
				Action: func(c *cli.Context) error {
					return e.bmcRun(c, false, func(f *provision.Fleet, sel []provision.Selected) []provision.Outcome {
						return f.PowerStatus(c.Context, sel)
					})
				},
			},
			sub(ipmi.On, "power on machines that are off (never cycles)"),
			sub(ipmi.Off, "hard power off (machines that are on need --allow-reboot)"),
			sub(ipmi.Cycle, "power cycle machines that are on (needs --allow-reboot)"),
			sub(ipmi.Reset, "hard reset machines that are on (needs --allow-reboot)"),
		},
	}
}

func bootCommand(e *env) *cli.Command {
	sub := func(dev ipmi.BootDevice, usage string) *cli.Command {
		return &cli.Command{
			Name:      string(dev),
			Usage:     usage,
			ArgsUsage: "[ID|SERIAL|MAC...]",
			Flags: append(bmcFlags(true),
				&cli.BoolFlag{Name: "persistent", Usage: "for every boot, not only the next one"},
				&cli.BoolFlag{Name: "efi", Usage: "UEFI boot instead of legacy BIOS boot"},
			),
			Action: func(c *cli.Context) error {
				return e.bmcRun(c, true, func(f *provision.Fleet, sel []provision.Selected) []provision.Outcome {
					return f.SetBoot(c.Context, sel, provision.BootRequest{Device: dev, DryRun: c.Bool("dry-run"), Reason: c.String("reason"),
						Options: ipmi.BootOptions{Persistent: c.Bool("persistent"), EFI: c.Bool("efi")}})
				})
			},
		}
	}
	return &cli.Command{
		Name:  "boot",
		Usage: "set the boot device of machines through their BMCs (read back; dropped options are warnings)",
		Subcommands: []*cli.Command{
			sub(ipmi.BootPXE, "boot from the network"),
			sub(ipmi.BootDisk, "boot from the local disk"),
			sub(ipmi.BootBIOS, "boot into the firmware setup"),
		},
	}
}

// setPasswordCommand is `bmc set-password`.
func setPasswordCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "set-password",
		Usage:     "rotate BMC passwords: a new random one per BMC, set, proven by a login, then stored",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "On any failure the stored password stays the one the BMC accepts. A machine whose\n" +
			"credential reference is shared with other machines first gets its own reference,\n" +
			"bmc/<machine-id>, holding the current password. Passwords are never printed.",
		Flags: bmcFlags(true),
		Action: func(c *cli.Context) error {
			return e.bmcRun(c, true, func(f *provision.Fleet, sel []provision.Selected) []provision.Outcome {
				return f.RotatePasswords(c.Context, sel, provision.RotateRequest{DryRun: c.Bool("dry-run"), Reason: c.String("reason")})
			})
		},
	}
}

// bmcRun is the shell of every bulk BMC command: select, confirm, run with
// progress, print the summary, and fail if any machine failed.
func (e *env) bmcRun(c *cli.Context, change bool, run func(*provision.Fleet, []provision.Selected) []provision.Outcome) error {
	name := commandPath(c)
	roots, err := bmcRoots(c)
	if err != nil {
		return err
	}
	sel, s, err := e.selectMachines(c)
	if err != nil {
		return err
	}
	if len(sel) == 0 {
		return fmt.Errorf("%s: no machine matches", name)
	}
	if change && !c.Bool("dry-run") && len(sel) > confirmAbove && !c.Bool("yes") {
		if err := e.confirm(fmt.Sprintf("%s: this changes %d machines. Continue? [y/N] ", name, len(sel))); err != nil {
			return fmt.Errorf("%s: %d machines selected (more than %d): %w", name, len(sel), confirmAbove, err)
		}
	}
	if c.Duration("timeout") <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", c.Duration("timeout"))
	}
	retries := c.Int("retries")
	if retries == 0 {
		retries = -1 // BulkOptions: 0 means the default
	}
	prog := e.progress(name, len(sel))
	f := &provision.Fleet{
		Inventory:  s,
		BMCRoots:   roots,
		Controller: &ipmi.Controller{Logger: e.log, Timeout: c.Duration("timeout")},
		Logger:     e.log,
		Bulk: ipmi.BulkOptions{Concurrency: c.Int("concurrency"), PerBMC: c.Int("per-bmc"),
			CallTimeout: c.Duration("timeout"), Retries: retries, Progress: prog.step},
	}
	out := run(f, sel)
	prog.finish()
	if err := e.printOutcomes(out); err != nil {
		return err
	}
	var failed []string
	for _, o := range out {
		if !o.OK() {
			failed = append(failed, o.Machine+" "+o.Reason)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %d of %d machines failed: %s", name, len(failed), len(out), strings.Join(failed, ", "))
	}
	return nil
}

// selectMachines resolves the machines named as arguments, or the
// selection flags. Naming none selects nothing unless --all is given.
func (e *env) selectMachines(c *cli.Context) ([]provision.Selected, *inventory.Store, error) {
	name := commandPath(c)
	byFlags := false
	for _, f := range []string{"where", "state", "rack", "tier"} {
		byFlags = byFlags || c.String(f) != ""
	}
	switch {
	case c.NArg() > 0 && (byFlags || c.Bool("all")):
		return nil, nil, fmt.Errorf("%s: name machines or select them with --where/--rack/--state/--tier/--all, not both", name)
	case c.NArg() == 0 && !byFlags && !c.Bool("all"):
		return nil, nil, fmt.Errorf("%s: name machines by ID, serial or MAC, or select them with --where/--rack/--state/--tier (or --all)", name)
	}
	q, err := queryFrom(c)
	if err != nil {
		return nil, nil, err
	}
	s, err := e.store(c, true)
	if err != nil {
		return nil, nil, err
	}
	sel, err := provision.Select(c.Context, s, c.Args().Slice(), q)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return sel, s, nil
}

// commandPath is the command as typed, without the program: "power off".
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != c.App.Name {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// errNeedYes says a large action was neither confirmed nor forced.
var errNeedYes = errors.New("not a terminal, so nothing was asked and nothing changed: give --yes to go ahead")

// confirm asks on a terminal; elsewhere it refuses, naming --yes.
func (e *env) confirm(question string) error {
	if !isTerminal(e.stdin) || !isTerminal(e.stderr) {
		return errNeedYes
	}
	fmt.Fprint(e.stderr, question)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing changed")
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows a bar on a terminal and a plain line per machine
// otherwise, both on stderr.
type progress struct {
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	w    io.Writer
	name string
}

func (e *env) progress(name string, total int) *progress {
	p := &progress{w: e.stderr, name: name}
	if isTerminal(e.stderr) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription(name),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(50*time.Millisecond),
		)
	}
	return p
}

func (p *progress) step(x ipmi.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add(1)
		return
	}
	res := "ok"
	if x.Err != nil {
		res = "failed: " + provision.Reason(x.Err)
	}
	fmt.Fprintf(p.w, "%s [%d/%d] %s %s\n", p.name, x.Done, x.Total, x.Target.ID, res)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

var outcomeColumns = []string{"machine", "bmc", "action", "result", "before", "after", "changed", "warnings", "detail"}

func outcomeRow(o provision.Outcome) []string {
	res := o.Result
	if !o.OK() {
		res = "failed: " + o.Reason
	} else if o.DryRun {
		res = "ok (dry run)"
	}
	detail := o.Note
	if o.Error != "" {
		// The machine column names it already.
		detail = strings.TrimPrefix(o.Error, "machine "+o.Machine+": ")
		if o.Note != "" {
			detail += "; " + o.Note
		}
	}
	var codes []string
	for _, w := range o.Warnings {
		code, _, _ := strings.Cut(w, ":")
		codes = append(codes, code)
	}
	return []string{o.Machine, o.BMC, o.Action, res, o.Before, o.After, strconv.FormatBool(o.Changed), strings.Join(codes, ","), detail}
}

// printOutcomes writes the summary of a bulk BMC command. In a table the
// warnings' full sentences follow the table.
func (e *env) printOutcomes(out []provision.Outcome) error {
	switch e.format {
	case "json":
		if out == nil {
			out = []provision.Outcome{}
		}
		return writeJSON(e.stdout, out)
	case "csv":
		cw := csv.NewWriter(e.stdout)
		cw.Write(outcomeColumns)
		for _, o := range out {
			r := outcomeRow(o)
			r[7] = strings.Join(o.Warnings, "; ")
			cw.Write(r)
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(outcomeColumns, "\t")))
	ok, changed := 0, 0
	for _, o := range out {
		fmt.Fprintln(tw, strings.Join(outcomeRow(o), "\t"))
		if o.OK() {
			ok++
		}
		if o.Changed {
			changed++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range out {
		for _, w := range o.Warnings {
			fmt.Fprintf(e.stdout, "warning: %s: %s\n", o.Machine, w)
		}
	}
	fmt.Fprintf(e.stdout, "%d ok, %d failed, %d changed\n", ok, len(out)-ok, changed)
	return nil
}
