package bootserver_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/internal/testca"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/httpboot"
)

// TestNewHTTPS: with Config.HTTPS the boot server gets an "https" part
// that serves the staged iPXE binaries over TLS on HTTPSPort of Address,
// and FirmwareURL names it; the HTTPS port may not be the HTTP port.
func TestNewHTTPS(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ipxe-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	efiBin := bytes.Repeat([]byte("ipxe.efi "), 1000)
	for name, b := range map[string][]byte{"undionly.kpxe": []byte("kpxe"), "ipxe.efi": efiBin} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ca := testca.New(t, "site CA", testca.RSA)
	certFile, keyFile := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "127.0.0.1").Write(t, dir, "boot")
	cert, err := httpboot.LoadCertificate(certFile, keyFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := bootserver.Config{
		DHCP:     dhcp.Config{Interface: "lo", Address: netip.MustParsePrefix("127.0.0.1/8"), Proxy: true},
		DataDir:  dir,
		IPXEDir:  src,
		Store:    inventory.New(client, inventory.Config{Who: "test"}),
		HTTPS:    &cert,
		HTTPPort: port, HTTPSPort: port,
		NoRA: true,
	}
	if _, err := bootserver.New(cfg); err == nil || !strings.Contains(err.Error(), "is the HTTP port") {
		t.Errorf("HTTPS on the HTTP port: %v", err)
	}
	cfg.HTTPPort, cfg.HTTPSPort = 0, port
	s, err := bootserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://127.0.0.1:" + strconv.Itoa(port); s.FirmwareURL != want {
		t.Errorf("FirmwareURL %q, want %q", s.FirmwareURL, want)
	}
	found := false
	for _, p := range s.Parts() {
		if p.Name == "https" {
			found = true
			servetest.Run(t, 10*time.Second, p.Serve)
		}
	}
	if !found {
		t.Fatal("no https part")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err = c.Get(s.FirmwareURL + "/ipxe/ipxe.efi"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, efiBin) {
		t.Errorf("GET ipxe.efi over TLS: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
}
