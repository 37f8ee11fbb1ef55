// Package lab is the virtual rack behind `ironrack lab`: a private network
// namespace with a bridge, reached from the host through a veth pair; a
// Consul dev agent; one BMC per machine, whose chassis power starts and
// stops that machine's QEMU (TCG): an OpenIPMI ipmi_sim, or for the first
// Config.Redfish machines a Redfish BMC (internal/redfishsim, run as
// `ironrack lab redfish-bmc`, over TLS with a certificate from the lab's
// own CA); and `ironrack serve` on the bridge. A supervisor process (`ironrack lab supervise`, started by Up
// in its own session) owns every child and outlives the command that
// started it.
//
// Each lab has a name and a state directory (Root()/NAME) holding its
// configuration (lab.json), the PID and start time of every process it
// started (pids), logs, the BMCs' files, the VMs' disks, the key file and
// the rack sheet. Down stops, by PID, only processes whose start time still
// matches, deletes the namespace and the host's veth, and removes the state
// directory: it is idempotent and works on a half-started lab. Everything a
// lab creates on the host is named after the lab (Layout), so labs of other
// names are never touched.
//
// It is not test code (the CLI imports it); only cmd and tests import it.
package lab

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/inventory"
)

// Ports the lab's services listen on, at Layout.Server.
const (
	ConsulPort = 8500
	BootPort   = 8080
)

// MaxMachines is the most machines a lab holds: BMC addresses are .11 to
// .90 of its /24, DHCP leases .100 to .199.
const MaxMachines = 80

// OVMFCode is the UEFI firmware of UEFI machines (Debian's ovmf).
const OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"

// Config is what a lab was asked for; Up saves it as lab.json in the state
// directory, and the supervisor, Status and Env read it back.
type Config struct {
	// Name names the lab, its state directory, namespace and devices:
	// lower-case letters, digits and '-', at most 20, starting with a letter
	// or digit.
	Name string `json:"name"`
	// Machines is how many machines (0 to MaxMachines), spread over Racks
	// racks (at least 1); the last UEFI of them boot UEFI (OVMF), the others
	// BIOS (QEMU's iPXE ROM).
	Machines int `json:"machines"`
	Racks    int `json:"racks"`
	UEFI     int `json:"uefi"`
	// DataDir is the boot server's data dir; it must hold the discovery
	// image (images/agent/current).
	DataDir string `json:"data_dir"`
	// Binary is the ironrack binary the supervisor runs `serve` with, and
	// Consul the consul binary.
	Binary string `json:"binary"`
	Consul string `json:"consul"`
	// Subnet is the lab's /24, chosen by Up (free on the host and among
	// labs).
	Subnet netip.Prefix `json:"subnet"`
	// Secret seeds the BMC passwords (random per lab).
	Secret string `json:"secret"`
	// Redfish is how many machines (the first ones) have a Redfish BMC
	// instead of ipmi_sim; 0 to Machines.
	Redfish int `json:"redfish,omitempty"`
	// RedfishQuirks are quirks of those BMCs by machine index (1 to
	// Redfish), as redfishsim.ParseQuirk reads them; the others behave.
	RedfishQuirks map[int]string `json:"redfish_quirks,omitempty"`
	// Disks are machines' disk sizes in GiB by machine index (1 to
	// Machines), in place of the layout's variety (e.g. two equal disks
	// for a mirrored root); 1 to MaxDisks disks of 1 to MaxDiskGiB each.
	Disks map[int][]int `json:"disks,omitempty"`
}

// MaxDisks and MaxDiskGiB bound Config.Disks (sparse files, so the bound
// is a typo guard, not the host's space).
const (
	MaxDisks   = 4
	MaxDiskGiB = 64
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)

// CheckName says what is wrong with a lab name, or nil.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: want 1-20 lower-case letters, digits or '-', starting with a letter or digit", name)
	}
	return nil
}

// Check validates the counts.
func (c Config) Check() error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	switch {
	case c.Machines < 0 || c.Machines > MaxMachines:
		return fmt.Errorf("--machines %d: want 0 to %d", c.Machines, MaxMachines)
	case c.Racks < 1 || c.Racks > 26:
		return fmt.Errorf("--racks %d: want 1 to 26", c.Racks)
	case c.UEFI < 0 || c.UEFI > c.Machines:
		return fmt.Errorf("--uefi %d: want 0 to --machines (%d)", c.UEFI, c.Machines)
	case c.Redfish < 0 || c.Redfish > c.Machines:
		return fmt.Errorf("--redfish %d: want 0 to --machines (%d)", c.Redfish, c.Machines)
	}
	for i, q := range c.RedfishQuirks {
		if i < 1 || i > c.Redfish {
			return fmt.Errorf("--redfish-quirk %d=%s: machine %d has no Redfish BMC (want 1 to --redfish, %d)", i, q, i, c.Redfish)
		}
		if _, err := redfishsim.ParseQuirk(q); err != nil {
			return fmt.Errorf("--redfish-quirk %d=%s: %w", i, q, err)
		}
	}
	for i, d := range c.Disks {
		if i < 1 || i > c.Machines {
			return fmt.Errorf("--disks %d=%s: no machine %d (want 1 to --machines, %d)", i, DisksText(d), i, c.Machines)
		}
		if len(d) < 1 || len(d) > MaxDisks {
			return fmt.Errorf("--disks %d=%s: %d disks, want 1 to %d", i, DisksText(d), len(d), MaxDisks)
		}
		for _, g := range d {
			if g < 1 || g > MaxDiskGiB {
				return fmt.Errorf("--disks %d=%s: a disk of %d GiB, want 1 to %d", i, DisksText(d), g, MaxDiskGiB)
			}
		}
	}
	return nil
}

// DisksText writes disk sizes as --disks takes them: "4,4".
func DisksText(gib []int) string {
	s := make([]string, len(gib))
	for i, g := range gib {
		s[i] = strconv.Itoa(g)
	}
	return strings.Join(s, ",")
}

// Layout is everything a lab's configuration implies: names, addresses and
// machines. It is a pure function of the Config.
type Layout struct {
	// NS is the network namespace; Bridge the bridge in it.
	NS, Bridge string
	// HostLink is the host's end of the veth (HostIP/24 on it); PeerLink
	// its other end, a port of Bridge inside NS.
	HostLink, PeerLink string
	HostIP             netip.Addr
	// Server is the bridge's address: Consul and the boot server.
	Server netip.Addr
	// DHCPFirst and DHCPLast are the boot server's dynamic range.
	DHCPFirst, DHCPLast netip.Addr
	Machines            []Machine
}

// Machine is one QEMU machine and its BMC.
type Machine struct {
	// Index is 1-based; Serial the SMBIOS serial, MAC its only NIC's.
	Index  int    `json:"index"`
	Serial string `json:"serial"`
	MAC    string `json:"mac"`
	Rack   string `json:"rack"`
	Slot   int    `json:"slot"`
	// BMC is the BMC's address (ipmi_sim: port 623; Redfish: 443) with its
	// admin user.
	BMC         netip.Addr `json:"bmc_address"`
	BMCUser     string     `json:"bmc_username"`
	BMCPassword string     `json:"-"`
	MemMiB      int        `json:"mem_mib"`
	CPUs        int        `json:"cpus"`
	// DisksGiB are the sizes of its virtio disks (sparse files).
	DisksGiB []int `json:"disks_gib"`
	UEFI     bool  `json:"uefi"`
	// Redfish: its BMC speaks Redfish (redfishsim) instead of IPMI, with
	// RedfishQuirk if set.
	Redfish      bool   `json:"redfish"`
	RedfishQuirk string `json:"redfish_quirk,omitempty"`
	// Tap is its tap device in the namespace.
	Tap string `json:"tap"`
}

// Protocol is its BMC's protocol, as the rack sheet names it.
func (m Machine) Protocol() string {
	if m.Redfish {
		return inventory.ProtocolRedfish
	}
	return inventory.ProtocolIPMI
}

// Firmware is "uefi" or "bios".
func (m Machine) Firmware() string {
	if m.UEFI {
		return "uefi"
	}
	return "bios"
}

// hash8 is 8 hex digits of sha256(name): the lab's device names.
func hash8(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:4])
}

// Names are the host-visible names of a lab's namespace and veth, derived
// from its name alone, so Down finds them without its state directory.
func Names(name string) (ns, hostLink, peerLink string) {
	h := hash8(name)
	return "ironrack-lab-" + name, "irl" + h + "h", "irl" + h + "p"
}

// Layout derives the lab's names, addresses and machines.
func (c Config) Layout() Layout {
	ns, host, peer := Names(c.Name)
	base := c.Subnet.Masked().Addr().As4()
	at := func(last byte) netip.Addr { b := base; b[3] = last; return netip.AddrFrom4(b) }
	l := Layout{NS: ns, Bridge: "br0", HostLink: host, PeerLink: peer,
		HostIP: at(1), Server: at(2), DHCPFirst: at(100), DHCPLast: at(199)}
	racks := max(c.Racks, 1)
	for i := range c.Machines {
		m := Machine{
			Index:       i + 1,
			Serial:      fmt.Sprintf("%s-%03d", strings.ToUpper(c.Name), i+1),
			MAC:         fmt.Sprintf("52:54:00:%02x:%02x:%02x", base[1], base[2], i+1),
			Rack:        fmt.Sprintf("r%d", i%racks+1),
			Slot:        i/racks + 1,
			BMC:         at(byte(11 + i)),
			BMCUser:     "admin",
			BMCPassword: c.password(i + 1),
			MemMiB:      []int{1024, 1536}[i%2],
			CPUs:        []int{1, 2}[(i/2)%2],
			DisksGiB:    [][]int{{4}, {6}, {8, 2}}[i%3],
			UEFI:        i >= c.Machines-c.UEFI,
			Redfish:     i < c.Redfish,
			Tap:         fmt.Sprintf("tap%d", i+1),
		}
		if m.Redfish {
			m.RedfishQuirk = c.RedfishQuirks[m.Index]
		}
		if d, ok := c.Disks[m.Index]; ok {
			m.DisksGiB = append([]int(nil), d...)
		}
		l.Machines = append(l.Machines, m)
	}
	return l
}

// password is machine i's BMC password: 16 hex digits of
// sha256(secret, i).
func (c Config) password(i int) string {
	h := sha256.New()
	h.Write([]byte(c.Secret))
	_ = binary.Write(h, binary.BigEndian, uint32(i))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Root is the directory holding every lab's state directory:
// ~/.ironrack/labs. There is one per machine (root's): a lab's name also
// names its namespace and veth, which are machine-wide.
func Root() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the labs' directory: %w", err)
	}
	return filepath.Join(home, ".ironrack", "labs"), nil
}

// Dir is the state directory of the lab name.
func Dir(name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, name), nil
}

// Files in a lab's state directory.
const (
	ConfigFile = "lab.json"
	PIDFile    = "pids"
	ReadyFile  = "ready"
	ErrorFile  = "error"
	SheetFile  = "rack-sheet.csv"
	KeyFile    = "key"
	// BMCCAFile is the lab's CA certificate, which signs its Redfish BMCs'
	// certificates: the site's CA file for `--bmc-ca-file`.
	BMCCAFile = "bmc-ca.pem"
)

// ErrNoLab is returned for a lab without a state directory.
var ErrNoLab = errors.New("no such lab")

// Load reads the configuration of the lab name.
func Load(name string) (Config, string, error) {
	dir, err := Dir(name)
	if err != nil {
		return Config{}, "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, dir, fmt.Errorf("lab %s: %w (start it with `ironrack lab up --name %s`)", name, ErrNoLab, name)
	}
	if err != nil {
		return Config{}, dir, fmt.Errorf("lab %s: %w", name, err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, dir, fmt.Errorf("lab %s: %s: %w", name, filepath.Join(dir, ConfigFile), err)
	}
	return c, dir, nil
}
