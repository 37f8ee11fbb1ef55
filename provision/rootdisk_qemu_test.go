package provision_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// TestRootDiskEraseQEMU is root-device hints and erase levels end to end,
// in one TCG machine under an ipmi_sim BMC with three disks: sda, a
// 512 MiB rotational data disk (SCSI, with a WWN), sdb, a 128 MiB solid-state
// disk (SCSI, rotation_rate=1), and nvme0n1, a 160 MiB NVMe namespace. The
// data disk and the NVMe namespace hold a pattern from the host.
//
//  1. discovery reports the three disks (rotational flags, the WWN);
//  2. a hint that matches nothing fails at select: nothing is claimed,
//     nothing is written;
//  3. --root-disk 'not rotational' matches sdb and nvme0n1: the smallest,
//     sdb, takes the image; the deploy record and history name it; the
//     machine boots the image's kernel; the data disk and the NVMe namespace
//     are untouched (read from their files);
//  4. a 64 MiB SATA disk on AHCI is added while the machine is off for the
//     release (as an operator adds a drive between boots); release --erase
//     secure formats the NVMe namespace (QEMU implements Format NVM) and
//     refuses the others by name before writing to them: the SCSI disks as
//     not ATA (hdparm's IDENTIFY through virtio-scsi is all zeros), the
//     SATA disk because QEMU's IDE/AHCI disk has no ATA security feature
//     set (IDENTIFY word 82 bit 1 clear, read by the discovery image's
//     hdparm): failed_releasing, not claimable, the SATA disk's file
//     unchanged (its sha256);
//  5. release --erase zero (from failed_releasing) leaves every byte of
//     every disk zero, with progress in the history; the machine is ready.
//
// The SATA disk is added only for the release, as an operator adds a
// drive between boots. (The kernel names SCSI and SATA disks in the order
// their asynchronous probes run, which differed between two boots of this
// machine; the agent pairs recorded and seen disks by WWN and serial before
// name, wire.PairDisks, so that renaming alone is not drift.)
func TestRootDiskEraseQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{Tools: []string{"mkfs.ext4", "ipmi_sim"}})
	ctx := context.Background()
	img := testImage(t, l, "1", 64)

	spec := labtest.VMSpec{MAC: "52:54:00:31:00:43", Serial: "ROOTDISK-1", MemMiB: 1024, CPUs: 1, Reboot: true,
		SCSIDisks: []labtest.ExtraDisk{{MiB: 512, Serial: "DATA-HDD", WWN: "0x5000c500a1b2c3d4"}, {MiB: 128, RPM: 1, Serial: "ROOT-SSD"}},
		NVMeDisks: []labtest.ExtraDisk{{MiB: 160, Serial: "NVME-1"}}}
	v := l.NewVM(spec)
	data, nvme, root := v.ExtraDisk("scsi", 0), v.ExtraDisk("scsi", 1), v.ExtraDisk("nvme", 0)
	nvme, root = root, nvme
	pattern := bytes.Repeat([]byte("ironrack data "), 1<<20/14+1)[:1<<20]
	for _, f := range []string{data, nvme} {
		st, _ := os.Stat(f)
		for _, off := range []int64{0, st.Size() / 2, st.Size() - 1<<20} {
			writeDisk(t, f, off, pattern)
		}
	}
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
	t.Logf("disks: %s", inventory.DisksText(m.Disks))
	byName := map[string]inventory.Disk{}
	for _, d := range m.Disks {
		byName[d.Name] = d
	}
	if !byName["sda"].Rotational || byName["sdb"].Rotational || byName["nvme0n1"].Rotational || byName["sdb"].SizeBytes != 128<<20 || byName["nvme0n1"].SizeBytes != 160<<20 {
		t.Fatalf("disks as discovered: %s; want sda rotational, sdb (128 MiB) and nvme0n1 (160 MiB) not", inventory.DisksText(m.Disks))
	}
	if !strings.Contains(strings.ToLower(byName["sda"].WWN), "5000c500a1b2c3d4") {
		t.Errorf("sda's WWN %q, want the one QEMU was given", byName["sda"].WWN)
	}
	l.AttachBMC(v, netip.MustParseAddr("127.0.31.43"), m.ID)
	d := deployer(l)
	key := labtest.NewSSHKey(t).Authorized

	// A hint matching nothing: select fails, nothing claimed or written.
	res := d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "tiny", Version: "1", SSHKeys: []string{key},
		RootDisk: `serial == "S3Z9NB0K123"`, Timeout: time.Minute})
	if res[0].OK() || res[0].Step != "select" || !strings.Contains(res[0].Error, `root disk hint "serial == \"S3Z9NB0K123\"" matches 0`) ||
		!strings.Contains(res[0].Error, "sdb (134217728 bytes, not rotational") || res[0].State != inventory.StateReady {
		t.Fatalf("deploy with a hint matching nothing: %+v", res[0])
	}
	if got, _ := l.Store.Get(ctx, m.ID); got.Owner != "" || v.Running() {
		t.Fatalf("a refused hint claimed the machine (%q) or powered it on (%v)", got.Owner, v.Running())
	}

	// not rotational: sdb (smaller than nvme0n1) takes the image.
	var evs events
	res = d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "tiny", Version: "1", SSHKeys: []string{key},
		RootDisk: "not rotational", Timeout: 8 * time.Minute, Progress: evs.add})
	t.Logf("deploy events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateDeployed {
		t.Fatalf("deploy: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 40))
	}
	rec, err := l.Store.Deploy(ctx, m.ID)
	if err != nil || rec.RootDisk != "not rotational" || len(rec.RootDisks) != 1 || rec.RootDisks[0].Name != "sdb" {
		t.Fatalf("deploy record: %+v %v; want root disk sdb by the hint", rec, err)
	}
	h := strings.Join(l.History(m.ID), "\n")
	for _, want := range []string{`root disk sdb (flat, hint "not rotational")`, "to /dev/sdb:"} {
		if !strings.Contains(h, want) {
			t.Errorf("history lacks %q:\n%s", want, h)
		}
	}
	if !v.WaitConsole("ds=nocloud-net;s=http://192.0.2.1:8080/nocloud/"+m.ID+".", time.Now().Add(3*time.Minute)) {
		t.Errorf("deployed machine did not boot the image's kernel:\n%s", labtest.Tail(v.Console(), 30))
	}
	if !bytes.Equal(readDisk(t, root, 0, int64(len(img))), img) {
		t.Fatal("sdb does not hold the image")
	}
	for _, f := range []string{data, nvme} {
		st, _ := os.Stat(f)
		for _, off := range []int64{0, st.Size() / 2, st.Size() - 1<<20} {
			if !bytes.Equal(readDisk(t, f, off, 1<<20), pattern) {
				t.Errorf("%s changed at %d by the deploy", f, off)
			}
		}
	}

	// secure, with a SATA disk added: the NVMe namespace is formatted, the
	// SCSI and SATA disks refused before anything is written to them.
	sata := v.Disk + ".sata"
	if err := os.WriteFile(sata, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sata, 64<<20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 32 << 20, 63 << 20} {
		writeDisk(t, sata, off, pattern)
	}
	sataSum := fileSHA256(t, sata)
	v.Spec.SATAModel, v.Spec.SATARPM = "IRONRACK SATA", 7200 // QEMU's argv at the next power on
	evs = events{}
	res = d.Release(ctx, []string{m.ID}, provision.ReleaseRequest{AllowReboot: true, Erase: inventory.EraseSecure, Timeout: 5 * time.Minute, Progress: evs.add})
	t.Logf("secure release events:\n%s", evs.String())
	if res[0].OK() || res[0].State != inventory.StateFailedReleasing {
		t.Fatalf("secure release: %+v, want failed_releasing", res[0])
	}
	if n := strings.Count(res[0].Error, "is not an ATA disk (identify data: all words zero"); n != 2 {
		t.Errorf("secure release refused %d disks as not ATA, want the 2 SCSI disks:\n%s", n, res[0].Error)
	}
	sataRefused := regexp.MustCompile(`/dev/(sd[a-c]): no secure erase: (sd[a-c]) \(ATA IRONRACK SATA, serial QM\d+\): the drive does not support the ATA security feature set \(IDENTIFY word 82 bit 1\)`)
	if sm := sataRefused.FindStringSubmatch(res[0].Error); sm == nil || sm[1] != sm[2] {
		t.Errorf("secure release error does not refuse the SATA disk for its missing security feature set:\n%s", res[0].Error)
	}
	if !strings.Contains(res[0].Error, "the drive's own erase on /dev/nvme0n1 (NVMe format, user data erase)") {
		t.Errorf("secure release error does not name the NVMe erase:\n%s", res[0].Error)
	}
	if got := fileSHA256(t, sata); got != sataSum {
		t.Errorf("the refused SATA disk changed: sha256 %s, was %s", got, sataSum)
	}
	if strings.Contains(res[0].Error, "/dev/nvme0n1:") {
		t.Errorf("secure erase of the NVMe namespace failed: %s", res[0].Error)
	} else if !allZero(t, nvme) {
		t.Error("after a secure erase the NVMe namespace is not zero")
	}
	if _, err := l.Store.Claim(ctx, m.ID, "someone", "", inventory.Change{}); err == nil {
		t.Error("a machine whose erase was refused was claimed")
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatal("machine did not power off after the refused erase")
	}

	// zero: every byte of every disk.
	evs = events{}
	res = d.Release(ctx, []string{m.ID}, provision.ReleaseRequest{Erase: inventory.EraseZero, Timeout: 6 * time.Minute, Progress: evs.add})
	t.Logf("zero release events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateReady {
		t.Fatalf("zero release: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 30))
	}
	h = strings.Join(l.History(m.ID), "\n")
	for _, want := range []string{"release: erase secure", "release: erase zero", "agent wipe: progress", "erase zero: every byte zeroed on /dev/nvme0n1, /dev/sda, /dev/sdb, /dev/sdc"} {
		if !strings.Contains(h, want) {
			t.Errorf("history lacks %q:\n%s", want, h)
		}
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatal("wiped machine did not power off")
	}
	for _, f := range []string{data, root, nvme, sata} {
		if !allZero(t, f) {
			t.Errorf("after release --erase zero, %s is not all zero", f)
		}
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func writeDisk(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// allZero reads the whole file.
func allZero(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	zero := make([]byte, len(buf))
	for {
		n, err := f.Read(buf)
		if !bytes.Equal(buf[:n], zero[:n]) {
			return false
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
