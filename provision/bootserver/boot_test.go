package bootserver_test

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
)

// bootWait bounds one boot test: TCG is slow, and several VMs share 2 cores.
const bootWait = 240 * time.Second

// TestBootUnknownMachines boots two machines the inventory has never seen,
// at once: one by BIOS (SeaBIOS and QEMU's iPXE ROM, which asks for its
// script over HTTP at once) and one by UEFI through the real-hardware chain
// (OVMF's own PXE, no iPXE ROM: DHCP arch 7 → ipxe.efi over TFTP → iPXE →
// script). Each reaches the discovery environment (the Go agent), whose facts
// report commissions it: MAC, -smp, -m, -drive size and -smbios serial land
// in Consul, and every step is in its history.
func TestBootUnknownMachines(t *testing.T) {
	l := labtest.New(t, labtest.Config{})
	if _, err := os.Stat(labtest.OVMFCode); err != nil {
		t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
	}
	vms := []*labtest.VM{
		l.Start(labtest.VMSpec{MAC: "52:54:00:10:00:01", Serial: "BIOS-0001", MemMiB: 1024, CPUs: 1, DiskGB: 2}),
		l.Start(labtest.VMSpec{MAC: "52:54:00:10:00:02", Serial: "UEFI-0002", UEFI: true, NoROM: true, MemMiB: 2048, CPUs: 2, DiskGB: 3}),
	}
	deadline := time.Now().Add(bootWait)
	for _, v := range vms {
		m, err := l.WaitState(v, inventory.StateReady, deadline)
		if err != nil {
			t.Error(err)
			continue
		}
		checkFacts(t, v, m)
		h := strings.Join(l.History(m.ID), "\n")
		for _, want := range []string{"enlist: network boot from an unknown MAC", "lease: DHCP lease", "boot agent discover", "commission: facts from the discovery agent"} {
			if !strings.Contains(h, want) {
				t.Errorf("%s: history lacks %q:\n%s", v.Spec.MAC, want, h)
			}
		}
		if !v.WaitConsole("ironrack-agent: facts reported", time.Now().Add(30*time.Second)) {
			t.Errorf("%s: console lacks the agent's report:\n%s", v.Spec.MAC, labtest.Tail(v.Console(), 20))
		}
	}
	if !strings.Contains(l.LogTail(5000), `msg="tftp: sent" file=ipxe.efi`) {
		t.Errorf("the UEFI machine did not fetch ipxe.efi over TFTP")
	}
}

// TestBootByState boots machines the inventory already knows: a deployed
// one boots its image's kernel with root on the local disk (the kernel's
// command line on the console is the image's, and the agent never runs);
// a retired and a failed one boot nothing (iPXE exits; no kernel starts).
func TestBootByState(t *testing.T) {
	l := labtest.New(t, labtest.Config{})
	ctx := context.Background()
	img := images.Dir(l.Data, "debian", "12.7")
	labtest.CopyFile(t, filepath.Join(images.AgentDir(l.Data), "vmlinuz"), filepath.Join(img, images.KernelFile))
	// No initrd: the kernel cannot mount the (blank) disk, panics and, with
	// panic=1 and -no-reboot, QEMU exits. What matters is which kernel and
	// command line were booted.
	if err := os.WriteFile(filepath.Join(img, images.CmdlineFile), []byte("root=LABEL=ironrack-root ro console=ttyS0,115200n8 panic=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deployed := l.Machine(ctx, "52:54:00:20:00:01", "DEP-1", inventory.StateDeployed)
	if _, err := l.Store.Tag(ctx, deployed, map[string]string{bootserver.TagImage: "debian", bootserver.TagImageVersion: "12.7"}, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	retired := l.Machine(ctx, "52:54:00:20:00:02", "RET-2", inventory.StateRetired)
	failed := l.Machine(ctx, "52:54:00:20:00:03", "FAIL-3", inventory.StateFailedCommissioning)

	dv := l.Start(labtest.VMSpec{MAC: "52:54:00:20:00:01", Serial: "DEP-1", MemMiB: 512, CPUs: 1, DiskGB: 1})
	rv := l.Start(labtest.VMSpec{MAC: "52:54:00:20:00:02", Serial: "RET-2", MemMiB: 512, CPUs: 1, DiskGB: 1})
	fv := l.Start(labtest.VMSpec{MAC: "52:54:00:20:00:03", Serial: "FAIL-3", UEFI: true, MemMiB: 512, CPUs: 1, DiskGB: 1})

	deadline := time.Now().Add(bootWait)
	for !strings.Contains(dv.Console(), "Kernel command line:") && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	var cmdline string
	for _, line := range strings.Split(dv.Console(), "\n") {
		if _, after, ok := strings.Cut(line, "Kernel command line:"); ok {
			cmdline = strings.TrimSpace(after)
		}
	}
	if !strings.Contains(cmdline, "root=LABEL=ironrack-root") || strings.Contains(cmdline, "ironrack.") {
		t.Errorf("deployed machine booted command line %q, want the image's (root=LABEL=ironrack-root, no ironrack.*); console:\n%s", cmdline, labtest.Tail(dv.Console(), 20))
	}
	for _, v := range []*labtest.VM{rv, fv} {
		id := retired
		if v == fv {
			id = failed
		}
		for !l.HistoryHas(id, "boot exit") && time.Now().Before(deadline) {
			time.Sleep(time.Second)
		}
		if !l.HistoryHas(id, "boot exit") {
			t.Errorf("%s: no 'boot exit' in history: %q", v.Spec.MAC, l.History(id))
		}
	}
	// Give any wrongly booted kernel time to show itself.
	time.Sleep(10 * time.Second)
	for _, v := range []*labtest.VM{rv, fv} {
		if c := v.Console(); strings.Contains(c, "Linux version") || strings.Contains(c, "ironrack-agent") {
			t.Errorf("%s booted a kernel, want nothing:\n%s", v.Spec.MAC, labtest.Tail(c, 20))
		}
	}
	if !l.HistoryHas(deployed, "boot os") || l.HistoryHas(deployed, "boot agent") {
		t.Errorf("deployed machine's history, want boot os and no agent: %q", l.History(deployed))
	}
	if strings.Contains(dv.Console(), "ironrack-agent") {
		t.Errorf("deployed machine ran the agent:\n%s", labtest.Tail(dv.Console(), 20))
	}
	for id, want := range map[string]inventory.State{deployed: inventory.StateDeployed, retired: inventory.StateRetired, failed: inventory.StateFailedCommissioning} {
		m, err := l.Store.Get(ctx, id)
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
	l := labtest.New(t, labtest.Config{})
	var vms []*labtest.VM
	for i, uefi := range []bool{false, true, false, true} {
		mac := "52:54:00:30:00:0" + string(rune('1'+i))
		vms = append(vms, l.Start(labtest.VMSpec{MAC: mac, Serial: "FOUR-" + string(rune('1'+i)), UEFI: uefi, MemMiB: 1024, CPUs: 1, DiskGB: 1 + i}))
	}
	deadline := time.Now().Add(bootWait + 60*time.Second)
	var wg sync.WaitGroup
	for _, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := l.WaitState(v, inventory.StateReady, deadline)
			if err != nil {
				t.Error(err)
				return
			}
			checkFacts(t, v, m)
		}()
	}
	wg.Wait()
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
	l := labtest.New(t, labtest.Config{Tools: []string{"busybox", "tftp"}})
	cli := netns.New(t)
	l.NS.AddVeth("v0", "c0", "br0", cli)
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
		t.Fatalf("udhcpc: %v\nserver log:\n%s", err, l.LogTail(30))
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
		t.Fatalf("tftp said %q: %v\nserver log:\n%s", tout, err, l.LogTail(10))
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
	m, err := l.Store.Find(ctx, mac)
	if err != nil {
		t.Fatalf("PXE client not enlisted: %v", err)
	}
	if m.State != inventory.StateNew || m.Source != "pxe" || m.IP != vars["ip"] {
		t.Errorf("enlisted machine: state %s source %s ip %s, want new, pxe, %s", m.State, m.Source, m.IP, vars["ip"])
	}
}

// checkFacts checks that the inventory holds what QEMU was given.
func checkFacts(t *testing.T, v *labtest.VM, m *inventory.Machine) {
	t.Helper()
	checkFactsIn(t, v, m, netip.MustParsePrefix("192.0.2.0/24"))
}

// checkFactsIn is checkFacts with the machine's leased address in boot, the
// lab's IPv4 or (IPv6-only lab) IPv6 prefix.
func checkFactsIn(t *testing.T, v *labtest.VM, m *inventory.Machine, boot netip.Prefix) {
	t.Helper()
	s := v.Spec
	if m.Serial != s.Serial {
		t.Errorf("%s: serial %q, want %q (from -smbios)", s.MAC, m.Serial, s.Serial)
	}
	if m.CPUCores != s.CPUs {
		t.Errorf("%s: cpu_cores %d, want %d (-smp)", s.MAC, m.CPUCores, s.CPUs)
	}
	if m.MemGB != s.MemMiB/1024 {
		t.Errorf("%s: mem_gb %d, want %d (-m %d)", s.MAC, m.MemGB, s.MemMiB/1024, s.MemMiB)
	}
	if m.Source != "pxe" {
		t.Errorf("%s: source %q, want pxe", s.MAC, m.Source)
	}
	var disk int64
	for _, d := range m.Disks {
		if d.Name == "vda" {
			disk = d.SizeBytes
		}
	}
	if disk != int64(s.DiskGB)<<30 {
		t.Errorf("%s: disk vda %d bytes, want %d (-drive); disks %+v", s.MAC, disk, int64(s.DiskGB)<<30, m.Disks)
	}
	found := false
	for _, n := range m.NICs {
		found = found || n.MAC == s.MAC
	}
	if !found {
		t.Errorf("%s: not among the machine's NICs %+v", s.MAC, m.NICs)
	}
	if a, err := netip.ParseAddr(m.IP); err != nil || !boot.Contains(a) {
		t.Errorf("%s: ip %q, want the leased address in %s", s.MAC, m.IP, boot)
	}
}

// TestBootBIOSThroughTFTP: a BIOS VM takes real hardware's chain end to
// end. QEMU's NIC ROM is iPXE already, so the server is told
// (ChainFirstTFTP) to answer the ROM's first exchange as a plain PXE ROM's:
// DHCP → undionly.kpxe over TFTP, which the ROM executes; undionly's own
// iPXE then asks again (a new transaction, iPXE by its options), gets its
// script over HTTP, and the agent commissions the machine.
func TestBootBIOSThroughTFTP(t *testing.T) {
	l := labtest.New(t, labtest.Config{BootConfig: func(c *bootserver.Config) { c.DHCP.ChainFirstTFTP = true }})
	v := l.Start(labtest.VMSpec{MAC: "52:54:00:10:00:31", Serial: "BIOS-TFTP-31", MemMiB: 1024, CPUs: 1, DiskGB: 2})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(bootWait))
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s\nserver log:\n%s", err, labtest.Tail(v.Console(), 30), l.LogTail(40))
	}
	checkFacts(t, v, m)
	log := l.LogTail(5000)
	if !strings.Contains(log, `msg="tftp: sent" file=undionly.kpxe`) {
		t.Errorf("the VM did not fetch undionly.kpxe over TFTP:\n%s", labtest.Tail(log, 40))
	}
	// The ROM's ACK names undionly.kpxe, undionly's the script's URL (the
	// agent's own DHCP client comes after, with no boot file).
	var files []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="dhcp: replied" mac=52:54:00:10:00:31 type=ACK`) {
			_, f, _ := strings.Cut(line, " file=")
			f, _, _ = strings.Cut(f, " ")
			files = append(files, strings.Trim(f, `"`))
		}
	}
	if len(files) < 2 || files[0] != "undionly.kpxe" || !strings.HasPrefix(files[1], "http://") {
		t.Errorf("ACKs carried boot files %q, want undionly.kpxe, then the script's URL", files)
	}
	if !v.WaitConsole("ironrack-agent: facts reported", time.Now().Add(30*time.Second)) {
		t.Errorf("console lacks the agent's report:\n%s", labtest.Tail(v.Console(), 20))
	}
}
