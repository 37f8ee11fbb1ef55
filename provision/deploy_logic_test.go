package provision

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

const logicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@lab"

// TestDeployerWithoutAgent runs the deploy and release workflows against a
// real Consul and real ipmi_sim BMCs, with no machine behind them (no agent
// ever reports): a machine that is on is refused without allow-reboot and
// left as it was; otherwise the BMC gets network boot and power, and at the
// deadline the machine ends in failed_deployment ("timeout"); its release
// ends in failed_releasing the same way. Host names follow the prefix.
func TestDeployerWithoutAgent(t *testing.T) {
	r := newTestRack(t, "127.0.31.30", 2, -1)
	ctx := context.Background()
	for _, m := range r.ms {
		if _, err := r.store.Commission(ctx, m.ID, inventory.Facts{Serial: m.Serial, CPUCores: 1, MemGB: 1,
			Disks: []inventory.Disk{{Name: "sda", SizeBytes: 8e12, Rotational: true}, {Name: "sdb", SizeBytes: 480e9}}}, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
	}
	d := &Deployer{Store: r.store, Fleet: &Fleet{Inventory: r.store}, WatchWait: time.Second}
	ids := []string{r.ms[0].ID, r.ms[1].ID}
	req := DeployRequest{Owner: "alice", Image: "debian", Version: "1", HostnamePrefix: "web", SSHKeys: []string{logicKey}, Timeout: 3 * time.Second}

	// A root-disk hint that matches none of the recorded disks fails
	// before anything changes (not even the claim); so does a mirror whose
	// hint matches one disk.
	for hint, want := range map[string]string{
		"size_bytes > 1e15": `root disk hint "size_bytes > 1e15" matches 0 of the machine's disks, flat needs 1 (disks: sda (8000000000000 bytes, rotational), sdb (480000000000 bytes, not rotational))`,
		"mirror":            `root disk hint "not rotational" matches 1 of the machine's disks, mirror needs 2`,
	} {
		bad := req
		bad.RootDisk = hint
		if hint == "mirror" {
			bad.RootDisk, bad.RootLayout = "not rotational", inventory.LayoutMirror
		}
		for _, x := range d.Deploy(ctx, ids, bad) {
			if x.OK() || x.Step != "select" || !strings.Contains(x.Error, want) || x.State != inventory.StateReady {
				t.Errorf("deploy with %q: %+v, want select failing with %q", hint, x, want)
			}
			if m, _ := r.store.Get(ctx, x.Machine); m.Owner != "" {
				t.Errorf("a refused hint claimed %s for %q", m.ID, m.Owner)
			}
		}
	}

	// Both sims start powered on: refused, nothing changed, no BMC set.
	res := d.Deploy(ctx, ids, req)
	for _, x := range res {
		if x.OK() || x.Step != "power" || !strings.Contains(x.Error, "allow-reboot") || x.State != inventory.StateReady {
			t.Errorf("deploy of a running machine without allow-reboot: %+v", x)
		}
	}
	for _, s := range r.sims {
		if sets, _ := s.Sets(); len(sets) != 0 {
			t.Errorf("BMC %s got %q", s.Addr, sets)
		}
	}

	// Machine 0 off, machine 1 on with allow-reboot: boot set, power on / cycle, then the deadline.
	r.sims[0].SetPower(false)
	req.AllowReboot = true
	var evs []Event
	req.Progress = func(e Event) { evs = append(evs, e) }
	res = d.Deploy(ctx, ids, req)
	names := map[string]string{ids[0]: "web-1", ids[1]: "web-2"}
	if ids[0] > ids[1] { // host names follow ID order
		names = map[string]string{ids[0]: "web-2", ids[1]: "web-1"}
	}
	for _, x := range res {
		if x.OK() || x.Step != "timeout" || x.State != inventory.StateFailedDeployment || x.Hostname != names[x.Machine] {
			t.Errorf("deploy without an agent: %+v", x)
		}
	}
	wantSets := [][]string{{"set boot pxe", "set power 1"}, {"set boot pxe", "set power 0", "set power 1"}}
	for i, s := range r.sims {
		sets, _ := s.Sets()
		got := strings.Join(sets, "|")
		for _, w := range wantSets[i] {
			if !strings.Contains(got, w) {
				t.Errorf("BMC %d sets %q, want %q among them", i, got, w)
			}
		}
	}
	var whats []string
	for _, e := range evs {
		whats = append(whats, e.What)
	}
	for _, w := range []string{"allocate", "deploy", "boot pxe persistent", "power on", "power cycle"} {
		if !strings.Contains(strings.Join(whats, "|"), w) {
			t.Errorf("progress events %q lack %q", whats, w)
		}
	}
	h, _ := r.store.History(ctx, ids[0])
	if last := h[len(h)-1]; last.To != inventory.StateFailedDeployment || !strings.Contains(last.Why, "timeout") {
		t.Errorf("last history entry %+v, want failed_deployment with the timeout", last)
	}
	if spec, err := r.store.Deploy(ctx, ids[0]); err != nil || spec.Hostname == "" {
		t.Errorf("deploy spec of a failed deploy: %+v %v (kept for the release)", spec, err)
	}

	// Release: both BMCs read on now; with allow-reboot they cycle into the wipe, which never reports.
	res = d.Release(ctx, ids, ReleaseRequest{AllowReboot: true, Timeout: 2 * time.Second})
	for _, x := range res {
		if x.OK() || x.Step != "timeout" || x.State != inventory.StateFailedReleasing {
			t.Errorf("release without an agent: %+v", x)
		}
	}
	// A machine not deployed is refused by name.
	res = d.Deploy(ctx, ids[:1], req)
	if res[0].OK() || res[0].Step != "select" || !strings.Contains(res[0].Error, "failed_releasing") {
		t.Errorf("deploy of a failed_releasing machine: %+v", res[0])
	}
}
