package bootserver_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/testca"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/efi"
	"github.com/ironrack/ironrack/provision/httpboot"
)

// TestUEFIHTTPSBoot: UEFI HTTPS boot over IPv4 against the boot server
// alone, with the operator's CA enrolled. The boot server serves ipxe.efi
// over TLS with a certificate from a test CA (RSA, IP SAN 192.0.2.1), and
// its DHCP offer to the HTTP boot client carries the https:// URL. The CA
// goes to OVMF as the EFI signature list provision/efi writes, through
// fw_cfg etc/edk2/https/cacerts.
//
//   - Another CA enrolled: OVMF refuses the server's certificate (the server
//     logs the firmware's TLS alert), fetches nothing, and the machine
//     never reports facts.
//   - The site CA enrolled: OVMF fetches ipxe.efi over TLS, iPXE takes the
//     machine to the agent over HTTP, and its facts commission it.
//
// Outside CI (minutes of TCG): IRONRACK_QEMU_ALL=1 runs it.
func TestUEFIHTTPSBoot(t *testing.T) {
	if os.Getenv("IRONRACK_QEMU_ALL") == "" {
		t.Skip("UEFI HTTPS boot in QEMU runs outside CI: IRONRACK_QEMU_ALL=1 go test ./provision/bootserver -run TestUEFIHTTPSBoot")
	}
	dir := t.TempDir()
	site := testca.New(t, "ironrack test site CA", testca.RSA)
	other := testca.New(t, "some other CA", testca.RSA)
	certFile, keyFile := site.Issue(testca.RSA, time.Time{}, time.Time{}, labtest.ServerIP).Write(t, dir, "boot")
	cert, err := httpboot.LoadCertificate(certFile, keyFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	esl := func(name string, ca *testca.CA) string {
		b, err := efi.SignatureList([]*x509.Certificate{ca.Cert})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".esl")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "name=etc/edk2/https/cacerts,file=" + p
	}
	l := labtest.New(t, labtest.Config{BootConfig: func(c *bootserver.Config) { c.HTTPS = &cert }})
	for _, f := range []string{labtest.OVMFCode4M, labtest.OVMFVars4M} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
		}
	}
	const fetched = `msg="httpboot: firmware fetch over TLS"`
	const url = `file=https://192.0.2.1:8443/ipxe/ipxe.efi`

	t.Run("another CA enrolled", func(t *testing.T) {
		mac := "52:54:00:40:01:01"
		v := l.Start(labtest.VMSpec{MAC: mac, Serial: "HTTPS-WRONG-CA", HTTPBoot: 4, MemMiB: 1024, CPUs: 1, DiskGB: 1,
			UUID: "6a0f3c1e-0000-4000-8000-000000000101", FwCfg: []string{esl("other", other)}})
		defer v.Stop()
		// The firmware must have reached the TLS server and refused its
		// certificate: the handshake fails on the firmware's alert.
		deadline := time.Now().Add(httpBootWait)
		var refusal string
		for refusal == "" && time.Now().Before(deadline) {
			for _, line := range strings.Split(l.LogTail(5000), "\n") {
				if strings.Contains(line, "TLS handshake error from 192.0.2.") {
					refusal = line
					break
				}
			}
			time.Sleep(time.Second)
		}
		if refusal == "" {
			t.Fatalf("no TLS handshake from the firmware within %v; console:\n%s\nserver log:\n%s",
				httpBootWait, labtest.Tail(v.Console(), 30), l.LogTail(60))
		}
		t.Logf("the firmware refused the certificate: %s", refusal)
		if !strings.Contains(refusal, "remote error: tls:") {
			t.Errorf("the handshake did not end on the firmware's alert (a refused certificate): %s", refusal)
		}
		// Give a wrongly accepted fetch time to show.
		time.Sleep(20 * time.Second)
		log := l.LogTail(5000)
		if !strings.Contains(log, url) {
			t.Errorf("no DHCP reply handed out %s", url)
		}
		if strings.Contains(log, fetched) {
			t.Errorf("the firmware fetched over TLS with another CA enrolled:\n%s", labtest.Tail(log, 40))
		}
		if m, err := l.Store.Find(t.Context(), mac); err == nil && m.State != inventory.StateNew {
			t.Errorf("%s is %s, want new (enlisted by DHCP, no facts)", mac, m.State)
		}
		t.Logf("console:\n%s", labtest.Tail(v.Console(), 15))
	})

	t.Run("site CA enrolled", func(t *testing.T) {
		mac := "52:54:00:40:01:02"
		start := time.Now()
		v := l.Start(labtest.VMSpec{MAC: mac, Serial: "HTTPS-SITE-CA", HTTPBoot: 4, MemMiB: 1024, CPUs: 1, DiskGB: 1,
			UUID: "6a0f3c1e-0000-4000-8000-000000000102", FwCfg: []string{esl("site", site)}})
		defer v.Stop()
		m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(httpBootWait))
		if err != nil {
			t.Fatalf("%v\nserver log:\n%s", err, l.LogTail(60))
		}
		t.Logf("HTTPS boot to ready in %v", time.Since(start).Round(time.Second))
		checkFacts(t, v, m)
		log := l.LogTail(5000)
		var fetches []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, fetched) || strings.Contains(line, "TLS client hello") {
				fetches = append(fetches, line)
			}
		}
		t.Logf("TLS:\n%s", strings.Join(fetches, "\n"))
		if !strings.Contains(log, fetched+` method=GET path=/ipxe/ipxe.efi`) {
			t.Errorf("the firmware did not GET ipxe.efi over TLS:\n%s", labtest.Tail(log, 60))
		}
		h := strings.Join(l.History(m.ID), "\n")
		for _, w := range []string{"boot agent discover", "commission: facts from the discovery agent"} {
			if !strings.Contains(h, w) {
				t.Errorf("history lacks %q:\n%s", w, h)
			}
		}
	})
}
