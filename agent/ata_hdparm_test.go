package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHdparmNotATA runs the erase through the real hdparm on a file,
// which answers no IDENTIFY DEVICE (hdparm prints only the header and
// exits 0): refused as not ATA, before any note or write.
func TestHdparmNotATA(t *testing.T) {
	if _, err := os.Stat(hdparmPath); err != nil {
		t.Fatalf("no %s (scripts/setup installs hdparm)", hdparmPath)
	}
	path := filepath.Join(t.TempDir(), "disk")
	body := bytes.Repeat([]byte("ironrack "), 1<<16)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	notes := 0
	_, err := ATAErase{Drive: hdparm{dev: path}, Name: "sdz", SizeBytes: int64(len(body)), Password: "pw",
		Note: func(string) error { notes++; return nil }}.Run(context.Background())
	if !errors.Is(err, ErrNoSecureErase) || !strings.Contains(err.Error(), "sdz is not an ATA disk (identify data: 0 words, want 256)") {
		t.Fatalf("Run: %v", err)
	}
	if b, _ := os.ReadFile(path); notes != 0 || !bytes.Equal(b, body) {
		t.Errorf("%d notes, file changed: %v", notes, !bytes.Equal(b, body))
	}
	if got := redact([]string{"--user-master", "u", "--security-mode", "h", "--security-set-pass", "secret", "/dev/sda"}); strings.Join(got, " ") != "--user-master u --security-mode h --security-set-pass PASSWORD /dev/sda" {
		t.Errorf("redact: %q", got)
	}
}
