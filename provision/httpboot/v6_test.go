package httpboot_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// TestScriptsOverIPv6: with Addr6 the server also listens on the IPv6
// address, and a script fetched there points the agent and its kernel at
// the IPv6 base URL (brackets and all), while one fetched over IPv4 keeps
// the IPv4 base.
func TestScriptsOverIPv6(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	base4 := "http://" + ln.Addr().String()
	addr6 := net.JoinHostPort("::1", strconv.Itoa(port))
	base6 := "http://" + addr6
	inv := &memInventory{machines: map[string]ipxe.Machine{
		"52:54:00:00:00:02": {ID: "m2", MAC: "52:54:00:00:00:02", State: ipxe.StateCommissioning, Token: "tok-m2"},
	}}
	srv, err := httpboot.New(httpboot.Config{
		Listener: ln, Addr6: addr6, BaseURL6: base6,
		Env:      ipxe.Env{BaseURL: base4},
		Machines: inv, Boots: inv,
	})
	must(t, err)
	servetest.Run(t, 10*time.Second, srv.Serve)
	time.Sleep(50 * time.Millisecond)
	for base, want := range map[string]string{base4: base4, base6: base6} {
		code, body := curl(t, "-g", base+"/boot.ipxe?mac=52:54:00:00:00:02")
		if code != 200 {
			t.Fatalf("%s: status %d: %s", base, code, body)
		}
		for _, s := range []string{"ironrack.url=" + want, "kernel " + want + "/images/agent/"} {
			if !strings.Contains(body, s) {
				t.Errorf("script from %s lacks %q:\n%s", base, s, body)
			}
		}
	}
	if !strings.HasPrefix(base6, "http://[::1]:") {
		t.Errorf("IPv6 base %s", base6)
	}
}
