package lab

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ironrack/ironrack/internal/redfishsim"
)

// RedfishPort is the port of the lab's Redfish BMCs.
const RedfishPort = 443

// Files of a Redfish BMC in its machine's directory (beside power and
// requests, which it shares with ipmi_sim's chassis script).
const (
	redfishConfigFile = "redfish.json"
	redfishCertFile   = "redfish-cert.pem"
	redfishKeyFile    = "redfish-key.pem"
)

// RedfishConfig is what `ironrack lab redfish-bmc` reads from its machine's
// directory: where it listens, its account and its quirk. The password is
// in this file (mode 0600), never in a process's arguments.
type RedfishConfig struct {
	Listen   string `json:"listen"`
	Username string `json:"username"`
	Password string `json:"password"`
	Serial   string `json:"serial"`
	Quirk    string `json:"quirk,omitempty"`
}

// writeRedfish writes machine m's Redfish BMC files: its configuration, and
// a certificate for its address signed by ca.
func writeRedfish(dir string, m Machine, ca *redfishsim.CA) error {
	d := machineDir(dir, m)
	cert, err := ca.Issue(m.BMC.String())
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := redfishsim.WriteKeyPair(cert)
	if err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(RedfishConfig{Listen: net.JoinHostPort(m.BMC.String(), strconv.Itoa(RedfishPort)),
		Username: m.BMCUser, Password: m.BMCPassword, Serial: m.Serial, Quirk: m.RedfishQuirk}, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{redfishConfigFile, append(cfg, '\n')}, {redfishCertFile, certPEM}, {redfishKeyFile, keyPEM}} {
		if err := os.WriteFile(filepath.Join(d, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// redfishArgv runs m's Redfish BMC inside the namespace: the ironrack
// binary's `lab redfish-bmc`, which reads the machine's directory.
func redfishArgv(dir string, l Layout, cfg Config, m Machine) []string {
	return []string{"ip", "netns", "exec", l.NS, cfg.Binary, "--log-level", "info", "lab", "redfish-bmc",
		"--dir", machineDir(dir, m)}
}

// RedfishBMC loads the Redfish BMC of a machine's directory (as the
// supervisor wrote it) and listens on its address. Serve runs it; its
// power acts on the directory's power and requests files, which the
// supervisor follows to start and stop the machine's QEMU.
func RedfishBMC(machineDir string, log *slog.Logger) (*redfishsim.Server, error) {
	b, err := os.ReadFile(filepath.Join(machineDir, redfishConfigFile))
	if err != nil {
		return nil, fmt.Errorf("redfish BMC: %w", err)
	}
	var c RedfishConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("redfish BMC: %s: %w", filepath.Join(machineDir, redfishConfigFile), err)
	}
	q, err := redfishsim.ParseQuirk(c.Quirk)
	if err != nil {
		return nil, fmt.Errorf("redfish BMC: %s: %w", filepath.Join(machineDir, redfishConfigFile), err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(machineDir, redfishCertFile), filepath.Join(machineDir, redfishKeyFile))
	if err != nil {
		return nil, fmt.Errorf("redfish BMC: %w", err)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("redfish BMC: %w", err)
	}
	return &redfishsim.Server{Listener: ln, Certificate: cert, Username: c.Username, Password: c.Password,
		Chassis: redfishsim.DirChassis{Dir: machineDir}, Quirk: q, Serial: c.Serial, Logger: log}, nil
}
