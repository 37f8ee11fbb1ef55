package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostToolRunsAlone: each of DiscoveryTools (mdadm, hdparm) with the
// files HostTool gathers runs in a chroot holding nothing else.
func TestHostToolRunsAlone(t *testing.T) {
	version := map[string]struct {
		arg, want string
	}{"/sbin/mdadm": {"--version", "mdadm - v"}, "/sbin/hdparm": {"-V", "hdparm v"}}
	for _, tool := range DiscoveryTools {
		if _, err := os.Stat(tool); err != nil {
			t.Errorf("no %s (scripts/setup installs it)", tool)
			continue
		}
		v, ok := version[tool]
		if !ok {
			t.Errorf("%s: add how to ask it its version", tool)
			continue
		}
		files, err := HostTool(tool)
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
		if len(files) < 3 || files[len(files)-1].Path != tool {
			t.Fatalf("files %v: want %s, its interpreter and libc", names, tool)
		}
		out, err := exec.Command("chroot", root, tool, v.arg).CombinedOutput()
		if err != nil || !strings.Contains(string(out), v.want) {
			t.Fatalf("%s in a chroot of its files: %v: %s", tool, err, out)
		}
	}
	if _, err := HostTool("relative/mdadm"); err == nil {
		t.Error("a relative path was accepted")
	}
	if _, err := HostTool("/etc/hostname"); err == nil || !strings.Contains(err.Error(), "/etc/hostname") {
		t.Errorf("a non-ELF file: %v", err)
	}
}
