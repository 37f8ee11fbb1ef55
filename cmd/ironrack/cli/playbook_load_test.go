package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bare name is the built-in even where a directory of that name exists
// (the repository's own deploy/, the operator's day's working directory);
// a regular file of another name, or a path, is read as a file.
func TestLoadPlaybookNameOrFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("deploy", 0o755); err != nil {
		t.Fatal(err)
	}
	pb, err := loadPlaybook("deploy")
	if err != nil {
		t.Fatalf("deploy beside a deploy/ directory: %v", err)
	}
	if pb == nil {
		t.Fatal("no playbook")
	}
	if err := os.WriteFile("mine", []byte("steps:\n  - bogus: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadPlaybook("mine")
	if err == nil || !strings.Contains(err.Error(), "mine:") {
		t.Fatalf("a regular file named mine: err = %v, want it parsed as a file (FILE:LINE)", err)
	}
	_, err = loadPlaybook("nosuch")
	if err == nil || !strings.Contains(err.Error(), "built-ins: deploy") {
		t.Fatalf("unknown name: err = %v, want the built-ins listed", err)
	}
	_, err = loadPlaybook(filepath.Join(dir, "nosuch.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nosuch.yaml") {
		t.Fatalf("missing path: err = %v, want the path named", err)
	}
}
