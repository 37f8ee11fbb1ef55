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
	Vendor   string `json:"vendor,omitempty"`
	Model    string `json:"model,omitempty"`
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
	for i, d := range f.Disks {
		if d.Name == "" || d.SizeBytes < 0 {
			errs = append(errs, fmt.Errorf("disks[%d]: needs a name and a size", i))
		}
	}
	for i, n := range f.NICs {
		if _, err := NormalizeMAC(n.MAC); err != nil {
			errs = append(errs, fmt.Errorf("nics[%d].mac: %w", i, err))
		}
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

// apply writes the facts into m. NICs are merged by MAC.
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
	m.CPUCores, m.MemGB = f.CPUCores, f.MemGB
	if f.Disks != nil {
		m.Disks = append([]Disk{}, f.Disks...)
	}
	for _, n := range f.NICs {
		mac, _ := NormalizeMAC(n.MAC)
		found := false
		for i := range m.NICs {
			if m.NICs[i].MAC == mac {
				found = true
				if n.Name != "" {
					m.NICs[i].Name = n.Name
				}
			}
		}
		if !found {
			m.NICs = append(m.NICs, NIC{MAC: mac, Name: n.Name, Primary: len(m.NICs) == 0})
		}
	}
	return nil
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
