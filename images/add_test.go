package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bzImage is a file with the x86 boot protocol's "HdrS" magic at 0x202.
func bzImage() []byte {
	b := make([]byte, 4096)
	copy(b[0x202:], "HdrS")
	return b
}

func TestExternalAdd(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("disk.raw", []byte(strings.Repeat("root", 300000)))
	kernel := write("bz", bzImage())
	initrd := write("rd", []byte("initrd"))
	empty := write("empty", nil)
	notKernel := write("text", []byte(strings.Repeat("x", 1000)))

	data := t.TempDir()
	m, err := External{DataDir: data, Name: "ubuntu", Version: "24.04-1", Root: root, Kernel: kernel, Initrd: initrd,
		Cmdline: "root=LABEL=ironrack-root ro console=ttyS0"}.Add(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "images", "ubuntu", "24.04-1")
	if m.Root != RootFile || m.Kernel != KernelFile || m.Initrd != InitrdFile || m.Cmdline == "" || len(m.Files) != 4 {
		t.Errorf("manifest %+v", m)
	}
	rootBytes, _ := os.ReadFile(root)
	sum := sha256.Sum256(rootBytes)
	if m.Files[0].Name != RootFile || m.Files[0].SHA256 != hex.EncodeToString(sum[:]) || m.Files[0].Size != int64(len(rootBytes)) {
		t.Errorf("root file entry %+v", m.Files[0])
	}
	if got, _ := os.ReadFile(filepath.Join(dir, CmdlineFile)); string(got) != "root=LABEL=ironrack-root ro console=ttyS0\n" {
		t.Errorf("cmdline file %q", got)
	}
	cmd := exec.Command("sha256sum", "--quiet", "-c", SumsFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v: %s", err, out)
	}
	if onDisk, err := ReadManifest(dir); err != nil || onDisk.Version != "24.04-1" {
		t.Errorf("manifest.json: %+v %v", onDisk, err)
	}

	// Root only: a disk with its own boot loader.
	if m, err := (External{DataDir: data, Name: "appliance", Version: "1", Root: root}).Add(ctx); err != nil || m.Kernel != "" || len(m.Files) != 1 {
		t.Errorf("root-only add: %+v %v", m, err)
	}

	for name, tc := range map[string]struct {
		x    External
		want string
	}{
		"exists":            {External{Name: "ubuntu", Version: "24.04-1", Root: root}, "ubuntu/24.04-1 already exists"},
		"no root":           {External{Name: "u", Version: "1"}, "--root FILE is required"},
		"missing root":      {External{Name: "u", Version: "1", Root: filepath.Join(src, "nope")}, "--root: stat"},
		"empty root":        {External{Name: "u", Version: "1", Root: empty}, "--root " + empty + " is empty"},
		"dir root":          {External{Name: "u", Version: "1", Root: src}, "is not a regular file"},
		"bad name":          {External{Name: "../x", Version: "1", Root: root}, `name "../x"`},
		"agent":             {External{Name: "agent", Version: "1", Root: root}, "discovery environment"},
		"bad version":       {External{Name: "u", Version: "a/b", Root: root}, `--version "a/b"`},
		"current":           {External{Name: "u", Version: "current", Root: root}, `"current" is reserved`},
		"initrd no kernel":  {External{Name: "u", Version: "1", Root: root, Initrd: initrd}, "--initrd needs --kernel"},
		"cmdline no kernel": {External{Name: "u", Version: "1", Root: root, Cmdline: "ro"}, "--cmdline needs --kernel"},
		"two-line cmdline":  {External{Name: "u", Version: "1", Root: root, Kernel: kernel, Cmdline: "ro\nshell"}, "--cmdline must be one line"},
		"not a kernel":      {External{Name: "u", Version: "1", Root: root, Kernel: notKernel}, "--kernel " + notKernel + ": not a Linux kernel"},
		"missing initrd":    {External{Name: "u", Version: "1", Root: root, Kernel: kernel, Initrd: filepath.Join(src, "nope")}, "--initrd: stat"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.x.DataDir = data
			_, err := tc.x.Add(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Nothing half-written: only the two added versions and no leftovers.
	for _, name := range []string{"ubuntu", "appliance", "u"} {
		entries, _ := os.ReadDir(filepath.Join(data, "images", name))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("leftover %s/%s", name, e.Name())
			}
		}
		if name == "u" && len(entries) > 0 {
			t.Errorf("failed adds left %d entries in images/u", len(entries))
		}
	}
}

func TestAptMirror(t *testing.T) {
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"deb822": {map[string]string{"etc/apt/sources.list.d/debian.sources": `Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`}, "http://mirror.example/debian"},
		"disabled stanza": {map[string]string{"etc/apt/sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://on.example/debian\nSuites: bookworm\n"}, "http://on.example/debian"},
		"one-line":        {map[string]string{"etc/apt/sources.list": "# comment\ndeb-src http://src.example/debian bookworm main\ndeb http://sec.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"}, "http://m.example/debian"},
		"list file":       {map[string]string{"etc/apt/sources.list": "", "etc/apt/sources.list.d/x.list": "deb http://l.example/debian bookworm main\n"}, "http://l.example/debian"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for p, body := range tc.files {
				os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
				os.WriteFile(filepath.Join(root, p), []byte(body), 0o644)
			}
			got, err := AptMirror(root)
			if err != nil || got != tc.want {
				t.Errorf("AptMirror = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := AptMirror(t.TempDir()); err == nil || !strings.Contains(err.Error(), "give --mirror") {
		t.Errorf("no sources: %v", err)
	}
}

func TestRootInitramfs(t *testing.T) {
	b, err := RootInitramfs([]byte("\x7fELF busybox"), map[string][]byte{"ext4.ko": []byte("E"), "jbd2.ko": []byte("J")}, []string{"jbd2.ko", "ext4.ko"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := RootInitramfs([]byte("\x7fELF busybox"), map[string][]byte{"ext4.ko": []byte("E"), "jbd2.ko": []byte("J")}, []string{"jbd2.ko", "ext4.ko"})
	if string(b) != string(again) {
		t.Error("two builds of the same inputs differ")
	}
	mods, order, err := modulesFrom(writeTemp(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, " ") != "jbd2.ko ext4.ko" || string(mods["ext4.ko"]) != "E" {
		t.Errorf("order %v mods %v", order, mods)
	}
	if _, err := RootInitramfs(nil, map[string][]byte{}, []string{"x.ko"}); err == nil {
		t.Error("a module in the order but not given: no error")
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTreeConfigured(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
	status := filepath.Join(root, "var/lib/dpkg/status")
	os.WriteFile(status, []byte("Package: a\nStatus: install ok installed\n\nPackage: cloud-init\nStatus: install ok unpacked\n\nPackage: b\nStatus: install ok installed\n"), 0o644)
	if err := treeConfigured(root); err == nil || !strings.Contains(err.Error(), "cloud-init (install ok unpacked)") {
		t.Errorf("an unconfigured package: %v", err)
	}
	os.WriteFile(status, []byte("Package: a\nStatus: install ok installed\n"), 0o644)
	if err := treeConfigured(root); err != nil {
		t.Error(err)
	}
	if err := treeConfigured(t.TempDir()); err == nil {
		t.Error("no dpkg status: no error")
	}
}

func TestTreeKey(t *testing.T) {
	a := TreeKey("bookworm", []string{"b", "a"})
	if a != TreeKey("bookworm", []string{"a", "b"}) || !strings.HasPrefix(a, "debian-bookworm-") {
		t.Errorf("key %s depends on the list's order or lacks the suite", a)
	}
	if a == TreeKey("bookworm", []string{"a", "b", "c"}) || a == TreeKey("trixie", []string{"a", "b"}) {
		t.Error("different packages or suites share a key")
	}
}
