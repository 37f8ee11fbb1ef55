package capacity

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// sliceLister lists machines from a slice, matching the query's state and
// expression as the inventory does (a fake behind the narrow Lister).
type sliceLister []*inventory.Machine

func (l sliceLister) List(_ context.Context, q inventory.Query) ([]*inventory.Machine, error) {
	var out []*inventory.Machine
	for _, m := range l {
		if q.State != "" && m.State != q.State {
			continue
		}
		if q.Where != nil {
			ok, err := q.Where.Match(m)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// labPool is a lab-shaped ready pool: 5 VMs on 2 racks with 1 GiB
// (mem_gb 1) or 1.5 GiB (mem_gb 2), 1 or 2 CPUs and 1 or 2 small disks.
func labPool() sliceLister {
	var out sliceLister
	for i, f := range []struct {
		rack          string
		mem, cpu, dsk int
	}{{"r1", 1, 1, 1}, {"r2", 2, 2, 2}, {"r1", 1, 1, 2}, {"r2", 1, 1, 1}, {"r1", 2, 2, 1}} {
		m := &inventory.Machine{ID: fmt.Sprintf("m-lab%d", i), Rack: f.rack, State: inventory.StateReady, MemGB: f.mem, CPUCores: f.cpu}
		for d := range f.dsk {
			m.Disks = append(m.Disks, inventory.Disk{Name: fmt.Sprintf("vd%c", 'a'+d), SizeBytes: 4 << 30})
		}
		out = append(out, m)
	}
	return out
}

// labWorkload is the workload that gives a 5-machine lab ingestion 1,
// storage 2 (R=2 on 2 racks), query 1, with the default headroom:
// ingestion 130 events/s, storage 100·50·86400·1·2·1.3 = 1.12 GB,
// query 6.5 queries/s.
var labWorkload = Input{EventsPerSec: 100, RetentionDays: 1, BytesPerEvent: 50, QueriesPerSec: 5, Headroom: DefaultHeadroom}

func TestLabModelPlansALab(t *testing.T) {
	ctx := context.Background()
	lab, ok, err := NamedModel("lab")
	if err != nil || !ok {
		t.Fatalf("lab model: %v %v", ok, err)
	}
	pool, err := ReadPool(ctx, labPool(), lab)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.Plan(labWorkload, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{Ingestion: 1, Storage: 2, Query: 1}
	seen := map[string]bool{}
	for _, tp := range p.Tiers {
		if tp.Target != want[tp.Tier] || tp.Add != tp.Target || len(tp.Machines) != tp.Add {
			t.Errorf("%s on %s: target %d add %d machines %v, want %d", tp.Tier, tp.Class, tp.Target, tp.Add, tp.Machines, want[tp.Tier])
		}
		for _, id := range tp.Machines {
			if seen[id] {
				t.Errorf("machine %s planned twice", id)
			}
			seen[id] = true
		}
		if tp.Tier == Storage && len(tp.Racks) != 2 {
			t.Errorf("storage on racks %v, want 2", tp.Racks)
		}
	}
	if p.ReplicationFactor != 2 {
		t.Errorf("replication factor %d", p.ReplicationFactor)
	}
	t.Logf("lab plan: %+v", p.Tiers)

	// The default model refuses the same lab.
	def, ok, err := NamedModel("default")
	if err != nil || !ok {
		t.Fatalf("default model: %v %v", ok, err)
	}
	dpool, err := ReadPool(ctx, labPool(), def)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := def.Plan(labWorkload, nil, dpool); err == nil || !strings.Contains(err.Error(), "plan refused") {
		t.Fatalf("default model on a lab: %v", err)
	}
	if _, ok, _ := NamedModel("datacenter"); ok {
		t.Error("an unknown name is a model")
	}
}

// A new storage tier whose preferred class's free machines sit on fewer
// than R racks takes the next class that spans them.
func TestLabModelStorageFallsBackForRacks(t *testing.T) {
	lab, _, err := NamedModel("lab")
	if err != nil {
		t.Fatal(err)
	}
	l := labPool()
	// Two-disk machines only on r1: lab-storage has 2 free, on one rack.
	l[1].Disks = l[1].Disks[:1]
	l[0].Disks = append(l[0].Disks, inventory.Disk{Name: "vdb", SizeBytes: 4 << 30})
	pool, err := ReadPool(context.Background(), l, lab)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.Plan(labWorkload, nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Tiers[1]; st.Class != "lab-any" || len(st.Racks) != 2 {
		t.Errorf("storage: class %s racks %v, want lab-any on 2 racks", st.Class, st.Racks)
	}
}
