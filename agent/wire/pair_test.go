package wire

import (
	"slices"
	"testing"
)

func TestPairDisks(t *testing.T) {
	for name, tc := range map[string]struct {
		rec, seen []DiskKey
		want      []int
	}{
		"same names":  {[]DiskKey{{Name: "sda", Serial: "A"}, {Name: "sdb", Serial: "B"}}, []DiskKey{{Name: "sda", Serial: "A"}, {Name: "sdb", Serial: "B"}}, []int{0, 1}},
		"renamed":     {[]DiskKey{{Name: "sda", Serial: "A"}, {Name: "sdb", Serial: "B"}}, []DiskKey{{Name: "sda", Serial: "B"}, {Name: "sdb", Serial: "A"}}, []int{1, 0}},
		"by wwn":      {[]DiskKey{{Name: "sda", WWN: "naa.1", Serial: "X"}}, []DiskKey{{Name: "sdc", WWN: "naa.1", Serial: "Y"}}, []int{0}},
		"wwn first":   {[]DiskKey{{Name: "sda", WWN: "naa.1", Serial: "S"}, {Name: "sdb", Serial: "S2"}}, []DiskKey{{Name: "sdb", WWN: "naa.1", Serial: "S2"}, {Name: "sda", Serial: "S"}}, []int{0, -1}},
		"no identity": {[]DiskKey{{Name: "vda"}, {Name: "vdb"}}, []DiskKey{{Name: "vdb"}, {Name: "vda"}}, []int{1, 0}},
		"gone":        {[]DiskKey{{Name: "sda", Serial: "A"}, {Name: "sdb", Serial: "B"}}, []DiskKey{{Name: "sda", Serial: "B"}}, []int{-1, 0}},
		// Two drives with one serial (cheap bridges do this): by name.
		"dup serial": {[]DiskKey{{Name: "sda", Serial: "0"}, {Name: "sdb", Serial: "0"}}, []DiskKey{{Name: "sdb", Serial: "0"}, {Name: "sda", Serial: "0"}}, []int{1, 0}},
		// A name taken by identity is not reused.
		"name taken": {[]DiskKey{{Name: "sda", Serial: "A"}, {Name: "sdb"}}, []DiskKey{{Name: "sdb", Serial: "A"}}, []int{0, -1}},
	} {
		if got := PairDisks(tc.rec, tc.seen); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}
