// Command ipmibench compares power status of many ipmi_sim BMCs through
// ironrack's bulk path (ipmi.Bulk + ipmi.Controller, go-ipmi provider) with
// FreeIPMI's ipmipower --stat (the HPC standard) and a sequential ipmitool
// loop, in one run. It is not part of CI; see run.sh and RESULTS.md.
//
// It needs root (sims bind 127.0.9.X:623), and the openipmi, freeipmi-tools
// and ipmitool packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ipmibench:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 200, "number of sims (127.0.9.1 upwards, at most 200)")
	runs := flag.Int("runs", 5, "rounds; each round runs every client once, interleaved")
	warmup := flag.Int("warmup", 1, "uncounted rounds first (the sims' first sessions are slow)")
	conc := flag.Int("concurrency", 0, "ironrack Bulk concurrency (0: BulkOptions' default)")
	clientMode := flag.Bool("client", false, "internal: run one ironrack bulk status over -n sims and exit (a fresh process per round, like the CLI)")
	skipIpmitool := flag.Bool("skip-ipmitool", false, "skip the slow sequential ipmitool loop")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ironrack rounds to this file")
	flag.Parse()
	if *n < 1 || *n > 200 {
		return errors.New("-n must be 1..200")
	}
	if *clientMode {
		return ironrack(context.Background(), *n, *conc)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "ipmibench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	sims, err := ipmisim.StartProcesses(ipmisim.Options{N: *n, First: netip.MustParseAddr("127.0.9.1"), Dir: dir, PowerOn: true, ReadyTimeout: 60 * time.Second})
	defer ipmisim.StopAll(sims)
	if err != nil {
		return err
	}
	fmt.Printf("started %d sims in %v (GOMAXPROCS %d)\n", *n, time.Since(start).Round(time.Millisecond), runtime.GOMAXPROCS(0))

	// ipmipower reads the password from a config file, not argv.
	conf := filepath.Join(dir, "ipmipower.conf")
	if err := os.WriteFile(conf, []byte("username admin\npassword secret\n"), 0o600); err != nil {
		return err
	}

	clients := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"ironrack (process, Bulk)", func(ctx context.Context) error {
			if *cpuprofile != "" {
				f, err := os.Create(*cpuprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if *cpuprofile != "" {
				return ironrack(ctx, *n, *conc) // in-process, to profile it
			}
			out, err := exec.CommandContext(ctx, self, "-client", "-n", strconv.Itoa(*n), "-concurrency", strconv.Itoa(*conc)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}},
		{"ipmipower --stat", func(ctx context.Context) error { return ipmipower(ctx, *n, conf) }},
	}
	if !*skipIpmitool {
		clients = append(clients, struct {
			name string
			fn   func(ctx context.Context) error
		}{"ipmitool sequential loop", func(ctx context.Context) error { return ipmitoolLoop(ctx, sims) }})
	}

	times := make([][]time.Duration, len(clients))
	for r := -*warmup; r < *runs; r++ {
		order := []int{0, 1}
		if r%2 != 0 {
			order = []int{1, 0} // alternate who goes first
		}
		if len(clients) > 2 && r >= 0 {
			order = append(order, 2) // the ipmitool loop needs no warm-up
		}
		for _, i := range order {
			c := clients[i]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t0 := time.Now()
			err := c.fn(ctx)
			d := time.Since(t0)
			cancel()
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, c.name, err)
			}
			if r < 0 {
				fmt.Printf("warm-up:  %-26s %s\n", c.name, ms(d))
				continue
			}
			times[i] = append(times[i], d)
			fmt.Printf("round %d: %-26s %s\n", r+1, c.name, ms(d))
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
	return nil
}

// ironrack is the path `ironrack power status` takes: a fresh Controller
// (no provider cache) and ipmi.Bulk over all targets, default providers.
func ironrack(ctx context.Context, n, conc int) error {
	ctl := &ipmi.Controller{}
	var ts []ipmi.Target
	for i := range n {
		ts = append(ts, ipmi.Target{ID: fmt.Sprintf("sim%d", i), Credentials: ipmi.Credentials{
			Host: fmt.Sprintf("127.0.9.%d", i+1), Username: "admin", Password: "secret"}})
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

func ipmipower(ctx context.Context, n int, conf string) error {
	hosts := fmt.Sprintf("127.0.9.[1-%d]", n)
	out, err := exec.CommandContext(ctx, "ipmipower", "--config-file", conf, "-h", hosts,
		"-D", "LAN_2_0", "-W", "opensesspriv", "--stat").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	if got := strings.Count(string(out), ": on"); got != n {
		return fmt.Errorf("ipmipower: %d of %d on:\n%s", got, n, out)
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
