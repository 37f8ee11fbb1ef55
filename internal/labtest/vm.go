package labtest

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
)

// VMSpec is one QEMU machine.
type VMSpec struct {
	MAC, Serial string
	UEFI        bool
	// NoROM boots the firmware's own PXE (OVMF) instead of QEMU's iPXE ROM,
	// so the machine takes the real-hardware path: TFTP first.
	NoROM  bool
	MemMiB int
	CPUs   int
	DiskGB int
	// Reboot lets a guest reboot come back through the firmware (and so
	// the network boot) instead of ending QEMU (-no-reboot). Machines under
	// a BMC (AttachBMC) reboot; started ones do not by default.
	Reboot bool
	// UUID sets the SMBIOS system UUID (-smbios type=1,uuid=); if empty,
	// QEMU's default (all zeros, which the agent reports as unset).
	UUID string
	// SATAModel, if set, adds a 64 MiB SATA disk on an AHCI controller
	// (sda; the ahci, libata and sd_mod modules) with this model and
	// SATARPM as its rotation rate (1: solid state; 7200: rotational).
	SATAModel string
	SATARPM   int
	// ExtraNIC, if set, adds a NIC of this QEMU model (e.g. "e1000e") with
	// MAC ExtraMAC, on no network and without a boot ROM.
	ExtraNIC, ExtraMAC string
	// FailingDisk adds a 64 MiB virtio disk (vdb) every read of which
	// fails with EIO (QEMU's blkdebug error injection).
	FailingDisk bool
	// SCSIDisks are disks on a virtio-scsi controller (sda, sdb, … in
	// order: scsi-id i), and NVMeDisks NVMe controllers with one namespace
	// each (nvme0n1, …); their files are VM.ExtraDisk("scsi", i) and
	// ("nvme", i). With DiskGB 0 the machine has no virtio disk.
	SCSIDisks, NVMeDisks []ExtraDisk
	// HTTPBoot, 4 or 6, boots by UEFI HTTP boot over IPv4 or IPv6: OVMF
	// (4M) with a copy of its variables on q35, no NIC ROM (OVMF's own
	// network stack), and OVMF's fw_cfg knobs leaving that one network
	// boot entry (no PXE, no other IP version), so the firmware goes
	// straight to it instead of timing out through PXEv4, PXEv6 and
	// HTTPv4 first (about 5 minutes). Over IPv6 the firmware also waits
	// 4 s in its boot menu first, so that its link-local address is out
	// of duplicate address detection when HTTPv6 starts DHCPv6.
	HTTPBoot int
	// PXEBoot6 boots by OVMF's own PXE over IPv6 (PXEv6: DHCPv6, then
	// TFTP over IPv6), set up as HTTPBoot (OVMF 4M, a copy of its
	// variables, q35, no NIC ROM) but with IPv4 off in the firmware
	// (IPv4Support=no: no PXEv4, no HTTPv4). OVMF has no knob for HTTP
	// boot, so HTTPv6 stays after PXEv6 in the boot order: a test tells
	// the paths apart by what went over TFTP. Unlike HTTPv6, PXEv6 needs
	// no boot-menu wait: it waits out DAD of its link-local address itself
	// (EDK2 retries its DHCPv6 start on EFI_NO_MAPPING).
	PXEBoot6 bool
	// FwCfg adds -fw_cfg arguments (e.g.
	// "name=etc/edk2/https/cacerts,file=cacerts.esl").
	FwCfg []string
}

// ExtraDisk is a raw, sparse disk file of MiB mebibytes. RPM is a SCSI
// disk's rotation rate (1: solid state; 0: not reported, which Linux takes
// as rotational); WWN, if set, its World Wide Name (e.g. 0x5000c500a1b2c3d4).
type ExtraDisk struct {
	MiB    int
	RPM    int
	Serial string
	WWN    string
}

// OVMF (4M) with its variables template, for HTTPBoot machines.
const (
	OVMFCode4M = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars4M = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM is one QEMU (TCG) machine on its own tap on the bridge. Its disk is a
// sparse raw file the test can read from the host (Disk), its serial
// console goes to a file (Console), appended to across power cycles.
type VM struct {
	Spec VMSpec
	// Disk is the raw disk image, SerialLog the console log.
	Disk, SerialLog string
	lab             *Lab
	tap             string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// exited is called (without mu) when QEMU ends by itself.
	exited func()
}

// NewVM creates a machine's tap and disk; it does not start it.
func (l *Lab) NewVM(spec VMSpec) *VM {
	l.T.Helper()
	l.mu.Lock()
	tap := fmt.Sprintf("tap%d", l.taps)
	l.taps++
	l.mu.Unlock()
	l.NS.AddTap(tap, Bridge)
	dir := l.T.TempDir()
	v := &VM{Spec: spec, Disk: filepath.Join(dir, "disk.img"), SerialLog: filepath.Join(dir, "serial.log"), lab: l, tap: tap}
	f, err := os.Create(v.Disk)
	if err != nil {
		l.T.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(v.Disk, int64(spec.DiskGB)<<30); err != nil {
		l.T.Fatal(err)
	}
	for kind, disks := range map[string][]ExtraDisk{"scsi": spec.SCSIDisks, "nvme": spec.NVMeDisks} {
		for i, d := range disks {
			path := v.ExtraDisk(kind, i)
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				l.T.Fatal(err)
			}
			if err := os.Truncate(path, int64(d.MiB)<<20); err != nil {
				l.T.Fatal(err)
			}
		}
	}
	if spec.HTTPBoot != 0 || spec.PXEBoot6 {
		CopyFile(l.T, OVMFVars4M, v.Disk+".vars")
	}
	for _, extra := range []struct {
		on   bool
		name string
	}{{spec.SATAModel != "", ".sata"}, {spec.FailingDisk, ".failing"}} {
		if !extra.on {
			continue
		}
		if err := os.WriteFile(v.Disk+extra.name, nil, 0o644); err != nil {
			l.T.Fatal(err)
		}
		if err := os.Truncate(v.Disk+extra.name, 64<<20); err != nil {
			l.T.Fatal(err)
		}
	}
	if spec.FailingDisk {
		conf := "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n"
		if err := os.WriteFile(v.Disk+".blkdebug", []byte(conf), 0o644); err != nil {
			l.T.Fatal(err)
		}
	}
	l.T.Cleanup(v.Stop)
	return v
}

// ExtraDisk is the file of the i-th disk of kind "scsi" or "nvme".
func (v *VM) ExtraDisk(kind string, i int) string {
	return fmt.Sprintf("%s.%s%d", v.Disk, kind, i)
}

// Start boots a new machine from the network: NewVM, then PowerOn.
func (l *Lab) Start(spec VMSpec) *VM {
	l.T.Helper()
	v := l.NewVM(spec)
	if err := v.PowerOn(); err != nil {
		l.T.Fatal(err)
	}
	return v
}

func (v *VM) argv() []string {
	s := v.Spec
	argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", fmt.Sprint(s.MemMiB), "-smp", fmt.Sprint(s.CPUs),
		"-display", "none", "-monitor", "none",
		"-chardev", "file,id=con0,append=on,path=" + v.SerialLog, "-serial", "chardev:con0",
		"-netdev", "tap,id=n0,ifname=" + v.tap + ",script=no,downscript=no",
		"-smbios", "type=1,serial=" + s.Serial}
	if s.UUID != "" {
		argv[len(argv)-1] += ",uuid=" + s.UUID
	}
	if s.DiskGB > 0 {
		argv = append(argv, "-drive", "file="+v.Disk+",format=raw,if=virtio")
	}
	if len(s.SCSIDisks) > 0 {
		argv = append(argv, "-device", "virtio-scsi-pci,id=scsi0")
	}
	for i, d := range s.SCSIDisks {
		dev := fmt.Sprintf("scsi-hd,drive=scsi%d,bus=scsi0.0,channel=0,scsi-id=%d,lun=0,rotation_rate=%d", i, i, d.RPM)
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		if d.WWN != "" {
			dev += ",wwn=" + d.WWN
		}
		argv = append(argv, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=scsi%d", v.ExtraDisk("scsi", i), i), "-device", dev)
	}
	for i, d := range s.NVMeDisks {
		argv = append(argv, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=nvme%d", v.ExtraDisk("nvme", i), i),
			"-device", fmt.Sprintf("nvme,drive=nvme%d,serial=%s", i, d.Serial))
	}
	if s.SATAModel != "" {
		argv = append(argv, "-device", "ahci,id=ahci0",
			"-drive", "file="+v.Disk+".sata,format=raw,if=none,id=sata0",
			"-device", fmt.Sprintf("ide-hd,drive=sata0,bus=ahci0.0,model=%s,rotation_rate=%d", s.SATAModel, s.SATARPM))
	}
	if s.FailingDisk {
		argv = append(argv, "-drive", "file=blkdebug:"+v.Disk+".blkdebug:"+v.Disk+".failing,format=raw,if=virtio")
	}
	if s.ExtraNIC != "" {
		argv = append(argv, "-device", s.ExtraNIC+",mac="+s.ExtraMAC+",romfile=")
	}
	nic := "virtio-net-pci,netdev=n0,mac=" + s.MAC
	if s.NoROM || s.HTTPBoot != 0 || s.PXEBoot6 {
		nic += ",romfile="
	}
	argv = append(argv, "-device", nic)
	if !s.Reboot {
		argv = append(argv, "-no-reboot")
	}
	for _, f := range s.FwCfg {
		argv = append(argv, "-fw_cfg", f)
	}
	switch {
	case s.PXEBoot6:
		argv = append(argv, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode4M,
			"-drive", "if=pflash,format=raw,unit=1,file="+v.Disk+".vars",
			"-fw_cfg", "name=opt/org.tianocore/IPv4Support,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no")
	case s.HTTPBoot != 0:
		other := "IPv6Support"
		if s.HTTPBoot == 6 {
			other = "IPv4Support"
		}
		argv = append(argv, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode4M,
			"-drive", "if=pflash,format=raw,unit=1,file="+v.Disk+".vars",
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
			"-fw_cfg", "name=opt/org.tianocore/"+other+",string=no")
		if s.HTTPBoot == 6 {
			// OVMF's HTTPv6 entry starts DHCPv6 as soon as the NIC is
			// connected, while the link-local address is still in
			// duplicate address detection: its Solicit cannot be sent
			// and the entry fails at once ("Unexpected network error").
			// A boot menu wait (etc/boot-menu-wait, whole seconds)
			// after the drivers are connected lets DAD finish first.
			argv = append(argv, "-boot", "menu=on,splash-time=4000")
		}
	case s.UEFI:
		argv = append(argv, "-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode)
	default:
		argv = append(argv, "-boot", "n")
	}
	return argv
}

// PowerOn starts QEMU in the namespace, unless it runs already.
func (v *VM) PowerOn() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		return nil
	}
	cmd := v.lab.NS.Command(context.Background(), v.argv()...)
	errf, err := os.OpenFile(v.SerialLog+".qemu", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = errf, errf
	// QEMU dies with the test process even when no cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		errf.Close()
		return fmt.Errorf("lab: start %s: %w", v.Spec.MAC, err)
	}
	done := make(chan struct{})
	v.cmd, v.done = cmd, done
	go func() {
		_ = cmd.Wait()
		errf.Close()
		v.mu.Lock()
		byItself := v.cmd == cmd
		if byItself {
			v.cmd = nil
		}
		cb := v.exited
		v.mu.Unlock()
		close(done)
		if byItself && cb != nil {
			cb()
		}
	}()
	return nil
}

// Stop kills QEMU by PID (a pulled plug) and waits for it.
func (v *VM) Stop() {
	v.mu.Lock()
	cmd, done := v.cmd, v.done
	v.cmd = nil
	v.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Running reports whether QEMU runs.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cmd != nil
}

// Console is the serial console's log so far.
func (v *VM) Console() string {
	b, _ := os.ReadFile(v.SerialLog)
	return string(b)
}

// WaitConsole waits until the console holds s, or the deadline.
func (v *VM) WaitConsole(s string, deadline time.Time) bool {
	for !strings.Contains(v.Console(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
	return true
}

// WaitOff waits until QEMU has ended (the guest powered off), or the
// deadline.
func (v *VM) WaitOff(deadline time.Time) bool {
	for v.Running() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// powerHook is the ipmi_sim chassis script's hook (see ipmisim.Options.Hook):
// it appends each power change to DIR/vm-requests, which the lab follows.
const powerHook = "#!/bin/sh\necho \"$1\" >> \"$2/vm-requests\"\n"

// AttachBMC starts an ipmi_sim BMC on addr (port 623; use the test's own
// loopback range) whose chassis power starts and stops v, and records it on
// machine id in the inventory (address, user, the password sealed under
// bmc/<id>). A guest that powers itself off reads as off on the BMC.
func (l *Lab) AttachBMC(v *VM, addr netip.Addr, id string) *ipmisim.BMC {
	l.T.Helper()
	b := ipmisim.Start(l.T, ipmisim.Options{First: addr, Hook: powerHook})[0]
	reqs := filepath.Join(b.Dir, "vm-requests")
	v.mu.Lock()
	v.exited = func() { _ = b.SetPower(false) }
	v.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		follow(ctx, reqs, func(line string) {
			switch line {
			case "on":
				if err := v.PowerOn(); err != nil {
					l.T.Errorf("lab: BMC %s: %v", addr, err)
				}
			case "off":
				v.Stop()
			}
		})
	}()
	l.T.Cleanup(func() { cancel(); wg.Wait() })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	ref := "bmc/" + id
	if err := l.Store.SetCredential(ctx2, ref, b.Password); err != nil {
		l.T.Fatal(err)
	}
	if _, err := l.Store.Update(ctx2, id, inventory.Operator, inventory.Change{What: "bmc", Why: "lab: ipmi_sim BMC"}, func(m *inventory.Machine) error {
		m.BMC = inventory.BMC{Address: addr.String(), Port: b.Port, Protocol: inventory.ProtocolIPMI, Username: b.Username, CredentialRef: ref}
		return nil
	}); err != nil {
		l.T.Fatal(err)
	}
	return b
}

// follow calls fn with each line appended to path, until ctx is done.
func follow(ctx context.Context, path string, fn func(string)) {
	var off int64
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if f, err := os.Open(path); err == nil {
			if _, err := f.Seek(off, 0); err == nil {
				r := bufio.NewReader(f)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						break // a partial line is read again next time
					}
					off += int64(len(line))
					fn(strings.TrimSpace(line))
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
