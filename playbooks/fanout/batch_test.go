package fanout

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBatchRules(t *testing.T) {
	tests := map[string]struct {
		spec  string
		total int
		want  []int
	}{
		"no spec is one batch":             {"", 20, []int{20}},
		"a count":                          {"5", 12, []int{5, 5, 2}},
		"a count above the total":          {"50", 7, []int{7}},
		"a percentage rounds down":         {"30%", 10, []int{3, 3, 3, 1}},
		"a small percentage is at least 1": {"1%", 3, []int{1, 1, 1}},
		"the last value repeats":           {"1,5,20%", 20, []int{1, 5, 4, 4, 4, 2}},
		"percentages of the whole":         {"10%,50%", 10, []int{1, 5, 4}},
		"100%":                             {"100%", 9, []int{9}},
		"no hosts":                         {"3", 0, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec, err := ParseBatch(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, Sizes(spec, tc.total)); diff != "" {
				t.Errorf("Sizes(%q, %d) -want +got:\n%s", tc.spec, tc.total, diff)
			}
		})
	}
	for _, bad := range []string{"0", "-1", "x", "0%", "101%", "1,,2", "5%%", "1.5"} {
		if _, err := ParseBatch(bad); err == nil {
			t.Errorf("ParseBatch(%q) accepted", bad)
		}
	}
}

func TestThresholdRules(t *testing.T) {
	tests := map[string]struct {
		limit        Limit
		failed, size int
		want         bool
	}{
		"default: no failure is fine":         {Limit{}, 0, 10, false},
		"default: any failure aborts":         {Limit{}, 1, 10, true},
		"max-fail equal is fine":              {Limit{MaxFail: 2}, 2, 10, false},
		"max-fail exceeded aborts":            {Limit{MaxFail: 2}, 3, 10, true},
		"pct equal is fine":                   {Limit{MaxFailPct: 20}, 2, 10, false},
		"pct exceeded aborts":                 {Limit{MaxFailPct: 20}, 3, 10, true},
		"pct alone ignores the default count": {Limit{MaxFailPct: 50}, 1, 4, false},
		"pct of a batch of one":               {Limit{MaxFailPct: 99}, 1, 1, true},
		"both: the count trips first":         {Limit{MaxFail: 1, MaxFailPct: 50}, 2, 10, true},
		"both: the pct trips first":           {Limit{MaxFail: 5, MaxFailPct: 10}, 2, 10, true},
		"both: neither exceeded":              {Limit{MaxFail: 2, MaxFailPct: 20}, 2, 10, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, why := tc.limit.Exceeded(tc.failed, tc.size)
			if got != tc.want {
				t.Errorf("%+v.Exceeded(%d, %d) = %v (%s), want %v", tc.limit, tc.failed, tc.size, got, why, tc.want)
			}
		})
	}
}

func TestFoldHosts(t *testing.T) {
	tests := map[string]struct {
		ids  []string
		want string
	}{
		"ranges":          {[]string{"m-03", "m-01", "m-02", "m-07"}, "m-[01-03,07]"},
		"one":             {[]string{"m-01"}, "m-01"},
		"widths apart":    {[]string{"n9", "n10", "n11"}, "n9,n[10-11]"},
		"names and dupes": {[]string{"db", "web1", "web2", "db"}, "db,web[1-2]"},
		"hex IDs kept":    {[]string{"m-3231cf6bbc20", "m-3231cf6bbc21"}, "m-3231cf6bbc[20-21]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := FoldHosts(tc.ids); got != tc.want {
				t.Errorf("FoldHosts(%q) = %q, want %q", tc.ids, got, tc.want)
			}
		})
	}
}
