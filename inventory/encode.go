package inventory

import (
	"encoding/json"
	"time"
)

// The stored record leaves out empty fields: a machine's record is written
// on every change, and its copy in the ready pool too, so its size is most
// of what a claim costs Consul. The printed JSON (the contract in
// docs/machine.schema.json) is the Machine's own and keeps every field.
//
// recordJSON restates Machine's fields with omitempty (a conversion cannot
// derive it: NICs and Disks leave out their own empty fields too), and
// MarshalJSON and UnmarshalJSON copy them one by one. A field missing from
// either would be silently dropped from Consul: TestMachineFieldsCarried
// round-trips a machine with every field set and names any field lost.
type recordJSON struct {
	ID         string            `json:"id"`
	Serial     string            `json:"serial,omitempty"`
	UUID       string            `json:"uuid,omitempty"`
	Rack       string            `json:"rack,omitempty"`
	Slot       string            `json:"slot,omitempty"`
	UHeight    int               `json:"u_height,omitempty"`
	Face       string            `json:"face,omitempty"`
	Vendor     string            `json:"vendor,omitempty"`
	Model      string            `json:"model,omitempty"`
	Firmware   string            `json:"firmware,omitempty"`
	BMC        *BMC              `json:"bmc,omitempty"`
	NICs       []nicJSON         `json:"nics,omitempty"`
	IP         string            `json:"ip,omitempty"`
	CPUModel   string            `json:"cpu_model,omitempty"`
	CPUCores   int               `json:"cpu_cores,omitempty"`
	MemGB      int               `json:"mem_gb,omitempty"`
	Disks      []diskJSON        `json:"disks,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	State      State             `json:"state"`
	Tier       string            `json:"tier,omitempty"`
	Owner      string            `json:"owner,omitempty"`
	Source     string            `json:"source,omitempty"`
	Drift      []Drift           `json:"drift,omitempty"`
	HostKeys   []string          `json:"host_keys,omitempty"`
	HostCerts  []string          `json:"host_certs,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	HistorySeq int64             `json:"history_seq"`
}

// nicJSON and diskJSON are NIC and Disk with their empty fields left out;
// the field names are the same, so older records read back unchanged.
type nicJSON struct {
	MAC       string `json:"mac"`
	Name      string `json:"name,omitempty"`
	Primary   bool   `json:"primary,omitempty"`
	SpeedMbps int    `json:"speed_mbps,omitempty"`
	Driver    string `json:"driver,omitempty"`
}

type diskJSON struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes,omitempty"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	Rotational bool   `json:"rotational,omitempty"`
	WWN        string `json:"wwn,omitempty"`
}

func (r record) MarshalJSON() ([]byte, error) {
	m := &r.Machine
	j := recordJSON{ID: m.ID, Serial: m.Serial, UUID: m.UUID, Rack: m.Rack, Slot: m.Slot, UHeight: m.UHeight, Face: m.Face, Vendor: m.Vendor, Model: m.Model,
		Firmware: m.Firmware, IP: m.IP, CPUModel: m.CPUModel, CPUCores: m.CPUCores, MemGB: m.MemGB, Tags: m.Tags,
		State: m.State, Tier: m.Tier, Owner: m.Owner, Source: m.Source, Drift: m.Drift,
		HostKeys: m.HostKeys, HostCerts: m.HostCerts,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, HistorySeq: r.HistorySeq}
	for _, n := range m.NICs {
		j.NICs = append(j.NICs, nicJSON(n))
	}
	for _, d := range m.Disks {
		j.Disks = append(j.Disks, diskJSON(d))
	}
	if m.BMC != (BMC{}) {
		b := m.BMC
		j.BMC = &b
	}
	return json.Marshal(j)
}

func (r *record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	r.Machine = Machine{ID: j.ID, Serial: j.Serial, UUID: j.UUID, Rack: j.Rack, Slot: j.Slot, UHeight: j.UHeight, Face: j.Face, Vendor: j.Vendor, Model: j.Model,
		Firmware: j.Firmware, IP: j.IP, CPUModel: j.CPUModel, CPUCores: j.CPUCores, MemGB: j.MemGB, Tags: j.Tags,
		State: j.State, Tier: j.Tier, Owner: j.Owner, Source: j.Source, Drift: j.Drift,
		HostKeys: j.HostKeys, HostCerts: j.HostCerts,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	for _, n := range j.NICs {
		r.NICs = append(r.NICs, NIC(n))
	}
	for _, d := range j.Disks {
		r.Disks = append(r.Disks, Disk(d))
	}
	if j.BMC != nil {
		r.BMC = *j.BMC
	}
	r.HistorySeq = j.HistorySeq
	return nil
}
