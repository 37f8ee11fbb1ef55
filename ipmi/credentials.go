package ipmi

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
)

// Protocol selects how the Controller talks to a BMC.
type Protocol string

const (
	// ProtocolAuto tries IPMI (go-ipmi, then ipmitool), then Redfish, and
	// remembers the first provider that works for each BMC.
	ProtocolAuto Protocol = ""
	// ProtocolIPMI uses IPMI 2.0 (RMCP+) only: go-ipmi, then ipmitool.
	ProtocolIPMI Protocol = "ipmi"
	// ProtocolRedfish uses Redfish only (gofish, through bmclib).
	ProtocolRedfish Protocol = "redfish"
)

// Credentials say how to reach and log in to one BMC. They are a value: the
// caller (the inventory's encrypted store, via cmd) owns them. The password
// never appears in String, logs or process arguments.
type Credentials struct {
	// Host is the BMC's address (IP or name).
	Host string
	// Port is the BMC's port for Protocol. If 0, 623 for IPMI and 443 for
	// Redfish. With ProtocolAuto it applies to IPMI; Redfish uses 443.
	Port     int
	Username string
	Password string
	Protocol Protocol
	// CipherSuite is the RMCP+ cipher suite ID for IPMI. If 0, 3
	// (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), which every IPMI 2.0 BMC and
	// ipmi_sim support; if a BMC refuses 3, the go-ipmi provider's full
	// login also tries 17. Set 17 for BMCs that disabled SHA1 suites.
	CipherSuite int
	// TLS says how a Redfish BMC's certificate is checked. The zero value
	// verifies it against the system's roots.
	TLS TLS
}

func (c Credentials) ipmiPort() int {
	if c.Port == 0 || c.Protocol == ProtocolAuto && c.Port == 443 {
		return 623
	}
	return c.Port
}

func (c Credentials) redfishPort() int {
	if c.Port == 0 || c.Protocol == ProtocolAuto {
		return 443
	}
	return c.Port
}

func (c Credentials) cipherSuite() int {
	if c.CipherSuite == 0 {
		return 3
	}
	return c.CipherSuite
}

// String names the target without the password: "admin@127.0.10.3:623".
func (c Credentials) String() string {
	port := c.ipmiPort()
	if c.Protocol == ProtocolRedfish {
		port = c.redfishPort()
	}
	return fmt.Sprintf("%s@%s", c.Username, net.JoinHostPort(c.Host, strconv.Itoa(port)))
}

// LogValue keeps the password out of slog output.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.String("user", c.Username),
		slog.String("protocol", string(c.Protocol)),
		slog.String("tls", c.TLS.Mode()),
	)
}

// Format keeps the password out of %v and %+v too.
func (c Credentials) Format(f fmt.State, verb rune) {
	fmt.Fprint(f, c.String())
}
