package netpolicy

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: no policy file panics the parser or the renderer, and a
// policy that parses renders deterministically, with comments nft takes
// (no newline or backslash inside).
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/three-tier.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("admins: [10.0.0.1]\nrules:\n  - from: {where: 'rack == \"r\\\\1\"'}\n    to: any\n    ports: [1/udp]\n"))
	f.Add([]byte("admins: [{tag: a=b}]\nmesh: {interface: wg0}\n"))
	ms := threeTier()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		_, _ = p.Check(Known{Tiers: tierNames, Machines: ms})
		c := Compile(p, ms)
		for _, m := range ms {
			a, b := c.Render(m), c.Render(m)
			if a.Text != b.Text {
				t.Fatal("not deterministic")
			}
			for _, line := range strings.Split(a.Text, "\n") {
				if i := strings.Index(line, `comment "`); i >= 0 && strings.ContainsAny(line[i+9:len(line)-1], "\\\"") {
					t.Fatalf("comment with a quote or backslash: %s", line)
				}
			}
		}
	})
}
