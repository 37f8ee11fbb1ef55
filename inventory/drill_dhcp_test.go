package inventory

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
)

// syncBuf is a log buffer a child process writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestDrillTwoBootServers: two `ironrack serve` processes, each in its own
// namespace, authoritative on one L2 domain (a bridge) with one range, share
// the 3-server cluster. Under 2,000 perfdhcp clients no address goes to two
// MACs (the loser of a race NAKs and offers another address). Then a real
// dhclient, told to renew after 4 s and rebind after 8 s, holds a lease; the
// server that gave it is killed, and the client rebinds to the other.
// DHCP listens only on the veths the test created.
func TestDrillTwoBootServers(t *testing.T) {
	netns.Require(t, "perfdhcp", "dhclient")
	cl := consuldev.StartCluster(t, consuldev.ClusterOptions{})
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	s := clusterStore(t, cl.Client)
	dir := t.TempDir()
	lan := netns.New(t)
	lan.AddBridge("br0")
	names := []string{"a", "b"}
	addrs := []string{"10.88.0.1", "10.88.0.2"}
	var servers []*exec.Cmd
	var logs []*syncBuf
	for i, name := range names {
		ns := netns.New(t)
		lan.AddVeth("v"+name, "eth0", "br0", ns)
		ns.Run("ip", "addr", "add", addrs[i]+"/20", "dev", "eth0")
		data := filepath.Join(dir, "data-"+name)
		os.MkdirAll(data, 0o755)
		log := &syncBuf{}
		cmd := ns.Start(func(c *exec.Cmd) { c.Stdout, c.Stderr = log, log },
			bin, "--consul", cl.Client, "--key-file", filepath.Join(dir, "key"), "--log-level", "info",
			"serve", "--interface", "eth0", "--address", addrs[i]+"/20", "--dhcp-range", "10.88.1.0-10.88.15.250",
			"--lease-time", "1m", "--http-port", "8080", "--data-dir", data)
		servers = append(servers, cmd)
		logs = append(logs, log)
	}
	for i, log := range logs {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(log.String(), "serve: starting") {
			if time.Now().After(deadline) {
				t.Fatalf("serve %s did not start:\n%s", names[i], log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // past "starting": the sockets are bound

	// 2,000 perfdhcp clients at 200 exchanges/s for 12 s.
	pc := netns.New(t)
	lan.AddVeth("vp", "eth0", "br0", pc)
	pc.Run("ip", "addr", "add", "10.88.0.9/20", "dev", "eth0") // perfdhcp sends as a relay from it
	start := time.Now()
	out, err := pc.Output(60*time.Second, "perfdhcp", "-4", "-l", "eth0", "-R", "2000", "-r", "200", "-p", "12")
	if err != nil && !strings.Contains(err.Error(), "exit status 3") { // 3: some packets dropped
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	t.Logf("perfdhcp ran %s:\n%s", time.Since(start).Round(time.Millisecond), lastLines(out, 14))
	ctx := context.Background()
	leases, err := s.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	macOf := map[string]string{}
	now := time.Now()
	live := 0
	for _, l := range leases {
		if !l.Expires.After(now) {
			continue
		}
		live++
		if prev, dup := macOf[l.IP]; dup && prev != l.MAC {
			t.Errorf("address %s leased to two MACs: %s and %s", l.IP, prev, l.MAC)
		}
		macOf[l.IP] = l.MAC
	}
	naks := 0
	for _, log := range logs {
		naks += strings.Count(log.String(), "address leased by another server first")
	}
	t.Logf("%d live leases on %d addresses; %d requests NAKed because the other server leased the address first", live, len(macOf), naks)
	if live < 1000 {
		t.Errorf("only %d live leases after 2,000 perfdhcp clients", live)
	}

	// A real dhclient, renewing after 4 s and rebinding after 8 s.
	dc := netns.New(t)
	lan.AddVeth("vd", "eth0", "br0", dc)
	script := filepath.Join(dir, "dhclient-script")
	os.WriteFile(script, []byte(`#!/bin/sh
case "$reason" in BOUND|RENEW|REBIND|REBOOT)
  ip addr replace "$new_ip_address/20" dev "$interface" ;;
esac
exit 0
`), 0o755)
	conf := filepath.Join(dir, "dhclient.conf")
	os.WriteFile(conf, []byte("supersede dhcp-renewal-time 4;\nsupersede dhcp-rebinding-time 8;\n"), 0o644)
	dlog := &syncBuf{}
	dc.Start(func(c *exec.Cmd) { c.Stdout, c.Stderr = dlog, dlog }, "dhclient", "-4", "-d", "-cf", conf, "-sf", script, "-lf", filepath.Join(dir, "dhclient.leases"),
		"-pf", filepath.Join(dir, "dhclient.pid"), "eth0")
	defer func() {
		if t.Failed() {
			t.Logf("dhclient's output:\n%s\nserve a:\n%s\nserve b:\n%s", dlog.String(), lastLines(logs[0].String(), 20), lastLines(logs[1].String(), 20))
		}
	}()
	// The server of the client's latest ACK (a renewal may already have
	// moved it) is killed; the client must then get an ACK from the other.
	ack := regexp.MustCompile(`DHCPACK of (\S+) from (\S+)`)
	waitFor := func(max time.Duration, from int, ok func(ip, server string) bool) (string, string, int) {
		deadline := time.Now().Add(max)
		for time.Now().Before(deadline) {
			out := dlog.String()
			for _, m := range ack.FindAllStringSubmatchIndex(out[from:], -1) {
				ip, srv := out[from+m[2]:from+m[3]], out[from+m[4]:from+m[5]]
				if ok(ip, srv) {
					return ip, srv, from + m[1]
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("dhclient: no such DHCPACK within %s", max)
		return "", "", 0
	}
	ip, _, _ := waitFor(30*time.Second, 0, func(string, string) bool { return true })
	time.Sleep(time.Second)
	out = dlog.String()
	all := ack.FindAllStringSubmatch(out, -1)
	srv := all[len(all)-1][2]
	victim := slices.Index(addrs, srv)
	if victim < 0 {
		t.Fatalf("dhclient bound from %s, neither server", srv)
	}
	other := addrs[1-victim]
	t.Logf("dhclient holds %s from %s; killing serve %s (pid %d)", ip, srv, names[victim], servers[victim].Process.Pid)
	killed := time.Now()
	mark := len(dlog.String())
	syscall.Kill(servers[victim].Process.Pid, syscall.SIGKILL)
	ip2, _, _ := waitFor(40*time.Second, mark, func(_, server string) bool { return server == other })
	t.Logf("dhclient rebound: DHCPACK of %s from %s, %s after the kill", ip2, other, time.Since(killed).Round(100*time.Millisecond))
	if ip2 != ip {
		t.Errorf("the client moved from %s to %s: the other server should have kept its address", ip, ip2)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprint(strings.Join(lines, "\n"))
}
