package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/images"
)

// TestImagesBuildDiscovery runs `images build discovery` with a given
// kernel dir and agent (the QEMU test in images builds the real ones),
// then lists and removes the registered version in a real Consul.
func TestImagesBuildDiscovery(t *testing.T) {
	c := newCLI(t)
	runImages := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		out, _, err := c.run("", args...)
		return out, err
	}
	kdir := t.TempDir()
	standIn, err := images.Initramfs([]byte("stand-in"), map[string][]byte{"virtio.ko": []byte("m")}, []string{"virtio.ko"})
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "ironrack-agent")
	for p, b := range map[string][]byte{
		filepath.Join(kdir, "vmlinuz"): []byte("kernel"), filepath.Join(kdir, "initrd.img"): standIn,
		filepath.Join(kdir, "VERSION"): []byte("linux-image-6.1.0-56-amd64 6.1.192-2\n"),
		agent:                          []byte("\x7fELF agent"),
	} {
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	out, err := runImages(t, "-o", "json", "images", "build", "discovery", "--data-dir", data, "--kernel-dir", kdir, "--agent", agent)
	if err != nil {
		t.Fatal(err)
	}
	var m images.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not a manifest: %v\n%s", err, out)
	}
	cur := images.AgentDir(data)
	if target, err := os.Readlink(cur); err != nil || target != m.Version {
		t.Errorf("current -> %q (%v), want %q", target, err, m.Version)
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "SHA256SUMS", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(cur, f)); err != nil {
			t.Error(err)
		}
	}

	out, err = runImages(t, "images", "build", "discovery", "--data-dir", data, "--kernel-dir", kdir, "--agent", agent)
	if err != nil || !strings.Contains(out, "built agent/"+m.Version) {
		t.Errorf("table output %q, %v", out, err)
	}

	notELF := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runImages(t, "images", "build", "discovery", "--data-dir", data, "--kernel-dir", kdir, "--agent", notELF); err == nil || !strings.Contains(err.Error(), notELF) {
		t.Errorf("a non-ELF agent: error %v, want one naming %s", err, notELF)
	}
	if _, err := runImages(t, "images", "build", "discovery", "extra"); err == nil || !strings.Contains(err.Error(), `"extra"`) {
		t.Errorf("an extra argument: error %v", err)
	}

	out, err = runImages(t, "-o", "json", "images", "list")
	var listed []images.Manifest
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].Version != m.Version {
		t.Fatalf("images list: %v\n%s", err, out)
	}
	if out, err := runImages(t, "images", "list"); err != nil || !strings.Contains(out, m.Version) {
		t.Errorf("images list (table): %v\n%s", err, out)
	}
	if _, err := runImages(t, "images", "rm", "agent", m.Version); err != nil {
		t.Fatal(err)
	}
	if out, err := runImages(t, "-o", "json", "images", "list"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("images list after rm: %v\n%s", err, out)
	}
	if _, err := runImages(t, "images", "rm", "agent", m.Version); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("rm twice: %v, want not found", err)
	}
}

// TestImagesAdd registers an external image with `images add` in a real
// Consul, lists it with its roles, and checks the flag errors.
func TestImagesAdd(t *testing.T) {
	c := newCLI(t)
	src := t.TempDir()
	root := filepath.Join(src, "disk.raw")
	kernel := filepath.Join(src, "bzImage")
	bz := make([]byte, 4096)
	copy(bz[0x202:], "HdrS")
	for p, b := range map[string][]byte{root: []byte(strings.Repeat("r", 5000)), kernel: bz} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	out, _, err := c.run("", "-o", "json", "images", "add", "--data-dir", data, "--version", "7", "--root", root,
		"--kernel", kernel, "--cmdline", "root=LABEL=ironrack-root ro", "custom")
	if err != nil {
		t.Fatal(err)
	}
	var m images.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Name != "custom" || m.Version != "7" || m.Root != "root.img" || m.Kernel != "vmlinuz" {
		t.Fatalf("add output: %v\n%s", err, out)
	}
	for _, f := range []string{"root.img", "vmlinuz", "cmdline", "SHA256SUMS", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(images.Dir(data, "custom", "7"), f)); err != nil {
			t.Error(err)
		}
	}
	out, _, err = c.run("", "images", "list")
	if err != nil || !strings.Contains(out, "ROLES") || !strings.Contains(out, "kernel,root") {
		t.Errorf("images list: %v\n%s", err, out)
	}
	for args, want := range map[string]string{
		"images add --version 7 --root " + root + " custom":             "custom/7 already exists",
		"images add --root " + root + " custom":                         "--version is required",
		"images add --version 8 custom":                                 "--root FILE is required",
		"images add --version 8 --root " + src + "/nope custom":         "--root: stat " + src + "/nope",
		"images add --version 8 --root " + root:                         "want exactly one NAME",
		"images add --version 8 --root " + root + " --cmdline x custom": "--cmdline needs --kernel",
		"images add --version 8 --root " + root + " custom --cmdline x": "flag --cmdline comes after the arguments",
	} {
		_, _, err := c.run("", strings.Fields(strings.Replace(args, "images add ", "images add --data-dir "+data+" ", 1))...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", args, err, want)
		}
	}
}

// TestImagesBuildDebianErrors checks that build debian's bad input is
// refused before any work, naming the flag or file (the real build is
// images.TestDebianBuild).
func TestImagesBuildDebianErrors(t *testing.T) {
	c := newCLI(t)
	kdir := t.TempDir()
	notELF := filepath.Join(t.TempDir(), "consul")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	base := []string{"images", "build", "debian", "--data-dir", t.TempDir(), "--cache-dir", t.TempDir(), "--kernel-dir", kdir, "--mirror", "http://mirror.invalid/debian"}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"argument":  {[]string{"images", "build", "debian", "extra"}, `unexpected argument "extra"`},
		"bad suite": {append(base, "--consul-binary", notELF, "--suite", "Book Worm"), `suite "Book Worm"`},
		"no consul": {append(base, "--consul-binary", filepath.Join(kdir, "nope")), "--consul-binary: stat " + filepath.Join(kdir, "nope")},
		"not ELF":   {append(base, "--consul-binary", notELF), "consul " + notELF + " is not an ELF binary"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := c.run("", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
