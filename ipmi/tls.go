package ipmi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TLS says how a Redfish BMC's certificate is checked. The zero value
// verifies it against the system's roots. Exactly one way applies: Insecure,
// else Pin, else Roots.
type TLS struct {
	// Roots are the CAs a BMC's certificate must chain to, with the BMC's
	// address among its names (the site's CA file). If nil, the system's
	// roots.
	Roots *x509.CertPool
	// Pin, if set, is the SHA-256 fingerprint of the one certificate the BMC
	// may present ("sha256:" and 64 hex digits, as Fingerprint writes it).
	// The certificate's chain and names are not checked: the pin is the
	// trust. Roots are then not used.
	Pin string
	// Insecure accepts any certificate. It is an explicit per-BMC choice;
	// the caller warns on every use.
	Insecure bool
}

// Mode names the check for people: "insecure", "pinned" or "verified".
func (t TLS) Mode() string {
	switch {
	case t.Insecure:
		return "insecure"
	case t.Pin != "":
		return "pinned"
	}
	return "verified"
}

// Fingerprint is a certificate's SHA-256 fingerprint as pins are written:
// "sha256:" and 64 lowercase hex digits.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// validPin reports whether pin has Fingerprint's form. People's spellings
// (colons, upper case) are the inventory's to normalize (inventory.ParseTLS).
func validPin(pin string) bool {
	h, ok := strings.CutPrefix(pin, "sha256:")
	b, err := hex.DecodeString(h)
	return ok && err == nil && len(b) == sha256.Size && h == strings.ToLower(h)
}

// ErrTLS: the BMC's certificate is not trusted (unknown CA, wrong name,
// expired, or not the pinned one). Nothing was sent to the BMC.
var ErrTLS = errors.New("BMC certificate not trusted")

// pinVerifier accepts exactly the certificate whose fingerprint is pin.
func pinVerifier(pin string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no certificate presented", ErrTLS)
		}
		if got := Fingerprint(cs.PeerCertificates[0]); got != pin {
			return fmt.Errorf("%w: certificate %s is not the pinned %s", ErrTLS, got, pin)
		}
		return nil
	}
}

// pinnedClient is the HTTP client for a pinned BMC: chain and name checks
// off, the fingerprint check on (Go runs VerifyConnection even when
// InsecureSkipVerify is set).
func pinnedClient(pin string) (*http.Client, error) {
	if !validPin(pin) {
		return nil, fmt.Errorf("pinned certificate %q: want sha256: and 64 lowercase hex digits, as Fingerprint writes it", pin)
	}
	return &http.Client{
		Timeout: 2 * time.Minute, // bmclib sets it to the call's deadline on open
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, VerifyConnection: pinVerifier(pin)}, //nolint:gosec // the pin is checked
			DisableKeepAlives:   true,
			TLSHandshakeTimeout: 30 * time.Second,
			Proxy:               nil,
		},
	}, nil
}

// FetchCertificate connects to a BMC's HTTPS port and returns the
// certificate it presents, without trusting it: the caller shows its
// Fingerprint to the operator, who confirms it before it is pinned.
func FetchCertificate(ctx context.Context, host string, port int) (*x509.Certificate, error) {
	if port == 0 {
		port = 443
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only to read the certificate
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fetch certificate of %s: %w", addr, classify(err))
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("fetch certificate of %s: none presented", addr)
	}
	return certs[0], nil
}

// tlsError reports whether err is a failed certificate check.
func tlsError(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &cv)
}
