package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/lab"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/ipmi"
)

// These tests run the real `ironrack lab` commands as child processes (the
// supervisor and its children are real processes too), with labs named
// after the test process so a lab someone has up here is never touched.

var build struct {
	once sync.Once
	bin  string
	err  error
}

// ironrack builds the CLI once per test binary.
func ironrack(t *testing.T) string {
	t.Helper()
	netns.Require(t, "ipmi_sim", "qemu-system-x86_64")
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "labtest-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "ironrack")
		root, err := labtest.ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", build.bin, "./cmd/ironrack")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// dataDir is a boot data dir holding the real discovery image (built once
// per machine into the lab harness's cache).
func dataDir(t *testing.T) string {
	v := labtest.DiscoveryImage(t) // DATA/images/agent/VERSION
	return filepath.Dir(filepath.Dir(filepath.Dir(v)))
}

func labName(t *testing.T, suffix string) string {
	name := fmt.Sprintf("t%d-%s", os.Getpid(), suffix)
	t.Cleanup(func() { _ = lab.Down(name) }) // whatever the test left
	return name
}

// run runs ironrack with args and returns its stdout; a failure fails t.
func run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ironrack(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ironrack %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func status(t *testing.T, name string) lab.Status {
	t.Helper()
	var s lab.Status
	if err := json.Unmarshal([]byte(run(t, "-o", "json", "lab", "status", "--name", name)), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// leftovers lists what of lab name is still on the host: live recorded
// processes, processes naming its state directory, its namespace, its
// veth, its state directory.
func leftovers(t *testing.T, name string, recorded []lab.Proc) []string {
	t.Helper()
	var left []string
	for _, p := range recorded {
		if p.Alive() {
			left = append(left, fmt.Sprintf("process %s (pid %d)", p.Role, p.PID))
		}
	}
	dir, err := lab.Dir(name)
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(dir+"/")) || bytes.Contains(b, []byte("--name\x00"+name+"\x00")) {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(f)), bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	ns, host, peer := lab.Names(name)
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(ns)) {
		left = append(left, "namespace "+ns)
	}
	out, _ := exec.Command("ip", "-o", "link").Output()
	for _, dev := range []string{host, peer} {
		if bytes.Contains(out, []byte(dev)) {
			left = append(left, "link "+dev)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "state directory "+dir)
	}
	return left
}

// startUp starts `lab up` and waits until its pids file records role
// (the lab is then halfway up), or fails t.
func startUp(t *testing.T, name, role string, machines int) (*exec.Cmd, string) {
	t.Helper()
	dir, err := lab.Dir(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ironrack(t), "lab", "up", "--name", name, "--machines", fmt.Sprint(machines), "--data-dir", dataDir(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, _ := lab.Procs(dir)
		for _, p := range ps {
			if p.Role == role {
				if _, err := os.Stat(filepath.Join(dir, lab.ReadyFile)); err == nil {
					t.Fatalf("lab %s was ready before the test saw it halfway (%s started)", name, role)
				}
				return cmd, dir
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab up --name %s never started %s: %s", name, role, stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestKilledUpThenDown SIGKILLs `lab up` halfway (Consul started, no BMC
// yet): the supervisor goes on alone; then also its supervisor, leaving
// orphans; `lab down` (or the next `lab up` of the name) leaves no
// process, namespace, veth, tap or state directory.
func TestKilledUpThenDown(t *testing.T) {
	for name, tc := range map[string]struct {
		killSupervisor bool
		// thenUp cleans the dead lab with a new `lab up` of the same name
		// before `lab down`.
		thenUp bool
	}{
		"up":                    {},
		"up and supervisor":     {killSupervisor: true},
		"up and supervisor, up": {killSupervisor: true, thenUp: true},
	} {
		t.Run(name, func(t *testing.T) {
			n := labName(t, "k")
			up, dir := startUp(t, n, "consul", 2)
			if err := up.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = up.Wait()
			if tc.killSupervisor {
				sup, ok := lab.Supervising(dir)
				if !ok {
					t.Fatal("no live supervisor after up was killed")
				}
				if err := syscall.Kill(sup.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			} else {
				// The supervisor finishes the lab without up.
				deadline := time.Now().Add(time.Minute)
				for {
					if _, err := os.Stat(filepath.Join(dir, lab.ReadyFile)); err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the supervisor did not bring the lab up after up was killed")
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			recorded, err := lab.Procs(dir)
			if err != nil {
				t.Fatal(err)
			}
			live := 0
			for _, p := range recorded {
				if p.Alive() {
					live++
				}
			}
			if live == 0 {
				t.Fatalf("nothing of the lab runs before down: %v", recorded)
			}
			if tc.thenUp {
				run(t, "lab", "up", "--name", n, "--machines", "1", "--data-dir", dataDir(t))
				for _, p := range recorded {
					if p.Alive() {
						t.Errorf("the second lab up left the dead lab's %s (pid %d) running", p.Role, p.PID)
					}
				}
				again, _ := lab.Procs(dir)
				recorded = append(recorded, again...)
			}
			run(t, "lab", "down", "--name", n)
			if left := leftovers(t, n, recorded); len(left) > 0 {
				t.Errorf("lab down left:\n%s", strings.Join(left, "\n"))
			}
			run(t, "lab", "down", "--name", n) // idempotent
		})
	}
}

// TestTwoLabs brings two named labs up at once: each on its own subnet,
// each's Consul and BMC answering from the host through its veth; down of
// one leaves the other running and reachable.
func TestTwoLabs(t *testing.T) {
	a, b := labName(t, "a"), labName(t, "b")
	for _, n := range []string{a, b} {
		run(t, "lab", "up", "--name", n, "--machines", "2", "--racks", "2", "--data-dir", dataDir(t))
	}
	sa, sb := status(t, a), status(t, b)
	if sa.Subnet == sb.Subnet {
		t.Fatalf("both labs on %s", sa.Subnet)
	}
	sheet := func(s lab.Status) map[string]string { // serial -> BMC password
		b, err := os.ReadFile(s.Sheet)
		if err != nil {
			t.Fatal(err)
		}
		pw := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
			f := strings.Split(line, ",")
			pw[f[2]] = f[5]
		}
		return pw
	}
	reach := func(s lab.Status) error {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + s.Consul + "/v1/status/leader")
		if err != nil {
			return fmt.Errorf("consul: %w", err)
		}
		resp.Body.Close()
		pw := sheet(s)
		ctl := &ipmi.Controller{Timeout: 3 * time.Second}
		for _, m := range s.Machines {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := ctl.PowerStatus(ctx, ipmi.Credentials{Host: m.BMC.String(), Username: m.BMCUser, Password: pw[m.Serial], Protocol: ipmi.ProtocolIPMI})
			cancel()
			if err != nil {
				return fmt.Errorf("BMC %s: %w", m.BMC, err)
			}
			if st != ipmi.StateOff {
				return fmt.Errorf("BMC %s: power %s, want off", m.BMC, st)
			}
		}
		return nil
	}
	for _, s := range []lab.Status{sa, sb} {
		if len(s.Machines) != 2 || s.Machines[0].Rack == s.Machines[1].Rack {
			t.Errorf("lab %s: machines %+v, want 2 on 2 racks", s.Name, s.Machines)
		}
		for _, m := range s.Machines {
			if !m.BMCAlive || m.Power != "off" {
				t.Errorf("lab %s: %s: BMC alive %v, power %q", s.Name, m.Serial, m.BMCAlive, m.Power)
			}
		}
		if err := reach(s); err != nil {
			t.Errorf("lab %s from the host: %v", s.Name, err)
		}
	}
	// The env a script evals names this lab's Consul and key file.
	env := run(t, "lab", "env", "--name", b)
	for _, want := range []string{"export IRONRACK_LAB=" + b + "\n", "export IRONRACK_CONSUL=" + sb.Consul + "\n", "export IRONRACK_KEY_FILE=" + sb.KeyFile + "\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("lab env lacks %q:\n%s", want, env)
		}
	}

	recordedA, err := lab.Procs(sa.Dir)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "lab", "down", "--name", a)
	if left := leftovers(t, a, recordedA); len(left) > 0 {
		t.Errorf("lab down %s left:\n%s", a, strings.Join(left, "\n"))
	}
	after := status(t, b)
	if !after.Up || !after.Ready {
		t.Errorf("lab %s after down of %s: up %v ready %v", b, a, after.Up, after.Ready)
	}
	for _, p := range after.Processes {
		if !p.Alive {
			t.Errorf("lab %s after down of %s: %s (pid %d) is dead", b, a, p.Role, p.PID)
		}
	}
	if err := reach(after); err != nil {
		t.Errorf("lab %s after down of %s: %v", b, a, err)
	}
	ns, _, _ := lab.Names(b)
	if out, _ := exec.Command("ip", "netns", "list").Output(); !bytes.Contains(out, []byte(ns)) {
		t.Errorf("namespace %s gone after down of %s", ns, a)
	}
	run(t, "lab", "down", "--name", b)
	if left := leftovers(t, b, nil); len(left) > 0 {
		t.Errorf("lab down %s left:\n%s", b, strings.Join(left, "\n"))
	}
}

// runEnv runs ironrack with the lab's exports (lab env) in its environment.
func runEnv(t *testing.T, name string, args ...string) string {
	t.Helper()
	env := os.Environ()
	for _, line := range strings.Split(strings.TrimSpace(run(t, "lab", "env", "--name", name)), "\n") {
		kv := strings.TrimPrefix(line, "export ")
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, k+"="+strings.Trim(v, "'"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ironrack(t), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ironrack %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestPowerOnBootsInLab drives a one-machine lab as an operator does, from
// the host shell: import the lab's sheet, power on over IPMI (the BMC's
// chassis control starts QEMU), the machine network-boots from the lab's
// boot server and is discovered and commissioned to ready; the agent then
// powers it off, which its BMC reports; powered on again and off over
// IPMI, QEMU starts and ends.
func TestPowerOnBootsInLab(t *testing.T) {
	n := labName(t, "p")
	run(t, "lab", "up", "--name", n, "--machines", "1", "--uefi", "0", "--data-dir", dataDir(t))
	s := status(t, n)
	serial := s.Machines[0].Serial
	runEnv(t, n, "inventory", "import", s.Sheet)
	runEnv(t, n, "power", "on", "--yes", "--all")
	deadline := time.Now().Add(4 * time.Minute)
	waitFor := func(what string, ok func(lab.MachineStatus) bool) {
		t.Helper()
		for {
			st := status(t, n).Machines[0]
			if ok(st) {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(s.Dir, "serve.log"))
				t.Fatalf("%s: not %s: %+v; boot server log:\n%s", serial, what, st, labtest.Tail(string(b), 30))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitFor("running", func(m lab.MachineStatus) bool { return m.VMRunning })
	waitFor("ready", func(m lab.MachineStatus) bool { return m.State == "ready" })
	waitFor("powered off by its agent", func(m lab.MachineStatus) bool { return !m.VMRunning && m.Power == "off" })
	runEnv(t, n, "power", "on", "--yes", "--all")
	waitFor("running again", func(m lab.MachineStatus) bool { return m.VMRunning && m.Power == "on" })
	runEnv(t, n, "power", "off", "--yes", "--allow-reboot", "--all")
	waitFor("off", func(m lab.MachineStatus) bool { return !m.VMRunning && m.Power == "off" })
	recorded, _ := lab.Procs(s.Dir)
	run(t, "lab", "down", "--name", n)
	if left := leftovers(t, n, recorded); len(left) > 0 {
		t.Errorf("lab down left:\n%s", strings.Join(left, "\n"))
	}
}
