// Package redfishtest runs redfishsim Redfish BMCs for the length of a test,
// on loopback, each with a certificate from a test CA.
package redfishtest

import (
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/internal/servetest"
)

// Options configure one BMC. The zero value works.
type Options struct {
	// Addr is the loopback address it listens on, port chosen by the
	// kernel. If invalid, 127.0.0.1.
	Addr netip.Addr
	// CA signs its certificate. If nil, a new CA.
	CA *redfishsim.CA
	// On starts the machine powered on.
	On     bool
	Quirk  redfishsim.Quirk
	Delays redfishsim.Delays
}

// BMC is one running Redfish BMC.
type BMC struct {
	*redfishsim.Server
	Host     string
	Port     int
	Username string
	Password string
	CA       *redfishsim.CA
	Chassis  *redfishsim.MemChassis
	// Leaf is the certificate it presents.
	Leaf *x509.Certificate
}

// Start runs a BMC until the test ends.
func Start(t testing.TB, o Options) *BMC {
	t.Helper()
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if o.CA == nil {
		o.CA = NewCA(t)
	}
	cert, err := o.CA.Issue(o.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	b := &BMC{Host: o.Addr.String(), Port: ln.Addr().(*net.TCPAddr).Port, Username: "admin", Password: "redfish-secret",
		CA: o.CA, Chassis: redfishsim.NewMemChassis(o.On), Leaf: cert.Leaf}
	b.Server = &redfishsim.Server{Listener: ln, Certificate: cert, Username: b.Username, Password: b.Password,
		Chassis: b.Chassis, Quirk: o.Quirk, Delays: o.Delays, Serial: "RF-" + strconv.Itoa(b.Port)}
	servetest.Run(t, 5*time.Second, b.Server.Serve)
	return b
}

// NewCA makes a test CA.
func NewCA(t testing.TB) *redfishsim.CA {
	t.Helper()
	ca, err := redfishsim.NewCA("ironrack test BMC CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// WriteCA writes ca's certificate to a file in a temp dir and returns its
// path, as an operator's site CA file.
func WriteCA(t testing.TB, ca *redfishsim.CA) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-ca.pem")
	if err := os.WriteFile(p, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
