package cli

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
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

// TestNoLeaderOneLine: against a real Consul server that can never elect a
// leader (it expects 3 servers and is alone), a command fails after its
// retries with one line: what it was doing, that the cluster had no
// leader, and for how long it retried.
func TestNoLeaderOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real consul agent; skipped under -short")
	}
	bin, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for range 4 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	dir := t.TempDir()
	hcl := fmt.Sprintf(`server = true
bootstrap_expect = 3
data_dir = %q
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports { http = %d, serf_lan = %d, serf_wan = %d, server = %d, dns = -1, grpc = -1, grpc_tls = -1 }
disable_update_check = true
log_level = "error"
`, filepath.Join(dir, "data"), ports[0], ports[1], ports[2], ports[3])
	os.WriteFile(filepath.Join(dir, "c.hcl"), []byte(hcl), 0o600)
	cmd := exec.Command(bin, "agent", "-config-file", filepath.Join(dir, "c.hcl"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Cleanup(func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	c := &cliEnv{t: t, addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), key: filepath.Join(dir, "key")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = c.run("", "inventory", "list")
	for err != nil && strings.Contains(err.Error(), "cannot reach Consul") && time.Since(start) < 10*time.Second {
		time.Sleep(100 * time.Millisecond) // the agent is still starting
		_, _, err = c.run("", "inventory", "list")
	}
	if err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "http://") ||
		!strings.Contains(err.Error(), "the Consul cluster had no leader (retried for ") {
		t.Fatalf("inventory list without a leader: %v", err)
	}
	t.Logf("%v (after %s)", err, time.Since(start).Round(100*time.Millisecond))
}
