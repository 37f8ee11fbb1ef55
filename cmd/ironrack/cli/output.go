package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
)

var machineColumns = []string{"id", "rack", "slot", "serial", "state", "tier", "owner", "cpu_cores", "mem_gb", "vendor", "model", "ip", "mac", "drift"}

func machineRow(m *inventory.Machine) []string {
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	drift := ""
	if len(m.Drift) > 0 {
		drift = strconv.Itoa(len(m.Drift))
	}
	return []string{m.ID, m.Rack, m.Slot, m.Serial, string(m.State), m.Tier, m.Owner, num(m.CPUCores), num(m.MemGB), m.Vendor, m.Model, m.IP, m.PrimaryMAC(), drift}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printMachines writes machines in the chosen format. JSON is always an
// array, [] when empty.
func (e *env) printMachines(ms []*inventory.Machine) error {
	switch e.format {
	case "json":
		if ms == nil {
			ms = []*inventory.Machine{}
		}
		return writeJSON(e.stdout, ms)
	case "csv":
		cw := csv.NewWriter(e.stdout)
		cw.Write(machineColumns)
		for _, m := range ms {
			cw.Write(machineRow(m))
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(machineColumns, "\t")))
	for _, m := range ms {
		fmt.Fprintln(tw, strings.Join(machineRow(m), "\t"))
	}
	return tw.Flush()
}

// printMachine writes one machine in detail; in a table, why (if not nil)
// is the history entry that moved it to its state.
func (e *env) printMachine(m *inventory.Machine, why *inventory.HistoryEntry) error {
	switch e.format {
	case "json":
		return writeJSON(e.stdout, m)
	case "csv":
		return e.printMachines([]*inventory.Machine{m})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	kv("id", m.ID)
	kv("serial", m.Serial)
	kv("uuid", m.UUID)
	kv("state", string(m.State))
	if why != nil {
		text := why.What
		if why.Why != "" {
			text += ": " + why.Why
		}
		kv("why", fmt.Sprintf("%s (%s, %s)", text, why.Who, why.At.Format("2006-01-02 15:04:05Z07:00")))
	}
	kv("rack/slot", strings.Trim(m.Rack+"/"+m.Slot, "/"))
	kv("vendor/model", strings.Trim(m.Vendor+" "+m.Model, " "))
	kv("firmware", m.Firmware)
	kv("cpu_model", m.CPUModel)
	kv("tier", m.Tier)
	kv("owner", m.Owner)
	kv("source", m.Source)
	kv("ip", m.IP)
	if m.CPUCores > 0 {
		kv("cpu_cores", strconv.Itoa(m.CPUCores))
	}
	if m.MemGB > 0 {
		kv("mem_gb", strconv.Itoa(m.MemGB))
	}
	if m.BMC.Address != "" {
		kv("bmc", fmt.Sprintf("%s %s port %d user %s (credential %s)", m.BMC.Protocol, m.BMC.Address, m.BMC.Port, m.BMC.Username, m.BMC.CredentialRef))
	}
	for _, n := range m.NICs {
		p := ""
		if n.Primary {
			p = " (primary)"
		}
		if n.SpeedMbps > 0 {
			p += fmt.Sprintf(" %d Mb/s", n.SpeedMbps)
		}
		if n.Driver != "" {
			p += " " + n.Driver
		}
		kv("nic", strings.TrimSpace(n.MAC+" "+n.Name)+p)
	}
	for _, d := range m.Disks {
		kind := ""
		if d.Rotational {
			kind = "rotational"
		}
		kv("disk", strings.Join(strings.Fields(fmt.Sprintf("%s %d bytes %s %s %s", d.Name, d.SizeBytes, kind, d.Model, d.Serial)), " "))
	}
	keys := make([]string, 0, len(m.Tags))
	for k := range m.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv("tag", k+"="+m.Tags[k])
	}
	for _, d := range m.Drift {
		rec, rep := d.Recorded, d.Reported
		if rec == "" {
			rec = "none"
		}
		if rep == "" {
			rep = "none"
		}
		kv("DRIFT", fmt.Sprintf("%s: recorded %s, reported %s (since %s)", d.Field, rec, rep, d.Since.UTC().Format("2006-01-02 15:04Z")))
	}
	for _, fp := range inventory.Fingerprints(m.HostKeys) {
		kv("host key", fp)
	}
	if len(m.HostCerts) > 0 {
		exp, err := hostkeys.CertExpiry(m.HostCerts)
		if err == nil && !exp.IsZero() {
			kv("host certs", fmt.Sprintf("%d, expiring %s", len(m.HostCerts), exp.Format("2006-01-02")))
		}
	}
	kv("created", m.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
	kv("updated", m.UpdatedAt.Format("2006-01-02 15:04:05Z07:00"))
	return tw.Flush()
}
