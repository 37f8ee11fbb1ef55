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
//   - Another CA enrolled: OVMF breaks the handshake off after the server's
//     certificate (the server logs the reset), fetches nothing, gives up
//     the entry, and the machine never reports facts.
//   - No CA enrolled: OVMF takes the https:// URI but cancels the boot
//     without connecting.
//   - The site CA enrolled but an ECDSA server key: no cipher suite in
//     common (OVMF 2022.11 offers no elliptic curves), nothing fetched.
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
	serving := &cert // the boot server's certificate; a restart picks a new one up
	l := labtest.New(t, labtest.Config{BootConfig: func(c *bootserver.Config) { c.HTTPS = serving }})
	for _, f := range []string{labtest.OVMFCode4M, labtest.OVMFVars4M} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
		}
	}
	const fetched = `msg="httpboot: firmware fetch over TLS"`
	const url = `file=https://192.0.2.1:8443/ipxe/ipxe.efi`

	// refused boots a machine with fwcfg and waits until OVMF gives up
	// its HTTPv4 entry; it returns the firmware's address and the server
	// log. The firmware must have been offered the https:// URL, and it
	// must have fetched nothing over TLS.
	refused := func(t *testing.T, mac, serial string, fwcfg []string) (string, string) {
		v := l.Start(labtest.VMSpec{MAC: mac, Serial: serial, HTTPBoot: 4, MemMiB: 1024, CPUs: 1, DiskGB: 1,
			UUID: "6a0f3c1e-0000-4000-8000-" + strings.ReplaceAll(mac, ":", "")[:12], FwCfg: fwcfg})
		defer v.Stop()
		if !v.WaitConsole(`failed to load Boot0003 "UEFI HTTPv4`, time.Now().Add(httpBootWait)) {
			t.Fatalf("OVMF did not give up its HTTPv4 entry within %v; console:\n%s\nserver log:\n%s",
				httpBootWait, labtest.Tail(v.Console(), 30), l.LogTail(60))
		}
		t.Logf("console:\n%s", labtest.Tail(v.Console(), 12))
		if !strings.Contains(v.Console(), "URI: https://192.0.2.1:8443/ipxe/ipxe.efi") {
			t.Errorf("the firmware did not take the https:// URI; console:\n%s", labtest.Tail(v.Console(), 30))
		}
		log := l.LogTail(5000)
		ip := ""
		for _, line := range strings.Split(log, "\n") {
			if _, rest, ok := strings.Cut(line, "mac="+mac+" type=ACK yiaddr="); ok {
				ip, _, _ = strings.Cut(rest, " ")
				if !strings.Contains(line, url) {
					t.Errorf("the ACK did not hand out %s: %s", url, line)
				}
			}
		}
		if ip == "" {
			t.Fatalf("no DHCP ACK for %s:\n%s", mac, labtest.Tail(log, 40))
		}
		if strings.Contains(log, fetched+" method=GET path=/ipxe/ipxe.efi remote="+ip+":") ||
			strings.Contains(log, fetched+" method=HEAD path=/ipxe/ipxe.efi remote="+ip+":") {
			t.Errorf("%s (%s) fetched over TLS:\n%s", mac, ip, labtest.Tail(log, 40))
		}
		if m, err := l.Store.Find(t.Context(), mac); err != nil || m.State != inventory.StateNew {
			t.Errorf("%s: %v, err %v; want enlisted by DHCP in state new, no facts", mac, m, err)
		}
		return ip, log
	}

	t.Run("another CA enrolled", func(t *testing.T) {
		ip, log := refused(t, "52:54:00:40:01:01", "HTTPS-WRONG-CA", []string{esl("other", other)})
		// The firmware reached the TLS server, got its certificate and
		// broke the handshake off: OVMF 2022.11 sends no alert, it resets
		// the connection (a server-side refusal, such as no shared cipher
		// suite, would read differently).
		var refusal string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "TLS handshake error from "+ip+":") {
				refusal = line
			}
		}
		t.Logf("handshake: %s", refusal)
		if !strings.Contains(refusal, "connection reset by peer") && !strings.Contains(refusal, "remote error: tls:") {
			t.Errorf("no handshake from %s broken off by the firmware:\n%s", ip, labtest.Tail(log, 40))
		}
	})

	t.Run("no CA enrolled", func(t *testing.T) {
		ip, log := refused(t, "52:54:00:40:01:03", "HTTPS-NO-CA", nil)
		// OVMF 2022.11 with no CA enrolled does not even connect: it
		// prints the https:// URI and cancels ("Remote boot cancelled").
		if strings.Contains(log, `msg="httpboot: TLS client hello" remote=`+ip+":") {
			t.Errorf("%s opened a TLS handshake with no CA enrolled", ip)
		}
	})

	t.Run("ECDSA server key", func(t *testing.T) {
		// The site's CA signs an ECDSA server key: OVMF 2022.11 offers no
		// elliptic curves and no ECDSA signatures, so no suite is shared
		// and the server ends the handshake.
		ecCert, ecKey := site.Issue(testca.ECDSA, time.Time{}, time.Time{}, labtest.ServerIP).Write(t, dir, "boot-ec")
		ec, err := httpboot.LoadCertificate(ecCert, ecKey, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		l.StopBootServer()
		serving = &ec
		l.StartBootServer()
		defer func() {
			l.StopBootServer()
			serving = &cert
			l.StartBootServer()
		}()
		ip, log := refused(t, "52:54:00:40:01:04", "HTTPS-ECDSA", []string{esl("site", site)})
		var refusal string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "TLS handshake error from "+ip+":") {
				refusal = line
			}
		}
		t.Logf("handshake: %s", refusal)
		if !strings.Contains(refusal, "no cipher suite supported by both client and server") {
			t.Errorf("no handshake from %s failing on the cipher suites:\n%s", ip, labtest.Tail(log, 40))
		}
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

// TestUEFIHTTPSBootIPv6: the same HTTPS boot over IPv6 with the site's CA
// enrolled: OVMF's HTTPv6 entry gets option 59 with the bracketed https://
// URL, fetches ipxe.efi over TLS from the server's IPv6 address (an IPv6
// SAN in the certificate), and the agent's facts land in Consul (about
// 1.7 min under TCG).
// Outside CI: IRONRACK_QEMU_ALL=1.
func TestUEFIHTTPSBootIPv6(t *testing.T) {
	if os.Getenv("IRONRACK_QEMU_ALL") == "" {
		t.Skip("UEFI HTTPS boot in QEMU runs outside CI: IRONRACK_QEMU_ALL=1 go test ./provision/bootserver -run TestUEFIHTTPSBootIPv6")
	}
	dir := t.TempDir()
	site := testca.New(t, "ironrack test site CA", testca.RSA)
	certFile, keyFile := site.Issue(testca.RSA, time.Time{}, time.Time{}, labtest.ServerIP, labtest.ServerIP6).Write(t, dir, "boot")
	cert, err := httpboot.LoadCertificate(certFile, keyFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := efi.SignatureList([]*x509.Certificate{site.Cert})
	if err != nil {
		t.Fatal(err)
	}
	esl := filepath.Join(dir, "site.esl")
	if err := os.WriteFile(esl, b, 0o644); err != nil {
		t.Fatal(err)
	}
	l := labtest.New(t, labtest.Config{IPv6: true, BootConfig: func(c *bootserver.Config) { c.HTTPS = &cert }})
	mac := "52:54:00:40:01:06"
	start := time.Now()
	v := l.Start(labtest.VMSpec{MAC: mac, Serial: "HTTPS-V6", HTTPBoot: 6, MemMiB: 1024, CPUs: 1, DiskGB: 1,
		UUID: "6a0f3c1e-0000-4000-8000-000000000106", FwCfg: []string{"name=etc/edk2/https/cacerts,file=" + esl}})
	defer v.Stop()
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(httpBootWait))
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, l.LogTail(60))
	}
	t.Logf("IPv6 HTTPS boot to ready in %v", time.Since(start).Round(time.Second))
	checkFacts(t, v, m)
	log := l.LogTail(5000)
	if want := `file=https://[` + labtest.ServerIP6 + `]:8443/ipxe/ipxe.efi`; !strings.Contains(log, want) {
		t.Errorf("no reply handed out %s:\n%s", want, labtest.Tail(log, 60))
	}
	if !strings.Contains(log, `msg="httpboot: firmware fetch over TLS" method=GET path=/ipxe/ipxe.efi remote=[2001:db8:b007::`) {
		t.Errorf("the firmware did not GET ipxe.efi over TLS on IPv6:\n%s", labtest.Tail(log, 60))
	}
}
