package provision_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// TestDeployTimings measures, in the lab, power-on → ready (discovery and
// commissioning of unknown machines) and power-on → deployed (the deploy
// workflow from its call, BMC power-on included, to every machine
// deployed) for IRONRACK_BENCH_VMS machines at once (comma-separated
// counts, e.g. "1,4"), and the agent's image streaming rate. It is a
// measurement for docs/benchmarks.md, not a CI test: without
// IRONRACK_BENCH_VMS it skips. IRONRACK_BENCH_IMAGE=debian deploys the
// Debian image (images.Debian); otherwise a 512 MiB ext4 test image.
func TestDeployTimings(t *testing.T) {
	spec := os.Getenv("IRONRACK_BENCH_VMS")
	if spec == "" {
		t.Skip("a measurement: set IRONRACK_BENCH_VMS=1,4 to run it")
	}
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 8 {
			t.Fatalf("IRONRACK_BENCH_VMS %q: want counts 1..8", spec)
		}
		t.Run(fmt.Sprintf("vms=%d", n), func(t *testing.T) { deployTimings(t, n) })
	}
}

var rateRE = regexp.MustCompile(`\(([0-9.]+) MiB/s\)`)

func deployTimings(t *testing.T, n int) {
	l := labtest.New(t, labtest.Config{Tools: []string{"mkfs.ext4", "ipmi_sim"}})
	t.Logf("load average at start: %s", loadavg())
	ctx := context.Background()
	image, version, keys := benchImage(t, l)
	vms := make([]*labtest.VM, n)
	for i := range vms {
		vms[i] = l.NewVM(labtest.VMSpec{MAC: fmt.Sprintf("52:54:00:31:01:%02x", i+1), Serial: fmt.Sprintf("BENCH-%d", i+1),
			MemMiB: 1024, CPUs: 1, DiskGB: 3, Reboot: true})
	}
	start := time.Now()
	for _, v := range vms {
		if err := v.PowerOn(); err != nil {
			t.Fatal(err)
		}
	}
	ready := make([]time.Duration, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(8*time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			ready[i], ids[i] = time.Since(start), m.ID
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	allReady := time.Since(start)
	for i, v := range vms {
		if !v.WaitOff(time.Now().Add(time.Minute)) {
			t.Fatalf("%s did not power off after commissioning", v.Spec.MAC)
		}
		l.AttachBMC(v, netip.AddrFrom4([4]byte{127, 0, 31, byte(60 + i)}), ids[i])
	}
	res := deployer(l).Deploy(ctx, ids, provision.DeployRequest{Owner: "bench", Image: image, Version: version,
		HostnamePrefix: "bench", SSHKeys: keys, Timeout: 15 * time.Minute})
	var deployed []time.Duration
	var rates []string
	for _, r := range res {
		if !r.OK() {
			t.Errorf("deploy %s: %s: %s", r.Machine, r.Step, r.Error)
			continue
		}
		deployed = append(deployed, r.Elapsed)
		for _, h := range l.History(r.Machine) {
			if m := rateRE.FindStringSubmatch(h); m != nil && strings.Contains(h, "deploy: agent: done") {
				rates = append(rates, m[1])
			}
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i] < ready[j] })
	sort.Slice(deployed, func(i, j int) bool { return deployed[i] < deployed[j] })
	t.Logf("load average at end: %s", loadavg())
	t.Logf("BENCH vms=%d image=%s/%s: power-on → ready: each %v, all %v; power-on → deployed (workflow call to result): each %v; agent stream MiB/s: %s",
		n, image, version, rounded(ready), allReady.Round(100*time.Millisecond), rounded(deployed), strings.Join(rates, ", "))
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

// benchImage is the image the timings deploy: the Debian image with
// IRONRACK_BENCH_IMAGE=debian, otherwise the 512 MiB test image.
func benchImage(t *testing.T, l *labtest.Lab) (name, version string, keys []string) {
	keys = []string{labtest.NewSSHKey(t).Authorized}
	if os.Getenv("IRONRACK_BENCH_IMAGE") == "debian" {
		m := debianImage(t, l)
		return m.Name, m.Version, keys
	}
	testImage(t, l, "bench", 512)
	return "tiny", "bench", keys
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
