package cli

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
)

// workflowFlags are the flags deploy and release share.
func workflowFlags(timeout time.Duration) []cli.Flag {
	return append(selectionFlags(),
		&cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"},
		&cli.BoolFlag{Name: "allow-reboot", Usage: "power-cycle machines that are on (otherwise they fail before anything changes)"},
		&cli.DurationFlag{Name: "timeout", Value: timeout, Usage: "how long to wait for every machine's result"},
		&cli.DurationFlag{Name: "bmc-timeout", Value: 5 * time.Second, Usage: "deadline of each BMC call"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: fmt.Sprintf("do not ask before changing more than %d machines", confirmAbove)},
		reasonFlag(),
	)
}

func deployCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "write an OS image to machines and boot them into it (cloud-init NoCloud from the boot server)",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "Select machines by ID, serial or MAC, or with --where/--rack/--state/--tier/--all.\n" +
			"Each must be ready (it is claimed for --owner) or allocated to --owner, and off unless\n" +
			"--allow-reboot. Each is set to network boot and powered on through its BMC; the agent\n" +
			"streams the image to the first disk that fits (or the one --root-disk chooses from the\n" +
			"machine's recorded disks: smallest match, then first by name), verifies its sha256\n" +
			"while writing, and reboots into it. The command waits for every machine (--timeout) and exits non-zero if\n" +
			"any failed; the failed step is in the table and in the machine's history.",
		Flags: append(workflowFlags(30*time.Minute),
			&cli.StringFlag{Name: "image", Required: true, Usage: "image as NAME or NAME:VERSION (ironrack images list)"},
			&cli.StringFlag{Name: "user-data", Usage: "cloud-init user-data file (#cloud-config or a script), applied after ironrack's own"},
			&cli.StringSliceFlag{Name: "ssh-key", Usage: "authorized_keys file for root on the deployed OS (repeatable; at least one: the image has no password login)"},
			&cli.StringFlag{Name: "hostname-prefix", Usage: "host names PREFIX-1, PREFIX-2, … in machine ID order (default: the machine ID)"},
			&cli.StringFlag{Name: "owner", Usage: "who claims the machines (default: $USER@host)"},
			&cli.StringFlag{Name: "role", Usage: "tier role: the deployed Consul agent's ironrack_role node meta"},
			&cli.StringFlag{Name: "consul-join", Usage: "Consul address the deployed OS's agent joins (HOST[:PORT])"},
			&cli.StringSliceFlag{Name: "service", Usage: "Consul service the deployed OS's agent registers, with a check it runs on the machine: NAME:PORT[/tcp|/http:PATH] (repeatable; needs --consul-join)"},
			&cli.StringFlag{Name: "root-disk", Usage: "root-device hint: a where-expression over one disk's " + strings.Join(inventory.DiskFields, ", ") + ` (e.g. 'not rotational and size_bytes < 1e12'); default: the first disk that fits`},
			&cli.StringFlag{Name: "root-layout", Value: inventory.LayoutFlat, Usage: "flat (one disk); mirror (software RAID 1 over the two disks --root-disk matches; boots with one disk gone)"},
		),
		Action: func(c *cli.Context) error {
			name, version, _ := strings.Cut(c.String("image"), ":")
			if name == "" {
				return fmt.Errorf("--image %q: want NAME or NAME:VERSION", c.String("image"))
			}
			req := provision.DeployRequest{
				Owner: c.String("owner"), Image: name, Version: version,
				HostnamePrefix: c.String("hostname-prefix"), Role: c.String("role"), ConsulJoin: c.String("consul-join"),
				AllowReboot: c.Bool("allow-reboot"), Timeout: c.Duration("timeout"), Reason: c.String("reason"),
			}
			if req.Owner == "" {
				req.Owner = defaultOwner()
			}
			req.RootDisk, req.RootLayout = c.String("root-disk"), c.String("root-layout")
			if req.RootDisk != "" {
				if _, err := inventory.ParseDiskWhere(req.RootDisk); err != nil {
					return fmt.Errorf("--root-disk: %w", err)
				}
			}
			if err := inventory.ValidateLayout(req.RootLayout, req.RootDisk); err != nil {
				return fmt.Errorf("--root-layout: %w", err)
			}
			for _, text := range c.StringSlice("service") {
				svc, err := inventory.ParseDeployService(text)
				if err != nil {
					return fmt.Errorf("--service: %w", err)
				}
				req.Services = append(req.Services, svc)
			}
			if len(req.Services) > 0 && req.ConsulJoin == "" {
				return fmt.Errorf("--service needs --consul-join: the services are registered by the deployed OS's Consul agent")
			}
			if f := c.String("user-data"); f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--user-data: %w", err)
				}
				req.UserData = string(b)
			}
			for _, f := range c.StringSlice("ssh-key") {
				keys, err := readKeys(f)
				if err != nil {
					return err
				}
				req.SSHKeys = append(req.SSHKeys, keys...)
			}
			return e.workflowRun(c, deployColumns, func(d *provision.Deployer, sel []provision.Selected, prog func(provision.Event)) []provision.Result {
				req.Progress = prog
				return d.Deploy(c.Context, machineIDs(sel), req)
			})
		},
	}
}

func releaseCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "release",
		Usage:     "wipe deployed machines and return them (and allocated ones) to the pool",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "An allocated machine goes back to ready at once. A deployed machine (or one whose deploy\n" +
			"or wipe failed) is set to network boot and powered on (cycled with --allow-reboot when\n" +
			"it is on); the agent erases every disk at the --erase level (quick: the first and last\n" +
			"MiB, where partition tables and file system signatures live; zero: every byte, with\n" +
			"progress; secure: the drive's own erase, NVMe format with user data erase or ATA\n" +
			"security erase, refusing each disk that cannot, frozen ATA drives included), reports,\n" +
			"and powers off; the machine is then ready. A machine\n" +
			"cannot be claimed while it is releasing; a refused or failed erase leaves it\n" +
			"failed_releasing, to be released again.",
		Flags: append(workflowFlags(20*time.Minute),
			&cli.StringFlag{Name: "erase", Value: inventory.EraseQuick, Usage: "erase level: " + strings.Join(inventory.EraseLevels, ", ")},
		),
		Action: func(c *cli.Context) error {
			if err := inventory.ValidateErase(c.String("erase")); err != nil {
				return fmt.Errorf("--erase: %w", err)
			}
			return e.workflowRun(c, deployColumns, func(d *provision.Deployer, sel []provision.Selected, prog func(provision.Event)) []provision.Result {
				return d.Release(c.Context, machineIDs(sel), provision.ReleaseRequest{AllowReboot: c.Bool("allow-reboot"), Timeout: c.Duration("timeout"),
					Erase: c.String("erase"), Reason: c.String("reason"), Progress: prog})
			})
		},
	}
}

func commissionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "commission",
		Usage:     "PXE boot machines into the discovery agent through their BMCs until each is ready",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "Select machines by ID, serial or MAC, or with --where/--rack/--state/--tier/--all.\n" +
			"New, commissioning and failed_commissioning machines are commissioned; broken and ready\n" +
			"ones only when named by machine ID; a selection skips the others, a name refuses them.\n" +
			"Each machine's power is read through its BMC: one that is on fails before anything\n" +
			"changes unless --allow-reboot (then it is cycled). Each moves to commissioning, is set to\n" +
			"network boot and powered on; the agent checks the hardware and reports its facts, and\n" +
			"the boot server makes it ready. A machine whose BMC fails, or that has not reported by\n" +
			"--timeout, ends in failed_commissioning with the reason in its history. The command\n" +
			"exits non-zero if any machine failed.",
		Flags: workflowFlags(20 * time.Minute),
		Action: func(c *cli.Context) error {
			return e.workflowRun(c, commissionColumns, func(d *provision.Deployer, sel []provision.Selected, prog func(provision.Event)) []provision.Result {
				return d.Commission(c.Context, sel, provision.CommissionRequest{AllowReboot: c.Bool("allow-reboot"), Timeout: c.Duration("timeout"),
					Reason: c.String("reason"), Progress: prog})
			})
		},
	}
}

func machineIDs(sel []provision.Selected) []string {
	ids := make([]string, len(sel))
	for i, x := range sel {
		ids[i] = x.Machine.ID
	}
	return ids
}

func defaultOwner() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// readKeys reads an authorized_keys file: one key a line, comments and
// blank lines skipped.
func readKeys(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key: %w", err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--ssh-key %s: no key in the file", path)
	}
	return keys, nil
}

// workflowRun is the shell of deploy, release and commission: select,
// confirm, run with progress, print the summary (columns), and fail if any
// machine failed.
func (e *env) workflowRun(c *cli.Context, columns []string, run func(*provision.Deployer, []provision.Selected, func(provision.Event)) []provision.Result) error {
	name := commandPath(c)
	if c.Duration("timeout") <= 0 || c.Duration("bmc-timeout") <= 0 {
		return fmt.Errorf("%s: --timeout and --bmc-timeout want positive durations", name)
	}
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
	if len(sel) > confirmAbove && !c.Bool("yes") {
		if err := e.confirm(fmt.Sprintf("%s: this changes %d machines. Continue? [y/N] ", name, len(sel))); err != nil {
			return fmt.Errorf("%s: %d machines selected (more than %d): %w", name, len(sel), confirmAbove, err)
		}
	}
	cat, err := catalog(c)
	if err != nil {
		return err
	}
	d := &provision.Deployer{
		Store:  s,
		Images: cat,
		Logger: e.log,
		Fleet: &provision.Fleet{
			Inventory:  s,
			BMCRoots:   roots,
			Controller: &ipmi.Controller{Logger: e.log, Timeout: c.Duration("bmc-timeout")},
			Logger:     e.log,
			Bulk:       ipmi.BulkOptions{CallTimeout: c.Duration("bmc-timeout")},
		},
	}
	p := e.workflowProgress(name, len(sel))
	out := run(d, sel, p.event)
	p.finish()
	if err := e.printResults(out, columns); err != nil {
		return err
	}
	var failed []string
	for _, r := range out {
		if !r.OK() {
			failed = append(failed, r.Machine+" "+r.Step)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %d of %d machines failed: %s", name, len(failed), len(out), strings.Join(failed, ", "))
	}
	return nil
}

// workflowProgress shows one bar on a terminal (each machine counts 100,
// its agent's percent), or a line per event elsewhere, both on stderr.
type workflowProgress struct {
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	w    io.Writer
	name string
	pct  map[string]int
}

func (e *env) workflowProgress(name string, machines int) *workflowProgress {
	p := &workflowProgress{w: e.stderr, name: name, pct: map[string]int{}}
	if isTerminal(e.stderr) {
		p.bar = progressbar.NewOptions(100*machines,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription(name),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	return p
}

func (p *workflowProgress) event(ev provision.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pct := p.pct[ev.Machine]
	switch {
	case ev.Percent >= 0:
		pct = max(pct, ev.Percent)
	case ev.State == "deployed" || ev.State == "ready" || strings.HasPrefix(string(ev.State), "failed_"):
		pct = 100
	}
	delta := pct - p.pct[ev.Machine]
	p.pct[ev.Machine] = pct
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%s %s: %s", p.name, ev.Machine, ev.What))
		_ = p.bar.Add(delta)
		return
	}
	msg := ev.What
	if ev.Message != "" {
		msg += ": " + ev.Message
	}
	fmt.Fprintf(p.w, "%s %s [%s] %s\n", p.name, ev.Machine, ev.State, msg)
}

func (p *workflowProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// The summary columns of deploy and release, and of commission.
var (
	deployColumns     = []string{"machine", "hostname", "action", "state", "result", "step", "elapsed", "detail"}
	commissionColumns = []string{"machine", "serial", "bmc", "result", "state", "elapsed", "detail"}
)

// resultRow is r's cells for columns.
func resultRow(r provision.Result, columns []string) []string {
	row := make([]string, len(columns))
	for i, c := range columns {
		switch c {
		case "machine":
			row[i] = r.Machine
		case "hostname":
			row[i] = r.Hostname
		case "serial":
			row[i] = r.Serial
		case "bmc":
			row[i] = r.BMC
		case "action":
			row[i] = r.Action
		case "state":
			row[i] = string(r.State)
		case "result":
			row[i] = r.Result
			if !r.OK() {
				row[i] = "failed"
			}
		case "step":
			row[i] = r.Step
		case "elapsed":
			row[i] = r.Elapsed.Round(100 * time.Millisecond).String()
		case "detail":
			row[i] = r.Note
			if r.Error != "" {
				row[i] = strings.TrimPrefix(r.Error, "machine "+r.Machine+": ")
			}
		}
	}
	return row
}

// printResults writes the summary of deploy, release or commission.
func (e *env) printResults(out []provision.Result, columns []string) error {
	switch e.format {
	case "json":
		if out == nil {
			out = []provision.Result{}
		}
		return writeJSON(e.stdout, out)
	case "csv":
		cw := csv.NewWriter(e.stdout)
		cw.Write(columns)
		for _, r := range out {
			cw.Write(resultRow(r, columns))
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
	ok, skipped := 0, 0
	for _, r := range out {
		fmt.Fprintln(tw, strings.Join(resultRow(r, columns), "\t"))
		switch {
		case r.Result == "skipped":
			skipped++
		case r.OK():
			ok++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(e.stdout, "%d ok, %d skipped, %d failed\n", ok, skipped, len(out)-ok-skipped)
		return nil
	}
	fmt.Fprintf(e.stdout, "%d ok, %d failed\n", ok, len(out)-ok)
	return nil
}
