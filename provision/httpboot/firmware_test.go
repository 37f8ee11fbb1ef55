package httpboot_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/internal/testca"
	"github.com/ironrack/ironrack/provision/httpboot"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// firmwareServer runs a FirmwareServer on loopback with a certificate
// from ca for 127.0.0.1, serving dir; it returns the base URL and the log.
func firmwareServer(t *testing.T, ca *testca.CA, kt testca.KeyType, dir string) (string, *lockedBuf) {
	t.Helper()
	certFile, keyFile := ca.Issue(kt, time.Time{}, time.Time{}, "127.0.0.1").Write(t, t.TempDir(), "boot")
	cert, err := httpboot.LoadCertificate(certFile, keyFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	s, err := httpboot.NewFirmware(httpboot.FirmwareConfig{
		Listeners: []net.Listener{ln}, Certificate: cert, IPXEDir: dir,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Run(t, 10*time.Second, s.Serve)
	return "https://" + ln.Addr().String(), logs
}

func client(ca *testca.CA, suites []uint16) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), CipherSuites: suites, MaxVersion: maxVersion(suites)},
	}}
}

func maxVersion(suites []uint16) uint16 {
	if suites != nil {
		return tls.VersionTLS12
	}
	return 0
}

// TestFirmwareServer: the firmware's first fetch over TLS. A client that
// trusts the site CA gets the iPXE binary byte for byte, also with only
// RSA key exchange (what EDK2 offers); nothing but /ipxe/ is served; a
// client trusting another CA fails the handshake, and the server's log
// shows it; the server stops cleanly with its context.
func TestFirmwareServer(t *testing.T) {
	dir := t.TempDir()
	efiBin := bytes.Repeat([]byte("MZ-ipxe.efi "), 5000)
	if err := os.WriteFile(filepath.Join(dir, "ipxe.efi"), efiBin, 0o644); err != nil {
		t.Fatal(err)
	}
	site := testca.New(t, "site CA", testca.RSA)
	base, logs := firmwareServer(t, site, testca.RSA, dir)

	get := func(c *http.Client, path string) (int, []byte, error) {
		resp, err := c.Get(base + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	tests := map[string]struct {
		suites []uint16
	}{
		"default client":          {nil},
		"RSA key exchange (EDK2)": {[]uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA256}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, b, err := get(client(site, tc.suites), "/ipxe/ipxe.efi")
			if err != nil || code != 200 || !bytes.Equal(b, efiBin) {
				t.Fatalf("GET /ipxe/ipxe.efi: %d, %d bytes, %v; want 200 and the file", code, len(b), err)
			}
		})
	}
	if !strings.Contains(logs.String(), `suite=TLS_RSA_WITH_AES_128_CBC_SHA256`) {
		t.Errorf("no fetch logged with its suite:\n%s", logs)
	}
	for _, p := range []string{"/boot.ipxe?mac=52:54:00:00:00:01", "/images/agent/current/vmlinuz", "/ipxe/nope.efi", "/healthz"} {
		if code, _, err := get(client(site, nil), p); err != nil || code != http.StatusNotFound {
			t.Errorf("GET %s over TLS: %d, %v; want 404 (only the iPXE binaries)", p, code, err)
		}
	}
	other := testca.New(t, "other CA", testca.RSA)
	if _, _, err := get(client(other, nil), "/ipxe/ipxe.efi"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client trusting another CA: %v, want a certificate error", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "TLS handshake error") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "TLS handshake error") || !strings.Contains(l, "bad certificate") {
		t.Errorf("the refused handshake is not in the log:\n%s", l)
	}
}

// TestLoadCertificate: each bad certificate or key file is refused with
// an error naming it.
func TestLoadCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, "site CA", testca.RSA)
	good := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "192.0.2.1")
	certFile, keyFile := good.Write(t, dir, "good")
	if c, err := httpboot.LoadCertificate(certFile, keyFile, time.Now()); err != nil || c.Leaf == nil {
		t.Fatalf("good pair: %v", err)
	}
	ecCert, ecKey := ca.Issue(testca.ECDSA, time.Time{}, time.Time{}, "192.0.2.1").Write(t, dir, "ec")
	if _, err := httpboot.LoadCertificate(ecCert, ecKey, time.Now()); err != nil {
		t.Fatalf("ECDSA pair: %v", err)
	}
	otherCert, otherKey := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "192.0.2.1").Write(t, dir, "other")
	expCert, expKey := ca.Issue(testca.RSA, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "192.0.2.1").Write(t, dir, "expired")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("notpem", "hello\n")
	keyAsCert := write("keyascert", "# comment\n"+string(good.KeyPEM))
	broken := write("broken", "\n\n-----BEGIN CERTIFICATE-----\nAAAA!!\n-----END CERTIFICATE-----\n")
	tests := map[string]struct {
		cert, key string
		want      []string
	}{
		"missing cert":      {dir + "/nope.crt", keyFile, []string{dir + "/nope.crt", "no such file"}},
		"missing key":       {certFile, dir + "/nope.key", []string{dir + "/nope.key", "no such file"}},
		"cert not PEM":      {notPEM, keyFile, []string{notPEM + ": no PEM CERTIFICATE"}},
		"key in cert file":  {keyAsCert, keyFile, []string{keyAsCert + ":2: a PRIVATE KEY block, want CERTIFICATE"}},
		"broken PEM":        {broken, keyFile, []string{broken + ":3: malformed PEM block"}},
		"key not PEM":       {certFile, notPEM, []string{notPEM + ": no PEM PRIVATE KEY"}},
		"key of other cert": {certFile, otherKey, []string{otherKey + ": the key does not match the certificate in " + certFile}},
		"expired":           {expCert, expKey, []string{expCert + ": certificate", "expired at"}},
		"cert as key":       {otherCert, otherCert, []string{otherCert + ": no PEM PRIVATE KEY"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := httpboot.LoadCertificate(tc.cert, tc.key, time.Now())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
