package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// Facts is a hardware report: from the discovery agent, or from a facts file
// an operator commissions by hand.
type Facts struct {
	Serial   string `json:"serial"`
	UUID     string `json:"uuid,omitempty"`
	Vendor   string `json:"vendor,omitempty"`
	Model    string `json:"model,omitempty"`
	Firmware string `json:"firmware,omitempty"`
	CPUModel string `json:"cpu_model,omitempty"`
	CPUCores int    `json:"cpu_cores"`
	MemGB    int    `json:"mem_gb"`
	Disks    []Disk `json:"disks,omitempty"`
	NICs     []NIC  `json:"nics,omitempty"`
}

// Validate names the first problems of a report.
func (f *Facts) Validate() error {
	var errs []error
	if strings.TrimSpace(f.Serial) == "" {
		errs = append(errs, errors.New("serial: is empty"))
	}
	if f.CPUCores <= 0 || f.CPUCores > 1<<16 {
		errs = append(errs, fmt.Errorf("cpu_cores: %d out of range 1..65536", f.CPUCores))
	}
	if f.MemGB <= 0 || f.MemGB > 1<<24 {
		errs = append(errs, fmt.Errorf("mem_gb: %d out of range", f.MemGB))
	}
	for _, fe := range validateHardware(strings.ToLower(f.UUID), f.Firmware, f.CPUModel, f.Disks, f.NICs) {
		errs = append(errs, fe)
	}
	disks := map[string]bool{}
	for i, d := range f.Disks {
		if disks[d.Name] {
			errs = append(errs, fmt.Errorf("disks[%d].name: disk %s listed twice", i, d.Name))
		}
		disks[d.Name] = true
	}
	seen := map[string]bool{}
	for i, n := range f.NICs {
		mac, err := NormalizeMAC(n.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("nics[%d].mac: %w", i, err))
		} else if seen[mac] {
			errs = append(errs, fmt.Errorf("nics[%d].mac: MAC %s listed twice", i, mac))
		}
		seen[mac] = true
	}
	return errors.Join(errs...)
}

// ParseFactsFile reads a JSON array of Facts, strictly (unknown fields are
// errors).
func ParseFactsFile(name string, r io.Reader) ([]Facts, error) {
	dec := json.NewDecoder(io.LimitReader(r, 32<<20))
	dec.DisallowUnknownFields()
	var out []Facts
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range out {
		if err := out[i].Validate(); err != nil {
			return nil, fmt.Errorf("%s: entry %d (serial %q): %w", name, i, out[i].Serial, err)
		}
	}
	return out, nil
}

// apply writes the facts into m and clears its drift: the record is now
// what was reported. A report with NICs replaces the record's NICs, each
// keeping the name and primary flag it had (a NIC the record named keeps
// its name); the first one is primary when the primary is gone. A report
// without NICs (a hand-written facts file may have none) leaves them.
func (f *Facts) apply(m *Machine) error {
	if m.Serial != "" && m.Serial != f.Serial {
		return fmt.Errorf("report is for serial %s, machine has %s: %w", f.Serial, m.Serial, ErrConflict)
	}
	m.Serial = f.Serial
	if f.Vendor != "" {
		m.Vendor = f.Vendor
	}
	if f.Model != "" {
		m.Model = f.Model
	}
	if f.UUID != "" {
		m.UUID = strings.ToLower(f.UUID)
	}
	if f.Firmware != "" {
		m.Firmware = f.Firmware
	}
	if f.CPUModel != "" {
		m.CPUModel = f.CPUModel
	}
	m.CPUCores, m.MemGB = f.CPUCores, f.MemGB
	if f.Disks != nil {
		m.Disks = append([]Disk{}, f.Disks...)
	}
	if len(f.NICs) > 0 {
		old := map[string]NIC{}
		for _, n := range m.NICs {
			old[n.MAC] = n
		}
		nics := make([]NIC, 0, len(f.NICs))
		primary := false
		for _, n := range f.NICs {
			mac, _ := NormalizeMAC(n.MAC)
			o, had := old[mac]
			next := NIC{MAC: mac, Name: o.Name, Primary: had && o.Primary, SpeedMbps: n.SpeedMbps, Driver: n.Driver}
			if next.Name == "" {
				next.Name = n.Name
			}
			primary = primary || next.Primary
			nics = append(nics, next)
		}
		if !primary {
			nics[0].Primary = true
		}
		m.NICs = nics
	}
	m.Drift = nil
	return nil
}

// FailCommission ends a commissioning that cannot complete (its BMC did not
// answer, or the agent never reported): commissioning →
// failed_commissioning, with failure as the history entry's why. A machine
// no longer commissioning is ErrConflict: a report that landed first wins.
func (s *Store) FailCommission(ctx context.Context, id string, failure error, change Change) (*Machine, error) {
	if failure == nil {
		return nil, fmt.Errorf("machine %s: FailCommission needs the failure", id)
	}
	return s.finish(ctx, id, StateCommissioning, StateReady, StateFailedCommissioning, "commission", "", failure, change)
}

// Commission records hardware facts for a machine and completes
// commissioning: new, failed_commissioning, broken or ready → commissioning →
// ready, each step in the machine's history. It is the path a hand-entered
// facts file takes; the agent takes the same transitions.
func (s *Store) Commission(ctx context.Context, id string, f Facts, change Change) (*Machine, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("machine %s: facts: %w", id, err)
	}
	if change.What == "" {
		change.What = "commission"
	}
	m, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Serial == "" {
		// A machine enlisted by PXE reports the serial of a machine the
		// inventory already has: it is that machine.
		holder, err := s.lookupIndex(ctx, s.key("index", "serial", url.PathEscape(f.Serial)))
		if err != nil {
			return nil, err
		}
		if holder != "" && holder != id {
			if m, err = s.absorb(ctx, id, holder, f.Serial, change); err != nil {
				return nil, fmt.Errorf("machine %s: %w", id, err)
			}
			id = m.ID
		}
	}
	if m.State != StateCommissioning {
		by := System
		if m.State == StateBroken || m.State == StateRetired {
			by = Operator
		}
		if _, err := s.SetState(ctx, id, StateCommissioning, by, change); err != nil {
			return nil, err
		}
	}
	return s.Update(ctx, id, System, change, func(m *Machine) error {
		if err := f.apply(m); err != nil {
			return err
		}
		m.State = StateReady
		return nil
	})
}
