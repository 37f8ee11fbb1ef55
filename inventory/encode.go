package inventory

import (
	"encoding/json"
	"time"
)

// The stored record leaves out empty fields: a machine's record is written
// on every change, and its copy in the ready pool too, so its size is most
// of what a claim costs Consul. The printed JSON (the contract in
// docs/machine.schema.json) is the Machine's own and keeps every field.
type recordJSON struct {
	ID         string            `json:"id"`
	Serial     string            `json:"serial,omitempty"`
	Rack       string            `json:"rack,omitempty"`
	Slot       string            `json:"slot,omitempty"`
	Vendor     string            `json:"vendor,omitempty"`
	Model      string            `json:"model,omitempty"`
	BMC        *BMC              `json:"bmc,omitempty"`
	NICs       []NIC             `json:"nics,omitempty"`
	IP         string            `json:"ip,omitempty"`
	CPUCores   int               `json:"cpu_cores,omitempty"`
	MemGB      int               `json:"mem_gb,omitempty"`
	Disks      []Disk            `json:"disks,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	State      State             `json:"state"`
	Tier       string            `json:"tier,omitempty"`
	Owner      string            `json:"owner,omitempty"`
	Source     string            `json:"source,omitempty"`
	Drift      []Drift           `json:"drift,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	HistorySeq int64             `json:"history_seq"`
}

func (r record) MarshalJSON() ([]byte, error) {
	m := &r.Machine
	j := recordJSON{ID: m.ID, Serial: m.Serial, Rack: m.Rack, Slot: m.Slot, Vendor: m.Vendor, Model: m.Model,
		NICs: m.NICs, IP: m.IP, CPUCores: m.CPUCores, MemGB: m.MemGB, Disks: m.Disks, Tags: m.Tags,
		State: m.State, Tier: m.Tier, Owner: m.Owner, Source: m.Source, Drift: m.Drift,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, HistorySeq: r.HistorySeq}
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
	r.Machine = Machine{ID: j.ID, Serial: j.Serial, Rack: j.Rack, Slot: j.Slot, Vendor: j.Vendor, Model: j.Model,
		NICs: j.NICs, IP: j.IP, CPUCores: j.CPUCores, MemGB: j.MemGB, Disks: j.Disks, Tags: j.Tags,
		State: j.State, Tier: j.Tier, Owner: j.Owner, Source: j.Source, Drift: j.Drift,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	if j.BMC != nil {
		r.BMC = *j.BMC
	}
	r.HistorySeq = j.HistorySeq
	return nil
}
