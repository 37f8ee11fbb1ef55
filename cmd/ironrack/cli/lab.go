package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/internal/lab"
)

// labCommand is `ironrack lab`: a virtual rack on this machine (docs/lab.md).
func labCommand(e *env) *cli.Command {
	name := func() cli.Flag {
		return &cli.StringFlag{Name: "name", Value: "lab", EnvVars: []string{"IRONRACK_LAB"}, Usage: "the lab's name (labs of different names coexist)"}
	}
	noArgs := func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("lab %s: unexpected argument %q (all settings are flags)", c.Command.Name, c.Args().First())
		}
		return lab.CheckName(c.String("name"))
	}
	return &cli.Command{
		Name:  "lab",
		Usage: "a virtual rack on this machine: QEMU machines behind ipmi_sim (or Redfish) BMCs, Consul and the boot server, in a namespace the host reaches",
		Description: "`lab up` starts it and prints its shell exports (as `lab env` does): eval \"$(ironrack lab up)\".\n" +
			"It needs root, and the discovery image built into --data-dir. See docs/lab.md.",
		Subcommands: []*cli.Command{{
			Name:  "up",
			Usage: "start a lab and print its exports once Consul, every BMC and the boot server answer",
			UsageText: "ironrack lab up [--name N] [--machines 5] [--racks 2] [--uefi 1] [--redfish 0] [--redfish-quirk N=QUIRK ...] [--disks N=GIB[,GIB...] ...] [--data-dir DIR] [--consul-binary FILE] [--timeout 2m]\n" +
				"   eval \"$(ironrack lab up)\"",
			Description: "Machines are powered off until powered on through their BMCs (addresses, protocols and passwords are in\n" +
				"the rack sheet the lab writes, IRONRACK_LAB_SHEET). With --redfish K the first K machines have Redfish BMCs\n" +
				"over TLS, their certificates signed by the lab's CA (IRONRACK_BMC_CA_FILE). A lab of the same name must be\n" +
				"down; one whose supervisor died is cleaned up first.",
			Flags: []cli.Flag{
				name(),
				&cli.IntFlag{Name: "machines", Value: 5, Usage: fmt.Sprintf("QEMU machines, 0 to %d", lab.MaxMachines)},
				&cli.IntFlag{Name: "racks", Value: 2, Usage: "racks the machines are spread over"},
				&cli.IntFlag{Name: "uefi", Value: 1, Usage: "how many of the machines boot UEFI (OVMF); the others BIOS (default: 1, or 0 with --machines 0)"},
				&cli.IntFlag{Name: "redfish", Usage: "how many of the machines (the first ones) have a Redfish BMC instead of ipmi_sim"},
				&cli.StringSliceFlag{Name: "redfish-quirk", Usage: "N=QUIRK: machine N's Redfish BMC misbehaves: slow-power, late-power, revert-boot, ignore-reset or stall (docs/bmc.md); repeatable"},
				&cli.StringSliceFlag{Name: "disks", Usage: "N=GIB[,GIB...]: machine N's disks, their sizes in GiB (sparse files), in place of the lab's variety, e.g. 3=4,4 for two equal disks to mirror; repeatable"},
				&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the boot server's data dir, holding the discovery image (ironrack images build discovery)"},
				&cli.StringFlag{Name: "consul-binary", EnvVars: []string{"IRONRACK_CONSUL_BIN"},
					Usage: "the consul binary the lab runs (default: consul on PATH, else the pinned one scripts/setup built)"},
				&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long to wait for the lab to be ready"},
			},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("lab up: find the ironrack binary: %w", err)
				}
				consul, err := consulBinary(c.String("consul-binary"))
				if err != nil {
					return err
				}
				dataDir, err := filepath.Abs(c.String("data-dir"))
				if err != nil {
					return fmt.Errorf("--data-dir: %w", err)
				}
				quirks, err := parseQuirks(c.StringSlice("redfish-quirk"))
				if err != nil {
					return err
				}
				disks, err := parseDisks(c.StringSlice("disks"))
				if err != nil {
					return err
				}
				cfg := lab.Config{Name: c.String("name"), Machines: c.Int("machines"), Racks: c.Int("racks"), UEFI: c.Int("uefi"),
					Redfish: c.Int("redfish"), RedfishQuirks: quirks, Disks: disks, DataDir: dataDir, Binary: exe, Consul: consul}
				if !c.IsSet("uefi") {
					cfg.UEFI = min(cfg.UEFI, cfg.Machines)
				}
				if err := cfg.Check(); err != nil {
					return err
				}
				if os.Geteuid() != 0 {
					return errors.New("lab up: needs root (it creates a network namespace, a veth and tap devices)")
				}
				start := time.Now()
				sup := []string{exe, "--log-level", "info", "lab", "supervise", "--name", cfg.Name}
				cfg, err = lab.Up(c.Context, cfg, sup, c.Duration("timeout"))
				if err != nil {
					return err
				}
				dir, _ := lab.Dir(cfg.Name)
				s := lab.Info(cfg, dir)
				fmt.Fprintf(e.stderr, "lab %s is up in %v: %d machines on %d racks (%d UEFI, %d Redfish BMCs), powered off; Consul %s, boot server %s, subnet %s\n",
					cfg.Name, time.Since(start).Round(100*time.Millisecond), cfg.Machines, cfg.Racks, cfg.UEFI, cfg.Redfish, s.Consul, s.Boot, s.Subnet)
				fmt.Fprintf(e.stderr, "rack sheet: %s (ironrack inventory import \"$IRONRACK_LAB_SHEET\")\n", s.Sheet)
				printEnv(e.stdout, s)
				return nil
			},
		}, {
			Name:      "env",
			Usage:     "print a lab's shell exports: eval \"$(ironrack lab env)\"",
			UsageText: "ironrack lab env [--name N]",
			Flags:     []cli.Flag{name()},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				cfg, dir, err := lab.Load(c.String("name"))
				if err != nil {
					return err
				}
				printEnv(e.stdout, lab.Info(cfg, dir))
				return nil
			},
		}, {
			Name:      "status",
			Usage:     "show a lab's processes and machines: BMC, power (asked over IPMI), VM and inventory state",
			UsageText: "ironrack [-o json] lab status [--name N]",
			Flags:     []cli.Flag{name()},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				s, err := lab.Query(c.Context, c.String("name"))
				if err != nil {
					return err
				}
				if e.format == "json" {
					return writeJSON(e.stdout, s)
				}
				printLabStatus(e.stdout, s)
				return nil
			},
		}, {
			Name:      "down",
			Usage:     "stop a lab (by PID, only processes it started) and remove its namespace, veth, taps and files; idempotent",
			UsageText: "ironrack lab down [--name N]",
			Flags:     []cli.Flag{name()},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				if err := lab.Down(c.String("name")); err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "lab %s is down\n", c.String("name"))
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list the labs on this machine",
			Action: func(c *cli.Context) error {
				names, err := lab.Labs()
				if err != nil {
					return err
				}
				for _, n := range names {
					dir, _ := lab.Dir(n)
					state := "dead (lab down --name " + n + " cleans it up)"
					if sup, ok := lab.Supervising(dir); ok {
						state = fmt.Sprintf("up (supervisor pid %d)", sup.PID)
					}
					fmt.Fprintf(e.stdout, "%s\t%s\n", n, state)
				}
				return nil
			},
		}, {
			Name:   "redfish-bmc",
			Usage:  "run one lab machine's Redfish BMC from its directory (the lab's supervisor starts it)",
			Hidden: true,
			Flags:  []cli.Flag{&cli.StringFlag{Name: "dir", Required: true, Usage: "the machine's directory in the lab's state directory"}},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("lab redfish-bmc: unexpected argument %q", c.Args().First())
				}
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
				defer stop()
				srv, err := lab.RedfishBMC(c.String("dir"), e.log.With(slog.String("bmc", c.String("dir"))))
				if err != nil {
					return err
				}
				return srv.Serve(ctx)
			},
		}, {
			Name:   "supervise",
			Usage:  "run a lab's supervisor (lab up starts it)",
			Hidden: true,
			Flags:  []cli.Flag{name()},
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				// Down stops the supervisor with SIGTERM; its session has no
				// terminal, so SIGHUP means nothing to it.
				signal.Ignore(syscall.SIGHUP)
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
				defer stop()
				s := &lab.Supervisor{Name: c.String("name"), Logger: e.log.With(slog.String("lab", c.String("name")))}
				return s.Serve(ctx)
			},
		}},
	}
}

// parseQuirks reads --redfish-quirk N=QUIRK values (the lab checks N and
// QUIRK against --redfish).
func parseQuirks(vals []string) (map[int]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	q := map[int]string{}
	for _, v := range vals {
		n, quirk, ok := strings.Cut(v, "=")
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return nil, fmt.Errorf("--redfish-quirk %q: want N=QUIRK, N a machine's index (1 to --redfish)", v)
		}
		if _, dup := q[i]; dup {
			return nil, fmt.Errorf("--redfish-quirk %q: machine %d given twice", v, i)
		}
		q[i] = strings.TrimSpace(quirk)
	}
	return q, nil
}

// parseDisks reads --disks N=GIB[,GIB...] values (lab.Config.Check
// checks the numbers' ranges).
func parseDisks(vals []string) (map[int][]int, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[int][]int{}
	for _, v := range vals {
		n, sizes, ok := strings.Cut(v, "=")
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return nil, fmt.Errorf("--disks %q: want N=GIB[,GIB...], N a machine's index (1 to --machines)", v)
		}
		if _, dup := out[i]; dup {
			return nil, fmt.Errorf("--disks %q: machine %d given twice", v, i)
		}
		var gib []int
		for _, s := range strings.Split(sizes, ",") {
			g, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--disks %q: %q is not a size in GiB (a whole number)", v, s)
			}
			gib = append(gib, g)
		}
		out[i] = gib
	}
	return out, nil
}

// printEnv writes a lab's exports, each value quoted for the shell.
func printEnv(w io.Writer, s lab.Status) {
	for _, kv := range s.Env() {
		fmt.Fprintf(w, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printLabStatus(w io.Writer, s lab.Status) {
	state := "up"
	switch {
	case !s.Up:
		state = "dead: its supervisor is not running (ironrack lab down --name " + s.Name + " cleans it up)"
	case !s.Ready:
		state = "starting"
	}
	fmt.Fprintf(w, "lab %s: %s\n", s.Name, state)
	if s.Error != "" {
		fmt.Fprintf(w, "error: %s\n", s.Error)
	}
	fmt.Fprintf(w, "consul %s  boot %s  subnet %s (host %s on %s)  netns %s\n", s.Consul, s.Boot, s.Subnet, s.HostIP, s.HostLink, s.NS)
	fmt.Fprintf(w, "sheet %s\nstate %s\n", s.Sheet, s.Dir)
	for _, p := range s.Processes {
		if !strings.HasPrefix(p.Role, "bmc-") && !strings.HasPrefix(p.Role, "qemu-") {
			fmt.Fprintf(w, "  %-10s pid %-7d %s\n", p.Role, p.PID, alive(p.Alive))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tRACK\tSLOT\tMAC\tBMC\tPROTOCOL\tBMC PID\tPOWER\tVM PID\tFIRMWARE\tMEM\tCPUS\tDISKS\tSTATE")
	for _, m := range s.Machines {
		bmcPID := fmt.Sprintf("%d", m.BMCPID)
		if !m.BMCAlive {
			bmcPID += " (dead)"
		}
		vm := "-"
		if m.VMRunning {
			vm = fmt.Sprint(m.VMPID)
		}
		disks := make([]string, len(m.DisksGiB))
		for i, d := range m.DisksGiB {
			disks[i] = fmt.Sprintf("%dG", d)
		}
		st := m.State
		if st == "" {
			st = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%dM\t%d\t%s\t%s\n", m.Serial, m.Rack, m.Slot, m.MAC, m.BMC, m.Protocol(), bmcPID,
			m.Power, vm, m.Firmware, m.MemMiB, m.CPUs, strings.Join(disks, ","), st)
	}
	tw.Flush()
}

func alive(ok bool) string {
	if ok {
		return "running"
	}
	return "dead"
}
