package provision_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// mirrorImage is a tiny OS image that really boots from its root: ext4
// with a static busybox and an /sbin/init that prints what / is mounted
// from and the md state, then powers off; the OS initramfs (images.RootInitrd,
// which assembles a mirror) for the lab's kernel.
func mirrorImage(t *testing.T, l *labtest.Lab) {
	t.Helper()
	tree := t.TempDir()
	for _, d := range []string{"bin", "sbin", "etc", "dev", "proc", "sys"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	labtest.CopyFile(t, "/bin/busybox", filepath.Join(tree, "bin", "busybox"))
	os.Chmod(filepath.Join(tree, "bin", "busybox"), 0o755)
	os.WriteFile(filepath.Join(tree, "sbin", "init"), []byte(`#!/bin/busybox sh
/bin/busybox echo "mirror-os up: $(/bin/busybox grep ' / ' /proc/mounts | /bin/busybox cut -d' ' -f1) $(/bin/busybox cat /proc/mdstat | /bin/busybox grep -o '\[[0-9]/[0-9]\]')"
/bin/busybox sync
/bin/busybox poweroff -f
`), 0o755)
	dir := images.Dir(l.Data, "mirror-os", "1")
	os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", images.RootLabel, "-E", "root_owner=0:0", "-d", tree, filepath.Join(dir, "root.img"), "24M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	root, err := labtest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kdir, err := images.KernelCache(ctx, filepath.Join(root, "scripts", "boot-artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := images.RootInitrd(ctx, kdir, "", []string{"virtio_pci", "virtio_scsi", "sd_mod", "md_mod", "raid1", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "initrd.img"), rd, 0o644)
	labtest.CopyFile(t, filepath.Join(l.Discovery, "vmlinuz"), filepath.Join(dir, "vmlinuz"))
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte("root=LABEL=ironrack-root ro console=ttyS0,115200n8\n"), 0o644)
	man := images.Manifest{Name: "mirror-os", Version: "1", Kernel: "vmlinuz", Initrd: "initrd.img", Root: "root.img"}
	var sums strings.Builder
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img"} {
		fb, _ := os.ReadFile(filepath.Join(dir, f))
		s := sha256.Sum256(fb)
		man.Files = append(man.Files, images.File{Name: f, Size: int64(len(fb)), SHA256: hex.EncodeToString(s[:])})
		sums.WriteString(hex.EncodeToString(s[:]) + "  " + f + "\n")
	}
	mb, _ := json.MarshalIndent(man, "", "  ")
	os.WriteFile(filepath.Join(dir, images.ManifestFile), mb, 0o644)
	os.WriteFile(filepath.Join(dir, images.SumsFile), []byte(sums.String()), 0o644)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := (&images.Catalog{KV: l.Consul.KV()}).Register(cctx, man); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorRootQEMU is --root-layout mirror end to end, in one TCG machine
// with two 96 MiB SCSI disks: the agent builds RAID 1 (mdadm, metadata 1.0)
// over both and writes the image to it; the OS initramfs assembles the
// array and the OS runs with / on /dev/md0 over both disks; with the second
// disk's backing file removed, the machine boots again, from the degraded
// array. Each disk holds the image's file system at its start (metadata 1.0
// is at the end).
func TestMirrorRootQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{Tools: []string{"mkfs.ext4", "ipmi_sim"}})
	ctx := context.Background()
	mirrorImage(t, l)

	spec := labtest.VMSpec{MAC: "52:54:00:31:00:44", Serial: "MIRROR-1", MemMiB: 1024, CPUs: 1, Reboot: true,
		SCSIDisks: []labtest.ExtraDisk{{MiB: 96, RPM: 1, Serial: "ROOT-A"}, {MiB: 96, RPM: 1, Serial: "ROOT-B"}}}
	v := l.NewVM(spec)
	if err := v.PowerOn(); err != nil {
		t.Fatal(err)
	}
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("discovered VM did not power off:\n%s", labtest.Tail(v.Console(), 20))
	}
	l.AttachBMC(v, netip.MustParseAddr("127.0.31.44"), m.ID)
	d := deployer(l)
	var evs events
	res := d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "mirror-os", Version: "1",
		SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, RootDisk: "not rotational", RootLayout: inventory.LayoutMirror,
		Timeout: 8 * time.Minute, Progress: evs.add})
	t.Logf("deploy events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateDeployed {
		t.Fatalf("deploy: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 40))
	}
	rec, err := l.Store.Deploy(ctx, m.ID)
	if err != nil || rec.RootLayout != inventory.LayoutMirror || len(rec.RootDisks) != 2 {
		t.Fatalf("deploy record: %+v %v; want a mirror over two disks", rec, err)
	}
	h := strings.Join(l.History(m.ID), "\n")
	for _, want := range []string{`root disk sda+sdb (mirror, hint "not rotational")`, "to /dev/md0 (mirror of sda+sdb)"} {
		if !strings.Contains(h, want) {
			t.Errorf("history lacks %q:\n%s", want, h)
		}
	}
	if !v.WaitConsole("mirror-os up: /dev/md0 [2/2]", time.Now().Add(3*time.Minute)) {
		t.Fatalf("the deployed OS did not come up on the mirror:\n%s", labtest.Tail(v.Console(), 40))
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatal("the deployed OS did not power off")
	}

	// Pull the second disk: its backing file is gone, QEMU starts without it.
	gone := v.ExtraDisk("scsi", 1)
	v.Spec.SCSIDisks = v.Spec.SCSIDisks[:1]
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	if err := v.PowerOn(); err != nil {
		t.Fatal(err)
	}
	if !v.WaitConsole("mirror-os up: /dev/md0 [2/1]", time.Now().Add(3*time.Minute)) {
		t.Fatalf("the OS did not boot from the degraded mirror:\n%s", labtest.Tail(v.Console(), 40))
	}
	if !strings.Contains(v.Console(), "(1 of 2 disks)") {
		t.Errorf("the initramfs did not say it assembled one of two disks:\n%s", labtest.Tail(v.Console(), 40))
	}
	for _, line := range strings.Split(v.Console(), "\n") {
		if strings.Contains(line, "ironrack-initrd: md") || strings.Contains(line, "mirror-os up") {
			t.Log(strings.TrimSpace(line))
		}
	}
	v.WaitOff(time.Now().Add(time.Minute))
}
