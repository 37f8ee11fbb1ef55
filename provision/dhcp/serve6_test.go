package dhcp_test

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// serve6 runs s in the server namespace for the test's length; br0 gets
// 2001:db8::1/64 first.
func (l lan) serve6(t *testing.T, s6 func() (*dhcp.Server6, error)) {
	t.Helper()
	l.srv.Run("ip", "addr", "add", "2001:db8::1/64", "dev", "br0", "nodad")
	servetest.Run(t, 10*time.Second, func(ctx context.Context) error {
		return l.srv.Do(func() error {
			s, err := s6()
			if err != nil {
				return err
			}
			return s.Serve(ctx)
		})
	})
	time.Sleep(100 * time.Millisecond)
}

// dhclient6Conf asks for the boot-file URL and vendor class, and sends
// what EDK2's HTTP boot sends: architecture 16 and vendor class
// "HTTPClient" under enterprise 343.
const dhclient6Conf = `option dhcp6.bootfile-url code 59 = string;
option dhcp6.client-arch-type code 61 = unsigned integer 16;
option dhcp6.vendor-class code 16 = {integer 32, integer 16, string};
send dhcp6.client-arch-type 16;
send dhcp6.vendor-class 343 10 "HTTPClient";
request dhcp6.name-servers, dhcp6.bootfile-url, dhcp6.vendor-class;
`

// dhclient6 runs ISC dhclient -6 (args: -S for stateless) on c0 until
// its script sees reason, and returns the script's environment.
func (l lan) dhclient6(t *testing.T, reason string, args ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := filepath.Join(dir, "script.sh")
	body := "#!/bin/sh\n[ \"$reason\" = " + reason + " ] && env > " + out + ".tmp && mv " + out + ".tmp " + out + "\nexit 0\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dhclient6.conf")
	if err := os.WriteFile(conf, []byte(dhclient6Conf), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"dhclient", "-6", "-d", "-v", "-1", "-cf", conf, "-lf", filepath.Join(dir, "leases"),
		"-pf", filepath.Join(dir, "pid"), "-sf", script}, args...)
	var log strings.Builder
	cmd := l.cli.Start(func(c *exec.Cmd) { c.Stdout, c.Stderr = &log, &log }, append(argv, "c0")...)
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(out); err == nil {
			defer f.Close()
			env := map[string]string{}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					env[k] = v
				}
			}
			return env
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dhclient -6 %v: no %s within 30s:\n%s", args, reason, log.String())
	return nil
}

// TestServe6DhclientStateful: the real ISC dhclient -6 gets an address from
// the range, option 59 with the HTTP boot URL and option 16 HTTPClient,
// and the lease is stored under the MAC of its DUID-LLT.
func TestServe6DhclientStateful(t *testing.T) {
	l := newLAN(t, "dhclient")
	store, enl := newMemStore(), &memEnlister{}
	l.serve6(t, func() (*dhcp.Server6, error) {
		return dhcp.New6(dhcp.Config6{
			Interface:  "br0",
			Address:    netip.MustParsePrefix("2001:db8::1/64"),
			RangeFirst: netip.MustParseAddr("2001:db8::100"),
			RangeLast:  netip.MustParseAddr("2001:db8::1ff"),
			DNS:        []netip.Addr{netip.MustParseAddr("2001:db8::53")},
			LeaseTime:  30 * time.Minute,
			Leases:     store,
			Enlister:   enl,
		})
	})
	env := l.dhclient6(t, "BOUND6")
	ip, err := netip.ParseAddr(env["new_ip6_address"])
	if err != nil || ip.Less(netip.MustParseAddr("2001:db8::100")) || netip.MustParseAddr("2001:db8::1ff").Less(ip) {
		t.Fatalf("dhclient bound %q, want an address in the range; env %v", env["new_ip6_address"], env)
	}
	if got := env["new_dhcp6_bootfile_url"]; got != "http://[2001:db8::1]:8080/ipxe/ipxe.efi" {
		t.Errorf("option 59 %q", got)
	}
	// dhclient prints the record as enterprise, length and the data in hex.
	if got := env["new_dhcp6_vendor_class"]; got != "343"+"10"+"48:54:54:50:43:6c:69:65:6e:74" {
		t.Errorf("option 16 %q, want 343, 10 and HTTPClient", got)
	}
	if got := env["new_dhcp6_name_servers"]; got != "2001:db8::53" {
		t.Errorf("DNS %q", got)
	}
	mac := strings.TrimSpace(l.cli.Run("cat", "/sys/class/net/c0/address"))
	if l, ok := store.get(mac); !ok || l.IP != ip {
		t.Errorf("stored lease for %s = %+v (%v), want %s", mac, l, ok, ip)
	}
	if got := enl.list(); len(got) != 1 || got[0] != mac {
		t.Errorf("enlisted %v, want [%s]", got, mac)
	}
}

// TestServe6DhclientStateless: dhclient -6 -S (Information-Request) gets
// DNS and option 59 from a server without a range, and no address.
func TestServe6DhclientStateless(t *testing.T) {
	l := newLAN(t, "dhclient")
	l.serve6(t, func() (*dhcp.Server6, error) {
		return dhcp.New6(dhcp.Config6{
			Interface: "br0",
			Address:   netip.MustParsePrefix("2001:db8::1/64"),
			DNS:       []netip.Addr{netip.MustParseAddr("2001:db8::53")},
		})
	})
	env := l.dhclient6(t, "RENEW6", "-S") // ISC dhclient's reason for an information-only Reply
	if got := env["new_dhcp6_name_servers"]; got != "2001:db8::53" {
		t.Errorf("DNS %q; env %v", got, env)
	}
	if got := env["new_dhcp6_bootfile_url"]; got != "http://[2001:db8::1]:8080/ipxe/ipxe.efi" {
		t.Errorf("option 59 %q", got)
	}
	if got := env["new_ip6_address"]; got != "" {
		t.Errorf("stateless server handed out %q", got)
	}
}
