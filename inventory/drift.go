package inventory

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
)

// DiffFacts lists how a hardware report differs from a machine's record,
// one Drift per difference, in a stable order (Since is left zero). A fact
// the record does not have yet (no UUID, no CPU model: a machine
// commissioned before discovery reported them) is not a difference; only
// commissioning fills it in.
//
// Fields are named as in the machine's JSON:
//   - serial, uuid, firmware, cpu_model, cpu_cores, mem_gb: the value changed;
//   - disks/NAME: a disk gone (reported "") or added (recorded "");
//     disks/NAME/size_bytes, disks/NAME/serial: a disk that changed.
//     Disks are matched by serial first, so a disk the kernel names
//     differently on this boot is still the same disk; then by name.
//   - nics/MAC: a NIC gone (reported ""), added (recorded ""), or swapped
//     (recorded the old MAC, reported the new one): a gone and an added NIC
//     are paired as a swap, in MAC order.
func DiffFacts(m *Machine, f *Facts) []Drift {
	var out []Drift
	add := func(field, recorded, reported string) {
		out = append(out, Drift{Field: field, Recorded: recorded, Reported: reported})
	}
	str := func(field, recorded, reported string) {
		if recorded != "" && reported != "" && recorded != reported {
			add(field, recorded, reported)
		}
	}
	num := func(field string, recorded, reported int) {
		if recorded > 0 && reported > 0 && recorded != reported {
			add(field, strconv.Itoa(recorded), strconv.Itoa(reported))
		}
	}
	str("serial", m.Serial, strings.TrimSpace(f.Serial))
	str("uuid", m.UUID, strings.ToLower(f.UUID))
	str("firmware", m.Firmware, f.Firmware)
	str("cpu_model", m.CPUModel, f.CPUModel)
	num("cpu_cores", m.CPUCores, f.CPUCores)
	num("mem_gb", m.MemGB, f.MemGB)
	if f.Disks != nil {
		out = append(out, diffDisks(m.Disks, f.Disks)...)
	}
	if len(f.NICs) > 0 {
		out = append(out, diffNICs(m.NICs, f.NICs)...)
	}
	return out
}

func diskText(d Disk) string {
	s := fmt.Sprintf("%s %d bytes", d.Name, d.SizeBytes)
	if d.Model != "" {
		s += " " + d.Model
	}
	if d.Serial != "" {
		s += " serial " + d.Serial
	}
	return s
}

func diffDisks(recorded, reported []Disk) []Drift {
	var out []Drift
	rec := make([]wire.DiskKey, len(recorded))
	for i, r := range recorded {
		rec[i] = wire.DiskKey{Name: r.Name, WWN: r.WWN, Serial: r.Serial}
	}
	rep := make([]wire.DiskKey, len(reported))
	for j, p := range reported {
		rep[j] = wire.DiskKey{Name: p.Name, WWN: p.WWN, Serial: p.Serial}
	}
	// By WWN, then serial, then name (the kernel's names are not stable).
	match := wire.PairDisks(rec, rep)
	used := make([]bool, len(reported))
	for _, j := range match {
		if j >= 0 {
			used[j] = true
		}
	}
	for i, r := range recorded {
		if match[i] < 0 {
			out = append(out, Drift{Field: "disks/" + r.Name, Recorded: diskText(r)})
			continue
		}
		p := reported[match[i]]
		if r.SizeBytes != p.SizeBytes {
			out = append(out, Drift{Field: "disks/" + r.Name + "/size_bytes",
				Recorded: strconv.FormatInt(r.SizeBytes, 10), Reported: strconv.FormatInt(p.SizeBytes, 10)})
		}
		if r.Serial != "" && p.Serial != "" && r.Serial != p.Serial {
			out = append(out, Drift{Field: "disks/" + r.Name + "/serial", Recorded: r.Serial, Reported: p.Serial})
		}
	}
	for j, p := range reported {
		if !used[j] {
			out = append(out, Drift{Field: "disks/" + p.Name, Reported: diskText(p)})
		}
	}
	return out
}

func diffNICs(recorded, reported []NIC) []Drift {
	rec, rep := map[string]bool{}, map[string]bool{}
	for _, n := range recorded {
		rec[n.MAC] = true
	}
	for _, n := range reported {
		mac, err := NormalizeMAC(n.MAC)
		if err == nil {
			rep[mac] = true
		}
	}
	var gone, added []string
	for mac := range rec {
		if !rep[mac] {
			gone = append(gone, mac)
		}
	}
	for mac := range rep {
		if !rec[mac] {
			added = append(added, mac)
		}
	}
	sort.Strings(gone)
	sort.Strings(added)
	var out []Drift
	for len(gone) > 0 && len(added) > 0 {
		out = append(out, Drift{Field: "nics/" + gone[0], Recorded: gone[0], Reported: added[0]})
		gone, added = gone[1:], added[1:]
	}
	for _, mac := range gone {
		out = append(out, Drift{Field: "nics/" + mac, Recorded: mac})
	}
	for _, mac := range added {
		out = append(out, Drift{Field: "nics/" + mac, Reported: mac})
	}
	return out
}

// mergeDrift is the drift list after a report that found diffs: an entry
// already recorded with the same field and values keeps its Since; the
// others start now.
func mergeDrift(old, diffs []Drift, now time.Time) []Drift {
	out := make([]Drift, 0, len(diffs))
	for _, d := range diffs {
		d.Since = now
		for _, o := range old {
			if o.Field == d.Field && o.Recorded == d.Recorded && o.Reported == d.Reported {
				d.Since = o.Since
			}
		}
		out = append(out, d)
	}
	return out
}

// driftSummary is the history's account of a drift list.
func driftSummary(ds []Drift) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		rec, rep := d.Recorded, d.Reported
		if rec == "" {
			rec = "none"
		}
		if rep == "" {
			rep = "none"
		}
		parts[i] = fmt.Sprintf("%s: recorded %s, reported %s", d.Field, rec, rep)
	}
	return strings.Join(parts, "; ")
}

// RecordDrift compares a hardware report with the record of a commissioned
// machine and writes the outcome in one transaction: Machine.Drift becomes
// the differences (DiffFacts; an unchanged difference keeps its Since),
// or empty when the report matches. The history gets one entry: "drift"
// when the drift list changed (set, changed or cleared), "facts" when it
// did not. The record's facts are not changed; re-commissioning applies a
// report.
func (s *Store) RecordDrift(ctx context.Context, id string, f Facts, change Change) (*Machine, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("machine %s: facts: %w", id, err)
	}
	f.NICs = append([]NIC(nil), f.NICs...)
	for i := range f.NICs {
		f.NICs[i].MAC, _ = NormalizeMAC(f.NICs[i].MAC)
	}
	base := change.Why
	return s.updateChange(ctx, id, System, func(m *Machine, c *Change) error {
		diffs := DiffFacts(m, &f)
		next := mergeDrift(m.Drift, diffs, s.cfg.Now().UTC())
		*c = change
		switch {
		case len(next) == 0 && len(m.Drift) == 0:
			c.What = "facts"
			c.Why = joinWhy(base, "report matches the record")
		case len(next) == 0:
			c.What = "drift"
			c.Why = joinWhy(base, "report matches the record again; drift cleared")
		case sameDrift(m.Drift, next):
			c.What = "facts"
			c.Why = joinWhy(base, "drift unchanged: "+driftSummary(next))
		default:
			c.What = "drift"
			c.Why = joinWhy(base, driftSummary(next))
		}
		m.Drift = next
		return nil
	})
}

func joinWhy(a, b string) string {
	if a == "" {
		return b
	}
	return a + ": " + b
}

func sameDrift(a, b []Drift) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Field != b[i].Field || a[i].Recorded != b[i].Recorded || a[i].Reported != b[i].Reported {
			return false
		}
	}
	return true
}
