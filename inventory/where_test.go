package inventory

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// whereMachines: a has everything, b lacks tier, memory and tags, c drifted.
func whereMachines() map[string]*Machine {
	a := &Machine{ID: "m-00000000000a", Serial: "A", Rack: "r1", Slot: "1", State: StateReady, Tier: "query",
		CPUCores: 32, MemGB: 256, Vendor: "Dell", Tags: map[string]string{"role": "db", "zone": "a"},
		NICs: []NIC{{MAC: "52:54:00:00:00:0a", Primary: true, SpeedMbps: 25000, Driver: "mlx5_core"}}, BMC: BMC{Address: "10.0.0.1", Port: 623, Protocol: "ipmi"},
		CPUModel: "AMD EPYC 7763 64-Core Processor", Firmware: "uefi", UUID: "4c4c4544-0047-3510-8051-b4c04f4e3332",
		Disks: []Disk{{Name: "nvme0n1", SizeBytes: 1 << 40, Model: "SAMSUNG MZQL2"}}}
	b := &Machine{ID: "m-00000000000b", Serial: "B", Rack: "r2", Slot: "1", State: StateNew, CPUCores: 8}
	c := &Machine{ID: "m-00000000000c", Serial: "C", Rack: "r2", Slot: "2", State: StateDeployed, Tier: "storage",
		CPUCores: 64, MemGB: 128, Tags: map[string]string{"role": "web"}, Drift: []Drift{{Field: "disks"}},
		CPUModel: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", Firmware: "bios",
		Disks: []Disk{{Name: "sda", SizeBytes: 8e12, Rotational: true}, {Name: "sdb", SizeBytes: 480e9}}}
	for _, m := range []*Machine{a, b, c} {
		m.normalize()
	}
	return map[string]*Machine{"a": a, "b": b, "c": c}
}

var whereCases = map[string]struct {
	expr string
	want string // selected machines, sorted letters
}{
	"empty":                   {``, "abc"},
	"eq string":               {`rack == "r2"`, "bc"},
	"ne string skips missing": {`tier != "query"`, "c"},
	"lt":                      {`cpu_cores < 32`, "b"},
	"le":                      {`cpu_cores <= 32`, "ab"},
	"gt":                      {`mem_gb > 128`, "a"},
	"ge missing is unknown":   {`mem_gb >= 128`, "ac"},
	"not of unknown":          {`not (mem_gb >= 200)`, "c"},
	"and":                     {`rack == "r2" and cpu_cores > 10`, "c"},
	"or":                      {`tier == "query" or cpu_cores == 8`, "ab"},
	"or with unknown":         {`mem_gb > 1000 or rack == "r2"`, "bc"},
	"in list":                 {`state in ["new", "deployed"]`, "bc"},
	"not in list":             {`state not in ["new"]`, "ac"},
	"in list missing":         {`tier in ["query", "storage"]`, "ac"},
	"tag eq":                  {`tags.role == "db"`, "a"},
	"tag ne skips untagged":   {`tags.role != "db"`, "c"},
	"tag present":             {`tags.zone != nil`, "a"},
	"tag absent":              {`tags.role == nil`, "b"},
	"key in tags":             {`"zone" in tags`, "a"},
	"missing eq nil":          {`tier == nil`, "b"},
	"drift":                   {`drift`, "c"},
	"not drift":               {`not drift`, "ab"},
	"matches":                 {`serial matches "^[AB]$"`, "ab"},
	"startsWith":              {`vendor startsWith "De"`, "a"},
	"contains":                {`rack contains "2"`, "bc"},
	"nested bmc":              {`bmc.protocol == "ipmi"`, "a"},
	"len nics":                {`len(nics) == 1`, "a"},
	"arith":                   {`mem_gb / cpu_cores >= 4`, "a"},
	"cpu_model matches":       {`cpu_model matches "EPYC"`, "a"},
	"cpu_model missing":       {`not (cpu_model contains "Xeon")`, "a"},
	"firmware":                {`firmware == "uefi"`, "a"},
	"firmware missing":        {`firmware != "uefi"`, "c"},
	"uuid":                    {`uuid startsWith "4c4c4544"`, "a"},
	"any disk rotational":     {`any(disks, .rotational)`, "c"},
	"all disks solid":         {`len(disks) > 0 and none(disks, .rotational)`, "a"},
	"disk model":              {`any(disks, .model matches "SAMSUNG")`, "a"},
	"nic speed":               {`any(nics, .speed_mbps >= 25000)`, "a"},
	"nic driver":              {`any(nics, .driver == "mlx5_core")`, "a"},
	"disks.rotational":        {`disks.rotational`, "c"},
	"not disks.rotational":    {`not disks.rotational`, "ab"},
	"in nics.driver":          {`"mlx5_core" in nics.driver`, "a"},
	"projection of numbers":   {`any(disks.size_bytes, # > 2000000000000)`, "c"},
	"disks[\"rotational\"]":   {`disks["rotational"] and rack == "r2"`, "c"},
	"double negation":         {`not not (rack == "r1")`, "a"},
	"&& || !":                 {`!(rack == "r1") && (cpu_cores > 10 || tier == "x")`, "c"},
}

func TestWhereMatch(t *testing.T) {
	ms := whereMachines()
	for name, tc := range whereCases {
		t.Run(name, func(t *testing.T) {
			w, err := ParseWhere(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for k, m := range ms {
				ok, err := w.Match(m)
				if err != nil {
					t.Fatalf("%s on %s: %v", tc.expr, k, err)
				}
				if ok {
					got = append(got, k)
				}
			}
			sort.Strings(got)
			if diff := cmp.Diff(tc.want, strings.Join(got, "")); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.expr, diff)
			}
		})
	}
}

func TestWhereErrors(t *testing.T) {
	for name, src := range map[string]string{
		"unknown field": `memgb > 1`,
		"syntax":        `rack ==`,
		"bad regex":     `serial matches "("`,
		"no such field": `disks.rotation`,
		"not booleans":  `nics.driver`,
	} {
		t.Run(name, func(t *testing.T) {
			w, err := ParseWhere(src)
			if err == nil {
				_, err = w.Match(whereMachines()["a"])
			}
			if err == nil {
				t.Fatalf("%s: no error", src)
			}
			if !strings.Contains(err.Error(), "where-expression") && !strings.Contains(err.Error(), "unknown field") {
				t.Errorf("error does not say where: %v", err)
			}
		})
	}
	if _, err := ParseWhere(`disks.rotation`); err == nil || !strings.Contains(err.Error(), `disks has no field "rotation" (fields: name, size_bytes, model, serial, rotational)`) {
		t.Errorf("disks.rotation: %v", err)
	}
	// A type mismatch on a present field is an error, not a silent miss.
	w, _ := ParseWhere(`rack > 5`)
	if _, err := w.Match(whereMachines()["a"]); err == nil {
		t.Error(`rack > 5 on a machine with a rack: no error`)
	}
}

func TestWherePushdown(t *testing.T) {
	for src, want := range map[string]map[string]string{
		`rack == "r1" and mem_gb >= 128`:                      {"rack": "r1"},
		`"ready" == state and (tier == "q" or x)`:             nil, // x is unknown: compile error, skipped below
		`rack == "r1" or rack == "r2"`:                        {},
		`state == "ready" and rack == "r1" and tags.a == "b"`: {"state": "ready", "rack": "r1"},
		`not (rack == "r1")`:                                  {},
		`mem_gb == "128"`:                                     {},
	} {
		w, err := ParseWhere(src)
		if err != nil {
			if want != nil {
				t.Errorf("%s: %v", src, err)
			}
			continue
		}
		if diff := cmp.Diff(want, w.pushdown); diff != "" {
			t.Errorf("%s pushdown (-want +got):\n%s", src, diff)
		}
	}
}

// TestListMatchesBruteForce checks List (with its Consul push-down and
// meta-only pre-filter) against evaluating every case on every record.
func TestListMatchesBruteForce(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	fa := map[string]Facts{
		"S1": {Serial: "S1", CPUCores: 32, MemGB: 256},
		"S3": {Serial: "S3", CPUCores: 64, MemGB: 128},
	}
	for serial, f := range fa {
		if _, err := s.Commission(ctx, MachineID(serial), f, Change{}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List(ctx, Query{})
	if err != nil || len(all) != 3 {
		t.Fatalf("list all = %d, %v", len(all), err)
	}
	exprs := []string{`rack == "r1"`, `mem_gb >= 200`, `not (mem_gb >= 200)`, `tags.role == "web"`,
		`state == "ready" and cpu_cores > 40`, `serial in ["S1", "S2"]`, `tier == nil`, `vendor != "Dell"`,
		`rack == "r1" and rack == "r2"`, `model == "R650" and mem_gb < 300`}
	for _, src := range exprs {
		w, err := ParseWhere(src)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range all {
			if ok, _ := w.Match(m); ok {
				want = append(want, m.ID)
			}
		}
		got, err := s.List(ctx, Query{Where: w})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var gotIDs []string
		for _, m := range got {
			gotIDs = append(gotIDs, m.ID)
		}
		if diff := cmp.Diff(want, gotIDs); diff != "" {
			t.Errorf("%s (-brute +list):\n%s", src, diff)
		}
	}
	got, _ := s.List(ctx, Query{State: StateReady, Rack: "r2"})
	if len(got) != 1 || got[0].Serial != "S3" {
		t.Errorf("--state ready --rack r2 = %v", got)
	}
}

// TestMatchEnvAndPrefilter: MatchEnv on a machine's NewEnv agrees with
// Match, and Prefilter never drops a machine Match selects.
func TestMatchEnvAndPrefilter(t *testing.T) {
	ms := []*Machine{
		{ID: MachineID("a"), Serial: "a", Rack: "r1", Slot: "1", State: StateReady, Vendor: "Dell", MemGB: 128,
			Tags: map[string]string{"class": "storage"}, BMC: BMC{Address: "127.0.0.1", Port: 623}},
		{ID: MachineID("b"), Serial: "b", Rack: "r2", Slot: "2", State: StateNew, Tier: "query"},
	}
	for _, m := range ms {
		m.normalize()
	}
	for _, src := range []string{`rack == "r1"`, `rack == "r1" and mem_gb >= 64`, `tags.class == "storage" and bmc.port == 623`,
		`tier != "query"`, `upper(tier) == "QUERY"`, `not (mem_gb >= 100)`, `rack == "r1" and rack == "r2"`, `len(disks) == 0`} {
		w, err := ParseWhere(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			want, err1 := w.Match(m)
			got, err2 := w.MatchEnv(NewEnv(m))
			if want != got || (err1 == nil) != (err2 == nil) {
				t.Errorf("%s on %s: Match %v %v, MatchEnv %v %v", src, m.Serial, want, err1, got, err2)
			}
			if want && !w.Prefilter(m) {
				t.Errorf("%s on %s: Prefilter drops a machine Match selects", src, m.Serial)
			}
		}
	}
}
