package tftp_test

import (
	"bytes"
	"context"
	"github.com/ironrack/ironrack/internal/servetest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"

	"github.com/ironrack/ironrack/provision/tftp"
)

// families are the address families every client test runs over: the
// boot server listens on its IPv4 address and, with --address6, on its
// IPv6 one, with the same root and rules.
var families = map[string]string{"IPv4": "udp4", "IPv6": "udp6"}

// start serves a root holding Debian's undionly.kpxe (or a stand-in under
// -short), a symlink to /etc/passwd and one to a secret beside the root,
// on loopback of network ("udp4": 127.0.0.1, "udp6": ::1).
func start(t *testing.T, network string) (addr string, kpxe []byte) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	must(t, os.Mkdir(root, 0o755))
	kpxe, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if err != nil {
		if testing.Short() {
			kpxe = bytes.Repeat([]byte("undionly"), 9000)
		} else {
			t.Fatalf("needs Debian's ipxe package (scripts/setup): %v", err)
		}
	}
	must(t, os.WriteFile(filepath.Join(root, "undionly.kpxe"), kpxe, 0o644))
	must(t, os.WriteFile(filepath.Join(base, "secret"), []byte("SECRET"), 0o600))
	must(t, os.Symlink("/etc/passwd", filepath.Join(root, "passwd")))
	must(t, os.Symlink("../secret", filepath.Join(root, "secret")))
	must(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))

	// The server serves a socket bound here: no port to reserve and race
	// for, and it is receiving before Serve starts.
	host := "127.0.0.1"
	if network == "udp6" {
		host = "::1"
	}
	pc, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil && network == "udp6" {
		t.Fatalf("no IPv6 loopback here (::1): %v", err)
	}
	must(t, err)
	addr = pc.LocalAddr().String()

	srv := tftp.New(tftp.Config{Root: root, Conn: pc, Timeout: time.Second})
	servetest.Run(t, 15*time.Second, srv.Serve)
	return addr, kpxe
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// hpa fetches file with the real tftp-hpa client; it returns the file's
// content, or nil and the client's output when nothing arrived.
func hpa(t *testing.T, addr, file string) ([]byte, string) {
	t.Helper()
	if _, err := exec.LookPath("tftp"); err != nil {
		t.Fatalf("needs the tftp-hpa client (scripts/setup installs it): %v", err)
	}
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "got")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	family := "-4"
	if strings.Contains(host, ":") {
		family = "-6"
	}
	cmd := exec.CommandContext(ctx, "tftp", family, "-m", "binary", host, port, "-c", "get", file, out)
	msg, _ := cmd.CombinedOutput()
	got, err := os.ReadFile(out)
	if err != nil || len(got) == 0 {
		return nil, string(msg)
	}
	return got, string(msg)
}

func TestRealClientGetsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("needs tftp-hpa; skipped under -short")
	}
	for name, network := range families {
		t.Run(name, func(t *testing.T) {
			addr, kpxe := start(t, network)
			got, msg := hpa(t, addr, "undionly.kpxe")
			if !bytes.Equal(got, kpxe) {
				t.Fatalf("tftp-hpa got %d bytes, want %d: %s", len(got), len(kpxe), msg)
			}
		})
	}
}

func TestRealClientRefusedEscapes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs tftp-hpa; skipped under -short")
	}
	for name, network := range families {
		t.Run(name, func(t *testing.T) {
			addr, _ := start(t, network)
			for _, p := range []string{"../secret", "../../etc/passwd", "/etc/passwd", "passwd", "secret", "sub/../../secret", "sub", "nonexistent", "..\\secret"} {
				got, msg := hpa(t, addr, p)
				if got != nil {
					t.Errorf("%s: served %d bytes (%q): %s", p, len(got), got[:min(len(got), 20)], msg)
				}
				// The refusal must come from the server, not from a client-side failure.
				if !strings.Contains(msg, "Error code") {
					t.Errorf("%s: no TFTP error from the server: %q", p, msg)
				}
				t.Logf("%s: %s", p, strings.TrimSpace(msg))
			}
		})
	}
}

func TestTsizeAndWriteRefused(t *testing.T) {
	for name, network := range families {
		t.Run(name, func(t *testing.T) { tsizeAndWriteRefused(t, network) })
	}
}

func tsizeAndWriteRefused(t *testing.T, network string) {
	addr, kpxe := start(t, network)
	c, err := pintftp.NewClient(addr)
	must(t, err)
	c.SetTimeout(time.Second)
	c.RequestTSize(true)
	wt, err := c.Receive("undionly.kpxe", "octet")
	must(t, err)
	size, ok := wt.(pintftp.IncomingTransfer).Size()
	if !ok || size != int64(len(kpxe)) {
		t.Errorf("tsize = %d (%v), want %d", size, ok, len(kpxe))
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), kpxe) {
		t.Errorf("pin/tftp client got %d bytes, err %v", buf.Len(), err)
	}
	rf, err := c.Send("uploaded", "octet")
	if err == nil {
		_, err = rf.ReadFrom(bytes.NewReader([]byte("x")))
	}
	if err == nil {
		t.Error("write request accepted by a read-only server")
	}
}
