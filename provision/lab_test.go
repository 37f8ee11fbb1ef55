package provision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

const ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"

// lab is a boot LAN for one test: a namespace with bridge br0
// (192.0.2.1/24) that the boot server binds, tap devices for QEMU, a real
// Consul dev agent, and provision.BootServer (what `ironrack serve` runs),
// each protocol server opened inside the namespace. Nothing connects the
// namespace to a real interface.
type lab struct {
	t     *testing.T
	ns    *netns.NS
	store *inventory.Store
	boot  *provision.BootServer
	data  string
	mu    sync.Mutex
	taps  int
	logs  *syncBuffer // the boot server's log, dumped on failure
}

// artifacts returns the cached kernel and busybox initramfs dir built by
// scripts/boot-artifacts (it builds them on first use).
func artifacts(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/boot-artifacts")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/boot-artifacts: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func newLab(t *testing.T, tools ...string) *lab {
	netns.Require(t, append([]string{"qemu-system-x86_64"}, tools...)...)
	art := artifacts(t)
	agent := consuldev.T(t)
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, store: inventory.New(client, inventory.Config{Who: "test"}), data: t.TempDir()}
	copyFile(t, filepath.Join(art, "vmlinuz"), filepath.Join(provision.AgentDir(l.data), "vmlinuz"))
	copyFile(t, filepath.Join(art, "initrd.img"), filepath.Join(provision.AgentDir(l.data), "initrd.img"))

	l.ns = netns.New(t)
	l.ns.AddBridge("br0", "192.0.2.1/24")
	l.logs = &syncBuffer{b: new(bytes.Buffer)}
	logger := slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.boot, err = provision.NewBootServer(provision.Config{
		Interface:  "br0",
		Address:    netip.MustParsePrefix("192.0.2.1/24"),
		RangeFirst: netip.MustParseAddr("192.0.2.100"),
		RangeLast:  netip.MustParseAddr("192.0.2.199"),
		DataDir:    l.data,
		Store:      l.store,
		Logger:     logger,
		LeaseTime:  10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range l.boot.Servers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.ns.Do(func() error { return s.Server.Serve(ctx) }); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", s.Name, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("boot server log:\n%s", l.logTail(200))
		}
	})
	return l
}

func (l *lab) logTail(n int) string {
	l.logs.mu.Lock()
	defer l.logs.mu.Unlock()
	lines := strings.Split(l.logs.b.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type vmSpec struct {
	MAC, Serial string
	UEFI        bool
	// NoROM boots the firmware's own PXE (OVMF) instead of QEMU's iPXE ROM,
	// so the machine takes the real-hardware path: TFTP first.
	NoROM  bool
	MemMiB int
	CPUs   int
	DiskGB int
}

type vm struct {
	spec   vmSpec
	serial string // path of the serial console log
}

// start boots a QEMU (TCG) machine on a new tap on br0. It is killed by PID
// when the test ends (netns.Start), before the namespace is deleted.
func (l *lab) start(spec vmSpec) *vm {
	l.t.Helper()
	l.mu.Lock()
	tap := fmt.Sprintf("tap%d", l.taps)
	l.taps++
	l.mu.Unlock()
	l.ns.AddTap(tap, "br0")
	dir := l.t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.Truncate(createEmpty(l.t, disk), int64(spec.DiskGB)<<30); err != nil {
		l.t.Fatal(err)
	}
	v := &vm{spec: spec, serial: filepath.Join(dir, "serial.log")}
	nic := "virtio-net-pci,netdev=n0,mac=" + spec.MAC
	if spec.NoROM {
		nic += ",romfile="
	}
	argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", fmt.Sprint(spec.MemMiB), "-smp", fmt.Sprint(spec.CPUs),
		"-display", "none", "-monitor", "none", "-serial", "file:" + v.serial, "-no-reboot",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no", "-device", nic,
		"-drive", "file=" + disk + ",format=raw,if=virtio",
		"-smbios", "type=1,serial=" + spec.Serial}
	if spec.UEFI {
		argv = append(argv, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode)
	} else {
		argv = append(argv, "-boot", "n")
	}
	var qemuErr syncBuffer
	qemuErr.b = new(bytes.Buffer)
	l.ns.Start(func(c *exec.Cmd) { c.Stderr = &qemuErr }, argv...)
	return v
}

func createEmpty(t *testing.T, p string) string {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func (v *vm) console() string {
	b, _ := os.ReadFile(v.serial)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitState waits until the machine with v's MAC is in state want.
func (l *lab) waitState(v *vm, want inventory.State, deadline time.Time) (*inventory.Machine, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := l.store.Find(ctx, v.spec.MAC)
		cancel()
		if err == nil && m.State == want {
			return m, nil
		}
		if time.Now().After(deadline) {
			state := "not enlisted"
			if m != nil {
				state = string(m.State)
			} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
				state = err.Error()
			}
			return nil, fmt.Errorf("%s: still %s, want %s; console:\n%s", v.spec.MAC, state, want, tail(v.console(), 25))
		}
		time.Sleep(time.Second)
	}
}

// history returns what the machine's history entries say, one "what: why" each.
func (l *lab) history(id string) []string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := l.store.History(ctx, id)
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, e := range h {
		out = append(out, e.What+": "+e.Why)
	}
	return out
}

// checkFacts checks that the inventory holds what QEMU was given.
func (l *lab) checkFacts(t *testing.T, v *vm, m *inventory.Machine) {
	t.Helper()
	if m.Serial != v.spec.Serial {
		t.Errorf("%s: serial %q, want %q (from -smbios)", v.spec.MAC, m.Serial, v.spec.Serial)
	}
	if m.CPUCores != v.spec.CPUs {
		t.Errorf("%s: cpu_cores %d, want %d (-smp)", v.spec.MAC, m.CPUCores, v.spec.CPUs)
	}
	if m.MemGB != v.spec.MemMiB/1024 {
		t.Errorf("%s: mem_gb %d, want %d (-m %d)", v.spec.MAC, m.MemGB, v.spec.MemMiB/1024, v.spec.MemMiB)
	}
	if m.Source != "pxe" {
		t.Errorf("%s: source %q, want pxe", v.spec.MAC, m.Source)
	}
	var disk int64
	for _, d := range m.Disks {
		if d.Name == "vda" {
			disk = d.SizeBytes
		}
	}
	if disk != int64(v.spec.DiskGB)<<30 {
		t.Errorf("%s: disk vda %d bytes, want %d (-drive); disks %+v", v.spec.MAC, disk, int64(v.spec.DiskGB)<<30, m.Disks)
	}
	found := false
	for _, n := range m.NICs {
		found = found || n.MAC == v.spec.MAC
	}
	if !found {
		t.Errorf("%s: not among the machine's NICs %+v", v.spec.MAC, m.NICs)
	}
	if m.IP == "" || !netip.MustParsePrefix("192.0.2.0/24").Contains(netip.MustParseAddr(m.IP)) {
		t.Errorf("%s: ip %q, want the leased address in 192.0.2.0/24", v.spec.MAC, m.IP)
	}
}
