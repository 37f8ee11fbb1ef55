package lab

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// chassisScript is every BMC's chassis_control program. ipmi_sim calls it
// as `ctl.sh DIR get power boot` (it prints power:0|1 and boot:DEV) and
// `ctl.sh DIR set power 1 boot pxe ...` (it stores each value in DIR). A
// change of power, or a reset, appends "on", "off" or "reset" to
// DIR/requests, which the supervisor follows to start and stop the
// machine's QEMU.
const chassisScript = `#!/bin/sh
dir=$1; shift
op=$1; shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
		boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		key=$1; val=$2; shift 2
		case $key in
		power)
			old=$(cat "$dir/power" 2>/dev/null || echo 0)
			echo "$val" > "$dir/power"
			if [ "$old" != "$val" ]; then
				if [ "$val" = 1 ]; then echo on >> "$dir/requests"; else echo off >> "$dir/requests"; fi
			fi ;;
		reset) [ "$val" = 1 ] && echo reset >> "$dir/requests" ;;
		*) echo "$val" > "$dir/$key" ;;
		esac
	done ;;
esac
exit 0
`

// machineDir is machine m's directory in the state directory: its BMC's
// files, disks and console log.
func machineDir(dir string, m Machine) string {
	return filepath.Join(dir, fmt.Sprintf("machine-%d", m.Index))
}

// writeMachine creates m's BMC files (lan.conf, sim.emu, ctl.sh, power,
// boot) and its sparse disks.
func writeMachine(dir string, m Machine) error {
	d := machineDir(dir, m)
	if err := os.MkdirAll(filepath.Join(d, "state"), 0o700); err != nil {
		return err
	}
	var lan strings.Builder
	fmt.Fprintf(&lan, "name \"bmc%d\"\nset_working_mc 0x20\n  startlan 1\n", m.Index)
	fmt.Fprintf(&lan, "    addr %s 623\n    priv_limit admin\n", m.BMC)
	for _, p := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&lan, "    allowed_auths_%s md5\n", p)
	}
	guid := sha256.Sum256([]byte(m.Serial))
	fmt.Fprintf(&lan, "    guid %x\n  endlan\n", guid[:16])
	fmt.Fprintf(&lan, "  user 2 true %q %q admin 10 md5\n", m.BMCUser, m.BMCPassword)
	fmt.Fprintf(&lan, "  chassis_control \"%s %s\"\n", filepath.Join(d, "ctl.sh"), d)
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"lan.conf", lan.String(), 0o600},
		{"sim.emu", "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n", 0o644},
		{"ctl.sh", chassisScript, 0o755},
		{"power", "0\n", 0o644},
		{"boot", "default\n", 0o644},
		{"requests", "", 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(d, f.name), []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	for i, gib := range m.DisksGiB {
		p := filepath.Join(d, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		f.Close()
		if err := os.Truncate(p, int64(gib)<<30); err != nil {
			return err
		}
	}
	return nil
}

// bmcArgv runs m's ipmi_sim inside the namespace.
func bmcArgv(dir string, l Layout, m Machine) []string {
	d := machineDir(dir, m)
	return []string{"ip", "netns", "exec", l.NS, "ipmi_sim", "-c", filepath.Join(d, "lan.conf"),
		"-f", filepath.Join(d, "sim.emu"), "-s", filepath.Join(d, "state"), "-n"}
}

// qemuArgv runs m as a TCG machine inside the namespace: its tap, its
// disks, its console into console.log (appended across power cycles), and
// SMBIOS serial and UUID. BIOS machines boot from the network with QEMU's
// iPXE ROM; UEFI machines run OVMF with the NIC's ROM removed, so OVMF's
// own PXE starts the chain (TFTP first), as on real hardware. Guest reboots
// stay inside QEMU; a guest power-off ends it. A disk whose backing file
// is gone is a pulled disk: the machine powers on without it (the drive
// is not attached, and the remaining ones keep their order).
func qemuArgv(dir string, l Layout, m Machine) []string {
	d := machineDir(dir, m)
	uuid := fmt.Sprintf("%x", sha256.Sum256([]byte("uuid:"+m.Serial)))
	uuid = uuid[0:8] + "-" + uuid[8:12] + "-" + uuid[12:16] + "-" + uuid[16:20] + "-" + uuid[20:32]
	argv := []string{"ip", "netns", "exec", l.NS, "qemu-system-x86_64", "-accel", "tcg",
		"-name", fmt.Sprintf("%s-%d", l.NS, m.Index),
		"-m", fmt.Sprint(m.MemMiB), "-smp", fmt.Sprint(m.CPUs), "-display", "none", "-monitor", "none",
		"-chardev", "file,id=con0,append=on,path=" + filepath.Join(d, "console.log"), "-serial", "chardev:con0",
		"-netdev", "tap,id=n0,ifname=" + m.Tap + ",script=no,downscript=no",
		"-smbios", "type=1,serial=" + m.Serial + ",uuid=" + uuid}
	for i := range m.DisksGiB {
		p := filepath.Join(d, fmt.Sprintf("disk%d.img", i))
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		argv = append(argv, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio", p))
	}
	nic := "virtio-net-pci,netdev=n0,mac=" + m.MAC
	if m.UEFI {
		argv = append(argv, "-device", nic+",romfile=", "-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode)
	} else {
		argv = append(argv, "-device", nic, "-boot", "n")
	}
	return argv
}
