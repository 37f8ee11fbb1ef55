package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/fanout"
	"github.com/ironrack/ironrack/provision"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
)

// runArgsUsage marks a command whose arguments end with "-- CMD": the
// flags-first rule applies only before the "--" (flagsFirstEverywhere).
const runArgsUsage = "[ID...] -- CMD"

// fanoutFlags are the flags of every command that runs work across
// machines over SSH: `run`, and playbooks. The login flags are loginFlags.
func fanoutFlags() []cli.Flag {
	return append(append(selectionFlags(), loginFlags("")...),
		&cli.IntFlag{Name: "fanout", Aliases: []string{"f"}, Value: 64, Usage: "machines in flight at once"},
		&cli.StringFlag{Name: "batch", Usage: "batch sizes: N, P% (of the selection, rounded down, at least 1) or a list such as 1,5,20% whose last value repeats; the next batch starts when the last is done (default: one batch)"},
		&cli.IntFlag{Name: "max-fail", Usage: "failed machines a batch may have; more aborts the run (unreachable counts; with neither threshold any failure aborts)"},
		&cli.Float64Flag{Name: "max-fail-pct", Usage: "percentage of a batch that may fail; more aborts the run"},
		&cli.BoolFlag{Name: "abort-now", Usage: "on abort, cancel the machines in flight (default: they finish; no new one starts)"},
		&cli.DurationFlag{Name: "timeout", Usage: "deadline of the command on each machine, after login; the remote command is ended (default: none)"},
	)
}

func runCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a command on machines over SSH, in batches, stopping at a failure threshold",
		ArgsUsage: runArgsUsage,
		Description: "Select machines by ID, or with --where/--rack/--state/--tier; each is reached at its\n" +
			"inventory IP. Everything after -- is the command, run through the login shell as ssh runs it.\n" +
			"Host keys are checked strictly against those the inventory recorded (reported at first boot,\n" +
			"or `ironrack ssh-keys import`; --known-hosts FILE instead); a changed key is refused. A timeout,\n" +
			"an abort with --abort-now or Ctrl-C ends the remote command too. Identical output is folded into host ranges, then a\n" +
			"summary table; -o json gives every machine's full output. Exits non-zero when any machine failed.",
		Flags: append(fanoutFlags(),
			&cli.StringFlag{Name: "hosts-file", Usage: "run on the hosts listed in FILE instead of inventory machines: one per line, ADDR or NAME ADDR (ADDR is host or host:port; # comments)"}),
		Action: func(c *cli.Context) error {
			ids, cmd, err := splitCommand(e.args, c.Args().Slice())
			if err != nil {
				return err
			}
			var hosts []fanout.Host
			var ms []*inventory.Machine
			if f := c.String("hosts-file"); f != "" {
				hosts, err = hostsFile(f, ids, c)
			} else {
				ms, err = e.fanoutMachines(c, ids)
				if err == nil {
					hosts, err = hostsOf(commandPath(c), ms, c.String("user"), c.Int("port"))
				}
			}
			if err != nil {
				return err
			}
			plan, closeAuth, err := e.fanoutPlan(c, ms)
			if err != nil {
				return err
			}
			defer closeAuth()
			rep, err := e.runFanout(c, hosts, plan, func(string) string { return cmd }, fanout.Command(cmd))
			if rep == nil {
				return err
			}
			if perr := e.printRun(rep); perr != nil {
				return perr
			}
			if c.Context.Err() != nil {
				return fmt.Errorf("run: interrupted; %d of %d machines did not end ok", rep.Failed(), len(rep.Results))
			}
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			if n := rep.Failed(); n > 0 {
				return fmt.Errorf("run: %d of %d machines failed", n, len(rep.Results))
			}
			return nil
		},
	}
}

// splitCommand splits run's arguments at "--": the machine IDs before it,
// the command after it, untouched. raw is the whole command line (the flag
// parser drops a "--" that comes before any argument, so positional alone
// cannot tell).
func splitCommand(raw, positional []string) (ids []string, cmd string, err error) {
	i := slices.Index(raw, "--")
	if i < 0 || i == len(raw)-1 {
		return nil, "", errors.New("run: no command: give it after --, as in: ironrack run [flags] [ID...] -- CMD")
	}
	words := raw[i+1:]
	n := len(positional) - len(words)
	if n < 0 || !slices.Equal(positional[n:], words) {
		return nil, "", fmt.Errorf("run: cannot tell the machines from the command in %q: put flags first, then IDs, then -- CMD", strings.Join(raw, " "))
	}
	ids = positional[:n]
	if len(ids) > 0 && ids[len(ids)-1] == "--" {
		ids = ids[:len(ids)-1]
	}
	for _, id := range ids {
		if strings.HasPrefix(id, "-") {
			return nil, "", fmt.Errorf("run: flag %s comes after the arguments; put flags first: ironrack run [flags] %s", id, runArgsUsage)
		}
	}
	return ids, strings.Join(words, " "), nil
}

// fanoutMachines resolves the selection (IDs, or --where/--rack/--state/
// --tier) to machine records; playbooks need the records for templates.
func (e *env) fanoutMachines(c *cli.Context, ids []string) ([]*inventory.Machine, error) {
	name := commandPath(c)
	byFlags := false
	for _, f := range []string{"where", "state", "rack", "tier"} {
		byFlags = byFlags || c.String(f) != ""
	}
	switch {
	case len(ids) > 0 && byFlags:
		return nil, fmt.Errorf("%s: name machines or select them with --where/--rack/--state/--tier, not both", name)
	case len(ids) == 0 && !byFlags:
		return nil, fmt.Errorf("%s: name machines by ID, or select them with --where/--rack/--state/--tier", name)
	}
	q, err := queryFrom(c)
	if err != nil {
		return nil, err
	}
	s, err := e.store(c, false)
	if err != nil {
		return nil, err
	}
	sel, err := provision.Select(c.Context, s, ids, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("%s: no machine matches", name)
	}
	ms := make([]*inventory.Machine, len(sel))
	for i, x := range sel {
		ms[i] = x.Machine
	}
	return ms, nil
}

// hostsFile reads --hosts-file: hosts outside the inventory.
func hostsFile(path string, ids []string, c *cli.Context) ([]fanout.Host, error) {
	if len(ids) > 0 || c.String("where") != "" || c.String("tier") != "" || c.String("rack") != "" || c.String("state") != "" {
		return nil, errors.New("run: --hosts-file names the hosts: give no machine IDs nor --where/--rack/--state/--tier with it")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--hosts-file: %w", err)
	}
	var hosts []fanout.Host
	seen := map[string]int{}
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 2 {
			return nil, fmt.Errorf("%s:%d: %d fields: want ADDR or NAME ADDR", path, i+1, len(f))
		}
		addr := f[len(f)-1]
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(c.Int("port")))
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("%s:%d: address %q: want host or host:port", path, i+1, f[len(f)-1])
		}
		name := f[0]
		if at, ok := seen[name]; ok {
			return nil, fmt.Errorf("%s:%d: host %s again (first on line %d)", path, i+1, name, at)
		}
		seen[name] = i + 1
		hosts = append(hosts, fanout.Host{ID: name, Addr: addr, User: c.String("user")})
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("--hosts-file %s: no hosts", path)
	}
	return hosts, nil
}

// hostsOf turns machines into hosts at IP:port, sorted by ID.
func hostsOf(name string, ms []*inventory.Machine, user string, port int) ([]fanout.Host, error) {
	var hosts []fanout.Host
	var noIP []string
	for _, m := range ms {
		if m.IP == "" {
			noIP = append(noIP, m.ID)
			continue
		}
		hosts = append(hosts, fanout.Host{ID: m.ID, Addr: net.JoinHostPort(m.IP, strconv.Itoa(port)), User: user})
	}
	if len(noIP) > 0 {
		return nil, fmt.Errorf("%s: %d machines have no IP address in the inventory (not booted or deployed yet?): %s; leave them out of the selection",
			name, len(noIP), strings.Join(noIP, ", "))
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].ID < hosts[j].ID })
	return hosts, nil
}

// fanoutPlan reads the fan-out flags into a plan: the login of machines
// ms (sshLogin: host keys as the inventory recorded them, or
// --known-hosts), batches and thresholds. ms nil means `run --hosts-file`:
// hosts outside the inventory, checked against --known-hosts (default
// ~/.ssh/known_hosts). Call the returned func when done.
func (e *env) fanoutPlan(c *cli.Context, ms []*inventory.Machine) (fanout.Plan, func(), error) {
	nothing := func() {}
	var p fanout.Plan
	if c.Int("fanout") < 1 {
		return p, nothing, fmt.Errorf("--fanout %d: want 1 or more", c.Int("fanout"))
	}
	if c.Int("max-fail") < 0 {
		return p, nothing, fmt.Errorf("--max-fail %d: want 0 or more", c.Int("max-fail"))
	}
	if pct := c.Float64("max-fail-pct"); pct < 0 || pct > 100 {
		return p, nothing, fmt.Errorf("--max-fail-pct %v: want 0 to 100", pct)
	}
	if c.Duration("timeout") < 0 {
		return p, nothing, errors.New("--timeout: want a positive duration")
	}
	batches, err := fanout.ParseBatch(c.String("batch"))
	if err != nil {
		return p, nothing, fmt.Errorf("--batch: %w", err)
	}
	var store *inventory.Store
	if ms != nil && c.String("known-hosts") == "" {
		if store, err = e.store(c, false); err != nil {
			return p, nothing, err
		}
	}
	var outside ssh.HostKeyCallback
	if ms == nil && c.String("known-hosts") == "" {
		if outside, err = defaultKnownHosts(); err != nil {
			return p, nothing, err
		}
	}
	login, err := newLogin(c, store, outside)
	if err != nil {
		return p, nothing, err
	}
	opts, err := login.Options(c.Context, ms)
	if err != nil {
		login.Close()
		return p, nothing, err
	}
	return fanout.Plan{
		Fanout:   c.Int("fanout"),
		Batches:  batches,
		Limit:    fanout.Limit{MaxFail: c.Int("max-fail"), MaxFailPct: c.Float64("max-fail-pct")},
		AbortNow: c.Bool("abort-now"),
		Timeout:  c.Duration("timeout"),
		Dial:     opts,
	}, login.Close, nil
}

// runFanout runs work with a progress bar on a terminal. When the command's
// context ends (Ctrl-C), it first prints what each host in flight is doing
// (doing(machine ID): the command, or a playbook's current step), then
// cancels them.
func (e *env) runFanout(c *cli.Context, hosts []fanout.Host, plan fanout.Plan, doing func(id string) string, work fanout.Work) (*fanout.Report, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	defer cancel()
	var mu sync.Mutex
	inflight := map[string]time.Time{}
	var bar *progressbar.ProgressBar
	if isTerminal(e.stderr) {
		bar = progressbar.NewOptions(len(hosts),
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription(commandPath(c)),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(50*time.Millisecond),
		)
	}
	plan.OnStart = func(h fanout.Host) {
		mu.Lock()
		inflight[h.ID] = time.Now()
		mu.Unlock()
	}
	plan.OnDone = func(r fanout.Result) {
		mu.Lock()
		delete(inflight, r.Host.ID)
		if bar != nil {
			_ = bar.Add(1)
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(c.Context, func() {
		mu.Lock()
		if bar != nil {
			_ = bar.Clear()
		}
		ids := make([]string, 0, len(inflight))
		for id := range inflight {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fmt.Fprintf(e.stderr, "interrupted: %d machines in flight, cancelling them:\n", len(ids))
		for _, id := range ids {
			fmt.Fprintf(e.stderr, "  %s  %s  running for %s\n", id, doing(id), time.Since(inflight[id]).Round(time.Millisecond))
		}
		mu.Unlock()
		cancel()
	})
	defer stop()
	rep, err := fanout.Run(ctx, hosts, plan, work)
	if bar != nil {
		_ = bar.Finish()
	}
	return rep, err
}

// runJSON is one machine in `run -o json`.
type runJSON struct {
	ID      string  `json:"id"`
	Addr    string  `json:"addr"`
	Batch   int     `json:"batch"`
	Result  string  `json:"result"`
	Exit    int     `json:"exit"`
	Seconds float64 `json:"seconds"`
	Output  string  `json:"output"`
	Error   string  `json:"error,omitempty"`
}

// printRun writes a run's outcome: in a table, the folded output (as
// dshbak -c), then one row per machine and a count; -o json gives every
// machine's full output; -o csv the rows.
func (e *env) printRun(rep *fanout.Report) error {
	switch e.format {
	case "json":
		out := struct {
			Machines []runJSON `json:"machines"`
			Batches  []int     `json:"batches"`
			Aborted  string    `json:"aborted,omitempty"`
		}{Machines: []runJSON{}, Batches: rep.Batches, Aborted: rep.Aborted}
		for _, r := range rep.Results {
			out.Machines = append(out.Machines, runJSON{ID: r.Host.ID, Addr: r.Host.Addr, Batch: r.Batch, Result: string(r.Status),
				Exit: r.Exit, Seconds: r.Duration.Seconds(), Output: string(r.Output), Error: r.Error})
		}
		return writeJSON(e.stdout, out)
	case "csv":
		cw := csv.NewWriter(e.stdout)
		cw.Write([]string{"machine", "exit", "duration", "result", "batch", "error"})
		for _, r := range rep.Results {
			cw.Write([]string{r.Host.ID, exitText(r), r.Duration.Round(time.Millisecond).String(), string(r.Status), strconv.Itoa(r.Batch), r.Error})
		}
		cw.Flush()
		return cw.Error()
	}
	for _, g := range fanout.Fold(rep.Results) {
		rule := strings.Repeat("-", max(16, min(len(g.Hosts), 78)))
		fmt.Fprintf(e.stdout, "%s\n%s\n%s\n", rule, g.Hosts, rule)
		e.stdout.Write(g.Output)
		if len(g.Output) > 0 && g.Output[len(g.Output)-1] != '\n' {
			io.WriteString(e.stdout, "\n")
		}
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tEXIT\tDURATION\tRESULT")
	count := map[fanout.Status]int{}
	for _, r := range rep.Results {
		res := string(r.Status)
		if r.Status != fanout.StatusOK && r.Status != fanout.StatusFailed && r.Error != "" {
			res += ": " + strings.TrimPrefix(strings.TrimPrefix(r.Error, "machine "+r.Host.ID+": "), "machine "+r.Host.ID+" ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Host.ID, exitText(r), r.Duration.Round(time.Millisecond), res)
		count[r.Status]++
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, s := range []fanout.Status{fanout.StatusOK, fanout.StatusFailed, fanout.StatusUnreachable, fanout.StatusTimeout,
		fanout.StatusError, fanout.StatusCancelled, fanout.StatusSkipped} {
		if count[s] > 0 || s == fanout.StatusOK {
			parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
		}
	}
	fmt.Fprintln(e.stdout, strings.Join(parts, ", "))
	if rep.Aborted != "" {
		fmt.Fprintf(e.stdout, "aborted: %s\n", rep.Aborted)
	}
	return nil
}

func exitText(r fanout.Result) string {
	if r.Exit < 0 {
		return "-"
	}
	return strconv.Itoa(r.Exit)
}
