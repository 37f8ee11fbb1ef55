package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/agent/wire"
)

// TestParseCmdlineIPv6: the boot server's URL may be an IPv6 literal in
// brackets (a machine booted over DHCPv6); it is taken whole.
func TestParseCmdlineIPv6(t *testing.T) {
	got := ParseCmdline("console=ttyS0 ironrack.mode=discover ironrack.url=http://[2001:db8::1]:8080 ironrack.machine=m-1 ironrack.token=m-1.abc ironrack.mac=52:54:00:AA:00:01 quiet")
	want := Cmdline{Mode: "discover", URL: "http://[2001:db8::1]:8080", Machine: "m-1", Token: "m-1.abc", MAC: "52:54:00:aa:00:01"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseCmdline (-want +got):\n%s", d)
	}
}

// TestPostOverIPv6: the agent's report reaches a server on an IPv6
// literal URL (loopback ::1), path and token intact.
func TestPostOverIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	var path, auth string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, auth = r.URL.Path, r.Header.Get("Authorization")
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://[::1]:") {
		t.Fatalf("server URL %s", srv.URL)
	}
	c := ParseCmdline("ironrack.url=" + srv.URL + " ironrack.token=tok")
	if err := (&Poster{URL: c.URL, Token: c.Token}).Post(context.Background(), wire.Report{Kind: "facts", Facts: &wire.Facts{}}); err != nil {
		t.Fatal(err)
	}
	if path != wire.ReportPath || !strings.Contains(auth, "tok") {
		t.Errorf("server saw path %q auth %q", path, auth)
	}
}
