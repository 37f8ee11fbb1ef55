package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseDisks: --disks N=GIB[,GIB...] values, and the flag's value named
// in every error.
func TestParseDisks(t *testing.T) {
	got, err := parseDisks([]string{"3=4,4", " 6 = 8, 8 ,2"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[int][]int{3: {4, 4}, 6: {8, 8, 2}}, got); d != "" {
		t.Errorf("parseDisks (-want +got):\n%s", d)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"no index": {"4,4", `--disks "4,4": want N=GIB[,GIB...], N a machine's index (1 to --machines)`},
		"bad size": {"2=4,4G", `--disks "2=4,4G": "4G" is not a size in GiB (a whole number)`},
		"empty":    {"2=", `--disks "2=": "" is not a size in GiB (a whole number)`},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseDisks([]string{tc.in}); err == nil || err.Error() != tc.want {
				t.Errorf("parseDisks(%q): %v, want %q", tc.in, err, tc.want)
			}
		})
	}
	if _, err := parseDisks([]string{"2=4", "2=4,4"}); err == nil || err.Error() != `--disks "2=4,4": machine 2 given twice` {
		t.Errorf("twice: %v", err)
	}
}
