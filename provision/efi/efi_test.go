package efi_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/provision/efi"
)

func newCA(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestSignatureListEfitools: efitools' sig-list-to-certs (a real reader of
// the format) takes the list apart into the same DER certificates, and
// cert-to-efi-sig-list builds the same bytes for one certificate (owner
// GUID aside, which it is given).
func TestSignatureListEfitools(t *testing.T) {
	for _, tool := range []string{"sig-list-to-certs", "cert-to-efi-sig-list"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("needs %s (Debian efitools); skipped under -short", tool)
			}
			t.Fatalf("needs %s (scripts/setup installs efitools): %v", tool, err)
		}
	}
	dir := t.TempDir()
	cas := []*x509.Certificate{newCA(t, "site CA"), newCA(t, "second CA")}
	esl, err := efi.SignatureList(cas)
	if err != nil {
		t.Fatal(err)
	}
	eslFile := filepath.Join(dir, "cacerts.esl")
	if err := os.WriteFile(eslFile, esl, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sig-list-to-certs", eslFile, filepath.Join(dir, "out")).CombinedOutput()
	if err != nil {
		t.Fatalf("sig-list-to-certs: %v\n%s", err, out)
	}
	for i, c := range cas {
		got, err := os.ReadFile(filepath.Join(dir, "out-"+string(rune('0'+i))+".der"))
		if err != nil || !bytes.Equal(got, c.Raw) {
			t.Errorf("certificate %d back from sig-list-to-certs: %v (equal %v)\n%s", i, err, bytes.Equal(got, c.Raw), out)
		}
	}

	pemFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cas[0].Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.esl")
	if out, err := exec.Command("cert-to-efi-sig-list", "-g", "6f1c8a1e-1b0e-4a4e-9d0a-69726f6e7261", pemFile, ref).CombinedOutput(); err != nil {
		t.Fatalf("cert-to-efi-sig-list: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(ref)
	got, _ := efi.SignatureList(cas[:1])
	if !bytes.Equal(got, want) {
		t.Errorf("one certificate:\n got % x\nwant % x", got[:48], want[:min(48, len(want))])
	}
}

func TestParsePEM(t *testing.T) {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCA(t, "a").Raw})
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})
	for name, tc := range map[string]struct {
		data string
		want string // error substring, "" for success
	}{
		"two certificates": {string(ca) + string(ca), ""},
		"a key after one":  {string(ca) + string(key), "ca.pem:" + itoa(1+strings.Count(string(ca), "\n")) + ": a PRIVATE KEY block"},
		"not a cert":       {"# comment\n" + string(bad), "ca.pem:2: certificate:"},
		"empty":            {"hello\n", "ca.pem: no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := efi.ParsePEM("ca.pem", []byte(tc.data))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("ParsePEM: %v, want %q", err, tc.want)
			}
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
