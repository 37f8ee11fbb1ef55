// Command ipmibench compares power status of many ipmi_sim BMCs through the
// real `ironrack power status --all` CLI (machines and sealed credentials
// read from the inventory in a dev Consul) with FreeIPMI's ipmipower --stat
// (the HPC standard) and a sequential ipmitool loop, in one run. It is not
// part of CI; see run.sh and RESULTS.md.
//
// It needs root (sims bind 127.0.9.X:623), the openipmi, freeipmi-tools and
// ipmitool packages, and the consul binary that scripts/setup builds.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"golang.org/x/sync/errgroup"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ipmibench:", err)
		os.Exit(1)
	}
}

type client struct {
	name string
	fn   func(ctx context.Context) error
}

func run() error {
	n := flag.Int("n", 200, "number of sims (127.0.9.1 upwards, consecutive addresses, at most 5000)")
	runs := flag.Int("runs", 5, "rounds; each round runs every client once, interleaved")
	warmup := flag.Int("warmup", 1, "uncounted rounds first (the sims' first sessions are slow)")
	bin := flag.String("ironrack", "", "the ironrack binary (run.sh builds ./cmd/ironrack); required")
	conc := flag.Int("concurrency", 0, "ironrack --concurrency (0: the CLI's default)")
	bulk := flag.Bool("bulk", true, "also time the inventory-free ipmi.Bulk client (`ipmibench -client`) as a secondary row")
	phases := flag.Int("phases", 5, "after the rounds, time the CLI's phases this many times each (0: skip)")
	clientMode := flag.Bool("client", false, "internal: run one ipmi.Bulk status over -n sims (no inventory) and exit")
	timeline := flag.Int("timeline", 5, "after the rounds, run the CLI this many times under strace (connect only) to time its phases from inside (0: skip)")
	keepGoing := flag.Bool("keep-going", false, "report a client's failed round (a BMC missed) and go on, instead of stopping")
	fanout := flag.Int("ipmipower-fanout", 0, "ipmipower --fanout (0: its default; 64 is ironrack's --concurrency default)")
	skipIpmitool := flag.Bool("skip-ipmitool", false, "skip the slow sequential ipmitool loop")
	flag.Parse()
	if *n < 1 || *n > 5000 {
		return errors.New("-n must be 1..5000")
	}
	if *runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	if *clientMode {
		return bulkStatus(context.Background(), *n, *conc)
	}
	if *bin == "" {
		return errors.New("-ironrack BINARY is required (run.sh builds ./cmd/ironrack)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Stop the sims and Consul (by PID, in the defers) on ^C too.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "ipmibench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	sims, err := ipmisim.StartProcesses(ipmisim.Options{N: *n, First: netip.MustParseAddr("127.0.9.1"), Dir: dir, PowerOn: true, ReadyTimeout: 60*time.Second + time.Duration(*n)*100*time.Millisecond})
	defer ipmisim.StopAll(sims)
	if err != nil {
		return err
	}
	fmt.Printf("started %d sims in %v (GOMAXPROCS %d)\n", *n, time.Since(start).Round(time.Millisecond), runtime.GOMAXPROCS(0))

	start = time.Now()
	agent, err := consuldev.Start(ctx, consuldev.Options{})
	if err != nil {
		return err
	}
	defer agent.Stop()
	fmt.Printf("started consul agent -dev on %s (pid %d) in %v\n", agent.Addr, agent.PID(), time.Since(start).Round(time.Millisecond))

	// The inventory: one machine per sim, its password sealed under the
	// bench's own key file (created by the first command that needs it).
	keyFile := filepath.Join(dir, "ironrack.key")
	global := []string{"--consul", agent.Addr, "--key-file", keyFile}
	sheet := filepath.Join(dir, "rack-sheet.csv")
	if err := writeSheet(sheet, sims); err != nil {
		return err
	}
	start = time.Now()
	if out, err := exec.CommandContext(ctx, *bin, append(global, "inventory", "import", sheet)...).CombinedOutput(); err != nil {
		return fmt.Errorf("ironrack inventory import: %w: %s", err, out)
	}
	fmt.Printf("imported %d machines (ironrack inventory import) in %v\n", *n, time.Since(start).Round(time.Millisecond))

	// ipmipower reads the password from a config file, not argv.
	conf := filepath.Join(dir, "ipmipower.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("username %s\npassword %s\n", sims[0].Username, sims[0].Password)), 0o600); err != nil {
		return err
	}

	statusArgs := append(slices.Clone(global), "-o", "json", "power", "status", "--all")
	if *conc > 0 {
		statusArgs = append(statusArgs, "--concurrency", strconv.Itoa(*conc))
	}
	clients := []client{
		{"ironrack power status --all", func(ctx context.Context) error { return cliStatus(ctx, *bin, statusArgs, *n) }},
		{"ipmipower --stat", func(ctx context.Context) error { return ipmipower(ctx, *n, conf, *fanout) }},
	}
	if *bulk {
		clients = append(clients, client{"ipmi.Bulk only (no inventory; secondary)", func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, self, "-client", "-n", strconv.Itoa(*n), "-concurrency", strconv.Itoa(*conc)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}})
	}
	fast := len(clients) // these rotate; the ipmitool loop goes last
	if !*skipIpmitool {
		clients = append(clients, client{"ipmitool sequential loop", func(ctx context.Context) error { return ipmitoolLoop(ctx, sims) }})
	}

	times := make([][]time.Duration, len(clients))
	var counted [][3]time.Duration // cliSplits of the counted rounds
	for r := -*warmup; r < *runs; r++ {
		var order []int
		for i := range fast { // rotate who goes first
			order = append(order, (i+r+*warmup)%fast)
		}
		if len(clients) > fast && r >= 0 {
			order = append(order, fast) // the ipmitool loop needs no warm-up
		}
		for _, i := range order {
			c := clients[i]
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			t0 := time.Now()
			err := c.fn(cctx)
			d := time.Since(t0)
			cancel()
			if err != nil && !*keepGoing {
				return fmt.Errorf("round %d, %s: %w", r+1, c.name, err)
			}
			if err != nil {
				// -keep-going: a round where a client missed BMCs is
				// reported and not counted.
				fmt.Printf("round %d: %-42s %s FAILED (not counted): %.300s\n", r+1, c.name, ms(d), err)
				continue
			}
			if r < 0 {
				fmt.Printf("warm-up:  %-42s %s\n", c.name, ms(d))
				continue
			}
			times[i] = append(times[i], d)
			if i == 0 {
				counted = append(counted, cliSplits[len(cliSplits)-1])
			}
			fmt.Printf("round %d: %-42s %s\n", r+1, c.name, ms(d))
		}
	}

	fmt.Printf("\npower status of %d ipmi_sim BMCs, %d rounds (median, min, max):\n\n", *n, *runs)
	fmt.Println("| client | median | min | max | median vs ipmipower |")
	fmt.Println("|---|---|---|---|---|")
	base := median(times[1])
	for i, c := range clients {
		m := median(times[i])
		fmt.Printf("| %s | %s | %s | %s | %.2f× |\n", c.name, ms(m), ms(slices.Min(times[i])), ms(slices.Max(times[i])), float64(m)/float64(base))
	}
	split := func(k int) []time.Duration {
		var ds []time.Duration
		for _, c := range counted {
			ds = append(ds, c[k])
		}
		return ds
	}
	first, last, exit := split(0), split(1), split(2)
	fmt.Printf("\nironrack power status --all, from its start (median of the %d rounds): first progress line %s, last %s, exit %s\n",
		len(counted), ms(median(first)), ms(median(last)), ms(median(exit)))
	fmt.Printf("ironrack retried %d BMC calls over all its runs\n", cliRetried)
	if *phases > 0 {
		if err := phaseTimes(ctx, *phases, *bin, global, agent.Addr, keyFile, *n); err != nil {
			return err
		}
	}
	if *timeline > 0 {
		progs := [][]string{append([]string{*bin}, statusArgs...)}
		if *bulk {
			progs = append(progs, []string{self, "-client", "-n", strconv.Itoa(*n), "-concurrency", strconv.Itoa(*conc)})
		}
		return straceTimeline(ctx, *timeline, dir, progs, agent.Addr)
	}
	return nil
}

// writeSheet writes a rack sheet with one machine per sim.
func writeSheet(path string, sims []*ipmisim.BMC) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"rack", "slot", "serial", "bmc_address", "bmc_username", "bmc_password"})
	for i, b := range sims {
		w.Write([]string{fmt.Sprintf("b%d", i/40+1), strconv.Itoa(i%40 + 1), fmt.Sprintf("SIM%04d", i+1), b.Addr.String(), b.Username, b.Password})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cliStatus runs one fresh `ironrack … -o json power status --all` and
// checks its exit status and that all n machines report on.
func cliStatus(ctx context.Context, bin string, args []string, n int) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr := &stampWriter{t0: time.Now()}
	cmd.Stderr = stderr // a progress line per machine (not a terminal)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%w: %s", err, tail(stderr.b.String()))
	}
	cliSplits = append(cliSplits, [3]time.Duration{stderr.first, stderr.last, time.Since(stderr.t0)})
	var res []struct {
		Machine, BMC, Result, After string
		Attempts                    int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("parse -o json: %w", err)
	}
	on := 0
	for _, r := range res {
		if r.Result == "ok" && r.After == string(ipmi.StateOn) {
			on++
		}
		cliRetried += max(r.Attempts-1, 0)
	}
	if on != n || len(res) != n {
		return fmt.Errorf("ironrack power status: %d of %d on (%d outcomes)", on, n, len(res))
	}
	return nil
}

// cliSplits are, per CLI run, when its first and last progress line
// arrived and when it exited, from its start.
var cliSplits [][3]time.Duration

// cliRetried counts the CLI's retried BMC calls over all its runs.
var cliRetried int

// stampWriter keeps the CLI's stderr and when its first and last writes
// arrived.
type stampWriter struct {
	t0          time.Time
	first, last time.Duration
	b           strings.Builder
}

func (w *stampWriter) Write(p []byte) (int, error) {
	d := time.Since(w.t0)
	if w.b.Len() == 0 {
		w.first = d
	}
	w.last = d
	return w.b.Write(p)
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// bulkStatus is the inventory-free path: a fresh Controller (no provider
// cache) and ipmi.Bulk over all targets with credentials in memory.
func bulkStatus(ctx context.Context, n, conc int) error {
	ctl := &ipmi.Controller{}
	var ts []ipmi.Target
	for i := range n {
		ts = append(ts, ipmi.Target{ID: fmt.Sprintf("sim%d", i), Credentials: ipmi.Credentials{
			Host: simHost(i), Username: "admin", Password: "secret"}})
	}
	res := ipmi.Bulk(ctx, ts, ipmi.BulkOptions{Concurrency: conc}, func(ctx context.Context, t ipmi.Target) (ipmi.PowerState, error) {
		return ctl.PowerStatus(ctx, t.Credentials)
	})
	for _, r := range res {
		if r.Err != nil || r.Value != ipmi.StateOn {
			return fmt.Errorf("%s: %s, %v", r.Target.Credentials.Host, r.Value, r.Err)
		}
	}
	return nil
}

// phaseTimes splits the CLI's time into its parts, each timed reps times
// (median, min, max): a bare process start, a process that also lists the
// inventory, and, in this process, the inventory calls that
// `power status --all` makes before it reaches a BMC.
func phaseTimes(ctx context.Context, reps int, bin string, global []string, addr, keyFile string, n int) error {
	cc, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		return err
	}
	sealer, err := inventory.LoadKeyFile(keyFile, false)
	if err != nil {
		return err
	}
	s := inventory.New(cc, inventory.Config{Sealer: sealer})
	var machines []*inventory.Machine
	phases := []client{
		{"process: `ironrack --help` (start, no Consul)", func(ctx context.Context) error {
			return exec.CommandContext(ctx, bin, "--help").Run()
		}},
		{"process: `ironrack -o json inventory list` (start + list)", func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, bin, append(slices.Clone(global), "-o", "json", "inventory", "list")...).Output()
			if err == nil && strings.Count(string(out), `"serial"`) < n {
				err = fmt.Errorf("inventory list: fewer than %d machines", n)
			}
			return err
		}},
		{"in-process: Store.List (catalog + record txns)", func(ctx context.Context) error {
			machines, err = s.List(ctx, inventory.Query{})
			if err == nil && len(machines) != n {
				err = fmt.Errorf("list: %d machines", len(machines))
			}
			return err
		}},
		{"in-process: Store.Credential ×n, 16 at once (as Fleet.prepare)", func(ctx context.Context) error {
			var g errgroup.Group
			g.SetLimit(16)
			for _, m := range machines {
				g.Go(func() error { _, err := s.Credential(ctx, m); return err })
			}
			return g.Wait()
		}},
		{"in-process: Txn KVGetOrEmpty of the n creds keys, 128 per txn + Open ×n", func(ctx context.Context) error {
			got := 0
			for start := 0; start < len(machines); start += 128 {
				batch := machines[start:min(start+128, len(machines))]
				ops := make(api.TxnOps, len(batch))
				for i, m := range batch {
					ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: "ironrack/creds/" + m.BMC.CredentialRef}}
				}
				ok, resp, _, err := cc.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
				if err != nil || !ok {
					return fmt.Errorf("creds txn: %v %v", err, resp)
				}
				for _, r := range resp.Results {
					if _, err := sealer.Open(r.KV.Value); err != nil {
						return err
					}
					got++
				}
			}
			if got != n {
				return fmt.Errorf("creds txn: %d values", got)
			}
			return nil
		}},
		{"in-process: one KV list of creds/ + Open ×n", func(ctx context.Context) error {
			kvs, _, err := cc.KV().List("ironrack/creds/", (&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				if _, err := sealer.Open(kv.Value); err != nil {
					return err
				}
			}
			if len(kvs) != n {
				return fmt.Errorf("creds list: %d keys", len(kvs))
			}
			return nil
		}},
	}
	fmt.Printf("\nwhere the CLI's time goes (%d reps each; median, min, max):\n\n", reps)
	fmt.Println("| phase | median | min | max |")
	fmt.Println("|---|---|---|---|")
	for _, p := range phases {
		var ds []time.Duration
		for range reps + 1 { // the first is uncounted
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			t0 := time.Now()
			err := p.fn(cctx)
			d := time.Since(t0)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			ds = append(ds, d)
		}
		ds = ds[1:]
		fmt.Printf("| %s | %s | %s | %s |\n", p.name, ms1(median(ds)), ms1(slices.Min(ds)), ms1(slices.Max(ds)))
	}
	return nil
}

// straceTimeline runs the CLI, and the inventory-free Bulk client, under
// `strace -f --seccomp-bpf -e trace=execve,connect,exit_group`, interleaved,
// and reads from the syscall timestamps when each first reached Consul,
// when it first reached a BMC (every go-ipmi session connects a UDP socket
// to BMC:623), and when it exited. It also counts the TCP connections
// opened to Consul. strace slows the processes somewhat, so the totals are
// above the untraced rounds'.
func straceTimeline(ctx context.Context, reps int, dir string, progs [][]string, consulAddr string) error {
	if _, err := exec.LookPath("strace"); err != nil {
		fmt.Println("\n(no strace: timeline skipped)")
		return nil
	}
	_, port, _ := strings.Cut(consulAddr, ":")
	consulPort := "htons(" + port + ")"
	rows := make([][][5]float64, len(progs))
	for i := range reps + 1 { // the first is uncounted
		for k, argv := range progs {
			trace := filepath.Join(dir, fmt.Sprintf("strace.%d.%d", k, i))
			cmd := exec.CommandContext(ctx, "strace", append([]string{"-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,connect,exit_group", "-o", trace}, argv...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("strace %s: %w: %s", filepath.Base(argv[0]), err, tail(string(out)))
			}
			b, err := os.ReadFile(trace)
			if err != nil {
				return err
			}
			var t0, firstConsul, lastConsul, firstBMC, exit float64
			conns := 0
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				t, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					continue
				}
				call := f[2]
				switch {
				case t0 == 0 && strings.HasPrefix(call, "execve("):
					t0 = t
				case strings.HasPrefix(call, "connect(") && strings.Contains(line, consulPort):
					conns++
					if firstConsul == 0 {
						firstConsul = t
					}
					lastConsul = t
				case strings.HasPrefix(call, "connect(") && strings.Contains(line, "htons(623)") && firstBMC == 0:
					firstBMC = t
				case strings.HasPrefix(call, "exit_group("):
					exit = t
				}
			}
			if t0 == 0 || firstBMC == 0 || exit == 0 {
				return fmt.Errorf("strace timeline: markers missing in %s", trace)
			}
			if firstConsul == 0 {
				firstConsul, lastConsul = t0, t0
			}
			if i > 0 {
				rows[k] = append(rows[k], [5]float64{firstConsul - t0, lastConsul - t0, firstBMC - t0, exit - t0, float64(conns)})
			}
		}
	}
	fmt.Printf("\nunder strace (%d runs each, interleaved; median ms from execve):\n\n", reps)
	fmt.Println("| process | first connect to Consul | last connect to Consul | first connect to a BMC | exit | BMC phase (exit − first BMC) | TCP connects to Consul |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for k := range progs {
		med := func(f func(r [5]float64) float64) float64 {
			var v []float64
			for _, r := range rows[k] {
				v = append(v, f(r))
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		name := "ironrack power status --all"
		if k > 0 {
			name = "ipmibench -client (ipmi.Bulk only)"
		}
		fmt.Printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f |\n", name,
			med(func(r [5]float64) float64 { return r[0] * 1e3 }), med(func(r [5]float64) float64 { return r[1] * 1e3 }),
			med(func(r [5]float64) float64 { return r[2] * 1e3 }), med(func(r [5]float64) float64 { return r[3] * 1e3 }),
			med(func(r [5]float64) float64 { return (r[3] - r[2]) * 1e3 }), med(func(r [5]float64) float64 { return r[4] }))
	}
	return nil
}

func ipmipower(ctx context.Context, n int, conf string, fanout int) error {
	args := []string{"--config-file", conf, "-h", simHosts(n), "-D", "LAN_2_0", "-W", "opensesspriv", "--stat"}
	if fanout > 0 {
		args = append(args, "--fanout", strconv.Itoa(fanout))
	}
	out, err := exec.CommandContext(ctx, "ipmipower", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	if got := strings.Count(string(out), ": on"); got != n {
		return fmt.Errorf("ipmipower: %d of %d on:\n%s", got, n, tail(string(out)))
	}
	return nil
}

func ipmitoolLoop(ctx context.Context, sims []*ipmisim.BMC) error {
	for _, b := range sims {
		cmd := exec.CommandContext(ctx, "ipmitool", "-I", "lanplus", "-C", "3", "-H", b.Addr.String(),
			"-U", b.Username, "-E", "chassis", "power", "status")
		cmd.Env = []string{"IPMITOOL_PASSWORD=" + b.Password}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "is on") {
			return fmt.Errorf("ipmitool %s: %v: %s", b.Addr, err, out)
		}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func ms1(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// simHost is the address of sim i: 127.0.9.1 upwards, as ipmisim assigns
// them (netip.Addr.Next: past 127.0.9.255 comes 127.0.10.0).
func simHost(i int) string {
	v := 9<<8 + 1 + i
	return fmt.Sprintf("127.0.%d.%d", v>>8, v&255)
}

// simHosts is FreeIPMI's host list of the first n sims, one range per /24:
// "127.0.9.[1-255],127.0.10.[0-255],…".
func simHosts(n int) string {
	var parts []string
	first, last := 9<<8+1, 9<<8+n
	for o := first >> 8; o <= last>>8; o++ {
		lo, hi := max(first, o<<8)&255, min(last, o<<8+255)&255
		parts = append(parts, fmt.Sprintf("127.0.%d.[%d-%d]", o, lo, hi))
	}
	return strings.Join(parts, ",")
}
