// Package netns gives tests a private network to run real protocol peers in:
// a Linux network namespace (ip netns) with bridges, veth pairs and tap
// devices, deleted with everything inside it when the test ends.
//
// It owns nothing outside the namespaces it creates. Names are unique per
// process and call (prefix, pid, counter), so test binaries of different
// packages running in parallel never collide, and Cleanup deletes only what
// this process created, by name.
//
// Tests that need it call Require first: under -short it skips; otherwise a
// missing privilege or tool is a test failure, because CI always has them.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// counter makes namespace names unique within one process.
var counter atomic.Uint32

// Require skips t under -short and fails it when the test cannot create
// namespaces: not root, or a tool in tools (plus ip) missing from PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, network namespaces and real peers; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces (run as root, or use -short)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s in PATH (scripts/setup installs it): %v", tool, err)
		}
	}
}

// NS is one network namespace created by New.
type NS struct {
	// Name is the namespace's name for `ip netns`.
	Name string
	t    testing.TB
}

// New creates a namespace with loopback up and IPv6 duplicate address
// detection off (so link-local addresses are usable at once), and deletes
// it in t.Cleanup after killing every process still inside it.
func New(t testing.TB) *NS {
	t.Helper()
	name := fmt.Sprintf("irt%dn%d", os.Getpid(), counter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, t: t}
	t.Cleanup(n.delete)
	n.Run("ip", "link", "set", "lo", "up")
	n.Run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return n
}

// delete kills the processes left in the namespace (by PID, as listed by
// `ip netns pids`) and deletes the namespace, which destroys its devices.
func (n *NS) delete() {
	out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		n.t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// Command returns a command that runs argv inside the namespace.
func (n *NS) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Run runs argv inside the namespace, waits at most 30s, fails the test on
// error and returns its standard output.
func (n *NS) Run(argv ...string) string {
	n.t.Helper()
	out, err := n.Output(30*time.Second, argv...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Output runs argv inside the namespace for at most timeout and returns its
// standard output; the error carries its standard error.
func (n *NS) Output(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.Command(ctx, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("in netns %s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Start starts argv inside the namespace and kills it by PID in t.Cleanup
// (before the namespace is deleted), or when the test process dies. Stdout
// and stderr go to the returned buffers' owner: set cmd.Stdout/Stderr via
// the prepare func if needed.
func (n *NS) Start(prepare func(*exec.Cmd), argv ...string) *exec.Cmd {
	n.t.Helper()
	cmd := n.Command(context.Background(), argv...)
	if prepare != nil {
		prepare(cmd)
	}
	// `ip netns exec` execs argv, so this is its process: it dies with the
	// test process even when no cleanup runs (killed, or a -timeout panic).
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &unix.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = unix.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("in netns %s: start %s: %v", n.Name, strings.Join(argv, " "), err)
	}
	n.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// AddBridge creates bridge name, up, with the given addresses (CIDR form,
// e.g. "192.0.2.1/24"; none is fine).
func (n *NS) AddBridge(name string, addrs ...string) {
	n.t.Helper()
	n.Run("ip", "link", "add", name, "type", "bridge")
	for _, a := range addrs {
		n.Run("ip", "addr", "add", a, "dev", name)
	}
	n.Run("ip", "link", "set", name, "up")
}

// AddVeth creates a veth pair: local stays in n and joins bridge (if not
// empty); peer moves to peerNS (nil: stays in n). Both ends are set up.
func (n *NS) AddVeth(local, peer, bridge string, peerNS *NS) {
	n.t.Helper()
	n.Run("ip", "link", "add", local, "type", "veth", "peer", "name", peer)
	if bridge != "" {
		n.Run("ip", "link", "set", local, "master", bridge)
	}
	n.Run("ip", "link", "set", local, "up")
	target := n
	if peerNS != nil {
		n.Run("ip", "link", "set", peer, "netns", peerNS.Name)
		target = peerNS
	}
	target.Run("ip", "link", "set", peer, "up")
}

// AddTap creates a persistent tap device for QEMU (-netdev tap,ifname=name,
// script=no,downscript=no, run inside n), joined to bridge and up.
func (n *NS) AddTap(name, bridge string) {
	n.t.Helper()
	n.Run("ip", "tuntap", "add", "dev", name, "mode", "tap")
	if bridge != "" {
		n.Run("ip", "link", "set", name, "master", bridge)
	}
	n.Run("ip", "link", "set", name, "up")
}

// Do runs fn on an OS thread that has entered the namespace, and waits for
// it. Sockets fn opens stay in the namespace for their whole life, whichever
// thread later uses them; but goroutines fn starts run on other threads,
// outside it. So a server run under Do must open its sockets and look up its
// interfaces in fn itself before starting goroutines, as every Serve in
// provision does.
//
// If the thread cannot return to the original namespace it is not reused:
// the goroutine exits locked and the runtime discards the thread.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w (after fn: %v)", n.Name, err, ferr)
			return // stay locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
