package netns

import (
	"net"
	"os/exec"
	"strings"
	"testing"
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
