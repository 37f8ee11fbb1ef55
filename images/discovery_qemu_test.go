package images_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

const ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"

// TestDiscoveryQEMU builds the real discovery environment (the Go agent as
// /init, Debian's kernel) with images.Discovery into a data dir, runs the
// real boot server on it (provision.BootServer, what `ironrack serve`
// runs) against a real Consul, and network-boots two machines the
// inventory has never seen, one by BIOS and one by UEFI (QEMU's iPXE ROM),
// under TCG. Each must land in Consul as ready with the -smp, -m, -smbios
// serial and -drive size QEMU was given, memory taken from the SMBIOS
// memory devices. The boot LAN is a namespace of the test's own
// (the setup is a trimmed copy of provision's lab_test.go, whose helpers
// are unexported).
func TestDiscoveryQEMU(t *testing.T) {
	netns.Require(t, "qemu-system-x86_64", "go")
	if _, err := os.Stat(ovmfCode); err != nil {
		t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
	}
	ctx := context.Background()
	kdir, err := images.KernelCache(ctx, "../scripts/boot-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	agentBin := filepath.Join(t.TempDir(), "ironrack-agent")
	if err := images.BuildAgent(ctx, "..", agentBin); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	m, err := images.Discovery{DataDir: data, KernelDir: kdir, Agent: agentBin}.Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built agent/%s", m.Version)

	agent := consuldev.T(t)
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	store := inventory.New(client, inventory.Config{Who: "test"})
	ns := netns.New(t)
	ns.AddBridge("br0", "192.0.2.1/24")
	var logs syncBuffer
	boot, err := provision.NewBootServer(provision.Config{
		Interface:  "br0",
		Address:    netip.MustParsePrefix("192.0.2.1/24"),
		RangeFirst: netip.MustParseAddr("192.0.2.100"),
		RangeLast:  netip.MustParseAddr("192.0.2.199"),
		DataDir:    data,
		Store:      store,
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LeaseTime:  10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, s := range boot.Servers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ns.Do(func() error { return s.Server.Serve(sctx) }); err != nil && sctx.Err() == nil {
				t.Errorf("%s: %v", s.Name, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("boot server log:\n%s", tail(logs.String(), 60))
		}
	})

	vms := []vmSpec{
		{MAC: "52:54:00:50:00:01", Serial: "AGENT-BIOS-1", MemMiB: 2048, CPUs: 2, DiskGB: 3},
		{MAC: "52:54:00:50:00:02", Serial: "AGENT-UEFI-2", UEFI: true, MemMiB: 1024, CPUs: 1, DiskGB: 2},
		// Known and set to commissioning: it boots the agent in commission
		// mode, which runs the hardware checks before it reports.
		{MAC: "52:54:00:50:00:03", Serial: "AGENT-COMM-3", MemMiB: 1024, CPUs: 1, DiskGB: 1, Commissioning: true},
	}
	for _, v := range vms {
		if !v.Commissioning {
			continue
		}
		m, _, err := store.Enlist(ctx, inventory.Sighting{Serial: v.Serial, MACs: []string{v.MAC}, Source: "pxe"}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.SetState(ctx, m.ID, inventory.StateCommissioning, inventory.Operator, inventory.Change{What: "state", Why: "test: commission"}); err != nil {
			t.Fatal(err)
		}
	}
	consoles := make([]string, len(vms))
	for i, v := range vms {
		consoles[i] = startVM(t, ns, fmt.Sprintf("tap%d", i), v)
	}
	deadline := time.Now().Add(300 * time.Second)
	for i, v := range vms {
		m, err := waitReady(store, v.MAC, deadline)
		console, _ := os.ReadFile(consoles[i])
		if err != nil {
			t.Errorf("%s: %v; console:\n%s", v.MAC, err, tail(string(console), 30))
			continue
		}
		checkFacts(t, v, m)
		if v.Commissioning {
			hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := store.History(hctx, m.ID)
			hcancel()
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, e := range h {
				lines = append(lines, e.What+": "+e.Why)
			}
			all := strings.Join(lines, "\n")
			t.Logf("%s history:\n%s", v.MAC, all)
			for _, want := range []string{"boot agent commission", "agent commission: started", "agent commission: done: 3 checks passed"} {
				if !strings.Contains(all, want) {
					t.Errorf("%s: history lacks %q:\n%s", v.MAC, want, all)
				}
			}
		}
		for _, want := range []string{"ironrack-agent: facts reported", `"memory_source":"smbios"`} {
			if !bytes.Contains(console, []byte(want)) {
				t.Errorf("%s: console lacks %q:\n%s", v.MAC, want, tail(string(console), 30))
			}
		}
		want := "bios"
		if v.UEFI {
			want = "uefi"
		}
		if !bytes.Contains(console, []byte(`"firmware":"`+want+`"`)) {
			t.Errorf("%s: console's facts lack firmware %s:\n%s", v.MAC, want, tail(string(console), 30))
		}
	}
}

type vmSpec struct {
	MAC, Serial string
	UEFI        bool
	// Commissioning: the machine is enlisted and set to commissioning first.
	Commissioning bool
	MemMiB        int
	CPUs          int
	DiskGB        int
}

// startVM boots a QEMU (TCG) machine from the network on a new tap on br0
// and returns the path of its serial console log. netns.Start kills it by
// PID when the test ends.
func startVM(t *testing.T, ns *netns.NS, tap string, v vmSpec) string {
	t.Helper()
	ns.AddTap(tap, "br0")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(disk, int64(v.DiskGB)<<30); err != nil {
		t.Fatal(err)
	}
	serial := filepath.Join(dir, "serial.log")
	argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", fmt.Sprint(v.MemMiB), "-smp", fmt.Sprint(v.CPUs),
		"-display", "none", "-monitor", "none", "-serial", "file:" + serial, "-no-reboot",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=" + v.MAC,
		"-drive", "file=" + disk + ",format=raw,if=virtio",
		"-smbios", "type=1,serial=" + v.Serial}
	if v.UEFI {
		argv = append(argv, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode)
	} else {
		argv = append(argv, "-boot", "n")
	}
	ns.Start(nil, argv...)
	return serial
}

// waitReady polls the inventory (bounded by deadline) until the machine
// with mac is ready.
func waitReady(store *inventory.Store, mac string, deadline time.Time) (*inventory.Machine, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := store.Find(ctx, mac)
		cancel()
		if err == nil && m.State == inventory.StateReady {
			return m, nil
		}
		if time.Now().After(deadline) {
			state := "not enlisted"
			if m != nil {
				state = string(m.State)
			} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
				state = err.Error()
			}
			return nil, fmt.Errorf("still %s, want ready", state)
		}
		time.Sleep(time.Second)
	}
}

func checkFacts(t *testing.T, v vmSpec, m *inventory.Machine) {
	t.Helper()
	if m.Serial != v.Serial {
		t.Errorf("%s: serial %q, want %q (-smbios)", v.MAC, m.Serial, v.Serial)
	}
	if m.CPUCores != v.CPUs {
		t.Errorf("%s: cpu_cores %d, want %d (-smp)", v.MAC, m.CPUCores, v.CPUs)
	}
	if m.MemGB != v.MemMiB/1024 {
		t.Errorf("%s: mem_gb %d, want %d (-m %d)", v.MAC, m.MemGB, v.MemMiB/1024, v.MemMiB)
	}
	var disk int64
	for _, d := range m.Disks {
		if d.Name == "vda" {
			disk = d.SizeBytes
		}
	}
	if disk != int64(v.DiskGB)<<30 {
		t.Errorf("%s: disk vda %d bytes, want %d (-drive); disks %+v", v.MAC, disk, int64(v.DiskGB)<<30, m.Disks)
	}
	found := false
	for _, n := range m.NICs {
		found = found || n.MAC == v.MAC
	}
	if !found {
		t.Errorf("%s: not among the machine's NICs %+v", v.MAC, m.NICs)
	}
	if m.Vendor != "QEMU" {
		t.Errorf("%s: vendor %q, want QEMU (SMBIOS type 1)", v.MAC, m.Vendor)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
