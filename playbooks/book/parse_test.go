package book

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/fanout"
)

// A bad playbook is refused at parse time with FILE:LINE: problem.
func TestParseRefusals(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want string // the error's prefix after "pb.yaml:"
	}{
		"not yaml":             {"steps:\n  - run: [\n", "pb.yaml:2: did not find expected node content"},
		"tab":                  {"steps:\n\t- run: x\n", "pb.yaml:2: found character that cannot start any token"},
		"empty":                {"", "pb.yaml:1: empty playbook"},
		"list at top":          {"- run: x\n", "pb.yaml:1: playbook: want a mapping"},
		"unknown top key":      {"name: x\nstep:\n  - run: true\n", "pb.yaml:2: unknown key \"step\""},
		"no steps":             {"name: x\n", "pb.yaml:1: no steps:"},
		"empty steps":          {"steps: []\n", "pb.yaml:1: steps: empty"},
		"steps not a list":     {"steps: run\n", "pb.yaml:1: steps: want a list"},
		"unknown kind":         {"steps:\n  - run: true\n  - reboot: now\n", "pb.yaml:3: unknown step kind or key \"reboot\""},
		"two kinds":            {"steps:\n  - run: true\n    drain:\n", "pb.yaml:3: step has two kinds, run and drain"},
		"no kind":              {"steps:\n  - name: x\n", "pb.yaml:2: step has no kind"},
		"unknown option":       {"steps:\n  - copy:\n      src: a\n      dest: /b\n      perms: 1\n", "pb.yaml:5: copy: unknown option \"perms\""},
		"missing option":       {"steps:\n  - copy:\n      src: a\n", "pb.yaml:3: copy: dest: is required"},
		"bad mode":             {"steps:\n  - copy:\n      src: a\n      dest: /b\n      mode: rw\n", "pb.yaml:5: copy mode \"rw\""},
		"bad action":           {"steps:\n  - service:\n      name: a\n      action: bounce\n", "pb.yaml:4: service action \"bounce\""},
		"bad template":         {"steps:\n  - run: echo {{.Vars.x\n", "pb.yaml:2: run cmd: bad template"},
		"unknown func":         {"steps:\n  - run: echo {{frob .Vars.x}}\n", "pb.yaml:2: run cmd: bad template: function \"frob\" not defined"},
		"bad when":             {"steps:\n  - run: x\n    when: '{{if}}'\n", "pb.yaml:3: when: bad template"},
		"bad var default":      {"vars:\n  a: '{{end}}'\nsteps:\n  - run: x\n", "pb.yaml:2: vars: a: bad template"},
		"bad var name":         {"vars:\n  a-b: x\nsteps:\n  - run: x\n", "pb.yaml:2: vars: \"a-b\" is not a var name"},
		"duplicate key":        {"steps:\n  - run: a\n    name: x\n    name: y\n", "pb.yaml:4: step: name given twice"},
		"template both":        {"steps:\n  - template:\n      src: a\n      content: b\n      dest: /c\n", "pb.yaml:3: template: give src or content"},
		"template neither":     {"steps:\n  - template:\n      dest: /c\n", "pb.yaml:3: template: src or content is required"},
		"template src missing": {"steps:\n  - template:\n      src: nope.tmpl\n      dest: /c\n", "pb.yaml:3: template src:"},
		"template src bad":     {"steps:\n  - template:\n      src: bad.tmpl\n      dest: /c\n", "pb.yaml:3: template src bad.tmpl: bad template"},
		"drain with string":    {"steps:\n  - drain: now\n", "pb.yaml:2: drain: want a mapping"},
		"undrain option":       {"steps:\n  - undrain:\n      reason: x\n", "pb.yaml:3: undrain: unknown option \"reason\" (no options)"},
		"name not string":      {"steps:\n  - run: x\n    name: [a]\n", "pb.yaml:3: name: want a string"},
	}
	files := map[string]string{"bad.tmpl": "{{.Vars.x"}
	read := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("pb.yaml", []byte(tc.yaml), read)
			if err == nil {
				t.Fatalf("parsed")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want prefix %q", err, tc.want)
			}
		})
	}
}

// Every kind parses, and plans per machine with vars resolved in order,
// --var overriding defaults (and using machine fields), when: skipping.
func TestParseAndPlan(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "blob")
	if err := os.WriteFile(src, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "motd.tmpl"), []byte("{{.Machine.ID}} in {{.Machine.Rack}} runs {{.Vars.svc}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(dir, "pb.yaml")
	if err := os.WriteFile(pb, []byte(`name: all
vars:
  svc:              # required
  dir: /srv/{{.Vars.svc}}
  blob: `+src+`
steps:
  - run: echo {{sq .Machine.ID}}
  - run:
      cmd: touch {{.Vars.dir}}/x
      unless: test -e {{.Vars.dir}}/x
  - copy: {src: '{{.Vars.blob}}', dest: '{{.Vars.dir}}/blob', mode: "0600", owner: root}
  - template: {src: motd.tmpl, dest: /etc/motd}
  - template: {content: "{{.Vars.svc}}", dest: /etc/svc}
  - service: {name: '{{.Vars.svc}}', action: reload}
  - drain:
  - wait-healthy: {timeout: 30s}
  - undrain:
  - only-if: test -d /srv
  - run: never
    when: '{{eq .Machine.Rack "r9"}}'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	if p.Vars[0].Doc != "required" {
		t.Errorf("var doc %q", p.Vars[0].Doc)
	}
	m := &inventory.Machine{ID: "m-1", Rack: "r1"}
	if _, err := p.Plan(m, nil, nil); err == nil || !strings.Contains(err.Error(), "pb.yaml:3: var svc is required") {
		t.Errorf("no svc: %v", err)
	}
	if _, err := p.Plan(m, map[string]string{"svc": "x", "nope": "1"}, nil); err == nil || !strings.Contains(err.Error(), "--var nope: "+pb+" declares no such var (it has: svc, dir, blob)") {
		t.Errorf("unknown var: %v", err)
	}
	hp, err := p.Plan(m, map[string]string{"svc": "api-{{.Machine.Rack}}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"svc": "api-r1", "dir": "/srv/api-r1", "blob": src}, hp.Vars); diff != "" {
		t.Errorf("vars (-want +got):\n%s", diff)
	}
	got := []string{}
	for _, s := range hp.Steps {
		got = append(got, s.Where[len(pb)+1:]+" "+string(s.Kind))
	}
	want := []string{"7 run", "8 run", "11 copy", "12 template", "13 template", "14 service", "15 drain", "16 wait-healthy", "17 undrain", "18 only-if", "19 run"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	s := hp.Steps
	if s[0].Cmd != "echo 'm-1'" || s[1].Unless != "test -e /srv/api-r1/x" || s[2].Dest != "/srv/api-r1/blob" ||
		s[2].Size != 5 || s[2].SHA256[:8] != "2cf24dba" || string(s[3].Content) != "m-1 in r1 runs api-r1\n" ||
		s[5].Unit != "api-r1" || s[5].Systemctl != "systemctl" || s[7].Timeout.String() != "30s" || !s[10].Skip || s[9].Skip {
		t.Errorf("rendered steps: %+v", s)
	}
	// A template that fails for one machine only refuses the whole run.
	bad := &inventory.Machine{ID: "m-2", Rack: "r1"}
	p.Steps[0].Cmd = must(newTemplate("x").Parse(`{{if eq .Machine.ID "m-2"}}{{fail "not on m-2"}}{{end}}echo`))
	_, err = p.PlanAll([]Target{{Machine: m, Host: hostOf(m)}, {Machine: bad, Host: hostOf(bad)}}, map[string]string{"svc": "x"})
	if err == nil || !strings.Contains(err.Error(), pb+":7: machine m-2: run: cmd: not on m-2") {
		t.Errorf("PlanAll: %v", err)
	}
	// A missing copy source is refused at plan time, naming the step.
	if _, err := p.Plan(m, map[string]string{"svc": "x", "blob": "/nonexistent"}, nil); err == nil || !strings.Contains(err.Error(), pb+":11: machine m-1: copy: src:") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing src: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func hostOf(m *inventory.Machine) fanout.Host { return fanout.Host{ID: m.ID} }
