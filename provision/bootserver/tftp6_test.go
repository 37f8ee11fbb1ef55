package bootserver_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/netns"
)

// TestTFTPOverIPv6: with DHCPv6 configured, the boot server's TFTP also
// listens on its IPv6 address, on the boot interface: tftp-hpa in a second
// namespace, with an address in the boot prefix on a veth to the bridge,
// fetches ipxe.efi from [2001:db8:b007::1] byte for byte (the URL a UEFI PXE
// client gets in option 59), and a path out of the root is refused with a
// TFTP error, as on IPv4.
func TestTFTPOverIPv6(t *testing.T) {
	l := labtest.New(t, labtest.Config{IPv6: true, Tools: []string{"tftp"}})
	cli := netns.New(t)
	l.NS.AddVeth("v0", "c0", labtest.Bridge, cli)
	cli.Run("ip", "addr", "add", "2001:db8:b007::50/64", "dev", "c0", "nodad")
	dir := t.TempDir()
	local := filepath.Join(dir, "ipxe.efi")
	out, err := cli.Output(60*time.Second, "tftp", "-6", "-v", "-m", "binary", labtest.ServerIP6, "-c", "get", "ipxe.efi", local)
	if err != nil {
		t.Fatalf("tftp -6: %v: %s\nserver log:\n%s", err, out, l.LogTail(20))
	}
	got, err := os.ReadFile(local)
	if err != nil {
		t.Fatalf("tftp -6 said %q: %v\nserver log:\n%s", out, err, l.LogTail(20))
	}
	want, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi") // Debian's link to /boot, followed
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("fetched ipxe.efi: %d bytes, differs from /usr/lib/ipxe/ipxe.efi (%d bytes)", len(got), len(want))
	}
	if log := l.LogTail(200); !strings.Contains(log, `msg="tftp: sent" file=ipxe.efi peer=[2001:db8:b007::50]:`) {
		t.Errorf("no transfer to [2001:db8:b007::50] logged:\n%s", labtest.Tail(log, 20))
	}

	escaped := filepath.Join(dir, "passwd")
	out, _ = cli.Output(60*time.Second, "tftp", "-6", "-m", "binary", labtest.ServerIP6, "-c", "get", "../../../../etc/passwd", escaped)
	if b, err := os.ReadFile(escaped); err == nil && len(b) > 0 {
		t.Errorf("a path out of the root was served over IPv6 (%d bytes)", len(b))
	}
	if !strings.Contains(out, "Error code") {
		t.Errorf("no TFTP error from the server for a path out of the root: %q", out)
	}
}
