package tiers

import (
	"context"
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"github.com/ironrack/ironrack/inventory"
)

// Demand is how many more ready machines a tier's step claims.
type Demand struct {
	Tier     string
	Selector string
	Count    int
}

// ShortfallError says which tiers the ready pool cannot serve together.
type ShortfallError struct {
	Tiers []string
	Need  int
	Have  int
}

func (e *ShortfallError) Error() string {
	return fmt.Sprintf("the ready pool cannot meet the step (not enough ready machines): tiers %s need %d more machines, %d ready machines match their selectors (short by %d)",
		strings.Join(e.Tiers, "+"), e.Need, e.Have, e.Need-e.Have)
}

func (e *ShortfallError) Unwrap() error { return inventory.ErrInsufficient }

// CheckPool reports whether the ready pool can meet all demands at once,
// without claiming anything. Tiers whose selectors overlap compete for the
// same machines, so each tier fitting alone is not enough: by Hall's
// theorem the demands fit exactly when every set of tiers together asks
// for no more machines than match at least one of their selectors. The
// smallest failing set is named. At most 16 tiers.
func CheckPool(ctx context.Context, store *inventory.Store, demands []Demand) error {
	var ds []Demand
	for _, d := range demands {
		if d.Count > 0 {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return nil
	}
	if len(ds) > 16 {
		return fmt.Errorf("check pool: %d tiers step up at once; at most 16", len(ds))
	}
	ws := make([]*inventory.Where, len(ds))
	for i, d := range ds {
		w, err := inventory.ParseWhere(d.Selector)
		if err != nil {
			return fmt.Errorf("tier %s: selector: %w", d.Tier, err)
		}
		ws[i] = w
	}
	ready, err := store.List(ctx, inventory.Query{State: inventory.StateReady})
	if err != nil {
		return fmt.Errorf("check pool: %w", err)
	}
	// Machines by the set of tiers whose selector they match.
	byMask, err := masks(ready, ws, func(i int) string { return ds[i].Tier })
	if err != nil {
		return err
	}
	needs := make([]int, len(ds))
	for i, d := range ds {
		needs[i] = d.Count
	}
	set, need, have, ok := hall(byMask, needs)
	if ok {
		return nil
	}
	var names []string
	for i := range ds {
		if set&(1<<i) != 0 {
			names = append(names, ds[i].Tier)
		}
	}
	sort.Strings(names)
	return &ShortfallError{Tiers: names, Need: need, Have: have}
}

// masks counts machines by the set of selectors (bit i: ws[i]) they match;
// machines matching none are left out. name names selector i in errors.
func masks(ms []*inventory.Machine, ws []*inventory.Where, name func(int) string) (map[uint32]int, error) {
	byMask := map[uint32]int{}
	for _, m := range ms {
		mask, err := maskOf(m, ws, name)
		if err != nil {
			return nil, err
		}
		if mask != 0 {
			byMask[mask]++
		}
	}
	return byMask, nil
}

func maskOf(m *inventory.Machine, ws []*inventory.Where, name func(int) string) (uint32, error) {
	var mask uint32
	for i, w := range ws {
		ok, err := w.Match(m)
		if err != nil {
			return 0, fmt.Errorf("tier %s: selector on machine %s: %w", name(i), m.ID, err)
		}
		if ok {
			mask |= 1 << i
		}
	}
	return mask, nil
}

// hall checks Hall's condition: every set of demands (bit i: needs[i]
// machines matching selector i) together asks for no more machines than
// match at least one of them. If not, it returns a failing set with the
// fewest members (the lowest such), what it needs and what it has.
func hall(byMask map[uint32]int, needs []int) (set uint32, need, have int, ok bool) {
	best := -1
	for s := uint32(1); s < 1<<len(needs); s++ {
		n, h := 0, 0
		for i := range needs {
			if s&(1<<i) != 0 {
				n += needs[i]
			}
		}
		if n == 0 {
			continue
		}
		for mask, c := range byMask {
			if mask&s != 0 {
				h += c
			}
		}
		if n <= h {
			continue
		}
		if k := bits.OnesCount32(s); best < 0 || k < best {
			best, set, need, have = k, s, n, h
		}
	}
	return set, need, have, best < 0
}
