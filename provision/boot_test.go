package provision_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// bootWait bounds one boot test: TCG is slow, and several VMs share 2 cores.
const bootWait = 240 * time.Second

// TestBootUnknownMachines boots two machines the inventory has never seen,
// at once: one by BIOS (SeaBIOS and QEMU's iPXE ROM, which asks for its
// script over HTTP at once) and one by UEFI through the real-hardware chain
// (OVMF's own PXE, no iPXE ROM: DHCP arch 7 → ipxe.efi over TFTP → iPXE →
// script). Each reaches the busybox discovery environment, whose facts
// report commissions it: MAC, -smp, -m, -drive size and -smbios serial land
// in Consul, and every step is in its history.
func TestBootUnknownMachines(t *testing.T) {
	l := newLab(t)
	if _, err := os.Stat(ovmfCode); err != nil {
		t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
	}
	vms := []*vm{
		l.start(vmSpec{MAC: "52:54:00:10:00:01", Serial: "BIOS-0001", MemMiB: 1024, CPUs: 1, DiskGB: 2}),
		l.start(vmSpec{MAC: "52:54:00:10:00:02", Serial: "UEFI-0002", UEFI: true, NoROM: true, MemMiB: 2048, CPUs: 2, DiskGB: 3}),
	}
	deadline := time.Now().Add(bootWait)
	for _, v := range vms {
		m, err := l.waitState(v, inventory.StateReady, deadline)
		if err != nil {
			t.Error(err)
			continue
		}
		l.checkFacts(t, v, m)
		h := strings.Join(l.history(m.ID), "\n")
		for _, want := range []string{"enlist: network boot from an unknown MAC", "lease: DHCP lease", "boot agent discover", "commission: facts from the discovery agent"} {
			if !strings.Contains(h, want) {
				t.Errorf("%s: history lacks %q:\n%s", v.spec.MAC, want, h)
			}
		}
		if !strings.Contains(v.console(), "ironrack-agent: facts reported") {
			t.Errorf("%s: console lacks the agent's report:\n%s", v.spec.MAC, tail(v.console(), 20))
		}
	}
	if !strings.Contains(l.logTail(5000), `msg="tftp: sent" file=ipxe.efi`) {
		t.Errorf("the UEFI machine did not fetch ipxe.efi over TFTP")
	}
}

// TestBootByState boots machines the inventory already knows: a deployed
// one boots its image's kernel with root on the local disk (the kernel's
// command line on the console is the image's, and the agent never runs);
// a retired and a failed one boot nothing (iPXE exits; no kernel starts).
func TestBootByState(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	img := filepath.Join(l.data, "images", "debian", "12.7")
	copyFile(t, filepath.Join(provision.AgentDir(l.data), "vmlinuz"), filepath.Join(img, provision.ImageKernel))
	// No initrd: the kernel cannot mount the (blank) disk, panics and, with
	// panic=1 and -no-reboot, QEMU exits. What matters is which kernel and
	// command line were booted.
	if err := os.WriteFile(filepath.Join(img, provision.ImageCmdline), []byte("root=LABEL=ironrack-root ro console=ttyS0,115200n8 panic=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deployed := l.machine(ctx, "52:54:00:20:00:01", "DEP-1", inventory.StateDeployed)
	if _, err := l.store.Tag(ctx, deployed, map[string]string{provision.TagImage: "debian", provision.TagImageVersion: "12.7"}, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	retired := l.machine(ctx, "52:54:00:20:00:02", "RET-2", inventory.StateRetired)
	failed := l.machine(ctx, "52:54:00:20:00:03", "FAIL-3", inventory.StateFailedCommissioning)

	dv := l.start(vmSpec{MAC: "52:54:00:20:00:01", Serial: "DEP-1", MemMiB: 512, CPUs: 1, DiskGB: 1})
	rv := l.start(vmSpec{MAC: "52:54:00:20:00:02", Serial: "RET-2", MemMiB: 512, CPUs: 1, DiskGB: 1})
	fv := l.start(vmSpec{MAC: "52:54:00:20:00:03", Serial: "FAIL-3", UEFI: true, MemMiB: 512, CPUs: 1, DiskGB: 1})

	deadline := time.Now().Add(bootWait)
	for !strings.Contains(dv.console(), "Kernel command line:") && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	var cmdline string
	for _, line := range strings.Split(dv.console(), "\n") {
		if _, after, ok := strings.Cut(line, "Kernel command line:"); ok {
			cmdline = strings.TrimSpace(after)
		}
	}
	if !strings.Contains(cmdline, "root=LABEL=ironrack-root") || strings.Contains(cmdline, "ironrack.") {
		t.Errorf("deployed machine booted command line %q, want the image's (root=LABEL=ironrack-root, no ironrack.*); console:\n%s", cmdline, tail(dv.console(), 20))
	}
	for _, v := range []*vm{rv, fv} {
		id := retired
		if v == fv {
			id = failed
		}
		for !l.historyHas(id, "boot exit") && time.Now().Before(deadline) {
			time.Sleep(time.Second)
		}
		if !l.historyHas(id, "boot exit") {
			t.Errorf("%s: no 'boot exit' in history: %q", v.spec.MAC, l.history(id))
		}
	}
	// Give any wrongly booted kernel time to show itself.
	time.Sleep(10 * time.Second)
	for _, v := range []*vm{rv, fv} {
		if c := v.console(); strings.Contains(c, "Linux version") || strings.Contains(c, "ironrack-agent") {
			t.Errorf("%s booted a kernel, want nothing:\n%s", v.spec.MAC, tail(c, 20))
		}
	}
	if !l.historyHas(deployed, "boot os") || l.historyHas(deployed, "boot agent") {
		t.Errorf("deployed machine's history, want boot os and no agent: %q", l.history(deployed))
	}
	if strings.Contains(dv.console(), "ironrack-agent") {
		t.Errorf("deployed machine ran the agent:\n%s", tail(dv.console(), 20))
	}
	for id, want := range map[string]inventory.State{deployed: inventory.StateDeployed, retired: inventory.StateRetired, failed: inventory.StateFailedCommissioning} {
		m, err := l.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != want {
			t.Errorf("%s: state %s after boot, want %s unchanged", id, m.State, want)
		}
	}
}

// TestBootFourAtOnce boots four unknown machines at once, two by BIOS and
// two by UEFI (QEMU's iPXE ROM), and all four must commission.
func TestBootFourAtOnce(t *testing.T) {
	l := newLab(t)
	var vms []*vm
	for i, uefi := range []bool{false, true, false, true} {
		mac := "52:54:00:30:00:0" + string(rune('1'+i))
		vms = append(vms, l.start(vmSpec{MAC: mac, Serial: "FOUR-" + string(rune('1'+i)), UEFI: uefi, MemMiB: 1024, CPUs: 1, DiskGB: 1 + i}))
	}
	deadline := time.Now().Add(bootWait + 60*time.Second)
	var wg sync.WaitGroup
	for _, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := l.waitState(v, inventory.StateReady, deadline)
			if err != nil {
				t.Error(err)
				return
			}
			l.checkFacts(t, v, m)
		}()
	}
	wg.Wait()
}

// machine puts a machine with mac and serial into state st the way the
// workflows would: enlist, commission, then the table's transitions.
func (l *lab) machine(ctx context.Context, mac, serial string, st inventory.State) string {
	l.t.Helper()
	m, _, err := l.store.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		l.t.Fatal(err)
	}
	id := m.ID
	set := func(to inventory.State, by inventory.Actor) {
		l.t.Helper()
		if _, err := l.store.SetState(ctx, id, to, by, inventory.Change{What: "state", Why: "test setup"}); err != nil {
			l.t.Fatal(err)
		}
	}
	if st == inventory.StateFailedCommissioning {
		set(inventory.StateCommissioning, inventory.System)
		set(inventory.StateFailedCommissioning, inventory.System)
		return id
	}
	if _, err := l.store.Commission(ctx, id, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
		l.t.Fatal(err)
	}
	switch st {
	case inventory.StateDeployed:
		set(inventory.StateAllocated, inventory.System)
		set(inventory.StateDeploying, inventory.System)
		set(inventory.StateDeployed, inventory.System)
	case inventory.StateRetired:
		set(inventory.StateRetired, inventory.Operator)
	}
	return id
}

func (l *lab) historyHas(id, what string) bool {
	for _, h := range l.history(id) {
		if strings.HasPrefix(h, what) {
			return true
		}
	}
	return false
}

// TestTFTPChainBIOS takes the real-hardware BIOS path with real clients,
// since QEMU's NIC ROMs are iPXE already and never ask for undionly.kpxe:
// busybox udhcpc sends a BIOS PXE DISCOVER (option 60
// PXEClient:Arch:00000:UNDI:002001, option 93 = 0, no option 77) on a veth
// in a second namespace; ironrack's DHCP must offer and ACK an address with
// next-server 192.0.2.1 and boot file undionly.kpxe and enlist the MAC; then
// tftp-hpa fetches that file from that server through ironrack's TFTP, and
// it must equal Debian's undionly.kpxe byte for byte.
func TestTFTPChainBIOS(t *testing.T) {
	l := newLab(t, "busybox", "tftp")
	cli := netns.New(t)
	l.ns.AddVeth("v0", "c0", "br0", cli)
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	out := filepath.Join(dir, "lease.env")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nif [ \"$1\" = bound ]; then env > "+out+"; ip addr add $ip/$mask dev $interface; fi\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mac := "52:54:00:40:00:01"
	cli.Run("ip", "link", "set", "c0", "address", mac)
	if _, err := cli.Output(30*time.Second, "busybox", "udhcpc", "-i", "c0", "-n", "-q", "-f", "-t", "5", "-T", "2",
		"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-s", script); err != nil {
		t.Fatalf("udhcpc: %v\nserver log:\n%s", err, l.logTail(30))
	}
	env, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	if vars["boot_file"] != "undionly.kpxe" || vars["siaddr"] != "192.0.2.1" {
		t.Fatalf("ACK: boot_file %q siaddr %q, want undionly.kpxe from 192.0.2.1 (ip %s)", vars["boot_file"], vars["siaddr"], vars["ip"])
	}
	local := filepath.Join(dir, "undionly.kpxe")
	tout, err := cli.Output(60*time.Second, "tftp", "-v", "-m", "binary", vars["siaddr"], "-c", "get", vars["boot_file"], local)
	if err != nil {
		t.Fatalf("tftp: %v", err)
	}
	got, err := os.ReadFile(local)
	if err != nil {
		t.Fatalf("tftp said %q: %v\nserver log:\n%s", tout, err, l.logTail(10))
	}
	want, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("fetched undionly.kpxe: %d bytes, differs from /usr/lib/ipxe/undionly.kpxe (%d bytes)", len(got), len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := l.store.Find(ctx, mac)
	if err != nil {
		t.Fatalf("PXE client not enlisted: %v", err)
	}
	if m.State != inventory.StateNew || m.Source != "pxe" || m.IP != vars["ip"] {
		t.Errorf("enlisted machine: state %s source %s ip %s, want new, pxe, %s", m.State, m.Source, m.IP, vars["ip"])
	}
}
