package book

import (
	"os"
	"strings"
	"testing"
)

// Parse never panics, and every refusal names the file.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"steps:\n  - run: true\n",
		"vars:\n  a:\n  b: '{{.Vars.a}}'\nsteps:\n  - copy: {src: x, dest: /y, mode: \"0644\"}\n",
		"steps:\n  - template: {content: '{{.Machine.ID}}', dest: /m}\n  - drain:\n  - wait-healthy: {timeout: 1m, settle: 5s}\n",
		"steps:\n  - service: {name: a, action: restart}\n    when: '{{true}}'\n  - only-if: test -e /x\n",
		"steps: [&a {run: x}, *a]\n",
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../builtin/deploy.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("f.yaml", data, nil)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Errorf("error does not name the file: %v", err)
		}
	})
}
