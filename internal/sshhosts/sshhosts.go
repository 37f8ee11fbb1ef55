// Package sshhosts runs many real OpenSSH servers for tests, each a "host"
// of its own: its own network namespace, joined to the test process by a
// veth to a bridge in a hub namespace, and its own mount namespace with
// private /etc/ssh (config, host key, authorized_keys), /srv, /run and /root
// (root's home: the test machine's shell start-up files stay out). Hosts
// share no file, and nothing touches the test machine's own sshd or /etc.
//
// Every host accepts root logins with one client key (Cluster.Signer,
// Cluster.KeyFile), and Cluster.KnownHosts lists every host's key, so tests
// check host keys strictly. Host.SetUnreachable takes a host off the network.
//
// Test harness only: production code never imports it.
package sshhosts

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/netns"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is Debian's sshd; it must be run by its absolute path.
const Binary = "/usr/sbin/sshd"

// Cluster is a set of sshd hosts started by Start.
type Cluster struct {
	Hosts []*Host
	// Signer is the client key every host authorizes for root.
	Signer ssh.Signer
	// KeyFile holds Signer's private key (OpenSSH format, mode 0600).
	KeyFile string
	// KnownHosts is a known_hosts file with every host's key.
	KnownHosts string
	// Subnet is the hosts' /24; the test process has its .1.
	Subnet netip.Prefix

	t   testing.TB
	hub *netns.NS
}

// Host is one sshd in its own namespaces.
type Host struct {
	// Name is h01, h02, ...; /srv/ident on the host holds it.
	Name string
	// IP is the host's address; Addr is IP:22.
	IP, Addr string
	// HostKey is the public host key the host offers.
	HostKey ssh.PublicKey
	// Dir is the host's private tree: etc-ssh, srv, run and root are
	// mounted on /etc/ssh, /srv, /run and /root inside the host.
	Dir string
	NS  *netns.NS

	c    *Cluster
	link string // the host's veth end in the hub
}

// Start starts n hosts (at most 200). It skips t under -short and fails it
// without root or sshd. Cleanup stops every sshd by PID and deletes the
// namespaces.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	netns.Require(t, "unshare", "mount")
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("sshd: %v (scripts/setup installs openssh-server)", err)
	}
	if n < 1 || n > 200 {
		t.Fatalf("sshhosts: %d hosts: want 1 to 200", n)
	}
	c := &Cluster{t: t}
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if c.Signer, err = ssh.NewSignerFromKey(priv); err != nil {
		t.Fatal(err)
	}
	c.KeyFile = filepath.Join(dir, "id_ed25519")
	writeKey(t, c.KeyFile, priv)
	authorized := ssh.MarshalAuthorizedKey(c.Signer.PublicKey())

	c.Subnet = freeSubnet(t)
	c.hub = netns.New(t)
	c.hub.AddBridge("br0")
	// The test process's end of the network: a veth from the root
	// namespace to the hub's bridge. Deleting the hub deletes it.
	rootEnd := fmt.Sprintf("irs%d", os.Getpid()%1000000) + strconv.Itoa(int(c.Subnet.Addr().As4()[2]))
	if len(rootEnd) > 15 {
		rootEnd = rootEnd[:15]
	}
	gw := netip.PrefixFrom(c.Subnet.Addr().Next(), 24)
	for _, args := range [][]string{
		{"link", "add", rootEnd, "type", "veth", "peer", "name", "up0", "netns", c.hub.Name},
		{"addr", "add", gw.String(), "dev", rootEnd},
		{"link", "set", rootEnd, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	c.hub.Run("ip", "link", "set", "up0", "master", "br0", "up")

	var known strings.Builder
	ip := c.Subnet.Addr().As4()
	for i := range n {
		h := &Host{Name: fmt.Sprintf("h%02d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("h%02d", i+1)), c: c}
		ip[3] = byte(10 + i)
		h.IP = netip.AddrFrom4(ip).String()
		h.Addr = net.JoinHostPort(h.IP, "22")
		h.link = fmt.Sprintf("v%d", i+1)
		h.setup(t, authorized)
		known.WriteString(knownhosts.Line([]string{knownhosts.Normalize(h.Addr)}, h.HostKey) + "\n")
		c.Hosts = append(c.Hosts, h)
	}
	c.KnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(c.KnownHosts, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Start every sshd, then wait for all of them.
	for _, h := range c.Hosts {
		h.start(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, h := range c.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = waitListen(h.Addr, 15*time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %s: %v (log: %s)", c.Hosts[i].Name, err, c.Hosts[i].Log())
		}
	}
	return c
}

// setup makes the host's namespace, link, address and private tree.
func (h *Host) setup(t testing.TB, authorized []byte) {
	h.NS = netns.New(t)
	h.c.hub.AddVeth(h.link, "eth0", "br0", h.NS)
	h.NS.Run("ip", "addr", "add", h.IP+"/24", "dev", "eth0")
	for _, d := range []string{"etc-ssh", "srv", "run", "root"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	h.HostKey = signer.PublicKey()
	etc := filepath.Join(h.Dir, "etc-ssh")
	writeKey(t, filepath.Join(etc, "ssh_host_ed25519_key"), priv)
	files := map[string][]byte{
		filepath.Join(etc, "ssh_host_ed25519_key.pub"): ssh.MarshalAuthorizedKey(h.HostKey),
		filepath.Join(etc, "authorized_keys"):          authorized,
		filepath.Join(etc, "sshd_config"): []byte(`ListenAddress ` + h.IP + `
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AuthorizedKeysFile /etc/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100:30:200
LogLevel INFO
`),
		filepath.Join(h.Dir, "srv", "ident"): []byte(h.Name + "\n"),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs sshd inside the host's namespaces: a mount namespace of its own
// (unshare, private propagation) in which the host's tree is bind-mounted
// over /etc/ssh, /srv, /run and /root.
func (h *Host) start(t testing.TB) {
	script := fmt.Sprintf(`set -e
mount --bind %[1]s/etc-ssh /etc/ssh
mount --bind %[1]s/srv /srv
mount --bind %[1]s/run /run
mount --bind %[1]s/root /root
mkdir -p /run/sshd
exec %[2]s -D -e -f /etc/ssh/sshd_config 2>>%[1]s/sshd.log`, h.Dir, Binary)
	h.NS.Start(nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
}

// Log is the host's sshd log so far.
func (h *Host) Log() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "sshd.log"))
	return string(b)
}

// SetUnreachable takes the host off the network (its link on the hub's
// bridge down: connections time out) or puts it back.
func (h *Host) SetUnreachable(off bool) {
	h.c.t.Helper()
	state := "up"
	if off {
		state = "down"
	}
	h.c.hub.Run("ip", "link", "set", h.link, state)
}

// Procs returns the PIDs of the processes in the host's network namespace
// whose command line contains marker.
func (h *Host) Procs(marker string) []int {
	out, err := exec.Command("ip", "netns", "pids", h.NS.Name).Output()
	if err != nil {
		h.c.t.Fatalf("ip netns pids %s: %v", h.NS.Name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		b, err := os.ReadFile("/proc/" + f + "/cmdline")
		if err != nil {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
	}
	return pids
}

// HostKeyCallback is a strict callback over KnownHosts.
func (c *Cluster) HostKeyCallback() ssh.HostKeyCallback {
	cb, err := knownhosts.New(c.KnownHosts)
	if err != nil {
		c.t.Fatal(err)
	}
	return cb
}

func writeKey(t testing.TB, path string, priv ed25519.PrivateKey) {
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitListen(addr string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		var d net.Dialer
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", addr)
		dcancel()
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sshd on %s did not listen within %v: %w", addr, within, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freeSubnet picks a /24 in 10.214.0.0/16, by a hash of the PID, that no
// address or route of the test machine overlaps.
func freeSubnet(t testing.TB) netip.Prefix {
	var busy []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
					busy = append(busy, p.Masked())
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 8 || f[1] == "00000000" {
				continue
			}
			dst, err1 := hex.DecodeString(f[1])
			mask, err2 := hex.DecodeString(f[7])
			if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
				continue
			}
			ones, _ := net.IPv4Mask(mask[3], mask[2], mask[1], mask[0]).Size()
			busy = append(busy, netip.PrefixFrom(netip.AddrFrom4([4]byte{dst[3], dst[2], dst[1], dst[0]}), ones).Masked())
		}
	}
	h := fnv.New32a()
	fmt.Fprint(h, os.Getpid(), time.Now().UnixNano())
	start := byte(h.Sum32())
	for i := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, start + byte(i), 0}), 24)
		free := true
		for _, o := range busy {
			if o.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p
		}
	}
	t.Fatal("sshhosts: no free /24 in 10.214.0.0/16")
	return netip.Prefix{}
}
