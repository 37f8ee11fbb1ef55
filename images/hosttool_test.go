package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostToolRunsAlone: mdadm with the files HostTool gathers runs in a
// chroot holding nothing else.
func TestHostToolRunsAlone(t *testing.T) {
	if _, err := os.Stat("/sbin/mdadm"); err != nil {
		t.Skip("no /sbin/mdadm (scripts/setup installs mdadm)")
	}
	files, err := HostTool("/sbin/mdadm")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	root := t.TempDir()
	for _, f := range files {
		names = append(names, f.Path)
		p := filepath.Join(root, f.Path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, f.Body, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("files: %s", strings.Join(names, " "))
	if len(files) < 3 || files[len(files)-1].Path != "/sbin/mdadm" {
		t.Fatalf("files %v: want mdadm, its interpreter and libc", names)
	}
	out, err := exec.Command("chroot", root, "/sbin/mdadm", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mdadm - v") {
		t.Fatalf("mdadm in a chroot of its files: %v: %s", err, out)
	}
	if _, err := HostTool("relative/mdadm"); err == nil {
		t.Error("a relative path was accepted")
	}
	if _, err := HostTool("/etc/hostname"); err == nil || !strings.Contains(err.Error(), "/etc/hostname") {
		t.Errorf("a non-ELF file: %v", err)
	}
}
