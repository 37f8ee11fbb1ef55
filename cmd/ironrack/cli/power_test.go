package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
	"golang.org/x/sys/unix"
)

// The power/boot/set-password CLI tests use 127.0.21.100-127.0.21.199
// (provision's own tests use 127.0.21.1-99).

// rackEnv is a CLI against real Consul and a rack of real ipmi_sim BMCs.
type rackEnv struct {
	*cliEnv
	sims []*ipmisim.BMC
	ids  []string
}

// newRack starts n powered-on sims and imports them as rack r21. Machines
// listed in sharedRef use the credential reference "rack21-admin" (stored
// with `bmc credential set`); the one at wrongPW (if >= 0) is imported
// with a wrong password; the others with their own inline password.
func newRack(t *testing.T, first string, n int, sharedRef map[int]bool, wrongPW int) *rackEnv {
	ipmisim.Require(t)
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Fatalf("ipmitool not found (Debian package ipmitool; run scripts/setup): %v", err)
	}
	sims := ipmisim.Start(t, ipmisim.Options{N: n, First: netip.MustParseAddr(first), PowerOn: true})
	r := &rackEnv{cliEnv: newCLI(t), sims: sims}
	if len(sharedRef) > 0 {
		if _, errs, err := r.run("secret\n", "bmc", "credential", "set", "rack21-admin"); err != nil {
			t.Fatalf("credential set: %v\n%s", err, errs)
		}
	}
	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,bmc_credential_ref,macs\n")
	for i, b := range sims {
		serial := fmt.Sprintf("S21-%03d", i)
		pw, ref := b.Password, ""
		switch {
		case sharedRef[i]:
			pw, ref = "", "rack21-admin"
		case i == wrongPW:
			pw = "not-the-password"
		}
		fmt.Fprintf(&sheet, "r21,%d,%s,%s,%s,%s,%s,52:54:00:21:%02x:01\n", i+1, serial, b.Addr, b.Username, pw, ref, i)
		r.ids = append(r.ids, inventory.MachineID(serial))
	}
	file := filepath.Join(t.TempDir(), "r21.csv")
	if err := os.WriteFile(file, []byte(sheet.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ok("inventory", "import", file)
	return r
}

// store opens the same inventory the CLI uses, with the key file.
func (r *rackEnv) store() *inventory.Store {
	r.t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = r.addr
	c, err := api.NewClient(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	sl, err := inventory.LoadKeyFile(r.key, false)
	if err != nil {
		r.t.Fatal(err)
	}
	return inventory.New(c, inventory.Config{Sealer: sl})
}

// outcomes runs the CLI with -o json and decodes the summary; err is the
// command's error (non-nil when a machine failed).
func (r *rackEnv) outcomes(args ...string) (map[string]provision.Outcome, string, error) {
	r.t.Helper()
	out, errs, err := r.run("", append([]string{"-o", "json"}, args...)...)
	var list []provision.Outcome
	if jerr := json.Unmarshal([]byte(out), &list); jerr != nil {
		r.t.Fatalf("ironrack %s: output is not JSON (%v; err %v)\nstdout: %s\nstderr: %s", strings.Join(args, " "), jerr, err, out, errs)
	}
	m := map[string]provision.Outcome{}
	for _, o := range list {
		m[o.Machine] = o
	}
	return m, out + errs, err
}

func (r *rackEnv) history(id string) []inventory.HistoryEntry {
	r.t.Helper()
	h, err := r.store().History(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func (r *rackEnv) sets(i int) []string {
	r.t.Helper()
	s, err := r.sims[i].Sets()
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func (r *rackEnv) power(i int) bool {
	r.t.Helper()
	on, err := r.sims[i].Power()
	if err != nil {
		r.t.Fatal(err)
	}
	return on
}

// deploy walks a machine through the lifecycle to deployed, as the deploy
// workflow would.
func (r *rackEnv) deploy(id string) {
	r.t.Helper()
	s := r.store()
	ctx := context.Background()
	for _, st := range []inventory.State{inventory.StateCommissioning, inventory.StateReady, inventory.StateAllocated, inventory.StateDeploying, inventory.StateDeployed} {
		if _, err := s.SetState(ctx, id, st, inventory.System, inventory.Change{Why: "test"}); err != nil {
			r.t.Fatalf("%s -> %s: %v", id, st, err)
		}
	}
}

// ipmitoolLogin reports whether user/password logs in to the sim, with the
// password only in the environment (-E).
func ipmitoolLogin(t *testing.T, b *ipmisim.BMC, password string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ipmitool", "-I", "lanplus", "-C", "3", "-H", b.Addr.String(), "-U", b.Username, "-E", "chassis", "power", "status")
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + password}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("ipmitool against %s did not finish: %s", b.Addr, out)
	}
	return err == nil && strings.Contains(string(out), "Chassis Power is")
}

// TestPowerAndBootCLI runs power and boot against 12 ipmi_sim BMCs in a
// real inventory: the safety rules, dry runs, confirmation, read-back
// warnings, a frozen BMC, and what history records.
func TestPowerAndBootCLI(t *testing.T) {
	r := newRack(t, "127.0.21.100", 12, nil, -1)
	ids := r.ids
	if err := r.sims[11].SetPower(false); err != nil {
		t.Fatal(err)
	}
	histLen := func() map[string]int {
		n := map[string]int{}
		for _, id := range ids {
			n[id] = len(r.history(id))
		}
		return n
	}
	before := histLen()

	t.Run("status of all, recorded nowhere", func(t *testing.T) {
		got, _, err := r.outcomes("power", "status", "--rack", "r21")
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(got) != 12 {
			t.Fatalf("status covered %d machines, want 12", len(got))
		}
		for i, id := range ids {
			want := "on"
			if i == 11 {
				want = "off"
			}
			if o := got[id]; o.Result != "ok" || o.After != want || o.BMC != r.sims[i].Addr.String()+":623" {
				t.Errorf("%s: %+v, want ok and %s", id, o, want)
			}
		}
		// Table form, and status by serial and MAC.
		out := r.ok("power", "status", "S21-000", "52:54:00:21:0b:01")
		if !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[11]) || !strings.Contains(out, "2 ok, 0 failed, 0 changed") {
			t.Errorf("status table:\n%s", out)
		}
	})

	t.Run("on for an on machine does nothing", func(t *testing.T) {
		r.sims[0].ClearCalls()
		got, _, err := r.outcomes("power", "on", ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if o := got[ids[0]]; o.Result != "ok" || o.Changed || o.Before != "on" || o.After != "on" {
			t.Errorf("on: %+v", o)
		}
		if s := r.sets(0); len(s) != 0 {
			t.Errorf("on of an on machine sent %q", s)
		}
		// on of an off machine turns it on, and is recorded.
		got, _, err = r.outcomes("power", "on", "--reason", "bring up", ids[11])
		if err != nil || !got[ids[11]].Changed || !r.power(11) {
			t.Errorf("on of an off machine: %+v, %v", got[ids[11]], err)
		}
		h := r.history(ids[11])
		if last := h[len(h)-1]; last.What != "power on" || last.Why != "bring up" {
			t.Errorf("history of on: %+v", last)
		}
	})

	t.Run("off without --allow-reboot is refused", func(t *testing.T) {
		r.sims[1].ClearCalls()
		got, out, err := r.outcomes("power", "off", ids[1])
		if err == nil {
			t.Fatal("off of an on machine without --allow-reboot succeeded")
		}
		if o := got[ids[1]]; o.Reason != "reboot-not-allowed" || !strings.Contains(o.Note, "--allow-reboot") {
			t.Errorf("off: %+v\n%s", o, out)
		}
		if !r.power(1) || len(r.sets(1)) != 0 {
			t.Error("refused off changed the machine")
		}
	})

	t.Run("deployed machine: refused by --where, allowed by ID", func(t *testing.T) {
		r.deploy(ids[2])
		r.sims[2].ClearCalls()
		got, _, err := r.outcomes("power", "cycle", "--allow-reboot", "--where", `serial == "S21-002"`)
		if err == nil || got[ids[2]].Reason != "deployed" || !strings.Contains(got[ids[2]].Error, ids[2]) {
			t.Errorf("cycle of a deployed machine by --where: %+v, %v", got[ids[2]], err)
		}
		// By serial is not by ID either.
		if got, _, err := r.outcomes("power", "off", "--allow-reboot", "S21-002"); err == nil || got[ids[2]].Reason != "deployed" {
			t.Errorf("off of a deployed machine by serial: %+v, %v", got[ids[2]], err)
		}
		if len(r.sets(2)) != 0 || !r.power(2) {
			t.Fatal("a refused action reached the BMC")
		}
		// By ID without --allow-reboot: still refused by the BMC rule.
		if _, _, err := r.outcomes("power", "off", ids[2]); err == nil {
			t.Error("off of a deployed machine by ID without --allow-reboot succeeded")
		}
		got, _, err = r.outcomes("power", "off", "--allow-reboot", "-m", "maintenance", ids[2])
		if err != nil || !got[ids[2]].Changed || got[ids[2]].After != "off" || r.power(2) {
			t.Errorf("off by ID with --allow-reboot: %+v, %v", got[ids[2]], err)
		}
		h := r.history(ids[2])
		if last := h[len(h)-1]; last.What != "power off" || last.Why != "maintenance" {
			t.Errorf("history: %+v", last)
		}
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		r.sims[3].ClearCalls()
		n := len(r.history(ids[3]))
		got, _, err := r.outcomes("power", "off", "--dry-run", "--allow-reboot", ids[3])
		if err != nil {
			t.Fatal(err)
		}
		if o := got[ids[3]]; !o.DryRun || o.Changed || o.Note != "would power off" || o.Before != "on" {
			t.Errorf("dry run: %+v", o)
		}
		if b, _, err := r.outcomes("boot", "pxe", "--dry-run", ids[3]); err != nil || b[ids[3]].Before == "" || b[ids[3]].Changed {
			t.Errorf("boot dry run: %+v, %v", b[ids[3]], err)
		}
		if !r.power(3) || len(r.sets(3)) != 0 || len(r.history(ids[3])) != n {
			t.Error("dry run changed the machine or its history")
		}
	})

	t.Run("more than 10 machines need --yes off a terminal", func(t *testing.T) {
		for _, s := range r.sims {
			s.ClearCalls()
		}
		_, errs, err := r.run("", "power", "cycle", "--allow-reboot", "--rack", "r21")
		if err == nil || !strings.Contains(err.Error(), "--yes") || !strings.Contains(err.Error(), "12 machines") {
			t.Fatalf("cycle of 12 without --yes: %v\n%s", err, errs)
		}
		for i := range r.sims {
			if len(r.sets(i)) != 0 {
				t.Errorf("sim %d was changed", i)
			}
		}
		// --yes goes ahead: on for all (one is off after the test above).
		got, _, err := r.outcomes("power", "on", "--yes", "--rack", "r21")
		if err != nil || len(got) != 12 || !got[ids[2]].Changed || got[ids[0]].Changed {
			t.Errorf("on --yes: %v %+v", err, got)
		}
	})

	t.Run("boot pxe --persistent shows what ipmi_sim dropped", func(t *testing.T) {
		got, out, err := r.outcomes("boot", "pxe", "--persistent", "--efi", "-m", "reinstall", ids[4])
		if err != nil {
			t.Fatalf("boot: %v\n%s", err, out)
		}
		o := got[ids[4]]
		w := strings.Join(o.Warnings, "\n")
		for _, code := range []string{"persistent-dropped", "efi-dropped"} {
			if !strings.Contains(w, code) {
				t.Errorf("warnings %q lack %s", w, code)
			}
		}
		if dev, _ := r.sims[4].Boot(); dev != "pxe" || !strings.HasPrefix(o.After, "pxe") {
			t.Errorf("boot device %q, read back %q", dev, o.After)
		}
		h := r.history(ids[4])
		if last := h[len(h)-1]; last.What != "boot pxe persistent efi" || last.Why != "reinstall" {
			t.Errorf("history: %+v", last)
		}
		table := r.ok("boot", "disk", ids[4])
		if !strings.Contains(table, "warning: "+ids[4]) {
			t.Errorf("table does not spell out the warnings:\n%s", table)
		}
	})

	t.Run("frozen BMC fails within the deadline, the rest complete", func(t *testing.T) {
		if err := r.sims[5].Freeze(); err != nil {
			t.Fatal(err)
		}
		defer r.sims[5].Thaw()
		start := time.Now()
		out, errs, err := r.run("", "power", "status", "--timeout", "1s", "--retries", "1", "--rack", "r21")
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "1 of 12 machines failed") || !strings.Contains(err.Error(), ids[5]+" timeout") {
			t.Fatalf("status with a frozen BMC: %v\n%s", err, errs)
		}
		// Two attempts of 1 s plus a backoff of at most 0.25 s.
		if took > 4*time.Second {
			t.Errorf("took %v", took)
		}
		for i, id := range ids {
			line := lineWith(out, id)
			if want := "ok"; i == 5 {
				if !strings.Contains(line, "failed: timeout") {
					t.Errorf("frozen row: %q", line)
				}
			} else if !strings.Contains(line, " "+want+" ") {
				t.Errorf("row %d: %q", i, line)
			}
		}
		if !strings.Contains(errs, ids[5]+" failed: timeout") || !strings.Contains(errs, "[12/12]") {
			t.Errorf("progress lines:\n%s", errs)
		}
	})

	t.Run("history records changes, not reads", func(t *testing.T) {
		after := histLen()
		want := map[string]int{ids[11]: 1, ids[2]: 5 + 2, ids[4]: 2} // on; deploy + off + on; boot pxe + boot disk
		for _, id := range ids {
			if got := after[id] - before[id]; got != want[id] {
				t.Errorf("%s: %d new history entries, want %d: %+v", id, got, want[id], r.history(id))
			}
		}
	})

	t.Run("no password in any output", func(t *testing.T) {
		for _, f := range []string{"table", "json", "csv"} {
			out, errs, _ := r.run("", "-o", f, "--log-level", "debug", "power", "status", ids[0])
			if strings.Contains(out+errs, "secret") {
				t.Errorf("-o %s prints the password", f)
			}
		}
	})
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestSetPasswordCLI rotates BMC passwords against ipmi_sim: own and shared
// credential references, a frozen BMC and a wrong stored password, each
// proven with ipmitool.
func TestSetPasswordCLI(t *testing.T) {
	// 0: own ref; 1, 2: shared ref; 3: frozen; 4: wrong stored password.
	r := newRack(t, "127.0.21.150", 5, map[int]bool{1: true, 2: true}, 4)
	ids := r.ids
	s := r.store()
	ctx := context.Background()
	stored := func(i int) (string, string) {
		t.Helper()
		m, err := s.Get(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Credential(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return m.BMC.CredentialRef, c.Password
	}

	t.Run("dry run proves logins and changes nothing", func(t *testing.T) {
		got, _, err := r.outcomes("bmc", "set-password", "--dry-run", ids[0], ids[1], ids[4])
		if err == nil || got[ids[4]].Reason != "auth" {
			t.Errorf("dry run: %v %+v", err, got[ids[4]])
		}
		if o := got[ids[1]]; o.Result != "ok" || !strings.Contains(o.Note, "bmc/"+ids[1]) {
			t.Errorf("dry run of a shared ref: %+v", o)
		}
		if ref, pw := stored(1); ref != "rack21-admin" || pw != "secret" {
			t.Errorf("dry run changed the credential: %s", ref)
		}
	})

	t.Run("own reference", func(t *testing.T) {
		out, errs, err := r.run("", "bmc", "set-password", "-m", "quarterly", ids[0])
		if err != nil {
			t.Fatalf("set-password: %v\n%s%s", err, out, errs)
		}
		ref, pw := stored(0)
		if ref != "bmc/"+ids[0] || pw == "secret" || len(pw) != 16 {
			t.Fatalf("stored under %s a password of %d bytes", ref, len(pw))
		}
		if strings.Contains(out+errs, pw) {
			t.Error("the new password is printed")
		}
		if !strings.Contains(lineWith(out, ids[0]), "true") || !strings.Contains(out, "rotated") {
			t.Errorf("summary does not say it rotated:\n%s", out)
		}
		if !ipmitoolLogin(t, r.sims[0], pw) || ipmitoolLogin(t, r.sims[0], "secret") {
			t.Error("the BMC does not take exactly the new password")
		}
		if got, _, err := r.outcomes("power", "status", ids[0]); err != nil || got[ids[0]].After != "on" {
			t.Errorf("status with the rotated password: %v", err)
		}
		h := r.history(ids[0])
		last := h[len(h)-1]
		if last.What != "bmc set-password" || last.Why != "quarterly" || strings.Contains(fmt.Sprint(h), pw) {
			t.Errorf("history: %+v", last)
		}
	})

	t.Run("shared reference: the machine gets its own", func(t *testing.T) {
		got, _, err := r.outcomes("bmc", "set-password", ids[1])
		if err != nil {
			t.Fatal(err)
		}
		if o := got[ids[1]]; !o.Changed || o.Before != "rack21-admin" || o.After != "bmc/"+ids[1] {
			t.Errorf("outcome: %+v", o)
		}
		ref, pw := stored(1)
		if ref != "bmc/"+ids[1] || !ipmitoolLogin(t, r.sims[1], pw) {
			t.Errorf("machine 1: ref %s, new password works: false", ref)
		}
		// The other machine on the shared reference still works.
		if ref, pw := stored(2); ref != "rack21-admin" || pw != "secret" || !ipmitoolLogin(t, r.sims[2], pw) {
			t.Errorf("machine 2 on the shared reference broke: %s", ref)
		}
		var whats []string
		for _, h := range r.history(ids[1]) {
			whats = append(whats, h.What)
		}
		if w := strings.Join(whats, ","); !strings.HasSuffix(w, "bmc credential-ref bmc/"+ids[1]+",bmc set-password") {
			t.Errorf("history: %s", w)
		}
	})

	t.Run("frozen BMC keeps the stored password", func(t *testing.T) {
		if err := r.sims[3].Freeze(); err != nil {
			t.Fatal(err)
		}
		got, _, err := r.outcomes("bmc", "set-password", "--timeout", "1s", ids[3])
		r.sims[3].Thaw()
		if err == nil || got[ids[3]].Changed || got[ids[3]].Reason != "timeout" {
			t.Errorf("rotation of a frozen BMC: %v %+v", err, got[ids[3]])
		}
		if _, pw := stored(3); pw != "secret" || !ipmitoolLogin(t, r.sims[3], pw) {
			t.Error("after a failed rotation the stored password does not work")
		}
	})

	t.Run("wrong stored password: auth, nothing changes", func(t *testing.T) {
		got, _, err := r.outcomes("bmc", "set-password", ids[4])
		if err == nil || got[ids[4]].Reason != "auth" || got[ids[4]].Changed {
			t.Errorf("%v %+v", err, got[ids[4]])
		}
		if _, pw := stored(4); pw != "not-the-password" || !ipmitoolLogin(t, r.sims[4], "secret") {
			t.Error("a failed rotation changed the stored password or the BMC")
		}
	})
}

// openPTY opens a pseudo-terminal pair: the test writes answers to and
// reads output from master; the CLI gets tty as stdin and stderr.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestConfirmOnTerminal: on a terminal, an action on more than 10 machines
// asks first (no changes on "n"), and the progress is a bar on stderr.
func TestConfirmOnTerminal(t *testing.T) {
	r := newRack(t, "127.0.21.170", 11, nil, -1)
	runTTY := func(answer string, args ...string) (string, string, error) {
		t.Helper()
		master, tty := openPTY(t)
		var shown strings.Builder
		done := make(chan struct{})
		go func() { // drain the terminal until the test closes it
			defer close(done)
			buf := make([]byte, 4096)
			for {
				n, err := master.Read(buf)
				shown.Write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
		if _, err := master.Write([]byte(answer + "\n")); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		full := append([]string{"ironrack", "--consul", r.addr, "--key-file", r.key}, args...)
		err := Run(context.Background(), full, tty, &out, tty)
		tty.Close()
		master.Close()
		<-done
		return out.String(), shown.String(), err
	}

	_, term, err := runTTY("n", "power", "off", "--allow-reboot", "--rack", "r21")
	if err == nil || !strings.Contains(err.Error(), "not confirmed") || !strings.Contains(term, "this changes 11 machines. Continue? [y/N]") {
		t.Fatalf("answer n: %v\nterminal: %q", err, term)
	}
	for i := range r.sims {
		if !r.power(i) {
			t.Fatalf("sim %d turned off without confirmation", i)
		}
	}
	out, term, err := runTTY("y", "power", "off", "--allow-reboot", "--rack", "r21")
	if err != nil || !strings.Contains(out, "11 ok, 0 failed, 11 changed") {
		t.Fatalf("answer y: %v\n%s", err, out)
	}
	if !strings.Contains(term, "/11)") || !strings.Contains(term, "█") || strings.Contains(term, "[1/11]") {
		t.Errorf("terminal shows no progress bar (or plain lines): %q", term)
	}
	for i := range r.sims {
		if r.power(i) {
			t.Errorf("sim %d still on", i)
		}
	}
}
