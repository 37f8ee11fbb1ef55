package images_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/netns"
)

// debianBuild builds the OS image once per test binary, through the
// debootstrap tree cache, into a data dir removed when the binary exits.
var debianBuild struct {
	once  sync.Once
	dir   string
	built images.Built
	took  time.Duration
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if debianBuild.dir != "" {
		os.RemoveAll(debianBuild.dir)
	}
	os.Exit(code)
}

// buildDebian returns the image built with images.Debian: the machine's
// apt mirror, the boot-artifacts kernel, the pinned consul.
func buildDebian(t *testing.T) images.Built {
	t.Helper()
	netns.Require(t, "debootstrap", "mkfs.ext4", "modprobe")
	debianBuild.once.Do(func() {
		d, err := debianConfig()
		if err != nil {
			debianBuild.err = err
			return
		}
		if debianBuild.dir, err = os.MkdirTemp("", "ironrack-debian-"); err != nil {
			debianBuild.err = err
			return
		}
		d.DataDir = debianBuild.dir
		start := time.Now()
		debianBuild.built, debianBuild.err = d.Build(context.Background())
		debianBuild.took = time.Since(start)
	})
	if debianBuild.err != nil {
		t.Fatal(debianBuild.err)
	}
	return debianBuild.built
}

func debianConfig() (images.Debian, error) {
	ctx := context.Background()
	mirror, err := images.AptMirror("/")
	if err != nil {
		return images.Debian{}, err
	}
	cache, err := images.DefaultCacheDir()
	if err != nil {
		return images.Debian{}, err
	}
	kdir, err := images.KernelCache(ctx, "../scripts/boot-artifacts")
	if err != nil {
		return images.Debian{}, err
	}
	consul, err := consuldev.Binary()
	if err != nil {
		return images.Debian{}, err
	}
	return images.Debian{CacheDir: cache, Mirror: mirror, KernelDir: kdir, Consul: consul}, nil
}

// TestDebianBuild builds the OS image through the cache, then again: the
// second build must reuse both the debootstrap tree and the version. The
// root image must be ext4 labelled ironrack-root holding sshd, cloud-init
// and the pinned consul, with the image's configuration and no host keys.
func TestDebianBuild(t *testing.T) {
	b := buildDebian(t)
	t.Logf("built %s in %s (tree cached: %v)", b.Manifest.Version, debianBuild.took.Round(100*time.Millisecond), b.TreeCached)
	d, err := debianConfig()
	if err != nil {
		t.Fatal(err)
	}
	d.DataDir = debianBuild.dir
	start := time.Now()
	again, err := d.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !again.TreeCached || !again.Reused || again.Manifest.Version != b.Manifest.Version {
		t.Errorf("second build: tree cached %v, reused %v, version %s; want both reused and version %s",
			again.TreeCached, again.Reused, again.Manifest.Version, b.Manifest.Version)
	}
	t.Logf("second build took %s", time.Since(start).Round(time.Millisecond))

	m := b.Manifest
	if m.Name != "debian" || m.Kernel != "vmlinuz" || m.Initrd != "initrd.img" || m.Root != "root.img" || m.Cmdline != images.DebianCmdline {
		t.Errorf("manifest roles: %+v", m)
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img", "cmdline", "SHA256SUMS", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(b.Dir, f)); err != nil {
			t.Error(err)
		}
	}
	// The sums file is what sha256sum -c checks.
	cmd := exec.Command("sha256sum", "--quiet", "-c", "SHA256SUMS")
	cmd.Dir = b.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	line, _ := os.ReadFile(filepath.Join(b.Dir, "cmdline"))
	if string(line) != images.DebianCmdline+"\n" {
		t.Errorf("cmdline file %q", line)
	}

	root := filepath.Join(b.Dir, "root.img")
	out, err := exec.Command("dumpe2fs", "-h", root).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	if !strings.Contains(string(out), "Filesystem volume name:   ironrack-root") || !strings.Contains(string(out), "extent") {
		t.Errorf("root.img is not ext4 labelled ironrack-root:\n%s", out)
	}
	stat := func(p string) string {
		out, _ := exec.Command("debugfs", "-R", "stat "+p, root).Output()
		return string(out)
	}
	cat := func(p string) string {
		out, _ := exec.Command("debugfs", "-R", "cat "+p, root).Output()
		return string(out)
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/cloud-init", images.ConsulBinary, "/sbin/init", "/usr/sbin/resize2fs"} {
		if !strings.Contains(stat(p), "Type: regular") && !strings.Contains(stat(p), "Type: symlink") {
			t.Errorf("root.img lacks %s", p)
		}
	}
	consul, _ := consuldev.Binary()
	want, _ := os.ReadFile(consul)
	if got := cat(images.ConsulBinary); got != string(want) {
		t.Errorf("%s in root.img (%d bytes) is not the pinned consul (%d bytes)", images.ConsulBinary, len(got), len(want))
	}
	if !strings.Contains(stat(images.ConsulBinary), "Mode:  0755") {
		t.Errorf("consul is not executable:\n%s", stat(images.ConsulBinary))
	}
	for p, want := range map[string]string{
		"/etc/fstab":                              "LABEL=ironrack-root / ext4",
		"/etc/cloud/cloud.cfg.d/99_ironrack.cfg":  "locale: false",
		"/etc/systemd/system/consul.service":      "ConditionPathExists=" + images.ConsulConfigFile,
		"/etc/ssh/sshd_config.d/50-ironrack.conf": "PasswordAuthentication no",
		"/etc/passwd":                             "consul:x:",
	} {
		if !strings.Contains(cat(p), want) {
			t.Errorf("%s lacks %q:\n%s", p, want, cat(p))
		}
	}
	if strings.Contains(stat("/etc/ssh/ssh_host_ed25519_key"), "Type: regular") {
		t.Error("root.img carries the build's SSH host keys")
	}
	if s := cat("/etc/machine-id"); s != "" {
		t.Errorf("root.img carries a machine-id %q", s)
	}
	if shadow := cat("/etc/shadow"); !strings.HasPrefix(shadow, "root:*:") && !strings.HasPrefix(shadow, "root:!") {
		t.Errorf("root has a password: %.40q", shadow)
	}
}

// TestDebianBootQEMU boots the built image as a deployed machine does:
// Debian's kernel and the image's initramfs from the host (-kernel,
// -initrd), the image's cmdline plus NoCloudCmdline's fragment, and a
// copy of root.img as the virtio disk, under TCG, on a tap in a namespace
// of the test's own with busybox udhcpd and an HTTP server serving the
// seed that images.NoCloud rendered. cloud-init must fetch the seed, set
// the hostname and root's key (sshd accepts it), and start the Consul
// client agent, which joins a Consul dev server in the namespace and
// registers a service whose check passes.
func TestDebianBootQEMU(t *testing.T) {
	netns.Require(t, "qemu-system-x86_64", "busybox")
	b := buildDebian(t)
	consulBin, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}

	ns := netns.New(t)
	ns.AddBridge("imbr0", "192.0.2.1/24")
	ns.AddTap("imtap0", "imbr0")
	dir := t.TempDir()
	const mac, vmIP = "52:54:00:30:00:01", "192.0.2.50"
	conf := filepath.Join(dir, "udhcpd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`start 192.0.2.100
end 192.0.2.150
interface imbr0
lease_file %s
static_lease %s %s
opt subnet 255.255.255.0
opt router 192.0.2.1
opt lease 3600
`, filepath.Join(dir, "udhcpd.leases"), mac, vmIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "udhcpd.leases"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Start(func(c *exec.Cmd) { c.Stdout, c.Stderr = io.Discard, io.Discard }, "busybox", "udhcpd", "-f", conf)

	// A Consul dev server on the bridge: the inventory's Consul, as the
	// machine sees it, secured as a production cluster is (securedServer).
	consulLog := filepath.Join(dir, "consul.log")
	lf, err := os.Create(consulLog)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	secured, ca := securedServer(t, testGossipKey, testMgmtToken)
	// Gossip timings for a guest under TCG on a loaded host: the dev
	// defaults declare it dead between two slow acks.
	ns.Start(func(c *exec.Cmd) { c.Stdout, c.Stderr = lf, lf }, consulBin, "agent", "-dev", "-node", "inventory",
		"-bind", "192.0.2.1", "-client", "192.0.2.1", "-hcl", "ports { dns = -1 grpc = -1 grpc_tls = -1 }", "-hcl", "disable_update_check = true",
		"-hcl", `gossip_lan { probe_interval = "2s" probe_timeout = "1500ms" suspicion_mult = 8 }`, "-hcl", secured)
	inNS := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}}

	// The NoCloud seed, served over HTTP inside the namespace.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	const hostname = "im-deb-1"
	md, ud, err := images.NoCloud(images.Seed{
		InstanceID: "m-0001-1", Hostname: hostname, MachineID: "m-0001", Role: "web",
		SSHAuthorizedKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " test@ironrack"},
		ConsulJoin:        []string{"192.0.2.1"},
		// The management token as the agent's: a token scoped to node and
		// service writes is TestNoCloudConsulAgentSecured's.
		ConsulGossipKey: testGossipKey, ConsulToken: testMgmtToken, ConsulCACert: string(ca),
		Services:      []images.Service{{Name: "ssh", Port: 22, Check: &images.Check{TCP: "127.0.0.1:22", Interval: 5 * time.Second}}},
		ExtraUserData: []byte("#cloud-config\nwrite_files:\n  - path: /etc/ironrack-operator\n    content: from the operator\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		fetched []string
	)
	mux := http.NewServeMux()
	for name, body := range map[string][]byte{"meta-data": md, "user-data": ud, "vendor-data": nil} {
		mux.HandleFunc("/nocloud/tok-1/"+name, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fetched = append(fetched, name)
			mu.Unlock()
			w.Write(body)
		})
	}
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", "192.0.2.1:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	frag, err := images.NoCloudCmdline("http://192.0.2.1:8080/nocloud/tok-1")
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile(filepath.Join(b.Dir, images.CmdlineFile))
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(b.Dir, images.RootFile), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy root.img: %v: %s", err, out)
	}
	serial := filepath.Join(dir, "serial.log")
	start := time.Now()
	ns.Start(nil, "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "file:"+serial, "-no-reboot",
		"-kernel", filepath.Join(b.Dir, images.KernelFile), "-initrd", filepath.Join(b.Dir, images.InitrdFile),
		"-append", strings.TrimSpace(string(cmdline))+" "+frag,
		"-drive", "file="+disk+",format=raw,if=virtio",
		"-netdev", "tap,id=n0,ifname=imtap0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac="+mac)
	console := func() string { b, _ := os.ReadFile(serial); return labtest.Tail(string(b), 40) }

	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	var client *ssh.Client
	deadline := time.Now().Add(6 * time.Minute)
	var lastErr error
	for client == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no SSH login to %s within 6 min: %v\nseed fetched: %v\nconsole:\n%s", vmIP, lastErr, fetched, console())
		}
		var conn net.Conn
		lastErr = ns.Do(func() error {
			var err error
			conn, err = net.DialTimeout("tcp", vmIP+":22", 2*time.Second)
			return err
		})
		if lastErr == nil {
			c, chans, reqs, err := ssh.NewClientConn(conn, vmIP+":22", cfg)
			if err == nil {
				client = ssh.NewClient(c, chans, reqs)
				break
			}
			conn.Close()
			lastErr = err
		}
		time.Sleep(time.Second)
	}
	defer client.Close()
	t.Logf("boot to SSH login: %s", time.Since(start).Round(100*time.Millisecond))
	run := func(cmd string) string {
		t.Helper()
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.CombinedOutput(cmd)
		if err != nil {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("hostname"); got != hostname {
		t.Errorf("hostname %q, want %q (from the NoCloud seed)", got, hostname)
	}
	if got := run("cat /etc/ironrack-operator"); got != "from the operator" {
		t.Errorf("the operator's user-data part was not applied: %q", got)
	}
	t.Logf("cloud-init: %s", run("cloud-init status --wait --long | head -5; findmnt -no SOURCE,OPTIONS /"))
	if out := run("cloud-init schema --system 2>&1 || true"); !strings.Contains(out, "Valid cloud-config") {
		t.Errorf("cloud-init schema --system: the rendered user-data is not valid:\n%s", out)
	}

	// cloud-init wrote the agent's files for the agent's group only (they
	// may hold the gossip key and the ACL token).
	for _, f := range []string{images.ConsulConfigFile, images.ConsulServicesFile, images.ConsulCAFile} {
		if got := run("stat -c '%U:%G %a' " + f); got != "root:consul 640" {
			t.Errorf("%s: owner and mode %q, want root:consul 640", f, got)
		}
	}

	// The machine's Consul agent joins and registers ssh with a passing
	// check, on its own node with the machine's meta.
	deadline = time.Now().Add(3 * time.Minute)
	for {
		status, err := consulGet(inNS, "http://192.0.2.1:8500/v1/health/checks/ssh")
		var checks []struct{ Node, Status string }
		if err == nil && json.Unmarshal([]byte(status), &checks) == nil && len(checks) == 1 &&
			checks[0].Status == "passing" && checks[0].Node == hostname {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service ssh not passing on node %s within 3 min: %s %v\nagent: %s\nconsole:\n%s", hostname, status, err,
				run("systemctl status consul --no-pager | tail -15"), console())
		}
		time.Sleep(2 * time.Second)
	}
	node, err := consulGet(inNS, "http://192.0.2.1:8500/v1/catalog/node/"+hostname)
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		Node struct{ Meta map[string]string }
	}
	if err := json.Unmarshal([]byte(node), &n); err != nil {
		t.Fatal(err)
	}
	if n.Node.Meta[images.MetaMachine] != "m-0001" || n.Node.Meta[images.MetaRole] != "web" {
		t.Errorf("agent node meta %v, want %s=m-0001 %s=web", n.Node.Meta, images.MetaMachine, images.MetaRole)
	}
	t.Logf("boot to a passing Consul check: %s", time.Since(start).Round(100*time.Millisecond))
	// Where the boot spent its time, from the guest's own clock.
	if b, err := os.ReadFile(serial); err == nil {
		var marks []string
		ansi := regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
		for _, line := range strings.Split(ansi.ReplaceAllString(string(b), ""), "\n") {
			if strings.Contains(line, "ironrack-initrd: root") || strings.Contains(line, "running 'init") ||
				strings.Contains(line, "Finished networking.service") || strings.Contains(line, "Started ssh.service") ||
				strings.Contains(line, "Started consul.service") || strings.Contains(line, "finished at") {
				marks = append(marks, strings.TrimSpace(line))
			}
		}
		t.Logf("console marks:\n%s", strings.Join(marks, "\n"))
	}
	mu.Lock()
	t.Logf("seed requests: %v", fetched)
	mu.Unlock()
}

// The secured test servers' gossip key and management token (securedServer).
const testGossipKey, testMgmtToken = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "8a0f5e2c-1b3d-4e6f-9a7b-c8d9e0f1a2b3"

// consulGet GETs url with the management token.
func consulGet(c *http.Client, url string) (string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Consul-Token", testMgmtToken)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}
