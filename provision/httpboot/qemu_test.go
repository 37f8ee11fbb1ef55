package httpboot_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
	"github.com/ironrack/ironrack/provision/ra"
)

// leases is an in-memory dhcp.LeaseStore and dhcp.Enlister.
type leases struct {
	mu       sync.Mutex
	byMAC    map[string]dhcp.Lease
	enlisted []string
}

func (l *leases) Leases(context.Context) ([]dhcp.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []dhcp.Lease
	for _, x := range l.byMAC {
		out = append(out, x)
	}
	return out, nil
}

func (l *leases) StoreLease(_ context.Context, x dhcp.Lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byMAC[x.MAC.String()] = x
	return nil
}

func (l *leases) EnlistPXE(_ context.Context, mac net.HardwareAddr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.enlisted = append(l.enlisted, mac.String())
	return nil
}

// TestQEMUBootsToScript boots real QEMU machines (TCG, SeaBIOS or OVMF,
// the ipxe-qemu NIC ROM) on a tap in a test namespace against the DHCP,
// RA and HTTP servers, and checks that each fetched the script its state
// asks for. There is no kernel yet (the agent issue builds it), so the
// boot ends at the kernel fetch; what is checked is the path up to it.
func TestQEMUBootsToScript(t *testing.T) {
	netns.Require(t, "qemu-system-x86_64")
	for _, firmware := range []string{"bios", "uefi"} {
		t.Run(firmware, func(t *testing.T) {
			if firmware == "uefi" {
				if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err != nil {
					t.Fatalf("needs ovmf: %v", err)
				}
			}
			qemuBoot(t, firmware)
		})
	}
}

func qemuBoot(t *testing.T, firmware string) {
	ns := netns.New(t)
	ns.AddBridge("br0", "192.0.2.1/24")
	ns.AddTap("tap0", "br0")
	ns.AddTap("tap1", "br0")

	inv := &memInventory{reports: map[string][]wire.Report{}, machines: map[string]ipxe.Machine{
		"52:54:00:e2:e0:02": {ID: "m-dep", MAC: "52:54:00:e2:e0:02", State: ipxe.StateDeployed, Token: "t2",
			Image: ipxe.Image{Name: "debian", Version: "12", Kernel: "vmlinuz", Cmdline: "root=LABEL=root ro"}},
	}}
	store := &leases{byMAC: map[string]dhcp.Lease{}}
	dsrv, err := dhcp.New(dhcp.Config{
		Interface:  "br0",
		Address:    netip.MustParsePrefix("192.0.2.1/24"),
		RangeFirst: netip.MustParseAddr("192.0.2.100"), RangeLast: netip.MustParseAddr("192.0.2.150"),
		Boot:     dhcp.BootNames{HTTPBase: "http://192.0.2.1:8080"},
		Leases:   store,
		Enlister: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ns.Do(fn); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("dhcp", func() error { return dsrv.Serve(ctx) })
	run("ra", func() error { return ra.New(ra.Config{Interface: "br0"}).Serve(ctx) })
	run("http", func() error {
		ln, err := net.Listen("tcp4", "192.0.2.1:8080")
		if err != nil {
			return err
		}
		h, err := httpboot.New(httpboot.Config{Listener: ln, ImageDir: t.TempDir(),
			Env: ipxe.Env{BaseURL: "http://192.0.2.1:8080"}, Machines: inv, Boots: inv})
		if err != nil {
			return err
		}
		return h.Serve(ctx)
	})

	// Two VMs at once: one unknown MAC, one deployed machine.
	for i, mac := range []string{"52:54:00:e2:e0:01", "52:54:00:e2:e0:02"} {
		argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-monitor", "none",
			"-serial", "file:" + filepath.Join(t.TempDir(), "serial.log"), "-no-reboot", "-boot", "n",
			"-netdev", "tap,id=n0,ifname=tap" + string(rune('0'+i)) + ",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac=" + mac}
		if firmware == "uefi" {
			argv = append(argv, "-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd")
		}
		ns.Start(nil, argv...)
	}

	want := map[string]string{"52:54:00:e2:e0:01": "agent", "52:54:00:e2:e0:02": "os"}
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		inv.mu.Lock()
		seen := map[string]string{}
		for _, b := range inv.boots {
			mac, action, _ := strings.Cut(b, " ")
			seen[mac] = action
		}
		inv.mu.Unlock()
		if len(seen) == len(want) {
			for mac, action := range want {
				if seen[mac] != action {
					t.Errorf("%s booted %q, want %q", mac, seen[mac], action)
				}
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			if _, ok := store.byMAC["52:54:00:e2:e0:01"]; !ok {
				t.Errorf("no lease stored for the unknown VM; leases: %v", store.byMAC)
			}
			found := false
			for _, m := range store.enlisted {
				found = found || m == "52:54:00:e2:e0:01"
			}
			if !found {
				t.Errorf("unknown VM was not enlisted: %v", store.enlisted)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t.Fatalf("after 150s, script fetches: %v (want one per VM)", inv.boots)
}
