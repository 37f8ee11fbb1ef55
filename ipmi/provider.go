package ipmi

import (
	"crypto/x509"
	"fmt"
	"strconv"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"
)

// Provider makes the bmclib driver of one protocol for one BMC. The
// Controller registers the driver in a bmclib client's registry for each
// call. cmd lists the providers in the order they should be tried; there is
// no registration from init().
type Provider struct {
	// Name is the bmclib provider name ("goipmi", "ipmitool", "gofish").
	Name string
	// Protocol is the transport the driver uses (ProtocolIPMI or
	// ProtocolRedfish). After a transport failure (unreachable, timed out)
	// the Controller skips the other providers of the same protocol.
	Protocol Protocol
	// New returns the driver and the bmclib features it implements.
	New func(cred Credentials, o DriverOptions) (driver any, features registrar.Features, err error)
}

// DriverOptions are what the Controller passes to Provider.New.
type DriverOptions struct {
	Logger logr.Logger
	// ExchangeTimeout bounds one request/response round trip.
	ExchangeTimeout time.Duration
	// Retries is how many times a timed-out IPMI request is resent.
	Retries int
}

// DefaultProviders is the usual order: go-ipmi (fast, one UDP session, no
// process), ipmitool (forks one process per command, for BMCs go-ipmi
// cannot handle), gofish (Redfish over HTTPS).
func DefaultProviders() []Provider {
	return []Provider{GoIPMI(), IPMITool(), Redfish()}
}

// GoIPMI is ironrack's own IPMI 2.0 provider over github.com/bougou/go-ipmi.
func GoIPMI() Provider {
	return Provider{
		Name:     goipmiName,
		Protocol: ProtocolIPMI,
		New: func(cred Credentials, o DriverOptions) (any, registrar.Features, error) {
			return &goipmiDriver{cred: cred, exchange: o.ExchangeTimeout, retries: o.Retries}, goipmiFeatures, nil
		},
	}
}

// IPMITool is bmclib's ipmitool provider with the cipher suite pinned (so it
// never retries with -C 17, which hides a wrong password behind "invalid
// authentication algorithm"). bmclib passes the password in the
// IPMITOOL_PASSWORD environment variable with -E, never in argv.
func IPMITool() Provider {
	return Provider{
		Name:     ipmitool.ProviderName,
		Protocol: ProtocolIPMI,
		New: func(cred Credentials, o DriverOptions) (any, registrar.Features, error) {
			d, err := ipmitool.New(cred.Host, cred.Username, cred.Password,
				ipmitool.WithPort(strconv.Itoa(cred.ipmiPort())),
				ipmitool.WithCipherSuite(strconv.Itoa(cred.cipherSuite())),
				ipmitool.WithLogger(o.Logger))
			if err != nil {
				return nil, nil, err
			}
			return d, ipmitool.Features, nil
		},
	}
}

// Redfish is bmclib's gofish provider. It checks the BMC's certificate as
// cred.TLS says, through bmclib's own options: WithRootCAs (bmclib's secure
// TLS) for a site CA or the system's roots, WithHttpClient with a
// fingerprint check for a pinned certificate. Only TLS.Insecure leaves
// bmclib's default, which accepts any certificate; the driver then logs a
// warning on every use.
func Redfish() Provider {
	return Provider{
		Name:     redfish.ProviderName,
		Protocol: ProtocolRedfish,
		New: func(cred Credentials, o DriverOptions) (any, registrar.Features, error) {
			opts := []redfish.Option{redfish.WithPort(strconv.Itoa(cred.redfishPort()))}
			switch {
			case cred.TLS.Insecure:
				o.Logger.Info("TLS verification is off for this BMC (insecure in the inventory): its certificate is not checked", "bmc", cred.String())
			case cred.TLS.Pin != "":
				hc, err := pinnedClient(cred.TLS.Pin)
				if err != nil {
					return nil, nil, err
				}
				opts = append(opts, redfish.WithHttpClient(hc))
			default:
				roots := cred.TLS.Roots
				if roots == nil {
					var err error
					if roots, err = x509.SystemCertPool(); err != nil {
						return nil, nil, fmt.Errorf("system CA roots: %w", err)
					}
				}
				opts = append(opts, redfish.WithRootCAs(roots))
			}
			d := redfish.New(cred.Host, cred.Username, cred.Password, o.Logger, opts...)
			return d, redfish.Features, nil
		},
	}
}
