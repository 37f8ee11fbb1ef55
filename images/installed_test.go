package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstalled(t *testing.T) {
	data := t.TempDir()
	install := func(name, version string, body string) {
		t.Helper()
		stage := t.TempDir()
		os.WriteFile(filepath.Join(stage, RootFile), []byte(body), 0o644)
		files, err := hashFiles(stage, []string{RootFile})
		if err != nil {
			t.Fatal(err)
		}
		dst := Dir(data, name, version)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := installVersion(stage, dst, Manifest{Name: name, Version: version, Root: RootFile, Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Installed(data, "debian", ""); err == nil || !strings.Contains(err.Error(), "ironrack images build debian --data-dir "+data) {
		t.Errorf("nothing built: %v", err)
	}
	if _, err := Installed(data, AgentImage, ""); err == nil || !strings.Contains(err.Error(), "ironrack images build discovery") {
		t.Errorf("no agent: %v", err)
	}
	install("debian", "v1", "root")
	m, err := Installed(data, "debian", "")
	if err != nil || m.Version != "v1" || m.Root != RootFile {
		t.Fatalf("the only version: %+v, %v", m, err)
	}
	if _, err := Installed(data, "debian", "v2"); err == nil || !strings.Contains(err.Error(), "no built debian/v2") {
		t.Errorf("a missing version: %v", err)
	}
	install("debian", "v2", "root2")
	if _, err := Installed(data, "debian", ""); err == nil || !strings.Contains(err.Error(), "versions v1, v2: name one") {
		t.Errorf("two versions, none current: %v", err)
	}
	os.Symlink("v2", filepath.Join(Root(data), "debian", Current))
	if m, err := Installed(data, "debian", ""); err != nil || m.Version != "v2" {
		t.Errorf("current: %+v, %v", m, err)
	}
	os.WriteFile(filepath.Join(Dir(data, "debian", "v2"), RootFile), []byte("r"), 0o644)
	if _, err := Installed(data, "debian", "v2"); err == nil || !strings.Contains(err.Error(), "is 1 bytes, the manifest says 5") {
		t.Errorf("a truncated file: %v", err)
	}
}
