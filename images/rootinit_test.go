package images

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootInitMirrorMember runs the OS initramfs's md_member and md_scan
// (busybox sh, paths moved under a temp dir) over disk files: a member
// with a metadata 1.0 superblock where the kernel looks for it (8 KiB from
// the end, 4 KiB aligned), a plain disk, a member already in an array
// (holders), and a 1.2-style superblock at 4 KiB, which is not ours.
func TestRootInitMirrorMember(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox (busybox-static)")
	}
	dir := t.TempDir()
	const sectors = 20000 // not a multiple of 8: the alignment matters
	sb := make([]byte, 512)
	binary.LittleEndian.PutUint32(sb[0:], 0xa92b4efc)
	binary.LittleEndian.PutUint32(sb[4:], 1)
	copy(sb[16:32], []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	binary.LittleEndian.PutUint32(sb[92:], 2)
	disk := func(name, dev string, at int64, held bool) {
		f := filepath.Join(dir, "dev", name)
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, make([]byte, sectors*512), 0o644); err != nil {
			t.Fatal(err)
		}
		if at >= 0 {
			fh, _ := os.OpenFile(f, os.O_WRONLY, 0)
			fh.WriteAt(sb, at)
			fh.Close()
		}
		s := filepath.Join(dir, "sys", "block", name)
		os.MkdirAll(filepath.Join(s, "holders"), 0o755)
		os.WriteFile(filepath.Join(s, "size"), []byte("20000\n"), 0o644)
		os.WriteFile(filepath.Join(s, "dev"), []byte(dev+"\n"), 0o644)
		if held {
			os.WriteFile(filepath.Join(s, "holders", "md0"), nil, 0o644)
		}
	}
	end := int64((sectors-16)/8*8) * 512
	disk("sda", "8:0", end, false)
	disk("sdb", "8:16", -1, false)
	disk("sdc", "8:32", end, true)
	disk("sdd", "8:48", 4096, false)
	a := strings.Index(rootInit, "md_member() {")
	b := strings.Index(rootInit, "md_assemble() {")
	if a < 0 || b < a {
		t.Fatal("rootInit has no md_member and md_scan")
	}
	script := strings.NewReplacer("/sys/block", filepath.Join(dir, "sys", "block"), `"/dev/$1"`, `"`+filepath.Join(dir, "dev")+`/$1"`).Replace(rootInit[a:b])
	out, err := exec.Command("/bin/busybox", "sh", "-c", script+"\nmd_scan\necho --\nmd_member sdb\nmd_member sda\n").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "deadbeef0102030405060708090a0b0c 2 8:0 sda\n--\ndeadbeef0102030405060708090a0b0c 2 8:0 sda\n"
	if string(out) != want {
		t.Errorf("md_scan, md_member sdb, md_member sda printed\n%s\nwant\n%s", out, want)
	}
}
