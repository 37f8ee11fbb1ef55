package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
)

// Report is what the agent posts to the agent API: either the machine's
// facts or one progress event.
type Report struct {
	// Kind is "facts" or "event".
	Kind  string `json:"kind"`
	Facts *Facts `json:"facts,omitempty"`
	Event *Event `json:"event,omitempty"`
}

// Facts is the hardware the agent found. The fields after Product are
// optional, so the busybox stand-in agent's reports still parse.
type Facts struct {
	// MACs of every network interface, aa:bb:cc:dd:ee:ff.
	MACs        []string `json:"macs"`
	CPUs        int      `json:"cpus"`
	MemoryBytes uint64   `json:"memory_bytes"`
	Disks       []Disk   `json:"disks"`
	// Serial is the DMI system serial number.
	Serial  string `json:"serial"`
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	// CPUModel is /proc/cpuinfo's first model name.
	CPUModel string `json:"cpu_model,omitempty"`
	// UUID is the SMBIOS system UUID, 8-4-4-4-12 hex digits.
	UUID string `json:"uuid,omitempty"`
	// Firmware is "bios" or "uefi".
	Firmware string `json:"firmware,omitempty"`
	// NICs details the interfaces; each MAC must also be in MACs.
	NICs []NIC `json:"nics,omitempty"`
}

// Disk is one block device.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  uint64 `json:"size_bytes"`
	Serial     string `json:"serial,omitempty"`
	Model      string `json:"model,omitempty"`
	Rotational bool   `json:"rotational,omitempty"`
	// WWN is the kernel's wwid (or wwn) of the disk, when it has one.
	WWN string `json:"wwn,omitempty"`
}

// NIC is one network interface's details.
type NIC struct {
	MAC string `json:"mac"`
	// Name is the kernel's name in the agent's environment (eth0).
	Name string `json:"name,omitempty"`
	// SpeedMbps is 0 when unknown.
	SpeedMbps int    `json:"speed_mbps,omitempty"`
	Driver    string `json:"driver,omitempty"`
}

// Event is one step of the agent's work (commission, deploy, wipe).
type Event struct {
	// Phase names the work, e.g. "commission", "deploy", "wipe".
	Phase string `json:"phase"`
	// Status is "started", "progress", "done" or "failed".
	Status  string `json:"status"`
	Percent int    `json:"percent,omitempty"`
	Message string `json:"message,omitempty"`
}

// Limits of a report; anything beyond them is refused, not truncated.
const (
	maxStringLen = 256
	// MaxMessage is the longest event message, in bytes.
	MaxMessage = 4096
	maxMACs    = 64
	maxDisks   = 256
)

// EventReport is the report of one event, its message made acceptable to
// ParseReport: control characters other than tab and newline and invalid
// UTF-8 become spaces, and it is cut to MaxMessage on a rune boundary.
func EventReport(phase, status, message string) Report {
	message = strings.Map(func(r rune) rune {
		if badRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(message, " "))
	for len(message) > MaxMessage {
		message = message[:MaxMessage]
		message = strings.ToValidUTF8(message, "")
	}
	return Report{Kind: "event", Event: &Event{Phase: phase, Status: status, Message: message}}
}

// ParseReport reads exactly one JSON report from r, strictly: unknown
// fields, trailing data, missing or out-of-range values are errors that
// say what is wrong. The caller bounds r's size.
func ParseReport(r io.Reader) (Report, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return Report{}, fmt.Errorf("decode report: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Report{}, errors.New("decode report: trailing data after the JSON object")
	}
	if err := rep.Validate(); err != nil {
		return Report{}, err
	}
	if rep.Facts != nil && len(rep.Facts.NICs) == 0 {
		rep.Facts.NICs = nil // "nics": [] and no nics mean the same
	}
	return rep, nil
}

// Validate checks a report's values.
func (r Report) Validate() error {
	switch r.Kind {
	case "facts":
		if r.Facts == nil || r.Event != nil {
			return errors.New("report kind facts needs facts and no event")
		}
		return r.Facts.validate()
	case "event":
		if r.Event == nil || r.Facts != nil {
			return errors.New("report kind event needs event and no facts")
		}
		return r.Event.validate()
	case "":
		return errors.New("report has no kind (facts or event)")
	}
	return fmt.Errorf("report kind %q: want facts or event", r.Kind)
}

func (f *Facts) validate() error {
	if len(f.MACs) == 0 || len(f.MACs) > maxMACs {
		return fmt.Errorf("facts: %d macs, want 1 to %d", len(f.MACs), maxMACs)
	}
	for _, m := range f.MACs {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("facts: mac %q is not an Ethernet address", m)
		}
	}
	if f.CPUs < 1 || f.CPUs > 1<<16 {
		return fmt.Errorf("facts: cpus %d out of range 1..65536", f.CPUs)
	}
	if f.MemoryBytes == 0 {
		return errors.New("facts: memory_bytes is 0")
	}
	if len(f.Disks) > maxDisks {
		return fmt.Errorf("facts: %d disks, at most %d", len(f.Disks), maxDisks)
	}
	names := make(map[string]bool, len(f.Disks))
	for i, d := range f.Disks {
		if d.Name == "" {
			return fmt.Errorf("facts: disk %d has no name", i)
		}
		if err := text(fmt.Sprintf("disk %d name", i), d.Name, maxStringLen); err != nil {
			return err
		}
		if names[d.Name] {
			return fmt.Errorf("facts: disk %s listed twice", d.Name)
		}
		names[d.Name] = true
		if err := text("disk "+d.Name+" serial", d.Serial, maxStringLen); err != nil {
			return err
		}
		if err := text("disk "+d.Name+" model", d.Model, maxStringLen); err != nil {
			return err
		}
		if err := text("disk "+d.Name+" wwn", d.WWN, maxStringLen); err != nil {
			return err
		}
	}
	for _, k := range []struct{ name, v string }{{"serial", f.Serial}, {"vendor", f.Vendor}, {"product", f.Product}, {"cpu_model", f.CPUModel}} {
		if err := text(k.name, k.v, maxStringLen); err != nil {
			return err
		}
	}
	if f.UUID != "" && !uuidRE.MatchString(f.UUID) {
		return fmt.Errorf("facts: uuid %q is not 8-4-4-4-12 hex digits", clip(f.UUID))
	}
	switch f.Firmware {
	case "", "bios", "uefi":
	default:
		return fmt.Errorf("facts: firmware %q: want bios or uefi", clip(f.Firmware))
	}
	if len(f.NICs) > maxMACs {
		return fmt.Errorf("facts: %d nics, at most %d", len(f.NICs), maxMACs)
	}
	listed := make(map[string]bool, len(f.MACs))
	for _, m := range f.MACs {
		listed[m] = true
	}
	seen := make(map[string]bool, len(f.NICs))
	for i, n := range f.NICs {
		if !listed[n.MAC] {
			return fmt.Errorf("facts: nic %d mac %q is not in macs", i, clip(n.MAC))
		}
		if seen[n.MAC] {
			return fmt.Errorf("facts: nic %d mac %s listed twice", i, n.MAC)
		}
		seen[n.MAC] = true
		if n.SpeedMbps < 0 || n.SpeedMbps > 10_000_000 {
			return fmt.Errorf("facts: nic %s speed_mbps %d out of range 0..10000000", n.MAC, n.SpeedMbps)
		}
		if err := text("nic "+n.MAC+" name", n.Name, maxStringLen); err != nil {
			return err
		}
		if err := text("nic "+n.MAC+" driver", n.Driver, maxStringLen); err != nil {
			return err
		}
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// clip bounds a refused value quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}

func (e *Event) validate() error {
	if e.Phase == "" {
		return errors.New("event: no phase")
	}
	if err := text("phase", e.Phase, maxStringLen); err != nil {
		return err
	}
	switch e.Status {
	case "started", "progress", "done", "failed":
	default:
		return fmt.Errorf("event: status %q: want started, progress, done or failed", e.Status)
	}
	if e.Percent < 0 || e.Percent > 100 {
		return fmt.Errorf("event: percent %d out of range 0..100", e.Percent)
	}
	return text("message", e.Message, MaxMessage)
}

// badRune is a character a report's text may not hold: a control
// character other than tab and newline, which would corrupt logs and
// histories, or the replacement character that invalid UTF-8 decodes to.
func badRune(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f || r == '\uFFFD'
}

// text refuses over-long strings and bad runes.
func text(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, at most %d", field, len(s), max)
	}
	if !strings.ContainsFunc(s, badRune) {
		return nil
	}
	return fmt.Errorf("%s contains control characters or invalid UTF-8", field)
}
