package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEFICACerts: the command turns the lab's PEM CA into a signature list
// and names the file and line of a bad block.
func TestEFICACerts(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("x\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "cacerts.esl")
	var stdout bytes.Buffer
	if err := Run(context.Background(), []string{"ironrack", "efi-cacerts", "--ca", good, "--out", out}, strings.NewReader(""), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || len(b) < 44 || b[0] != 0xa1 || b[1] != 0x59 {
		t.Fatalf("signature list %d bytes, %v", len(b), err)
	}
	err = Run(context.Background(), []string{"ironrack", "efi-cacerts", "--ca", bad, "--out", out}, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), bad+":2: a RSA PRIVATE KEY block") {
		t.Errorf("bad PEM: %v", err)
	}
}
