package fanout

import (
	"fmt"
	"strconv"
	"strings"
)

// BatchSize is one element of a batch spec: a count, or a percentage of the
// whole selection.
type BatchSize struct {
	N   int     // hosts, when Pct is 0
	Pct float64 // percent of the selection, rounded down, at least 1 host
}

func (b BatchSize) String() string {
	if b.Pct > 0 {
		return strconv.FormatFloat(b.Pct, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(b.N)
}

// ParseBatch reads a batch spec as --batch takes it: "N", "P%" or a list
// such as "1,5,20%", whose last value repeats for the remaining hosts
// (Ansible's serial). "" is no spec: the whole selection is one batch.
func ParseBatch(spec string) ([]BatchSize, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	var out []BatchSize
	for i, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		bad := func(why string) error {
			return fmt.Errorf("batch %q: element %d %q: %s (want N, P%% or a list such as 1,5,20%%)", spec, i+1, f, why)
		}
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || v <= 0 || v > 100 {
				return nil, bad("a percentage must be above 0 and at most 100")
			}
			out = append(out, BatchSize{Pct: v})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, bad("a count must be a whole number above 0")
		}
		out = append(out, BatchSize{N: n})
	}
	return out, nil
}

// Sizes splits total hosts into batch sizes: each spec element in turn, the
// last repeating; a percentage is of total, rounded down, at least 1; the
// last batch takes what is left. No spec (or total 0) gives one batch.
func Sizes(spec []BatchSize, total int) []int {
	if total <= 0 {
		return nil
	}
	if len(spec) == 0 {
		return []int{total}
	}
	var out []int
	left := total
	for i := 0; left > 0; i++ {
		b := spec[min(i, len(spec)-1)]
		n := b.N
		if b.Pct > 0 {
			n = max(1, int(float64(total)*b.Pct/100))
		}
		n = min(n, left)
		out = append(out, n)
		left -= n
	}
	return out
}

// Limit is the failure threshold of one batch. The run aborts when a batch's
// failures *exceed* it, not when they equal it (Ansible's
// max_fail_percentage). The zero Limit tolerates no failure.
type Limit struct {
	// MaxFail is how many failed hosts a batch may have. It applies when
	// above 0, or when MaxFailPct is 0.
	MaxFail int
	// MaxFailPct is the percentage of the batch's hosts that may fail, when
	// above 0.
	MaxFailPct float64
}

// Exceeded reports whether failed failures in a batch of size hosts exceed
// l, and says which threshold.
func (l Limit) Exceeded(failed, size int) (bool, string) {
	if (l.MaxFail > 0 || l.MaxFailPct == 0) && failed > l.MaxFail {
		return true, fmt.Sprintf("%d failed in a batch of %d, more than --max-fail %d", failed, size, l.MaxFail)
	}
	if l.MaxFailPct > 0 && size > 0 && float64(failed)*100 > l.MaxFailPct*float64(size) {
		return true, fmt.Sprintf("%d failed in a batch of %d (%.0f%%), more than --max-fail-pct %s",
			failed, size, float64(failed)*100/float64(size), strconv.FormatFloat(l.MaxFailPct, 'f', -1, 64))
	}
	return false, ""
}
