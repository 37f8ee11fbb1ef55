package netns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNamespaceBridgeVethAndDo(t *testing.T) {
	Require(t, "busybox")
	a, b := New(t), New(t)
	if a.Name == b.Name {
		t.Fatalf("two namespaces share the name %s", a.Name)
	}
	a.AddBridge("br0", "192.0.2.1/24")
	a.AddVeth("v0", "c0", "br0", b)
	a.AddTap("tap0", "br0")
	b.Run("ip", "addr", "add", "192.0.2.2/24", "dev", "c0")

	// Run fails the test if the ping gets no answer.
	b.Run("busybox", "ping", "-c", "1", "-W", "5", "192.0.2.1")

	var names []string
	if err := a.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "br0") || !strings.Contains(got, "tap0") {
		t.Fatalf("interfaces seen inside %s: %s", a.Name, got)
	}
	// The host namespace must not see the test's devices.
	if _, err := net.InterfaceByName("br0"); err == nil {
		if out, _ := exec.Command("ip", "-d", "link", "show", "br0").Output(); strings.Contains(string(out), "bridge") {
			t.Log("note: host has its own br0; not ours")
		}
	}
}

// TestStartDiesWithTest: a process started in a namespace dies with the
// test process even when no cleanup runs. A child test process starts
// `sleep` in a namespace of its own and kills itself; the sleep must be
// gone (or a zombie) within 5 s. The child's namespace is deleted here.
func TestStartDiesWithTest(t *testing.T) {
	if os.Getenv("IRONRACK_NETNS_CHILD") != "" {
		n := New(t)
		cmd := n.Start(nil, "sleep", "300")
		fmt.Printf("child %d %s\n", cmd.Process.Pid, n.Name)
		os.Stdout.Sync()
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	}
	Require(t, "sleep")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartDiesWithTest$")
	cmd.Env = append(os.Environ(), "IRONRACK_NETNS_CHILD=1")
	out, _ := cmd.Output() // killed: the error is expected
	var pid int
	var name string
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "child %d %s", &pid, &name); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the child printed no process: %q", out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			_ = unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("sleep (pid %d) outlived the killed test process: %s", pid, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
