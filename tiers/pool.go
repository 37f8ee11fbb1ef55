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
	return fmt.Sprintf("the ready pool cannot meet the step: tiers %s need %d more machines, %d ready machines match their selectors (short by %d)",
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
	byMask := map[uint32]int{}
	for _, m := range ready {
		var mask uint32
		for i, w := range ws {
			ok, err := w.Match(m)
			if err != nil {
				return fmt.Errorf("tier %s: selector on machine %s: %w", ds[i].Tier, m.ID, err)
			}
			if ok {
				mask |= 1 << i
			}
		}
		if mask != 0 {
			byMask[mask]++
		}
	}
	var worst *ShortfallError
	for set := uint32(1); set < 1<<len(ds); set++ {
		need, have := 0, 0
		for i := range ds {
			if set&(1<<i) != 0 {
				need += ds[i].Count
			}
		}
		for mask, n := range byMask {
			if mask&set != 0 {
				have += n
			}
		}
		if need <= have {
			continue
		}
		var names []string
		for i := range ds {
			if set&(1<<i) != 0 {
				names = append(names, ds[i].Tier)
			}
		}
		sort.Strings(names)
		e := &ShortfallError{Tiers: names, Need: need, Have: have}
		if worst == nil || bits.OnesCount32(set) < len(worst.Tiers) {
			worst = e
		}
	}
	if worst != nil {
		return worst
	}
	return nil
}
