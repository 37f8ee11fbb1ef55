package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayout pins the data-dir layout the boot servers' disks hold.
func TestLayout(t *testing.T) {
	for got, want := range map[string]string{
		Root("/d"):                "/d/images",
		Dir("/d", "debian", "12"): "/d/images/debian/12",
		AgentDir("/d"):            "/d/images/agent/current",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

// TestInstallVersion: an installed version is never replaced; a build of
// the same content-hashed version reuses it; a dir without a manifest is a
// broken attempt and is replaced.
func TestInstallVersion(t *testing.T) {
	data := t.TempDir()
	dst := Dir(data, "x", "1")
	staged := func(body string) string {
		s, err := newStage(data, "x", ".test-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s, RootFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A broken earlier attempt: a dir without a manifest.
	if err := os.MkdirAll(filepath.Join(dst, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Name: "x", Version: "1", Root: RootFile}
	if err := installVersion(staged("one"), dst, m); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "junk")); !os.IsNotExist(err) {
		t.Errorf("the broken attempt survived: %v", err)
	}
	if err := installVersion(staged("two"), dst, m); err == nil || !strings.Contains(err.Error(), "already holds a version") {
		t.Errorf("second install: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, RootFile)); string(b) != "one" {
		t.Errorf("installed root %q, want the first", b)
	}
	done, reused, err := installBuilt(staged("one"), dst, m)
	if err != nil || !reused || done.Version != "1" {
		t.Errorf("installBuilt of the same version: %+v %v %v, want it reused", done, reused, err)
	}
	if _, _, err := installBuilt(staged("one"), dst, Manifest{Name: "x", Version: "2"}); err == nil {
		t.Error("installBuilt over another version: no error")
	}
}
