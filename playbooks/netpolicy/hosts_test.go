package netpolicy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
)

// guardRootRuleset fails the test if the test machine's own ruleset (the
// root namespace's) differs after the test from before it.
func guardRootRuleset(t *testing.T) {
	t.Helper()
	list := func() string {
		out, err := exec.Command("nft", "list", "ruleset").Output()
		if err != nil {
			t.Fatalf("nft list ruleset in the root namespace: %v", err)
		}
		return string(out)
	}
	before := list()
	t.Cleanup(func() {
		if after := list(); after != before {
			t.Errorf("the root namespace's ruleset changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// testHost is one machine: its own network namespace on the test LAN and
// its own mount namespace (a private /run), held by a sleeping process.
type testHost struct {
	ns     *netns.NS
	holder int
	ip     string
	m      *inventory.Machine
}

// lan is a test LAN: a bridge in its own namespace, an admin namespace at
// 10.77.0.200 and hosts at the addresses given.
type lan struct {
	admin *netns.NS
	hosts map[string]*testHost
}

func newLAN(t *testing.T, machines ...*inventory.Machine) *lan {
	t.Helper()
	netns.Require(t, "nft", "nsenter", "unshare", "setsid")
	guardRootRuleset(t)
	br := netns.New(t)
	br.AddBridge("br0")
	l := &lan{admin: netns.New(t), hosts: map[string]*testHost{}}
	br.AddVeth("va", "eth0", "br0", l.admin)
	l.admin.Run("ip", "addr", "add", "10.77.0.200/24", "dev", "eth0")
	for i, m := range machines {
		ns := netns.New(t)
		br.AddVeth(fmt.Sprintf("vh%d", i), "eth0", "br0", ns)
		ns.Run("ip", "addr", "add", m.IP+"/24", "dev", "eth0")
		cmd := ns.Start(nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /run && exec sleep 600")
		h := &testHost{ns: ns, holder: cmd.Process.Pid, ip: m.IP, m: m}
		deadline := time.Now().Add(5 * time.Second)
		for exec.Command("nsenter", "-t", strconv.Itoa(h.holder), "-m", "test", "-e", "/run/netns").Run() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("host %s: private /run not mounted in 5s", m.ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		l.hosts[m.ID] = h
	}
	// Wait for the LAN: a connection to a closed port is refused (RST)
	// once the path works; before, it times out.
	for _, h := range l.hosts {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := l.admin.Do(func() error {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(h.ip, "9"), 500*time.Millisecond)
				if err == nil {
					c.Close()
				}
				return err
			})
			if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("host %s not reachable on the test LAN in 10s: %v", h.m.ID, err)
			}
		}
	}
	return l
}

// nsRunner runs commands in a host's network and mount namespaces with a
// real shell: the real peer for nft.
type nsRunner struct {
	pid   int
	close func()
}

func (r nsRunner) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(r.pid), "-m", "-n", "sh", "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.WaitDelay = time.Second // a detached child holding a pipe must not hold us
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func (r nsRunner) Close() error {
	if r.close != nil {
		r.close()
	}
	return nil
}

// dialer makes a "connection" to a host the way an SSH client does, over
// the test LAN: a real TCP connection from the admin namespace to the
// host's port 22 (a listener the test runs there), with a 1s timeout, and
// fails when the host's firewall drops it. Only then does it hand out a
// shell in the host's namespaces, which stands in for the SSH session.
func (l *lan) dialer(t *testing.T) Dialer {
	seen := map[*testHost]bool{}
	for _, h := range l.hosts {
		if !seen[h] {
			seen[h] = true
			h.listenTCP(t, 22)
		}
	}
	return func(ctx context.Context, m *inventory.Machine) (Runner, error) {
		h := l.hosts[m.ID]
		if h == nil {
			return nil, fmt.Errorf("no test host %s", m.ID)
		}
		var conn net.Conn
		err := l.admin.Do(func() error {
			var err error
			conn, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(h.ip, "22"))
			return err
		})
		if err != nil {
			return nil, err
		}
		return nsRunner{pid: h.holder, close: func() { conn.Close() }}, nil
	}
}

// listenTCP serves port in the host's namespace: each connection gets "ok".
func (h *testHost) listenTCP(t *testing.T, port int) {
	t.Helper()
	var ln net.Listener
	if err := h.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

// listenUDP echoes datagrams on port in the host's namespace.
func (h *testHost) listenUDP(t *testing.T, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := h.ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], addr)
		}
	}()
}

// reachSoon is reach tried up to three times: for connections that must
// get through on a loaded machine.
func reachSoon(from *netns.NS, proto, addr string) bool {
	for range 3 {
		if reach(from, proto, addr) {
			return true
		}
	}
	return false
}

// reach tries a TCP connection (reading "ok") or a UDP round trip from
// namespace from to addr, with a 1s timeout.
func reach(from *netns.NS, proto, addr string) bool {
	err := from.Do(func() error {
		c, err := net.DialTimeout(proto, addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
		}
		buf := make([]byte, 4)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if proto == "tcp" && !bytes.Equal(buf[:n], []byte("ok")) {
			return fmt.Errorf("read %q", buf[:n])
		}
		return nil
	})
	return err == nil
}

// hostRuleset is the ironrack table as the host lists it.
func (h *testHost) table(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command("nsenter", "-t", strconv.Itoa(h.holder), "-n", "nft", "list", "table", "inet", Table).CombinedOutput()
	return strings.TrimSpace(string(out))
}
