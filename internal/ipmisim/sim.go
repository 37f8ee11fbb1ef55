// Package ipmisim starts OpenIPMI ipmi_sim BMCs for tests and benchmarks.
//
// Each sim listens on its own loopback address on port 623 (127.0.X.Y:623,
// which needs root), like a BMC in a rack, so that ipmitool and FreeIPMI can
// address it by host. Each has a chassis_control script that keeps the power
// and boot state in files in the sim's directory; tests read those files (and
// the script's call log) to prove what a client did. Sims are stopped by PID
// when the test ends.
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Options configures the sims Start launches. The zero value of each field
// works except First.
type Options struct {
	// N is how many sims to start. If 0, 1.
	N int
	// First is the address of the first sim; the others follow it
	// (127.0.10.1, 127.0.10.2, ...). Must be in 127.0.0.0/8.
	First netip.Addr
	// Username and Password of the admin user (user ID 2). If empty, "admin"
	// and "secret".
	Username, Password string
	// Operator, if set, adds user ID 3 with operator privilege and the
	// password OperatorPassword.
	Operator, OperatorPassword string
	// PowerOn starts the sims with the chassis on.
	PowerOn bool
	// FRU, if set, is reported as FRU device 0. %d in Serial is replaced by
	// the sim's index.
	FRU *FRU
	// Hook, if set, is copied to each sim's dir as the power hook (see the
	// chassis script): called as "hook on DIR BOOTDEV" and "hook off DIR".
	Hook string
	// Dir holds the sims' directories. If empty, a t.TempDir().
	Dir string
	// ReadyTimeout bounds the wait for all sims to answer an RMCP ping. If 0,
	// 20s.
	ReadyTimeout time.Duration
}

// BMC is one running ipmi_sim.
type BMC struct {
	Name     string
	Addr     netip.Addr
	Port     int
	Username string
	Password string
	// Dir is the sim's directory: lan.conf, sim.emu, ctl.sh, and the state
	// files power, boot, ctl.log.
	Dir string
	cmd *exec.Cmd
}

// Require skips the test under -short and fails it if ipmi_sim is missing:
// CI always has the tools, so a missing binary is a broken setup, not a skip.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts ipmi_sim BMCs; skipped with -short")
	}
	if _, err := exec.LookPath("ipmi_sim"); err != nil {
		t.Fatalf("ipmi_sim not found (Debian package openipmi; run scripts/setup): %v", err)
	}
}

// Start launches the sims, waits until each answers an RMCP presence ping,
// and stops them (SIGKILL by PID, then wait) in t.Cleanup.
func Start(t testing.TB, o Options) []*BMC {
	t.Helper()
	Require(t)
	bmcs, err := start(o, t.TempDir)
	// Register cleanup first: a failed start stops what did start.
	t.Cleanup(func() { StopAll(bmcs) })
	if err != nil {
		t.Fatalf("ipmisim: %v", err)
	}
	return bmcs
}

// StartProcesses is Start for programs that are not tests (the benchmark).
// The caller must call StopAll.
func StartProcesses(o Options) ([]*BMC, error) {
	if o.Dir == "" {
		return nil, errors.New("ipmisim: Options.Dir is required outside tests")
	}
	bmcs, err := start(o, nil)
	if err != nil {
		StopAll(bmcs)
		return nil, err
	}
	return bmcs, nil
}

func start(o Options, tempDir func() string) ([]*BMC, error) {
	if o.N == 0 {
		o.N = 1
	}
	if o.Username == "" {
		o.Username = "admin"
	}
	if o.Password == "" {
		o.Password = "secret"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	if !o.First.Is4() || o.First.As4()[0] != 127 {
		return nil, fmt.Errorf("first address %v is not in 127.0.0.0/8", o.First)
	}
	dir := o.Dir
	if dir == "" {
		dir = tempDir()
	}
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		return nil, fmt.Errorf("ipmi_sim not found: %w", err)
	}

	var bmcs []*BMC
	addr := o.First
	for i := range o.N {
		if !addr.IsValid() || addr.As4()[0] != 127 {
			return bmcs, fmt.Errorf("sim %d: ran out of loopback addresses", i)
		}
		b := &BMC{
			Name:     fmt.Sprintf("sim%d", i),
			Addr:     addr,
			Port:     623,
			Username: o.Username,
			Password: o.Password,
			Dir:      filepath.Join(dir, addr.String()),
		}
		if err := b.write(o, i); err != nil {
			return bmcs, fmt.Errorf("sim %s: %w", addr, err)
		}
		if err := b.launch(bin); err != nil {
			return bmcs, fmt.Errorf("sim %s: %w", addr, err)
		}
		bmcs = append(bmcs, b)
		addr = addr.Next()
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.ReadyTimeout)
	defer cancel()
	for _, b := range bmcs {
		if err := b.waitReady(ctx); err != nil {
			return bmcs, err
		}
	}
	return bmcs, nil
}

// write creates the sim's files.
func (b *BMC) write(o Options, i int) error {
	if err := os.MkdirAll(filepath.Join(b.Dir, "state"), 0o755); err != nil {
		return err
	}
	ctl := filepath.Join(b.Dir, "ctl.sh")
	power := "0"
	if o.PowerOn {
		power = "1"
	}
	files := map[string]string{
		"ctl.sh":  chassisScript,
		"power":   power + "\n",
		"boot":    "default\n",
		"ctl.log": "",
	}
	guid := fmt.Sprintf("%032x", uint64(b.Addr.As4()[1])<<16|uint64(b.Addr.As4()[2])<<8|uint64(b.Addr.As4()[3]))
	var lan strings.Builder
	fmt.Fprintf(&lan, "name %q\nset_working_mc 0x20\n  startlan 1\n", b.Name)
	fmt.Fprintf(&lan, "    addr %s %d\n    priv_limit admin\n", b.Addr, b.Port)
	for _, p := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&lan, "    allowed_auths_%s md5\n", p)
	}
	fmt.Fprintf(&lan, "    guid %s\n  endlan\n", guid)
	fmt.Fprintf(&lan, "  user 2 true %q %q admin 10 md5\n", o.Username, o.Password)
	if o.Operator != "" {
		fmt.Fprintf(&lan, "  user 3 true %q %q operator 10 md5\n", o.Operator, o.OperatorPassword)
	}
	fmt.Fprintf(&lan, "  chassis_control \"%s %s\"\n", ctl, b.Dir)
	files["lan.conf"] = lan.String()

	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
	if o.FRU != nil {
		f := *o.FRU
		f.Serial = strings.ReplaceAll(f.Serial, "%d", strconv.Itoa(i))
		data, err := f.encode()
		if err != nil {
			return err
		}
		emu += emuFRU(data)
	}
	files["sim.emu"] = emu + "mc_enable 0x20\n"
	if o.Hook != "" {
		files["hook"] = o.Hook
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == "ctl.sh" || name == "hook" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

func (b *BMC) launch(bin string) error {
	out, err := os.Create(filepath.Join(b.Dir, "sim.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(bin, "-c", filepath.Join(b.Dir, "lan.conf"), "-f", filepath.Join(b.Dir, "sim.emu"),
		"-s", filepath.Join(b.Dir, "state"), "-n")
	cmd.Dir = b.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	// It dies with the test process even when no cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ipmi_sim: %w", err)
	}
	b.cmd = cmd
	return nil
}

// waitReady sends RMCP presence pings until a pong arrives or ctx ends.
func (b *BMC) waitReady(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		if err := ping(ctx, b.Addr, b.Port, byte(attempt)); err == nil {
			return nil
		} else if ctx.Err() != nil {
			out, _ := os.ReadFile(filepath.Join(b.Dir, "sim.out"))
			return fmt.Errorf("sim %s not ready: %w (last: %v; output: %s)", b.Addr, ctx.Err(), err, out)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping sends one ASF presence ping and waits up to 200 ms for the pong.
func ping(ctx context.Context, addr netip.Addr, port int, tag byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(200 * time.Millisecond)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	// RMCP header (v1.0, seq 0xff, class ASF) + ASF presence ping.
	msg := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, tag, 0x00, 0x00}
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if n < 9 || buf[8] != 0x40 {
		return fmt.Errorf("unexpected reply % x", buf[:n])
	}
	return nil
}

// PID is the sim's process ID, or 0 if it is not running.
func (b *BMC) PID() int {
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Freeze stops the sim with SIGSTOP: it keeps its socket but answers nothing.
func (b *BMC) Freeze() error { return b.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen sim with SIGCONT.
func (b *BMC) Thaw() error { return b.signal(syscall.SIGCONT) }

func (b *BMC) signal(s syscall.Signal) error {
	if b.PID() == 0 {
		return fmt.Errorf("sim %s is not running", b.Addr)
	}
	if err := b.cmd.Process.Signal(s); err != nil {
		return fmt.Errorf("signal %v to sim %s (pid %d): %w", s, b.Addr, b.PID(), err)
	}
	return nil
}

// Stop kills the sim by PID and waits for it. Stopping a stopped sim is a
// no-op.
func (b *BMC) Stop() error {
	if b.PID() == 0 {
		return nil
	}
	_ = b.cmd.Process.Kill() // SIGKILL also ends a SIGSTOPped process
	_ = b.cmd.Wait()
	b.cmd = nil
	return nil
}

// StopAll stops every sim in bmcs.
func StopAll(bmcs []*BMC) {
	for _, b := range bmcs {
		if b != nil {
			_ = b.Stop()
		}
	}
}
