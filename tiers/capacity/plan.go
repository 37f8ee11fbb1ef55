package capacity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ironrack/ironrack/inventory"
)

// Input is the workload to plan for.
type Input struct {
	// EventsPerSec is the ingest rate; it must be positive.
	EventsPerSec float64 `json:"events_per_sec"`
	// RetentionDays is how long events are kept; it must be positive.
	RetentionDays float64 `json:"retention_days"`
	// BytesPerEvent is the stored size of one event; it must be positive.
	BytesPerEvent float64 `json:"bytes_per_event"`
	// QueriesPerSec is the query rate; 0 is allowed (the query tier
	// keeps one machine).
	QueriesPerSec float64 `json:"queries_per_sec"`
	// Headroom is spare capacity on top of the demand: 0.3 plans for 1.3
	// times the demand. 0 plans for exactly the demand.
	Headroom float64 `json:"headroom"`
}

// DefaultHeadroom is the headroom the CLI uses when none is given.
const DefaultHeadroom = 0.3

// MaxTierSize bounds a planned tier: a larger answer means a unit slip.
const MaxTierSize = 100000

// InputError names the input field that is wrong.
type InputError struct {
	// Field is the Input's JSON name, e.g. "events_per_sec".
	Field string
	Value float64
	Want  string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s %g: want %s", e.Field, e.Value, e.Want)
}

// Validate checks every field and returns the first error, an *InputError.
func (in Input) Validate() error {
	for _, f := range []struct {
		name      string
		v         float64
		zeroOK    bool
		max       float64
		wantRange string
	}{
		{"events_per_sec", in.EventsPerSec, false, 1e12, "a number > 0 and <= 1e12"},
		{"retention_days", in.RetentionDays, false, 36500, "a number > 0 and <= 36500"},
		{"bytes_per_event", in.BytesPerEvent, false, 1e9, "a number > 0 and <= 1e9"},
		{"queries_per_sec", in.QueriesPerSec, true, 1e12, "a number >= 0 and <= 1e12"},
		{"headroom", in.Headroom, true, 10, "a fraction >= 0 and <= 10 (0.3 plans for 1.3x the demand)"},
	} {
		if math.IsNaN(f.v) || f.v < 0 || f.v == 0 && !f.zeroOK || f.v > f.max {
			return &InputError{Field: f.name, Value: f.v, Want: f.wantRange}
		}
	}
	return nil
}

// Current is a tier as it stands: its size and the selector its machines
// were claimed with ("" when unknown).
type Current struct {
	Size     int
	Selector string
}

// Candidate is a ready machine.
type Candidate struct {
	ID   string `json:"id"`
	Rack string `json:"rack"`
}

// Pool is the ready pool: per class name, the ready machines the class's
// expression selects, sorted by rack and ID. Classes may overlap; a machine
// is planned for one tier at most.
type Pool map[string][]Candidate

// Lister lists machines; *inventory.Store satisfies it.
type Lister interface {
	List(ctx context.Context, q inventory.Query) ([]*inventory.Machine, error)
}

// ReadPool reads, per class of the model, the ready machines its
// expression selects (one List per class).
func ReadPool(ctx context.Context, l Lister, m *Model) (Pool, error) {
	pool := Pool{}
	for _, c := range m.Classes {
		ms, err := l.List(ctx, inventory.Query{State: inventory.StateReady, Where: c.where})
		if err != nil {
			return nil, fmt.Errorf("ready machines of class %s (%s): %w", c.Name, c.Where, err)
		}
		cs := make([]Candidate, len(ms))
		for i, x := range ms {
			cs[i] = Candidate{ID: x.ID, Rack: x.Rack}
		}
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].Rack != cs[j].Rack {
				return cs[i].Rack < cs[j].Rack
			}
			return cs[i].ID < cs[j].ID
		})
		pool[c.Name] = cs
	}
	return pool, nil
}

// RackCount is how many machines a step takes from one rack.
type RackCount struct {
	Rack  string `json:"rack"`
	Count int    `json:"count"`
}

// TierPlan is one tier's step.
type TierPlan struct {
	Tier string `json:"tier"`
	// Class is the hardware class the tier runs on; Selector its
	// where-expression, which goes into the stack config.
	Class    string `json:"class"`
	Selector string `json:"selector"`
	// RootDisk is the class's root-device hint, which also goes into the
	// stack config; empty: none.
	RootDisk string `json:"root_disk,omitempty"`
	// RootLayout is the class's root layout (flat or mirror), which goes
	// into the stack config too; empty: flat.
	RootLayout string `json:"root_layout,omitempty"`
	// Demand is what the tier must carry, headroom included, in Unit.
	Demand float64 `json:"demand"`
	Unit   string  `json:"unit"`
	// PerNode is what one machine of the class carries, in Unit.
	PerNode float64 `json:"per_node"`
	Current int     `json:"current"`
	Target  int     `json:"target"`
	// Add machines come from the ready pool (Racks says where from);
	// Remove machines are drained and released by the apply.
	Add    int         `json:"add"`
	Remove int         `json:"remove"`
	Racks  []RackCount `json:"racks"`
	// Machines are the ready machines the plan counts on for Add, in
	// pick order (a forecast: the apply claims with its own rendezvous
	// order, spread over the same racks).
	Machines []string `json:"machines"`
}

// ClassUse is one class's demand on the ready pool.
type ClassUse struct {
	Class string   `json:"class"`
	Where string   `json:"where"`
	Tiers []string `json:"tiers"`
	// Needed machines come from the pool for this step; Ready are in it.
	Needed int `json:"needed"`
	Ready  int `json:"ready"`
	// Short is how many machines the pool lacks (0: none).
	Short int `json:"short"`
	// RacksShort is set when the storage tier's replicas would need more
	// racks than the class's ready machines span.
	RacksShort string `json:"racks_short,omitempty"`
}

// Plan is a capacity step.
type Plan struct {
	Input             Input      `json:"input"`
	ReplicationFactor int        `json:"replication_factor"`
	Tiers             []TierPlan `json:"tiers"`
	Classes           []ClassUse `json:"classes"`
}

// ShortfallError refuses a plan the ready pool cannot meet. Plan is the
// refused plan, for display; Short are the classes that lack machines.
type ShortfallError struct {
	Plan  *Plan
	Short []ClassUse
}

func (e *ShortfallError) Error() string {
	var b strings.Builder
	b.WriteString("plan refused: the ready pool cannot meet it")
	for _, c := range e.Short {
		fmt.Fprintf(&b, "\n  class %s (%s): ", c.Class, c.Where)
		var parts []string
		if c.Short > 0 {
			verb := "needs"
			if len(c.Tiers) > 1 {
				verb = "need"
			}
			parts = append(parts, fmt.Sprintf("%s %s %d more machines, %d ready: %d short",
				strings.Join(c.Tiers, " + "), verb, c.Needed, c.Ready, c.Short))
		}
		if c.RacksShort != "" {
			parts = append(parts, c.RacksShort)
		}
		b.WriteString(strings.Join(parts, "; "))
	}
	return b.String()
}

// ErrShortfall matches a *ShortfallError with errors.Is.
var ErrShortfall = errors.New("ready pool short")

func (e *ShortfallError) Is(target error) bool { return target == ErrShortfall }

// Plan sizes every tier for in and checks the step from current against the
// ready pool. A tier that has machines and whose current selector is one of
// the model's classes stays on that class; otherwise it takes the first
// class that serves it and that the pool (less what earlier tiers took) can
// meet (for a new storage tier: with its machines on R racks). Sizes: ingestion ceil(events/s·(1+headroom) / per-node rate),
// storage ceil(events/s·bytes/event·86400·days·R·(1+headroom) / per-node
// bytes) and at least R, query ceil(queries/s·(1+headroom) / per-node QPS);
// every tier keeps at least one machine. A plan the pool cannot meet is a
// *ShortfallError carrying the plan.
func (m *Model) Plan(in Input, current map[string]Current, pool Pool) (*Plan, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	R := m.ReplicationFactor
	h := 1 + in.Headroom
	demand := map[string]float64{
		Ingestion: in.EventsPerSec * h,
		Storage:   in.EventsPerSec * in.BytesPerEvent * 86400 * in.RetentionDays * float64(R) * h,
		Query:     in.QueriesPerSec * h,
	}
	units := map[string]string{Ingestion: "events/s", Storage: "bytes", Query: "queries/s"}
	minSize := map[string]int{Ingestion: 1, Storage: R, Query: 1}
	used := map[string]bool{}
	// versatility is how many of the model's classes take each ready
	// machine: a tier takes the machines fewest other classes want first, so
	// an earlier tier does not take the one machine a later tier's narrower
	// class needs (ingestion's compute pick leaving storage its 2-disk ones).
	versatility := map[string]int{}
	for _, cands := range pool {
		for _, c := range cands {
			versatility[c.ID]++
		}
	}
	p := &Plan{Input: in, ReplicationFactor: R}
	short := map[string]*ClassUse{}
	needed := map[string]int{}
	tiersOf := map[string][]string{}
	for _, tier := range Tiers {
		cur := current[tier]
		if cur.Size < 0 {
			return nil, fmt.Errorf("tier %s: current size %d is negative", tier, cur.Size)
		}
		cands := m.candidates(tier)
		if cur.Size > 0 {
			for _, c := range cands {
				if strings.TrimSpace(c.Where) == strings.TrimSpace(cur.Selector) {
					cands = []*Class{c}
					break
				}
			}
		}
		var chosen *TierPlan
		var chosenShort int
		for i, c := range cands {
			tp, err := size(tier, c, demand[tier], units[tier], minSize[tier], cur.Size)
			if err != nil {
				return nil, err
			}
			picked := pick(pool[c.Name], used, tp.Add, versatility)
			fits := len(picked) == tp.Add
			if fits && tier == Storage && cur.Size == 0 && len(rackCounts(pool[c.Name], picked)) < R {
				fits = false // a new storage tier's replicas need R racks: try the next class
			}
			if fits || i == 0 {
				tp.Machines = picked
				chosen, chosenShort = tp, tp.Add-len(picked)
				if fits {
					break
				}
			}
		}
		for _, id := range chosen.Machines {
			used[id] = true
		}
		chosen.Racks = rackCounts(pool[chosen.Class], chosen.Machines)
		needed[chosen.Class] += chosen.Add
		tiersOf[chosen.Class] = append(tiersOf[chosen.Class], tier)
		if chosenShort > 0 {
			s := short[chosen.Class]
			if s == nil {
				s = &ClassUse{}
				short[chosen.Class] = s
			}
			s.Short += chosenShort
		}
		if tier == Storage && cur.Size == 0 && chosenShort == 0 && len(chosen.Racks) < R {
			s := short[chosen.Class]
			if s == nil {
				s = &ClassUse{}
				short[chosen.Class] = s
			}
			var names []string
			for _, rc := range rackNames(pool[chosen.Class]) {
				names = append(names, rc)
			}
			s.RacksShort = fmt.Sprintf("storage needs its %d replicas on %d racks, ready machines span %d (%s): %d rack(s) short",
				R, R, len(names), strings.Join(names, ", "), R-len(names))
		}
		p.Tiers = append(p.Tiers, *chosen)
	}
	for _, c := range m.Classes {
		u := ClassUse{Class: c.Name, Where: c.Where, Tiers: tiersOf[c.Name], Needed: needed[c.Name], Ready: len(pool[c.Name])}
		if u.Tiers == nil {
			u.Tiers = []string{}
		}
		if s := short[c.Name]; s != nil {
			u.Short, u.RacksShort = s.Short, s.RacksShort
		}
		p.Classes = append(p.Classes, u)
	}
	var shortList []ClassUse
	for _, u := range p.Classes {
		if u.Short > 0 || u.RacksShort != "" {
			shortList = append(shortList, u)
		}
	}
	if len(shortList) > 0 {
		return nil, &ShortfallError{Plan: p, Short: shortList}
	}
	return p, nil
}

// size computes a tier's target on one class.
func size(tier string, c *Class, demand float64, unit string, minSize, current int) (*TierPlan, error) {
	per := c.PerNode(tier)
	n := math.Ceil(demand/per - 1e-9)
	if n > MaxTierSize {
		return nil, fmt.Errorf("tier %s on class %s needs %.0f machines (%.4g %s at %.4g per machine), more than %d: check the inputs and the model",
			tier, c.Name, n, demand, unit, per, MaxTierSize)
	}
	target := max(int(n), minSize)
	tp := &TierPlan{Tier: tier, Class: c.Name, Selector: c.Where, RootDisk: c.RootDisk, RootLayout: c.RootLayout, Demand: demand, Unit: unit, PerNode: per,
		Current: current, Target: target, Racks: []RackCount{}, Machines: []string{}}
	if target > current {
		tp.Add = target - current
	} else {
		tp.Remove = current - target
	}
	return tp, nil
}

// pick takes n unused machines from a class's ready list (sorted by rack,
// ID): each from the rack with the most unused machines left (ties by rack
// name), so the step spreads over racks and drains them evenly; within a
// rack the machine fewest classes take first (versatility; ties by ID);
// fewer when the list runs out.
func pick(cands []Candidate, used map[string]bool, n int, versatility map[string]int) []string {
	byRack := map[string][]string{}
	var racks []string
	for _, c := range cands {
		if used[c.ID] {
			continue
		}
		if _, ok := byRack[c.Rack]; !ok {
			racks = append(racks, c.Rack)
		}
		byRack[c.Rack] = append(byRack[c.Rack], c.ID)
	}
	for _, ids := range byRack {
		sort.SliceStable(ids, func(i, j int) bool { return versatility[ids[i]] < versatility[ids[j]] })
	}
	out := []string{}
	for len(out) < n {
		best := ""
		for _, r := range racks {
			if len(byRack[r]) > 0 && (best == "" || len(byRack[r]) > len(byRack[best])) {
				best = r
			}
		}
		if best == "" {
			break
		}
		out = append(out, byRack[best][0])
		byRack[best] = byRack[best][1:]
	}
	return out
}

func rackCounts(cands []Candidate, ids []string) []RackCount {
	rack := map[string]string{}
	for _, c := range cands {
		rack[c.ID] = c.Rack
	}
	count := map[string]int{}
	for _, id := range ids {
		count[rack[id]]++
	}
	out := []RackCount{}
	for r, n := range count {
		out = append(out, RackCount{Rack: r, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rack < out[j].Rack })
	return out
}

func rackNames(cands []Candidate) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cands {
		if !seen[c.Rack] {
			seen[c.Rack] = true
			out = append(out, c.Rack)
		}
	}
	sort.Strings(out)
	return out
}
