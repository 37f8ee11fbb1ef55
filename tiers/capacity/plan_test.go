package capacity

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func mustModel(t *testing.T, js string) *Model {
	t.Helper()
	m, err := ParseModel("test.json", strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testModel: "big" serves everything, "small" only ingestion; R = 2.
const testModel = `{
  "replication_factor": 2,
  "classes": [
    {"name": "big", "where": "cpu_cores >= 32", "ingestion_events_per_sec": 1000, "storage_bytes": 1e12, "query_qps": 100},
    {"name": "small", "where": "cpu_cores < 32", "ingestion_events_per_sec": 400, "storage_bytes": 0, "query_qps": 0}
  ]
}`

// machines makes n candidates named prefix-rack-i over racks.
func machines(prefix string, racks []string, perRack int) []Candidate {
	var out []Candidate
	for _, r := range racks {
		for i := range perRack {
			out = append(out, Candidate{ID: fmt.Sprintf("%s-%s-%02d", prefix, r, i), Rack: r})
		}
	}
	return out
}

// in100 is 1000 events/s of 100 bytes for 10 days with 20 queries/s:
// storage 1000·100·86400·10·2 = 1.728e11 bytes (before headroom).
var in100 = Input{EventsPerSec: 1000, RetentionDays: 10, BytesPerEvent: 100, QueriesPerSec: 20}

type step struct {
	class       string
	current     int
	target      int
	add, remove int
	racks       []RackCount
}

func TestPlan(t *testing.T) {
	m := mustModel(t, testModel)
	pool := Pool{"big": machines("b", []string{"r1", "r2", "r3"}, 4), "small": machines("s", []string{"r1", "r2"}, 3)}
	for name, tc := range map[string]struct {
		in      Input
		current map[string]Current
		pool    Pool
		want    map[string]step
		wantErr []string
	}{
		"fresh, no headroom: minimum sizes": {
			in:   in100,
			pool: pool,
			want: map[string]step{
				Ingestion: {"big", 0, 1, 1, 0, []RackCount{{"r1", 1}}},
				Storage:   {"big", 0, 2, 2, 0, []RackCount{{"r2", 1}, {"r3", 1}}},
				Query:     {"big", 0, 1, 1, 0, []RackCount{{"r1", 1}}},
			},
		},
		"headroom scales every tier": {
			// ingestion 5000·1.5/1000 = 7.5 → 8; storage 5000·100·86400·10·2·1.5 = 1.296e12 → 2;
			// query 120·1.5/100 = 1.8 → 2.
			in:   Input{EventsPerSec: 5000, RetentionDays: 10, BytesPerEvent: 100, QueriesPerSec: 120, Headroom: 0.5},
			pool: pool,
			want: map[string]step{
				Ingestion: {"big", 0, 8, 8, 0, []RackCount{{"r1", 3}, {"r2", 3}, {"r3", 2}}},
				Storage:   {"big", 0, 2, 2, 0, []RackCount{{"r1", 1}, {"r3", 1}}},
				Query:     {"big", 0, 2, 2, 0, []RackCount{{"r2", 1}, {"r3", 1}}},
			},
		},
		"a short preferred class falls back, the rest is short": {
			in:      Input{EventsPerSec: 2400, RetentionDays: 1, BytesPerEvent: 1, QueriesPerSec: 1},
			current: map[string]Current{},
			pool:    Pool{"big": machines("b", []string{"r1", "r2"}, 1), "small": machines("s", []string{"r1", "r2"}, 3)},
			// ingestion: big needs 3, 2 ready → small: 6 needed, 6 ready. storage 2 big, query → short 1.
			wantErr: []string{"class big (cpu_cores >= 32): storage + query need 3 more machines, 2 ready: 1 short"},
		},
		"fallback succeeds": {
			// ingestion: 5 big (4 ready) or 12 small (12 ready).
			in:   Input{EventsPerSec: 4500, RetentionDays: 1, BytesPerEvent: 1, QueriesPerSec: 1},
			pool: Pool{"big": machines("b", []string{"r1", "r2"}, 2), "small": machines("s", []string{"r1", "r2"}, 6)},
			want: map[string]step{
				Ingestion: {"small", 0, 12, 12, 0, []RackCount{{"r1", 6}, {"r2", 6}}},
				Storage:   {"big", 0, 2, 2, 0, []RackCount{{"r1", 1}, {"r2", 1}}},
				Query:     {"big", 0, 1, 1, 0, []RackCount{{"r1", 1}}},
			},
		},
		"step up and down from the current sizes; a pinned class stays": {
			// ingestion 3000 ev/s on small (pinned) → 8 (have 2: +6); storage 1 day of 1 B → 2 (have 5: −3).
			in: Input{EventsPerSec: 3000, RetentionDays: 1, BytesPerEvent: 1, QueriesPerSec: 100},
			current: map[string]Current{
				Ingestion: {Size: 2, Selector: " cpu_cores < 32"},
				Storage:   {Size: 5, Selector: "cpu_cores >= 32"},
				Query:     {Size: 2, Selector: "something else"},
			},
			pool: Pool{"big": machines("b", []string{"r1", "r2"}, 2), "small": machines("s", []string{"r1", "r2", "r3"}, 2)},
			want: map[string]step{
				Ingestion: {"small", 2, 8, 6, 0, []RackCount{{"r1", 2}, {"r2", 2}, {"r3", 2}}},
				Storage:   {"big", 5, 2, 0, 3, []RackCount{}},
				Query:     {"big", 2, 1, 0, 1, []RackCount{}},
			},
		},
		"pinned class short is refused, not moved": {
			in:      Input{EventsPerSec: 4000, RetentionDays: 1, BytesPerEvent: 1},
			current: map[string]Current{Ingestion: {Size: 1, Selector: "cpu_cores < 32"}},
			pool:    pool,
			wantErr: []string{"class small (cpu_cores < 32): ingestion needs 9 more machines, 6 ready: 3 short"},
		},
		"storage needs R racks": {
			in:      in100,
			pool:    Pool{"big": machines("b", []string{"r1"}, 5), "small": nil},
			wantErr: []string{"class big (cpu_cores >= 32): storage needs its 2 replicas on 2 racks, ready machines span 1 (r1): 1 rack(s) short"},
		},
		"empty pool names every short class": {
			in:   Input{EventsPerSec: 100000, RetentionDays: 1, BytesPerEvent: 1, QueriesPerSec: 1},
			pool: Pool{},
			// A tier no class can meet is charged to its preferred class.
			wantErr: []string{"ready pool cannot meet it", "class big (cpu_cores >= 32): ingestion + storage + query need 103 more machines, 0 ready: 103 short"},
		},
		"bad input names the field": {
			in:      Input{EventsPerSec: 1, RetentionDays: 0, BytesPerEvent: 1},
			wantErr: []string{"retention_days 0: want a number > 0"},
		},
		"a unit slip is refused": {
			in:      Input{EventsPerSec: 1e12, RetentionDays: 1, BytesPerEvent: 1},
			wantErr: []string{"tier ingestion on class big needs 1000000000 machines", "check the inputs"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := m.Plan(tc.in, tc.current, tc.pool)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("plan accepted: %+v", p)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]step{}
			seen := map[string]bool{}
			for _, tp := range p.Tiers {
				got[tp.Tier] = step{tp.Class, tp.Current, tp.Target, tp.Add, tp.Remove, tp.Racks}
				if len(tp.Machines) != tp.Add {
					t.Errorf("%s: %d machines for %d to add", tp.Tier, len(tp.Machines), tp.Add)
				}
				for _, id := range tp.Machines {
					if seen[id] {
						t.Errorf("machine %s planned twice", id)
					}
					seen[id] = true
				}
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(step{}), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
		})
	}
}

func TestPlanShortfallCarriesThePlan(t *testing.T) {
	m := mustModel(t, testModel)
	_, err := m.Plan(Input{EventsPerSec: 100000, RetentionDays: 1, BytesPerEvent: 1}, nil, Pool{})
	var sf *ShortfallError
	if !errors.As(err, &sf) || !errors.Is(err, ErrShortfall) {
		t.Fatalf("err = %v, want a *ShortfallError", err)
	}
	if len(sf.Plan.Tiers) != 3 || sf.Plan.Tiers[0].Target != 100 {
		t.Errorf("refused plan: %+v", sf.Plan.Tiers)
	}
	if len(sf.Short) != 1 || sf.Short[0].Class != "big" || sf.Short[0].Short != 103 {
		t.Errorf("short: %+v", sf.Short)
	}
}

func TestPlanDeterministic(t *testing.T) {
	m := mustModel(t, testModel)
	pool := Pool{"big": machines("b", []string{"r1", "r2", "r3"}, 9), "small": machines("s", []string{"r1"}, 9)}
	in := Input{EventsPerSec: 7000, RetentionDays: 30, BytesPerEvent: 200, QueriesPerSec: 350, Headroom: 0.3}
	a, err := m.Plan(in, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Plan(in, nil, pool)
	if d := cmp.Diff(a, b); d != "" {
		t.Errorf("two plans differ:\n%s", d)
	}
}

func TestParseModelErrors(t *testing.T) {
	for name, tc := range map[string]struct{ js, want string }{
		"unknown key":     {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "query_qpss": 1}]}`, `unknown field "query_qpss"`},
		"bad where":       {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpus > 1", "query_qps": 1}]}`, `classes[0] (a): where: where-expression "cpus > 1": unknown field "cpus"`},
		"bad root disk":   {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "root_disk": "cpu_cores > 1", "query_qps": 1}]}`, `classes[0] (a): root_disk: root disk hint: where-expression "cpu_cores > 1": unknown field "cpu_cores"`},
		"bad root layout": {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "root_disk": "not rotational", "root_layout": "raid5", "query_qps": 1}]}`, `classes[0] (a): root_layout: root layout "raid5": want flat or mirror`},
		"mirror no hint":  {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "root_layout": "mirror", "query_qps": 1}]}`, `classes[0] (a): root_layout: root layout mirror needs a root disk hint that matches two disks`},
		"empty where":     {`{"replication_factor": 1, "classes": [{"name": "a", "where": "", "query_qps": 1}]}`, "where: empty"},
		"duplicate":       {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "ingestion_events_per_sec": 1, "storage_bytes": 1, "query_qps": 1}, {"name": "a", "where": "cpu_cores > 2", "query_qps": 1}]}`, "classes[1] (a): name used twice"},
		"tier unserved":   {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "query_qps": 1}]}`, "no class serves the ingestion tier"},
		"replication":     {`{"replication_factor": 0, "classes": []}`, "replication_factor 0"},
		"negative":        {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "query_qps": -1}]}`, "query_qps -1"},
		"not json":        {`{"replication_factor": 1,`, "model test.json:"},
		"trailing":        {`{"replication_factor": 1, "classes": [{"name": "a", "where": "cpu_cores > 1", "ingestion_events_per_sec": 1, "storage_bytes": 1, "query_qps": 1}]} {}`, "trailing data"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseModel("test.json", strings.NewReader(tc.js))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDefaultModel(t *testing.T) {
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	if m.ReplicationFactor != 3 || len(m.Classes) != 3 {
		t.Errorf("default model: R=%d, %d classes", m.ReplicationFactor, len(m.Classes))
	}
}

func TestInputValidate(t *testing.T) {
	ok := Input{EventsPerSec: 1, RetentionDays: 1, BytesPerEvent: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, in := range map[string]Input{
		"events_per_sec":  {EventsPerSec: -1, RetentionDays: 1, BytesPerEvent: 1},
		"bytes_per_event": {EventsPerSec: 1, RetentionDays: 1},
		"queries_per_sec": {EventsPerSec: 1, RetentionDays: 1, BytesPerEvent: 1, QueriesPerSec: -2},
		"headroom":        {EventsPerSec: 1, RetentionDays: 1, BytesPerEvent: 1, Headroom: 11},
	} {
		var ie *InputError
		if err := in.Validate(); !errors.As(err, &ie) || ie.Field != field {
			t.Errorf("%s: err = %v", field, err)
		}
	}
}

// TestPlanLeavesNarrowClassItsMachines is the operator's day's lab: the two
// machines with a second disk are the only storage ones, and compute takes
// them too. Ingestion and query (compute) must take the compute-only
// machines, not storage's, or storage falls a machine short.
func TestPlanLeavesNarrowClassItsMachines(t *testing.T) {
	m, _, err := NamedModel("lab")
	if err != nil {
		t.Fatal(err)
	}
	// IDs sort the storage machines first within their racks, so a plain
	// first-by-ID pick would hand them to ingestion.
	store1, store2 := Candidate{ID: "m-0a", Rack: "r1"}, Candidate{ID: "m-0b", Rack: "r2"}
	comp := []Candidate{store1, {ID: "m-1c", Rack: "r1"}, store2, {ID: "m-1d", Rack: "r2"}, {ID: "m-1e", Rack: "r2"}}
	any := append(append([]Candidate{}, comp...), Candidate{ID: "m-2f", Rack: "r1"})
	pool := Pool{"lab-storage": {store1, store2}, "lab-compute": comp, "lab-any": any}
	in := Input{EventsPerSec: 100, RetentionDays: 1, BytesPerEvent: 50, QueriesPerSec: 5, Headroom: 0.3}
	p, err := m.Plan(in, nil, pool)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	got := map[string][]string{}
	for _, tp := range p.Tiers {
		got[tp.Tier] = tp.Machines
	}
	if diff := cmp.Diff([]string{"m-0a", "m-0b"}, sorted(got[Storage])); diff != "" {
		t.Errorf("storage machines (-want +got):\n%s", diff)
	}
	for _, tier := range []string{Ingestion, Query} {
		for _, id := range got[tier] {
			if id == "m-0a" || id == "m-0b" {
				t.Errorf("%s took storage's machine %s", tier, id)
			}
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestPlanCarriesRootDisk: a class's root_disk and root_layout go with
// every tier the plan puts on the class (scale plan writes them as
// <tier>RootDisk and <tier>RootLayout).
func TestPlanCarriesRootDisk(t *testing.T) {
	m := mustModel(t, strings.Replace(testModel, `"name": "big",`, `"name": "big", "root_disk": "not rotational", "root_layout": "mirror",`, 1))
	pool := Pool{"big": machines("b", []string{"r1", "r2", "r3"}, 9), "small": machines("s", []string{"r1"}, 9)}
	p, err := m.Plan(Input{EventsPerSec: 7000, RetentionDays: 30, BytesPerEvent: 200, QueriesPerSec: 350, Headroom: 0.3}, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range p.Tiers {
		want := ""
		if tp.Class == "big" {
			want = "not rotational"
		}
		if tp.RootDisk != want {
			t.Errorf("tier %s on class %s: root disk %q, want %q", tp.Tier, tp.Class, tp.RootDisk, want)
		}
		if want := map[bool]string{true: "mirror"}[tp.Class == "big"]; tp.RootLayout != want {
			t.Errorf("tier %s on class %s: root layout %q, want %q", tp.Tier, tp.Class, tp.RootLayout, want)
		}
	}
}
