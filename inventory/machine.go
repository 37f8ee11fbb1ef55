package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Machine is one server. Its JSON form is the contract in
// docs/machine.schema.json: list and show print exactly this.
type Machine struct {
	ID     string `json:"id"`
	Serial string `json:"serial"`
	// UUID is the SMBIOS system UUID, lower-case 8-4-4-4-12; "" until
	// discovery reports it.
	UUID string `json:"uuid"`
	Rack string `json:"rack"`
	// Slot is the machine's position in its rack: the lowest rack unit it
	// occupies when it is a number (the elevation draws it there).
	Slot string `json:"slot"`
	// UHeight is how many rack units the machine takes. If 0, 1.
	UHeight int `json:"u_height"`
	// Face is which side of the rack the machine fills: "front", "rear"
	// or "both" (a full-depth server). If "", both.
	Face   string `json:"face"`
	Vendor string `json:"vendor"`
	Model  string `json:"model"`
	// Firmware is "bios" or "uefi" as the agent booted; "" until discovery.
	Firmware string `json:"firmware"`
	BMC      BMC    `json:"bmc"`
	NICs     []NIC  `json:"nics"`
	IP       string `json:"ip"`
	// CPUModel is the processor's model name, e.g. "AMD EPYC 7763 64-Core
	// Processor"; "" until discovery.
	CPUModel string `json:"cpu_model"`
	// CPUCores and MemGB are 0 until discovery reports them.
	CPUCores int               `json:"cpu_cores"`
	MemGB    int               `json:"mem_gb"`
	Disks    []Disk            `json:"disks"`
	Tags     map[string]string `json:"tags"`
	State    State             `json:"state"`
	Tier     string            `json:"tier"`
	Owner    string            `json:"owner"`
	// Source says how the machine was first enlisted: "import" or "pxe".
	Source string `json:"source"`
	// Drift lists differences between the record and the latest hardware
	// report; empty when none.
	Drift []Drift `json:"drift"`
	// HostKeys are the SSH host public keys of the machine's deployed OS
	// (authorized_keys form, "TYPE BASE64", no comment), as its first boot
	// reported them (RecordHostKeys) or an operator imported them; empty
	// until then, and again when it is redeployed or released. SSH to the
	// machine trusts exactly these (playbooks/hostkeys).
	HostKeys []string `json:"host_keys"`
	// HostCerts are the host certificates ironrack's SSH CA signed for
	// HostKeys ("TYPE-cert-v01@openssh.com BASE64"), one per key; empty
	// when no CA is set up.
	HostCerts []string  `json:"host_certs"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// BMC is how to reach a machine's baseboard management controller.
type BMC struct {
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Username string `json:"username"`
	// CredentialRef names the sealed password in the credential store.
	CredentialRef string `json:"credential_ref"`
	// TLS says how a Redfish BMC's certificate is checked: "" against the
	// site's CA file (or the system's roots); "sha256:" and 64 hex digits
	// pins the one certificate the BMC may present (the operator confirmed
	// its fingerprint at import); TLSInsecure checks nothing, and every use
	// warns. See docs/bmc.md.
	TLS string `json:"tls"`
}

// TLSInsecure is BMC.TLS for a BMC whose certificate is not checked.
const TLSInsecure = "insecure"

// TLSPinAtImport is the rack sheet's bmc_tls value asking the import to
// fetch the BMC's certificate and pin it once the operator confirms its
// fingerprint. It is never stored.
const TLSPinAtImport = "pin"

// ParseTLS reads a bmc_tls value: "" (verify), "insecure", or a pinned
// fingerprint as people copy it ("sha256:" optional, hex in either case,
// with or without colons), which it returns as "sha256:" and 64 lowercase
// hex digits.
func ParseTLS(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return "", nil
	case TLSInsecure:
		return TLSInsecure, nil
	}
	h := s
	if len(h) >= 7 && strings.EqualFold(h[:7], "sha256:") {
		h = h[7:]
	}
	h = strings.ToLower(strings.ReplaceAll(h, ":", ""))
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a certificate pin (want sha256: and 64 hex digits), %q, %q or empty", s, TLSInsecure, TLSPinAtImport)
	}
	return "sha256:" + h, nil
}

// NIC is one network interface.
type NIC struct {
	MAC     string `json:"mac"`
	Name    string `json:"name"`
	Primary bool   `json:"primary"`
	// SpeedMbps and Driver are what discovery saw; 0 and "" when unknown.
	SpeedMbps int    `json:"speed_mbps"`
	Driver    string `json:"driver"`
}

// Disk is one block device.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Model      string `json:"model"`
	Serial     string `json:"serial"`
	Rotational bool   `json:"rotational"`
	// WWN is the disk's World Wide Name as the kernel reads it
	// (/sys/block/NAME/device/wwid or wwn), empty when it has none.
	WWN string `json:"wwn,omitempty"`
}

// Drift is one difference between the record and a later hardware report.
type Drift struct {
	Field    string    `json:"field"`
	Recorded string    `json:"recorded"`
	Reported string    `json:"reported"`
	Since    time.Time `json:"since"`
}

// Rack faces a machine fills (Machine.Face).
const (
	FaceFront = "front"
	FaceRear  = "rear"
	FaceBoth  = "both"
)

func validFace(f string) bool { return f == "" || f == FaceFront || f == FaceRear || f == FaceBoth }

// Units is how many rack units m takes (UHeight, default 1).
func (m *Machine) Units() int {
	if m.UHeight <= 0 {
		return 1
	}
	return m.UHeight
}

// OnFace reports whether m shows on a rack's front (rear false) or rear
// face: a machine with no face set fills both.
func (m *Machine) OnFace(rear bool) bool {
	switch m.Face {
	case FaceFront:
		return !rear
	case FaceRear:
		return rear
	}
	return true
}

// BMC protocols.
const (
	ProtocolIPMI    = "ipmi"
	ProtocolRedfish = "redfish"
)

// MachineID derives the stable machine ID from a serial number. A machine
// first seen by PXE, before its serial is known, takes its ID from its MAC
// instead; the ID never changes afterwards.
func MachineID(key string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	return "m-" + hex.EncodeToString(sum[:6])
}

var idRE = regexp.MustCompile(`^m-[0-9a-f]{12}$`)

// IsID reports whether s has the form of a machine ID.
func IsID(s string) bool { return idRE.MatchString(s) }

// NormalizeMAC returns mac in lower-case colon form, or an error naming it.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(mac))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("malformed MAC %q", mac)
	}
	return hw.String(), nil
}

// PrimaryMAC returns the primary NIC's MAC, or the first NIC's, or "".
func (m *Machine) PrimaryMAC() string {
	for _, n := range m.NICs {
		if n.Primary {
			return n.MAC
		}
	}
	if len(m.NICs) > 0 {
		return m.NICs[0].MAC
	}
	return ""
}

// BMCKey is the BMC's address:port, the unit of BMC uniqueness; "" if none.
func (m *Machine) BMCKey() string {
	if m.BMC.Address == "" {
		return ""
	}
	port := m.BMC.Port
	if port == 0 {
		port = DefaultPort(m.BMC.Protocol)
	}
	return net.JoinHostPort(m.BMC.Address, strconv.Itoa(port))
}

// DefaultPort is the BMC port for a protocol when none is given.
func DefaultPort(protocol string) int {
	if protocol == ProtocolRedfish {
		return 443
	}
	return 623
}

// normalize fills the nil slices and maps the JSON contract prints as [] and
// {}, so that every record reads back the same.
func (m *Machine) normalize() {
	if m.NICs == nil {
		m.NICs = []NIC{}
	}
	if m.Disks == nil {
		m.Disks = []Disk{}
	}
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	if m.Drift == nil {
		m.Drift = []Drift{}
	}
	if m.HostKeys == nil {
		m.HostKeys = []string{}
	}
	if m.HostCerts == nil {
		m.HostCerts = []string{}
	}
}

// Clone returns a deep copy.
func (m *Machine) Clone() *Machine {
	c := *m
	c.NICs = append([]NIC(nil), m.NICs...)
	c.Disks = append([]Disk(nil), m.Disks...)
	c.Drift = append([]Drift(nil), m.Drift...)
	c.HostKeys = append([]string(nil), m.HostKeys...)
	c.HostCerts = append([]string(nil), m.HostCerts...)
	c.Tags = make(map[string]string, len(m.Tags))
	for k, v := range m.Tags {
		c.Tags[k] = v
	}
	c.normalize()
	return &c
}

// metaFields are the machine fields mirrored into catalog NodeMeta, in
// order, each with its value there. A value "" leaves the pair out, so a
// missing field stays missing in queries. A string pair holds its field
// exactly, so an equality on it can be pushed down to Consul; a number is
// decimal and compared by ironrack.
var metaFields = []struct {
	key string
	num bool
	get func(m *Machine) string
}{
	{"rack", false, func(m *Machine) string { return m.Rack }},
	{"slot", false, func(m *Machine) string { return m.Slot }},
	{"serial", false, func(m *Machine) string { return m.Serial }},
	{"state", false, func(m *Machine) string { return string(m.State) }},
	{"tier", false, func(m *Machine) string { return m.Tier }},
	{"cpu_cores", true, func(m *Machine) string { return positive(m.CPUCores) }},
	{"mem_gb", true, func(m *Machine) string { return positive(m.MemGB) }},
	{"vendor", false, func(m *Machine) string { return m.Vendor }},
	{"model", false, func(m *Machine) string { return m.Model }},
}

// metaExcluded are the machine fields (JSON names) that NodeMeta leaves to
// the KV record: the ID is the node's name, and the rest are not filtered
// on often enough to cost every write a meta pair. TestMachineFieldsCarried
// fails when a field of Machine is in neither metaFields nor this list.
var metaExcluded = []string{"id", "u_height", "face", "uuid", "firmware", "bmc", "nics", "ip", "cpu_model", "disks", "tags", "owner",
	"source", "drift", "host_keys", "host_certs", "created_at", "updated_at"}

// stringMetaKeys and numMetaKeys are metaFields' keys by kind.
var stringMetaKeys, numMetaKeys = func() (str, num map[string]bool) {
	str, num = map[string]bool{}, map[string]bool{}
	for _, f := range metaFields {
		if f.num {
			num[f.key] = true
		} else {
			str[f.key] = true
		}
	}
	return str, num
}()

func positive(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// machineMetaKey=machineMetaValue marks the catalog nodes that are
// ironrack's machines (operators select them with
// -node-meta ironrack=machine).
const (
	machineMetaKey   = "ironrack"
	machineMetaValue = "machine"
)

// nodeMeta is the NodeMeta of m's catalog node: the marker and metaFields.
func (m *Machine) nodeMeta() map[string]string {
	meta := make(map[string]string, len(metaFields)+1)
	meta[machineMetaKey] = machineMetaValue
	for _, f := range metaFields {
		if v := f.get(m); v != "" {
			meta[f.key] = v
		}
	}
	return meta
}

// Consul caps NodeMeta keys at 128 and values at 512 characters; keys are
// [A-Za-z0-9_-]. ironrack validates its own values before they reach Consul.
const (
	maxMetaValue = 512
	maxField     = 256
)

var (
	tagKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)
	plainRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/ -]*$`)
	ownerRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$`)
	credRefRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
)

// FieldError names one invalid field.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate checks every field of m that Consul or ironrack relies on. It
// returns the problems found, each naming its field.
func (m *Machine) Validate() []*FieldError {
	var errs []*FieldError
	bad := func(f, format string, a ...any) { errs = append(errs, &FieldError{f, fmt.Sprintf(format, a...)}) }
	if !IsID(m.ID) {
		bad("id", "malformed machine ID %q", m.ID)
	}
	text := func(f, v string, required bool) {
		switch {
		case v == "" && required:
			bad(f, "is empty")
		case v == "":
		case len(v) > maxField:
			bad(f, "longer than %d characters", maxField)
		case !plainRE.MatchString(v):
			bad(f, "%q has characters outside letters, digits and _.:/- (or starts with one)", v)
		}
	}
	text("serial", m.Serial, m.Source != "pxe")
	text("rack", m.Rack, false)
	text("slot", m.Slot, false)
	text("vendor", m.Vendor, false)
	text("model", m.Model, false)
	text("tier", m.Tier, false)
	if (m.Rack == "") != (m.Slot == "") {
		bad("slot", "rack and slot go together (rack %q, slot %q)", m.Rack, m.Slot)
	}
	if m.UHeight < 0 || m.UHeight > MaxRackHeight {
		bad("u_height", "out of range: %d (want 1-%d, or 0 for the default 1)", m.UHeight, MaxRackHeight)
	}
	if !validFace(m.Face) {
		bad("face", "unknown face %q (want front, rear or both)", m.Face)
	}
	if m.Owner != "" && !ownerRE.MatchString(m.Owner) {
		bad("owner", "malformed owner %q", m.Owner)
	}
	if _, ok := states[m.State]; !ok {
		bad("state", "unknown state %q", m.State)
	}
	if m.IP != "" && net.ParseIP(m.IP) == nil {
		bad("ip", "malformed IP address %q", m.IP)
	}
	if m.CPUCores < 0 || m.CPUCores > 1<<16 {
		bad("cpu_cores", "out of range: %d", m.CPUCores)
	}
	if m.MemGB < 0 || m.MemGB > 1<<24 {
		bad("mem_gb", "out of range: %d", m.MemGB)
	}
	for _, fe := range validateHardware(m.UUID, m.Firmware, m.CPUModel, m.Disks, m.NICs) {
		errs = append(errs, fe)
	}
	errs = append(errs, validateBMC(&m.BMC)...)
	errs = append(errs, validateHostKeys(m.HostKeys, m.HostCerts)...)
	seen := map[string]bool{}
	for i, n := range m.NICs {
		norm, err := NormalizeMAC(n.MAC)
		if err != nil || norm != n.MAC {
			bad(fmt.Sprintf("nics[%d].mac", i), "malformed MAC %q", n.MAC)
		}
		if seen[n.MAC] {
			bad(fmt.Sprintf("nics[%d].mac", i), "MAC %s listed twice", n.MAC)
		}
		seen[n.MAC] = true
	}
	for k, v := range m.Tags {
		if !tagKeyRE.MatchString(k) {
			bad("tags", "malformed tag key %q (letters, digits, _.-; at most 63)", k)
		}
		if len(v) > maxField || strings.ContainsAny(v, "\x00\n\r;=") {
			bad("tags", "tag %s has a malformed value", k)
		}
	}
	return errs
}

// uuidRE is a system UUID as the inventory stores it.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Firmware kinds.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// validateHardware checks the facts discovery fills in. Descriptive text
// (CPU and disk models, serials, drivers) may hold any printable text, as
// vendors write it, but no control characters and at most maxField bytes.
func validateHardware(uuid, firmware, cpuModel string, disks []Disk, nics []NIC) []*FieldError {
	var errs []*FieldError
	bad := func(f, format string, a ...any) { errs = append(errs, &FieldError{f, fmt.Sprintf(format, a...)}) }
	descr := func(f, v string) {
		if err := descrText(v); err != "" {
			bad(f, "%s", err)
		}
	}
	if uuid != "" && !uuidRE.MatchString(uuid) {
		bad("uuid", "malformed UUID %q (want lower-case 8-4-4-4-12 hex digits)", uuid)
	}
	if firmware != "" && firmware != FirmwareBIOS && firmware != FirmwareUEFI {
		bad("firmware", "unknown firmware %q (want bios or uefi)", firmware)
	}
	descr("cpu_model", cpuModel)
	for i, d := range disks {
		f := fmt.Sprintf("disks[%d]", i)
		if d.Name == "" {
			bad(f+".name", "is empty")
		}
		if d.SizeBytes < 0 {
			bad(f+".size_bytes", "is negative: %d", d.SizeBytes)
		}
		descr(f+".name", d.Name)
		descr(f+".model", d.Model)
		descr(f+".serial", d.Serial)
	}
	for i, n := range nics {
		f := fmt.Sprintf("nics[%d]", i)
		if n.SpeedMbps < 0 || n.SpeedMbps > 10_000_000 {
			bad(f+".speed_mbps", "out of range: %d", n.SpeedMbps)
		}
		descr(f+".name", n.Name)
		descr(f+".driver", n.Driver)
	}
	return errs
}

// descrText says what is wrong with descriptive text, or "".
func descrText(v string) string {
	switch {
	case len(v) > maxField:
		return fmt.Sprintf("longer than %d bytes", maxField)
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Sprintf("%q contains control characters", v)
	}
	return ""
}

// DescrText returns s trimmed when the inventory takes it as descriptive
// text (a CPU or disk model, a serial, a driver), or "" when it does not:
// discovery drops an odd string rather than failing the machine.
func DescrText(s string) string {
	s = strings.TrimSpace(s)
	if descrText(s) != "" {
		return ""
	}
	return s
}

func validateBMC(b *BMC) []*FieldError {
	var errs []*FieldError
	bad := func(f, format string, a ...any) {
		errs = append(errs, &FieldError{f, fmt.Sprintf(format, a...)})
	}
	if b.Address == "" {
		if b.Username != "" || b.CredentialRef != "" {
			bad("bmc_address", "is empty but BMC credentials are set")
		}
		return errs
	}
	if !validHost(b.Address) {
		bad("bmc_address", "malformed address %q (want an IP or a hostname)", b.Address)
	}
	if b.Port < 0 || b.Port > 65535 {
		bad("bmc_port", "out of range: %d", b.Port)
	}
	if b.Protocol != ProtocolIPMI && b.Protocol != ProtocolRedfish {
		bad("bmc_protocol", "unknown protocol %q (want ipmi or redfish)", b.Protocol)
	}
	if b.Username == "" {
		bad("bmc_username", "is empty")
	} else if len(b.Username) > 64 || strings.ContainsAny(b.Username, "\x00\n\r") {
		bad("bmc_username", "malformed user name")
	}
	if b.CredentialRef != "" && !credRefRE.MatchString(b.CredentialRef) {
		bad("bmc_credential_ref", "malformed reference %q", b.CredentialRef)
	}
	if b.TLS != "" && b.Protocol != ProtocolRedfish {
		bad("bmc_tls", "%q applies to redfish BMCs only (this one is %s)", b.TLS, b.Protocol)
	} else if b.TLS == TLSPinAtImport {
		bad("bmc_tls", "%q is resolved by `ironrack inventory import`, which fetches the certificate and asks to confirm its fingerprint", b.TLS)
	} else if v, err := ParseTLS(b.TLS); err != nil {
		bad("bmc_tls", "%v", err)
	} else if v != b.TLS {
		bad("bmc_tls", "%q is not in its stored form %q", b.TLS, v)
	}
	return errs
}

// validHost accepts an IP address or a DNS host name. Dotted digits that do
// not parse as an IP (10.0.0.300) are refused, not taken as a name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if strings.Trim(h, "0123456789.") == "" {
		return false
	}
	return len(h) <= 253 && hostnameRE.MatchString(h)
}
