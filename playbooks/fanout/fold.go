package fanout

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Group is hosts whose output was identical, as `dshbak -c` folds them.
type Group struct {
	// Hosts is the folded host list, e.g. "m-[01-03,07],db1".
	Hosts  string
	IDs    []string
	Output []byte
}

// Fold groups results by identical output, in the order each output first
// appears. Hosts where nothing ran (skipped, unreachable) are left out.
func Fold(results []Result) []Group {
	var groups []Group
	at := map[string]int{}
	for _, r := range results {
		if r.Status == StatusSkipped || r.Status == StatusUnreachable {
			continue
		}
		k := string(r.Output)
		i, ok := at[k]
		if !ok {
			i = len(groups)
			at[k] = i
			groups = append(groups, Group{Output: bytes.Clone(r.Output)})
		}
		groups[i].IDs = append(groups[i].IDs, r.Host.ID)
	}
	for i := range groups {
		groups[i].Hosts = FoldHosts(groups[i].IDs)
	}
	return groups
}

// FoldHosts writes host names as ranges, as pdsh and dshbak do: names that
// share a prefix and end in numbers of the same width fold into
// prefix[01-03,07]; other names are listed as they are. The output is
// sorted.
func FoldHosts(ids []string) string {
	type key struct {
		prefix string
		width  int
	}
	nums := map[key][]int{}
	var keys []key
	var plain []string
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		j := len(id)
		for j > 0 && id[j-1] >= '0' && id[j-1] <= '9' {
			j--
		}
		if j == len(id) || len(id)-j > 9 {
			plain = append(plain, id)
			continue
		}
		n, _ := strconv.Atoi(id[j:])
		k := key{id[:j], len(id) - j}
		if _, ok := nums[k]; !ok {
			keys = append(keys, k)
		}
		nums[k] = append(nums[k], n)
	}
	var parts []string
	for _, k := range keys {
		ns := nums[k]
		sort.Ints(ns)
		if len(ns) == 1 {
			parts = append(parts, fmt.Sprintf("%s%0*d", k.prefix, k.width, ns[0]))
			continue
		}
		var rs []string
		for i := 0; i < len(ns); {
			j := i
			for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
				j++
			}
			if j == i {
				rs = append(rs, fmt.Sprintf("%0*d", k.width, ns[i]))
			} else {
				rs = append(rs, fmt.Sprintf("%0*d-%0*d", k.width, ns[i], k.width, ns[j]))
			}
			i = j + 1
		}
		parts = append(parts, k.prefix+"["+strings.Join(rs, ",")+"]")
	}
	parts = append(parts, plain...)
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
