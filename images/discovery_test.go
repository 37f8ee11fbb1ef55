package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"
)

var fakeAgent = append([]byte("\x7fELF"), bytes.Repeat([]byte{1}, 100)...)

// fakeKernelDir is a boot-artifacts cache entry with a stand-in initrd
// that holds two modules and their order.
func fakeKernelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mods := map[string][]byte{"virtio.ko": []byte("mod-virtio"), "virtio_net.ko": []byte("mod-net")}
	standIn, err := Initramfs([]byte("#!/bin/busybox sh\n"), mods, []string{"virtio.ko", "virtio_net.ko"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		KernelFile: []byte("kernel"), InitrdFile: standIn, "VERSION": []byte("linux-image-6.1.0-56-amd64 6.1.192-2\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestInitramfs(t *testing.T) {
	b, err := Initramfs(fakeAgent, map[string][]byte{"a.ko": []byte("A"), "b.ko": []byte("B")}, []string{"b.ko", "a.ko"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Initramfs(fakeAgent, map[string][]byte{"a.ko": []byte("A"), "b.ko": []byte("B")}, []string{"b.ko", "a.ko"})
	if !bytes.Equal(b, again) {
		t.Error("two builds of the same inputs differ")
	}
	// The real cpio reads it back (what the kernel unpacks is newc).
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	listing := string(out)
	for _, want := range []string{"-rwxr-xr-x", " init\n", "crw-------", "dev/console", "lib/modules/order", "lib/modules/a.ko"} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q:\n%s", want, listing)
		}
	}
	got := map[string]string{}
	err = cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(raw)), func(r cpio.Record) error {
		if r.Mode&cpio.S_IFMT == cpio.S_IFREG {
			c, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			got[r.Name] = string(c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"init": string(fakeAgent), "lib/modules/a.ko": "A", "lib/modules/b.ko": "B", "lib/modules/order": "b.ko\na.ko\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if _, err := Initramfs(fakeAgent, nil, []string{"missing.ko"}); err == nil {
		t.Error("a module in the order that is not given: no error")
	}
}

func TestDiscoveryBuild(t *testing.T) {
	data := t.TempDir()
	agent := filepath.Join(t.TempDir(), "ironrack-agent")
	if err := os.WriteFile(agent, fakeAgent, 0o755); err != nil {
		t.Fatal(err)
	}
	// An older install copied files into current/ (scripts/boot-artifacts --install).
	old := filepath.Join(data, "images", "agent", "current")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	d := Discovery{DataDir: data, KernelDir: fakeKernelDir(t), Agent: agent}
	m, err := d.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Version, "6.1.192-2-") || m.KernelPackage != "linux-image-6.1.0-56-amd64 6.1.192-2" {
		t.Errorf("version %q, kernel package %q", m.Version, m.KernelPackage)
	}
	if diff := cmp.Diff([]string{"virtio.ko", "virtio_net.ko"}, m.Modules); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}
	cur := filepath.Join(data, "images", "agent", "current")
	if target, err := os.Readlink(cur); err != nil || target != m.Version {
		t.Fatalf("current -> %q (%v), want %q", target, err, m.Version)
	}
	sums, err := os.ReadFile(filepath.Join(cur, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		b, err := os.ReadFile(filepath.Join(cur, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != f.SHA256 || int64(len(b)) != f.Size {
			t.Errorf("%s: manifest says %s/%d, file is %x/%d", f.Name, f.SHA256, f.Size, h, len(b))
		}
		if !strings.Contains(string(sums), f.SHA256+"  "+f.Name+"\n") {
			t.Errorf("%s lacks %s:\n%s", SumsFile, f.Name, sums)
		}
	}
	// sha256sum itself accepts the sums file.
	cmd := exec.Command("sha256sum", "-c", "--quiet", SumsFile)
	cmd.Dir = cur
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v: %s", err, out)
	}
	// The old current directory was moved aside, not lost.
	ents, _ := filepath.Glob(filepath.Join(data, "images", "agent", "unversioned-*"))
	if len(ents) != 1 {
		t.Errorf("moved-aside dirs %v, want one", ents)
	}

	// Rebuilding the same inputs changes nothing.
	m2, err := d.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m2.Version != m.Version {
		t.Errorf("rebuild: version %s, want %s", m2.Version, m.Version)
	}
	all, _ := os.ReadDir(filepath.Join(data, "images", "agent"))
	if len(all) != 3 { // <version>, current, unversioned-*
		t.Errorf("after a rebuild: %d entries in images/agent, want 3", len(all))
	}
}
