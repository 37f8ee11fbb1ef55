package inventory

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseSheet: any input either parses into rows that satisfy every
// invariant Import relies on, or fails with line-numbered problems. Parsed
// rows survive a WriteSheet → ParseSheet round trip.
func FuzzParseSheet(f *testing.F) {
	f.Add([]byte(sheet3))
	f.Add([]byte("rack,slot,serial,bmc_address,bmc_username,bmc_credential_ref\nr1,1,S1,h.example,admin,shared/a\n"))
	f.Add([]byte("\xef\xbb\xbfrack,slot,serial,bmc_address,bmc_username,bmc_password\n\"r 1\",\"1\",\"S,1\",::1,admin,\"p\"\"w\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ParseSheet("f.csv", bytes.NewReader(data))
		if err != nil {
			se, ok := err.(SheetErrors)
			if !ok || len(se) == 0 {
				t.Fatalf("error is not SheetErrors: %T %v", err, err)
			}
			for _, e := range se {
				if e.Line < 1 || e.File != "f.csv" || e.Problem == "" {
					t.Fatalf("bad problem %+v", e)
				}
			}
			return
		}
		serials := map[string]bool{}
		var ms []*Machine
		for _, r := range rows {
			if r.Rack == "" || r.Slot == "" || r.Serial == "" || r.BMCAddress == "" || r.BMCUsername == "" {
				t.Fatalf("row %d has an empty required field: %+v", r.Line, r)
			}
			if serials[r.Serial] {
				t.Fatalf("serial %s twice", r.Serial)
			}
			serials[r.Serial] = true
			m := r.machine(MachineID(r.Serial), nil)
			if errs := m.Validate(); len(errs) > 0 {
				t.Fatalf("row %d gives an invalid machine: %v", r.Line, errs)
			}
			ms = append(ms, m)
		}
		var b bytes.Buffer
		if _, err := WriteSheet(&b, ms); err != nil {
			t.Fatal(err)
		}
		again, err := ParseSheet("again.csv", &b)
		if err != nil {
			t.Fatalf("exported sheet does not parse: %v\n%s", err, b.String())
		}
		if len(again) != len(rows) {
			t.Fatalf("round trip: %d rows, want %d", len(again), len(rows))
		}
	})
}

// FuzzWhere: no expression crashes the compiler or the evaluator; e and
// not(e) are never both true; the catalog-only evaluation agrees with the
// full one.
func FuzzWhere(f *testing.F) {
	for _, tc := range whereCases {
		f.Add(tc.expr)
	}
	f.Add(`rack == "r1" and mem_gb >= 128 or tags.x in ["a"]`)
	f.Fuzz(func(t *testing.T, src string) {
		w, err := ParseWhere(src)
		if err != nil {
			if !strings.Contains(err.Error(), "where-expression") {
				t.Fatalf("error does not name the expression: %v", err)
			}
			return
		}
		neg, err := ParseWhere("not (" + src + ")")
		for _, m := range whereMachines() {
			a, errA := w.Match(m)
			if err == nil && errA == nil {
				if b, errB := neg.Match(m); errB == nil && a && b {
					t.Fatalf("%q and its negation both select %s", src, m.ID)
				}
			}
			if errA == nil && w.onlyMeta() {
				mm, errM := w.matchMeta(m.ID, m.nodeMeta())
				if errM == nil && mm != a {
					t.Fatalf("%q on %s: meta says %v, record says %v", src, m.ID, mm, a)
				}
			}
		}
	})
}
