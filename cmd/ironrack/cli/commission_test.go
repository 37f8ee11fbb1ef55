package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/provision/bootserver"
)

// TestCommissionCLI runs `ironrack commission` against real Consul and
// three ipmi_sim BMCs, the test playing the discovery agent through the
// boot server's backend: machines that are on are refused without
// --allow-reboot and left new; with one BMC killed, the other two are
// commissioned to ready while the third ends in failed_commissioning with
// its BMC named in the JSON summary, in `inventory show` and in `inventory
// history`, and the command exits non-zero; run again, the table skips the
// ready machines.
func TestCommissionCLI(t *testing.T) {
	r := newRack(t, "127.0.21.185", 3, nil, -1)
	st := r.store()
	ctx := context.Background()

	out, _, err := r.run("", "-o", "json", "commission", "--all")
	var res []provision.Result
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err == nil || !strings.Contains(err.Error(), "3 of 3 machines failed") {
		t.Fatalf("commission of running machines: err %v, json %v:\n%s", err, jerr, out)
	}
	for _, x := range res {
		if x.State != inventory.StateNew || !strings.Contains(x.Error, "--allow-reboot") {
			t.Errorf("running machine without --allow-reboot: %+v", x)
		}
	}

	for _, s := range r.sims {
		s.SetPower(false)
	}
	if err := r.sims[2].Stop(); err != nil {
		t.Fatal(err)
	}
	type run struct {
		out, errs string
		err       error
	}
	done := make(chan run, 1)
	go func() {
		o, e, err := r.run("", "-o", "json", "commission", "--timeout", "60s", "--bmc-timeout", "2s", "--reason", "rack 21 arrived", "--all")
		done <- run{o, e, err}
	}()
	// The agents of machines 0 and 1: once the BMC has set network boot
	// and powered the machine on, the agent's facts report.
	be := &bootserver.Backend{Store: st, DataDir: t.TempDir()}
	for i := range 2 {
		deadline := time.Now().Add(30 * time.Second)
		for {
			boot, _ := r.sims[i].Boot()
			m, err := st.Get(ctx, r.ids[i])
			if err == nil && r.power(i) && boot == "pxe" && m.State == inventory.StateCommissioning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("machine %d: not powered on with network boot while commissioning (boot %q, state %v, err %v)", i, boot, m, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		f := &wire.Facts{Serial: fmt.Sprintf("S21-%03d", i), CPUs: 2, MemoryBytes: 4 * bootserver.GiB, Firmware: "bios",
			MACs: []string{fmt.Sprintf("52:54:00:21:%02x:01", i)}}
		if err := be.RecordReport(ctx, r.ids[i], wire.Report{Kind: "facts", Facts: f}); err != nil {
			t.Fatal(err)
		}
	}
	got := <-done
	if got.err == nil || !strings.Contains(got.err.Error(), "1 of 3 machines failed: "+r.ids[2]) {
		t.Errorf("commission with a dead BMC: err %v, want machine 2 alone failed\n%s", got.err, got.errs)
	}
	res = nil
	if err := json.Unmarshal([]byte(got.out), &res); err != nil || len(res) != 3 {
		t.Fatalf("json summary (%v):\n%s", err, got.out)
	}
	dead := "BMC " + r.sims[2].Addr.String() + ":623"
	for i, x := range res {
		want := inventory.StateReady
		if i == 2 {
			want = inventory.StateFailedCommissioning
		}
		if x.Machine != r.ids[i] || x.Serial != fmt.Sprintf("S21-%03d", i) || x.BMC != r.sims[i].Addr.String()+":623" || x.State != want {
			t.Errorf("row %d: %+v", i, x)
		}
		if i == 2 && (x.Result != "failed" || !strings.Contains(x.Error, dead)) {
			t.Errorf("the dead BMC's machine: %+v, want failed naming %s", x, dead)
		}
	}
	if show := r.ok("inventory", "show", "S21-002"); !strings.Contains(lineWith(show, "why:"), dead) {
		t.Errorf("inventory show lacks the reason naming %s:\n%s", dead, show)
	}
	if h := r.ok("inventory", "history", "S21-002"); !strings.Contains(lineWith(h, "failed_commissioning"), dead) || !strings.Contains(h, "rack 21 arrived") {
		t.Errorf("inventory history lacks the reason:\n%s", h)
	}

	// Again, as a table: the ready machines are skipped, the dead BMC fails again.
	table, _, err := r.run("", "commission", "--bmc-timeout", "2s", "--all")
	if err == nil || !strings.Contains(table, "SERIAL") || !strings.Contains(lineWith(table, "S21-000"), "skipped") ||
		!strings.Contains(lineWith(table, "S21-002"), dead) || !strings.Contains(table, "0 ok, 2 skipped, 1 failed") {
		t.Errorf("commission again: err %v\n%s", err, table)
	}
}
