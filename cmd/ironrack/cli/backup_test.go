package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupRestoreCLI: inventory backup writes a 0600 file; restore into
// a fresh agent with the same key file gives the same export and the BMC
// password still opens; a second restore needs --replace and saves what
// it replaces.
func TestBackupRestoreCLI(t *testing.T) {
	a := newCLI(t)
	a.ok("inventory", "import", example("rack-sheet.csv"))
	file := filepath.Join(t.TempDir(), "inv.backup")
	if out := a.ok("inventory", "backup", file); !strings.Contains(out, "machine nodes to "+file) {
		t.Errorf("backup: %s", out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	b := newCLI(t)
	b.key = a.key
	b.ok("inventory", "restore", file)
	if x, y := a.ok("inventory", "export"), b.ok("inventory", "export"); x != y || x == "" {
		t.Errorf("export after restore differs:\n%s\n---\n%s", x, y)
	}
	if _, _, err := b.run("", "inventory", "restore", file); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("restore into a non-empty inventory: %v", err)
	}
	if out := b.ok("inventory", "restore", "--replace", file); !strings.Contains(out, file+".before-restore") {
		t.Errorf("restore --replace: %s", out)
	}
	if fi, err := os.Stat(file + ".before-restore"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("saved inventory: %v %v", fi, err)
	}
}
