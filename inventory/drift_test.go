package inventory

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func driftRecord() *Machine {
	return &Machine{ID: MachineID("D1"), Serial: "D1", UUID: "4c4c4544-0047-3510-8051-b4c04f4e3332",
		Firmware: "uefi", CPUModel: "AMD EPYC 7763 64-Core Processor", CPUCores: 64, MemGB: 256,
		Disks: []Disk{{Name: "sda", SizeBytes: 480e9, Serial: "S-A"}, {Name: "sdb", SizeBytes: 8e12, Serial: "S-B", Rotational: true}},
		NICs:  []NIC{{MAC: "52:54:00:00:00:01", Primary: true}, {MAC: "52:54:00:00:00:02"}}}
}

// driftReport is a report that matches driftRecord.
func driftReport() Facts {
	return Facts{Serial: "D1", UUID: "4C4C4544-0047-3510-8051-B4C04F4E3332", Firmware: "uefi",
		CPUModel: "AMD EPYC 7763 64-Core Processor", CPUCores: 64, MemGB: 256,
		Disks: []Disk{{Name: "sda", SizeBytes: 480e9, Serial: "S-A"}, {Name: "sdb", SizeBytes: 8e12, Serial: "S-B", Rotational: true}},
		NICs:  []NIC{{MAC: "52:54:00:00:00:01", Driver: "mlx5_core"}, {MAC: "52:54:00:00:00:02", SpeedMbps: 25000}}}
}

func TestDiffFacts(t *testing.T) {
	tests := map[string]struct {
		record func(m *Machine)
		report func(f *Facts)
		want   []Drift
	}{
		"matches (case of the UUID, NIC details, disk order do not count)": {
			report: func(f *Facts) { f.Disks[0], f.Disks[1] = f.Disks[1], f.Disks[0] },
		},
		"disk gone": {
			report: func(f *Facts) { f.Disks = f.Disks[:1] },
			want:   []Drift{{Field: "disks/sdb", Recorded: "sdb 8000000000000 bytes serial S-B"}},
		},
		"disk added": {
			report: func(f *Facts) {
				f.Disks = append(f.Disks, Disk{Name: "nvme0n1", SizeBytes: 1e12, Model: "SAMSUNG MZQL2"})
			},
			want: []Drift{{Field: "disks/nvme0n1", Reported: "nvme0n1 1000000000000 bytes SAMSUNG MZQL2"}},
		},
		"disk size changed": {
			report: func(f *Facts) { f.Disks[1].SizeBytes = 4e12 },
			want:   []Drift{{Field: "disks/sdb/size_bytes", Recorded: "8000000000000", Reported: "4000000000000"}},
		},
		"disk renamed by the kernel is the same disk": {
			report: func(f *Facts) { f.Disks[0].Name, f.Disks[1].Name = "sdb", "sda" },
		},
		"disk swapped in the same bay": {
			report: func(f *Facts) { f.Disks[1].Serial = "S-NEW" },
			want:   []Drift{{Field: "disks/sdb/serial", Recorded: "S-B", Reported: "S-NEW"}},
		},
		"no disks reported at all is not a report on disks": {
			report: func(f *Facts) { f.Disks = nil },
		},
		"nic removed": {
			report: func(f *Facts) { f.NICs = f.NICs[:1] },
			want:   []Drift{{Field: "nics/52:54:00:00:00:02", Recorded: "52:54:00:00:00:02"}},
		},
		"nic added": {
			report: func(f *Facts) { f.NICs = append(f.NICs, NIC{MAC: "52:54:00:00:00:03"}) },
			want:   []Drift{{Field: "nics/52:54:00:00:00:03", Reported: "52:54:00:00:00:03"}},
		},
		"nic swapped": {
			report: func(f *Facts) { f.NICs[1].MAC = "52:54:00:00:00:0F" },
			want:   []Drift{{Field: "nics/52:54:00:00:00:02", Recorded: "52:54:00:00:00:02", Reported: "52:54:00:00:00:0f"}},
		},
		"memory changed": {
			report: func(f *Facts) { f.MemGB = 192 },
			want:   []Drift{{Field: "mem_gb", Recorded: "256", Reported: "192"}},
		},
		"cpu changed": {
			report: func(f *Facts) { f.CPUCores, f.CPUModel = 32, "AMD EPYC 7543 32-Core Processor" },
			want: []Drift{{Field: "cpu_model", Recorded: "AMD EPYC 7763 64-Core Processor", Reported: "AMD EPYC 7543 32-Core Processor"},
				{Field: "cpu_cores", Recorded: "64", Reported: "32"}},
		},
		"board swapped: serial and uuid": {
			report: func(f *Facts) { f.Serial, f.UUID = "D2", "00112233-4455-6677-8899-aabbccddeeff" },
			want: []Drift{{Field: "serial", Recorded: "D1", Reported: "D2"},
				{Field: "uuid", Recorded: "4c4c4544-0047-3510-8051-b4c04f4e3332", Reported: "00112233-4455-6677-8899-aabbccddeeff"}},
		},
		"firmware switched": {
			report: func(f *Facts) { f.Firmware = "bios" },
			want:   []Drift{{Field: "firmware", Recorded: "uefi", Reported: "bios"}},
		},
		"facts the record lacks are not drift": {
			record: func(m *Machine) { m.UUID, m.CPUModel, m.Firmware = "", "", "" },
		},
		"many at once, in order": {
			report: func(f *Facts) {
				f.MemGB = 128
				f.Disks = f.Disks[1:]
				f.NICs = []NIC{{MAC: "52:54:00:00:00:01"}}
			},
			want: []Drift{{Field: "mem_gb", Recorded: "256", Reported: "128"},
				{Field: "disks/sda", Recorded: "sda 480000000000 bytes serial S-A"},
				{Field: "nics/52:54:00:00:00:02", Recorded: "52:54:00:00:00:02"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, f := driftRecord(), driftReport()
			if tc.record != nil {
				tc.record(m)
			}
			if tc.report != nil {
				tc.report(&f)
			}
			if diff := cmp.Diff(tc.want, DiffFacts(m, &f)); diff != "" {
				t.Errorf("DiffFacts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeDriftKeepsSince(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	old := []Drift{{Field: "mem_gb", Recorded: "256", Reported: "192", Since: t0}, {Field: "disks/sdb", Recorded: "x", Since: t0}}
	got := mergeDrift(old, []Drift{{Field: "mem_gb", Recorded: "256", Reported: "192"}, {Field: "disks/sdb", Recorded: "y"}}, t1)
	want := []Drift{{Field: "mem_gb", Recorded: "256", Reported: "192", Since: t0}, {Field: "disks/sdb", Recorded: "y", Since: t1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mergeDrift (-want +got):\n%s", diff)
	}
}

// TestRecordDrift (real Consul): a deployed machine's report that differs
// is flagged, one history entry "drift" per change, selectable with
// --where drift; the same report again keeps Since; a matching report
// clears it; re-commissioning applies the report and clears drift.
func TestRecordDrift(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, "rack,slot,serial,bmc_address,bmc_username,bmc_password,macs\nr1,1,D1,10.0.0.1,admin,pw,52:54:00:00:00:01;52:54:00:00:00:02\n")
	id := MachineID("D1")
	if _, err := s.Commission(ctx, id, driftReport(), Change{}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []State{StateAllocated, StateDeploying, StateDeployed} {
		if _, err := s.SetState(ctx, id, to, System, Change{}); err != nil {
			t.Fatal(err)
		}
	}
	where := func() []string {
		w, err := ParseWhere("drift")
		if err != nil {
			t.Fatal(err)
		}
		ms, err := s.List(ctx, Query{Where: w})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return ids
	}
	lastHistory := func() HistoryEntry {
		h, err := s.History(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return h[len(h)-1]
	}

	changed := driftReport()
	changed.MemGB = 192
	changed.Disks = changed.Disks[:1]
	m, err := s.RecordDrift(ctx, id, changed, Change{Who: "boot-server"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Drift) != 2 || m.Drift[0].Field != "mem_gb" || m.Drift[1].Field != "disks/sdb" || m.Drift[0].Since.IsZero() {
		t.Fatalf("drift %+v", m.Drift)
	}
	if m.MemGB != 256 || len(m.Disks) != 2 || m.State != StateDeployed {
		t.Errorf("drift changed the record's facts or state: %+v", m)
	}
	if h := lastHistory(); h.What != "drift" || !strings.Contains(h.Why, "mem_gb: recorded 256, reported 192") || !strings.Contains(h.Why, "disks/sdb: recorded sdb") {
		t.Errorf("history %+v", h)
	}
	if got := where(); !cmp.Equal(got, []string{id}) {
		t.Errorf("where drift = %v", got)
	}
	since := m.Drift[0].Since

	// The same report again: the drift and its Since stay; the history says so.
	m, err = s.RecordDrift(ctx, id, changed, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Drift) != 2 || !m.Drift[0].Since.Equal(since) {
		t.Errorf("repeated report: drift %+v, want Since %v kept", m.Drift, since)
	}
	if h := lastHistory(); h.What != "facts" || !strings.Contains(h.Why, "drift unchanged") {
		t.Errorf("history %+v", h)
	}
	got, err := s.Get(ctx, id)
	if err != nil || !cmp.Equal(got.Drift, m.Drift) {
		t.Errorf("stored drift %+v, %v", got.Drift, err)
	}

	// A matching report clears it.
	if m, err = s.RecordDrift(ctx, id, driftReport(), Change{}); err != nil || len(m.Drift) != 0 {
		t.Fatalf("matching report: drift %+v, %v", m.Drift, err)
	}
	if h := lastHistory(); h.What != "drift" || !strings.Contains(h.Why, "cleared") {
		t.Errorf("history %+v", h)
	}
	if got := where(); len(got) != 0 {
		t.Errorf("where drift after clear = %v", got)
	}

	// Re-commissioning applies the new facts and clears drift.
	if _, err := s.RecordDrift(ctx, id, changed, Change{}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []State{StateReleasing, StateReady} {
		if _, err := s.SetState(ctx, id, to, System, Change{}); err != nil {
			t.Fatal(err)
		}
	}
	m, err = s.Commission(ctx, id, changed, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Drift) != 0 || m.MemGB != 192 || len(m.Disks) != 1 || m.State != StateReady {
		t.Errorf("after re-commission: %+v", m)
	}

	// A bad report is refused whole, naming the field.
	bad := driftReport()
	bad.Firmware = "openfirmware"
	if _, err := s.RecordDrift(ctx, id, bad, Change{}); err == nil || !strings.Contains(err.Error(), "firmware") {
		t.Errorf("bad report: %v", err)
	}
}

func TestFactsValidate(t *testing.T) {
	tests := map[string]struct {
		change func(f *Facts)
		want   string
	}{
		"good":             {change: func(*Facts) {}},
		"uuid":             {change: func(f *Facts) { f.UUID = "not-a-uuid" }, want: `uuid: malformed UUID "not-a-uuid"`},
		"firmware":         {change: func(f *Facts) { f.Firmware = "efi" }, want: `firmware: unknown firmware "efi" (want bios or uefi)`},
		"cpu_model ctl":    {change: func(f *Facts) { f.CPUModel = "EPYC\x1b[2J" }, want: `cpu_model: "EPYC\x1b[2J" contains control characters`},
		"cpu_model long":   {change: func(f *Facts) { f.CPUModel = strings.Repeat("x", 257) }, want: `cpu_model: longer than 256 bytes`},
		"disk model utf8":  {change: func(f *Facts) { f.Disks[0].Model = "\xff" }, want: `disks[0].model: is not valid UTF-8`},
		"disk twice":       {change: func(f *Facts) { f.Disks[1].Name = "sda" }, want: `disks[1].name: disk sda listed twice`},
		"nic speed":        {change: func(f *Facts) { f.NICs[0].SpeedMbps = -1 }, want: `nics[0].speed_mbps: out of range: -1`},
		"nic twice":        {change: func(f *Facts) { f.NICs[1].MAC = "52:54:00:00:00:01" }, want: `nics[1].mac: MAC 52:54:00:00:00:01 listed twice`},
		"nic driver ctl":   {change: func(f *Facts) { f.NICs[1].Driver = "e1000e\n" }, want: `nics[1].driver: "e1000e\n" contains control characters`},
		"printable vendor": {change: func(f *Facts) { f.CPUModel = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz" }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := driftReport()
			tc.change(&f)
			err := f.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
