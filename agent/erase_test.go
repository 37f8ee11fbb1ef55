package agent_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ironrack/ironrack/agent"
)

// TestZeroDisk overwrites every byte of a file (a disk's stand-in) holding
// data, reporting progress up to the size.
func TestZeroDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	size := int64(9<<20 + 512)
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	calls := 0
	if err := agent.ZeroDisk(f, size, func(n int64) { last, calls = n, calls+1 }); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	if int64(len(b)) != size || !bytes.Equal(b, make([]byte, size)) {
		t.Fatalf("%d bytes, not all zero", len(b))
	}
	if last != size || calls != 3 {
		t.Errorf("progress ended at %d after %d calls, want %d after 3", last, calls, size)
	}
}

// TestNVMeFormatFields: Format NVM is taken from OACS bit 1, and the
// format command keeps the namespace's LBA format with SES 1.
func TestNVMeFormatFields(t *testing.T) {
	idctrl := make([]byte, 4096)
	if agent.FormatSupported(idctrl) {
		t.Error("OACS 0: format supported")
	}
	idctrl[256] = 0x02
	if !agent.FormatSupported(idctrl) {
		t.Error("OACS bit 1: format not supported")
	}
	idns := make([]byte, 4096)
	idns[26] = 0x03 // LBA format 3
	if got := agent.FormatCDW10(idns); got != 0x203 {
		t.Errorf("cdw10 %#x, want 0x203 (SES 1, LBAF 3)", got)
	}
	idns[26] = 0x21 // LBAF 17: upper bits 01, lower 0001
	if got := agent.FormatCDW10(idns); got != 0x1201 {
		t.Errorf("cdw10 %#x, want 0x1201", got)
	}
}

// TestCmdlineErase reads the wipe's erase level.
func TestCmdlineErase(t *testing.T) {
	c := agent.ParseCmdline("ironrack.mode=wipe ironrack.erase=zero ironrack.url=http://x")
	if c.Mode != "wipe" || c.Erase != agent.EraseZero {
		t.Errorf("%+v", c)
	}
}
