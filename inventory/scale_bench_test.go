package inventory

// The 100,000-machine benchmark (issue #19), against raw Consul in the same
// run, on a 3-server cluster with Raft on disk and ironrack on the client
// agent. It takes several minutes and is not part of `-bench .` unless asked:
//
//	IRONRACK_BENCH_SCALE=1 go test -run '^$' -bench Scale -benchtime 1x -timeout 60m -v ./inventory
//
// IRONRACK_BENCH_MACHINES sets the count (100000), IRONRACK_BENCH_PHASES the
// allocation phases (3; 0 skips them).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/internal/consuldev"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// procStatusKB reads a field (VmRSS, VmHWM) of /proc/PID/status in kB.
func procStatusKB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return v
		}
	}
	return -1
}

// scaleSheet writes an n-row rack sheet: racks of 40 (r0000…), one MAC
// each, BMC passwords by a shared credential reference.
func scaleSheet(b *testing.B, file string, n int) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "rack,slot,serial,bmc_address,bmc_username,bmc_credential_ref,vendor,model,macs,tags")
	for i := range n {
		j := i + 1
		fmt.Fprintf(w, "r%04d,%d,S%07d,10.%d.%d.%d,admin,bench/shared,Dell,R650,02:00:%02x:%02x:%02x:%02x,class=c%d\n",
			i/40, i%40+1, i, j>>16, (j>>8)&255, j&255, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), i%3)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// rawRegister is the peer of the import: n catalog nodes with the same
// node meta, registered through Consul's transaction API in batches of
// maxTxnOps, batchParallel at once (the import's own shape), then
// deregistered (untimed).
func rawRegister(b *testing.B, c *api.Client, n int) time.Duration {
	ctx := context.Background()
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("raw-%07d", i))
	}
	var retries atomic.Int64
	defer func() { b.Logf("raw registration: %d transactions retried", retries.Load()) }()
	run := func(verb api.NodeOp) time.Duration {
		start := time.Now()
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(batchParallel)
		for s := 0; s < n; s += maxTxnOps {
			batch := names[s:min(s+maxTxnOps, n)]
			g.Go(func() error {
				ops := make(api.TxnOps, len(batch))
				for k, name := range batch {
					ops[k] = &api.TxnOp{Node: &api.NodeTxnOp{Verb: verb, Node: api.Node{Node: name, Address: "10.99.0.1",
						Meta: map[string]string{"rawbench": "1", "rack": "raw" + name[len(name)-3:]}}}}
				}
				// A client of Consul alone retries a failed transaction too
				// (node sets and deletes are idempotent): a leader change
				// under load fails the batch in flight.
				var ok bool
				var resp *api.TxnResponse
				var err error
				for try := 0; try < 10; try++ {
					if ok, resp, _, err = c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx)); err == nil {
						break
					}
					retries.Add(1)
					time.Sleep(time.Duration(100<<min(try, 4)) * time.Millisecond)
				}
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("raw txn rolled back: %v", resp.Errors)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	d := run(api.NodeSet)
	run(api.NodeDelete)
	return d
}

// rawRegisterEach is Consul's plain one-call-per-node registration, 16
// writers, for at most d: nodes per second.
func rawRegisterEach(b *testing.B, c *api.Client, d time.Duration) float64 {
	var n atomic.Int64
	var per [16]int
	var failed atomic.Int64
	defer func() { b.Logf("raw one-call registration: %d calls failed", failed.Load()) }()
	deadline := time.Now().Add(d)
	start := time.Now()
	var g errgroup.Group
	for k := range 16 {
		g.Go(func() error {
			for j := 0; time.Now().Before(deadline) && j < 100000; j++ {
				_, err := c.Catalog().Register(&api.CatalogRegistration{Node: fmt.Sprintf("each-%d-%d", k, j), Address: "10.99.0.2",
					NodeMeta: map[string]string{"rawbench": "1"}}, nil)
				per[k]++ // deregistered below even if the call failed
				if err != nil {
					failed.Add(1) // a leader change under load: counted, not retried
					continue
				}
				n.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	rate := float64(n.Load()) / time.Since(start).Seconds()
	var dg errgroup.Group
	for k := range 16 {
		dg.Go(func() error {
			for j := range per[k] {
				c.Catalog().Deregister(&api.CatalogDeregistration{Node: fmt.Sprintf("each-%d-%d", k, j)}, nil) // best effort: other nodes do not disturb the figures
			}
			return nil
		})
	}
	if err := dg.Wait(); err != nil {
		b.Fatal(err)
	}
	return rate
}

var maxRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

func BenchmarkScale(b *testing.B) {
	if os.Getenv("IRONRACK_BENCH_SCALE") == "" {
		b.Skip("set IRONRACK_BENCH_SCALE=1: several minutes on a 3-server cluster")
	}
	n := envInt("IRONRACK_BENCH_MACHINES", 100000)
	ctx := context.Background()
	bin, err := buildCLI()
	if err != nil {
		b.Fatal(err)
	}
	cl := consuldev.StartCluster(b, consuldev.ClusterOptions{})
	c := benchClient(b, cl.Client)
	dir := b.TempDir()
	sheet := filepath.Join(dir, "sheet.csv")
	scaleSheet(b, sheet, n)
	key := filepath.Join(dir, "key")
	var lastCPU time.Duration // the last CLI process's user+system CPU
	cliRun := func(stdin string, args ...string) (string, time.Duration) {
		cmd := exec.Command(bin, append([]string{"--consul", cl.Client, "--key-file", key}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("ironrack %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		lastCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return out.String() + errb.String(), time.Since(start)
	}
	serversCPU := func() (t time.Duration) {
		for _, sv := range cl.Servers {
			t += procCPU(b, sv.PID())
		}
		return t
	}
	if _, _, err := cmd0(bin, key); err != nil {
		b.Fatal(err)
	}
	cliRun("secret\n", "bmc", "credential", "set", "bench/shared")
	b.Logf("%d machines; load %s", n, loadavg())

	// 1. Raw registration, then the import of the sheet by the real CLI.
	rc0 := serversCPU()
	rawD := rawRegister(b, c, n)
	b.Logf("raw txn registration of %d nodes: %v (%.0f/s), the three Consul servers' CPU %v; load %s", n, rawD, float64(n)/rawD.Seconds(),
		(serversCPU() - rc0).Round(time.Millisecond), loadavg())
	each := rawRegisterEach(b, c, time.Duration(envInt("IRONRACK_BENCH_EACH_S", 20))*time.Second)
	b.Logf("raw one-call registration, 16 writers, 20 s: %.0f nodes/s", each)
	sc0 := serversCPU()
	_, impD := cliRun("", "inventory", "import", sheet)
	b.Logf("ironrack inventory import of %d rows: %v (%.0f/s, %.2f× raw txn); load %s", n, impD, float64(n)/impD.Seconds(), rawD.Seconds()/impD.Seconds(), loadavg())
	// Where the import's time went: its own CPU, the servers' (the client
	// agent's is not counted), against the wall time.
	b.Logf("import CPU: ironrack %v, the three Consul servers %v, in %v of wall time (%.0f %% and %.0f %% of one core)",
		lastCPU.Round(time.Millisecond), (serversCPU() - sc0).Round(time.Millisecond), impD.Round(time.Millisecond),
		100*lastCPU.Seconds()/impD.Seconds(), 100*(serversCPU()-sc0).Seconds()/impD.Seconds())

	s := New(c, Config{})
	// 2. A where-query on one rack against the raw read of the same machines.
	w, _ := ParseWhere(`rack == "r0042"`)
	var ours, raw []time.Duration
	iters := envInt("IRONRACK_BENCH_ITERS", 200)
	for range iters {
		t0 := time.Now()
		ms, err := s.List(ctx, Query{Where: w})
		t1 := time.Now()
		rn, rerr := rawQuery(ctx, c, map[string]string{"ironrack": "machine", "rack": "r0042"}, nil)
		t2 := time.Now()
		if err != nil || rerr != nil {
			b.Fatal(err, rerr)
		}
		if len(ms) != 40 || rn != 40 {
			b.Fatalf("rack r0042: ironrack %d, raw %d machines, want 40", len(ms), rn)
		}
		ours, raw = append(ours, t1.Sub(t0)), append(raw, t2.Sub(t1))
	}
	b.Logf("where rack == r0042 (40 machines), %d iterations: ironrack p50 %.1f p99 %.1f ms; raw p50 %.1f p99 %.1f ms; p99 ratio %.2f; load %s",
		iters, pct(ours, .5), pct(ours, .99), pct(raw, .5), pct(raw, .99), pct(ours, .99)/pct(raw, .99), loadavg())
	b.ReportMetric(pct(ours, .99), "where-p99-ms")
	b.ReportMetric(pct(ours, .99)/pct(raw, .99), "where-p99-ratio")

	// 3. A full scan: every record read and evaluated; the raw peer lists
	// the machines/ prefix.
	full, _ := ParseWhere(`len(disks) == 0 and vendor == "Dell"`)
	for i := range 3 {
		t0 := time.Now()
		ms, err := s.List(ctx, Query{Where: full})
		t1 := time.Now()
		kvs, _, rerr := c.KV().List("ironrack/machines/", nil)
		t2 := time.Now()
		if err != nil || rerr != nil {
			b.Fatal(err, rerr)
		}
		if len(ms) != n {
			b.Fatalf("full scan: %d machines, want %d: the import is not all there", len(ms), n)
		}
		b.Logf("full scan %d: ironrack %v (%d machines), raw prefix list %v (%d keys); load %s", i, t1.Sub(t0), len(ms), t2.Sub(t1), len(kvs), loadavg())
	}

	// 4. The real CLI's peak memory listing all machines as JSON.
	out, listD := cliRunTimed(b, bin, cl.Client, key)
	b.Logf("/usr/bin/time -v ironrack -o json inventory list: %v, max RSS %s kB; load %s", listD, out, loadavg())

	// 5. Consul's servers: memory, snapshot size, restore time.
	for _, sv := range cl.Servers {
		b.Logf("server %s: VmRSS %d kB, VmHWM %d kB", sv.Name, procStatusKB(sv.PID(), "VmRSS"), procStatusKB(sv.PID(), "VmHWM"))
	}
	snap := filepath.Join(dir, "snap")
	t0 := time.Now()
	rc, _, err := c.Snapshot().Save(nil)
	if err != nil {
		b.Fatal(err)
	}
	sf, _ := os.Create(snap)
	sz, err := sf.ReadFrom(rc)
	rc.Close()
	sf.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot save: %d bytes in %v", sz, time.Since(t0))
	sf, _ = os.Open(snap)
	t0 = time.Now()
	if err := c.Snapshot().Restore(nil, sf); err != nil {
		b.Fatal(err)
	}
	sf.Close()
	b.Logf("snapshot restore: %v; load %s", time.Since(t0), loadavg())
	for _, sv := range cl.Servers {
		b.Logf("server %s after restore: VmRSS %d kB, VmHWM %d kB", sv.Name, procStatusKB(sv.PID(), "VmRSS"), procStatusKB(sv.PID(), "VmHWM"))
	}

	// 6. Allocation against raw CAS on the same cluster.
	if phases := envInt("IRONRACK_BENCH_PHASES", 3); phases > 0 {
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		leader, err := cl.Leader(lctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		// Imported machines are new, not ready: a pool of 10,000 ready
		// ones is added (as the 10,000-machine benchmark has).
		t0 := time.Now()
		seedReady(b, s, 10000, 25)
		b.Logf("seeded 10,000 ready machines in %v", time.Since(t0))
		allocPhases(b, allocTarget{s: s, addr: cl.Client, pid: leader.PID(), name: "cluster"}, 10, phases)
		b.Logf("allocation done; load %s", loadavg())
	}
}

// cmd0 creates the key file.
func cmd0(bin, key string) (string, time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(bin, "--key-file", key, "key", "init").CombinedOutput()
	return string(out), time.Since(start), err
}

// cliRunTimed runs `ironrack -o json inventory list` under /usr/bin/time -v,
// its output discarded: the max RSS in kB and the wall time.
func cliRunTimed(b *testing.B, bin, addr, key string) (string, time.Duration) {
	cmd := exec.Command("/usr/bin/time", "-v", bin, "--consul", addr, "--key-file", key, "-o", "json", "inventory", "list")
	var errb strings.Builder
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("inventory list: %v\n%s", err, errb.String())
	}
	d := time.Since(start)
	m := maxRSS.FindStringSubmatch(errb.String())
	if m == nil {
		b.Fatalf("no max RSS in %s", errb.String())
	}
	return m[1], d
}
