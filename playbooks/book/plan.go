package book

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// Data is what templates see: .Machine (the inventory record: .Machine.ID,
// .Machine.IP, .Machine.Tier, .Machine.Rack, .Machine.Tags.KEY, ...) and
// .Vars (the playbook's vars, after --var).
type Data struct {
	Machine *inventory.Machine
	Vars    map[string]string
}

// HostPlan is a playbook rendered for one machine: every template executed,
// every var resolved, every copy's source hashed.
type HostPlan struct {
	File    string
	Machine *inventory.Machine
	Vars    map[string]string
	Steps   []PlannedStep
}

// PlannedStep is one rendered step.
type PlannedStep struct {
	Kind  Kind
	Label string
	// Where is FILE:LINE.
	Where string
	// Skip is true when the step's when: rendered false.
	Skip bool

	Cmd, Unless string
	// Content is a template step's rendered file; for copy, SrcPath is the
	// local file and Size its length. SHA256 is the content's, in hex.
	Content []byte
	SrcPath string
	Size    int64
	SHA256  string
	Dest    string
	Mode    string
	Owner   string

	Unit, Action, Systemctl string

	Reason string
	// Timeout bounds wait-healthy; Settle is how long every check must
	// pass without a break before the machine counts as healthy.
	Timeout, Settle time.Duration
}

// Hasher hashes the local files copy steps send, once per path: share one
// across the machines of a run. The zero value works.
type Hasher struct {
	sums map[string]fileSum
}

type fileSum struct {
	sum  string
	size int64
}

func (h *Hasher) sum(name string) (fileSum, error) {
	if s, ok := h.sums[name]; ok {
		return s, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return fileSum{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileSum{}, err
	}
	if !st.Mode().IsRegular() {
		return fileSum{}, fmt.Errorf("%s is not a regular file", name)
	}
	d := sha256.New()
	n, err := io.Copy(d, f)
	if err != nil {
		return fileSum{}, err
	}
	s := fileSum{hex.EncodeToString(d.Sum(nil)), n}
	if h.sums == nil {
		h.sums = map[string]fileSum{}
	}
	h.sums[name] = s
	return s, nil
}

// CheckVars refuses --var names the playbook does not declare, naming the
// ones it does.
func (p *Playbook) CheckVars(vars map[string]string) error {
	declared := map[string]bool{}
	var names []string
	for _, v := range p.Vars {
		declared[v.Name] = true
		names = append(names, v.Name)
	}
	var bad []string
	for k := range vars {
		if !declared[k] {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	have := "none"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	return fmt.Errorf("--var %s: %s declares no such var (it has: %s)", strings.Join(bad, ", "), p.File, have)
}

var ownerRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*(:[A-Za-z_][A-Za-z0-9_.-]*)?$`)

// Plan renders the playbook for machine m with vars (the --var values,
// which override the defaults; a value may itself use {{.Machine.*}} and
// earlier vars). Vars are resolved in the order the playbook declares them.
// h hashes copy sources (nil: a fresh Hasher). Errors are FILE:LINE:
// machine ID: problem.
func (p *Playbook) Plan(m *inventory.Machine, vars map[string]string, h *Hasher) (*HostPlan, error) {
	if err := p.CheckVars(vars); err != nil {
		return nil, err
	}
	if h == nil {
		h = &Hasher{}
	}
	d := Data{Machine: m, Vars: map[string]string{}}
	for _, v := range p.Vars {
		t := v.Default
		where := fmt.Sprintf("%s:%d", p.File, v.Line)
		if s, ok := vars[v.Name]; ok {
			var err error
			if t, err = newTemplate("--var " + v.Name).Parse(s); err != nil {
				return nil, fmt.Errorf("--var %s: bad template: %s", v.Name, templateErr(err))
			}
			where = "--var " + v.Name
		}
		if t == nil {
			return nil, fmt.Errorf("%s:%d: var %s is required: give --var %s=VALUE", p.File, v.Line, v.Name, v.Name)
		}
		s, err := render(t, d)
		if err != nil {
			return nil, fmt.Errorf("%s: machine %s: var %s: %w", where, m.ID, v.Name, err)
		}
		d.Vars[v.Name] = s
	}
	hp := &HostPlan{File: p.File, Machine: m, Vars: d.Vars}
	for i := range p.Steps {
		s := &p.Steps[i]
		ps, err := s.plan(p.File, d, h)
		if err != nil {
			return nil, fmt.Errorf("%s: machine %s: %s: %w", s.where(p.File), m.ID, s.Kind, err)
		}
		hp.Steps = append(hp.Steps, ps)
	}
	return hp, nil
}

func render(t *template.Template, d Data) (string, error) {
	if t == nil {
		return "", nil
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("%s", templateErr(err))
	}
	return b.String(), nil
}

func (s *Step) plan(file string, d Data, h *Hasher) (PlannedStep, error) {
	ps := PlannedStep{Kind: s.Kind, Label: s.Label(), Where: s.where(file), Mode: s.Mode, Action: s.Action}
	if s.When != nil {
		w, err := render(s.When, d)
		if err != nil {
			return ps, fmt.Errorf("when: %w", err)
		}
		switch strings.TrimSpace(w) {
		case "true":
		case "false", "":
			ps.Skip = true
			return ps, nil
		default:
			return ps, fmt.Errorf("when: rendered %q: want true or false", w)
		}
	}
	var err error
	str := func(t *template.Template, what string) string {
		if err != nil {
			return ""
		}
		var s string
		if s, err = render(t, d); err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		}
		return s
	}
	ps.Cmd = str(s.Cmd, "cmd")
	ps.Unless = str(s.Unless, "unless")
	ps.Dest = str(s.Dest, "dest")
	ps.Owner = strings.TrimSpace(str(s.Owner, "owner"))
	ps.Unit = strings.TrimSpace(str(s.Unit, "name"))
	ps.Systemctl = strings.TrimSpace(str(s.Systemctl, "systemctl"))
	ps.Reason = str(s.Reason, "reason")
	timeout := strings.TrimSpace(str(s.Timeout, "timeout"))
	settle := strings.TrimSpace(str(s.Settle, "settle"))
	src := strings.TrimSpace(str(s.Src, "src"))
	content := str(s.Content, "content")
	if err != nil {
		return ps, err
	}
	switch s.Kind {
	case KindRun, KindOnlyIf:
		if strings.TrimSpace(ps.Cmd) == "" {
			return ps, fmt.Errorf("cmd rendered empty")
		}
	case KindCopy, KindTemplate:
		if !strings.HasPrefix(ps.Dest, "/") || strings.ContainsAny(ps.Dest, "\n\x00") || strings.HasSuffix(ps.Dest, "/") {
			return ps, fmt.Errorf("dest %q: want an absolute file path", ps.Dest)
		}
		if ps.Owner != "" && !ownerRE.MatchString(ps.Owner) {
			return ps, fmt.Errorf("owner %q: want USER or USER:GROUP", ps.Owner)
		}
		if s.Kind == KindCopy {
			if src == "" {
				return ps, fmt.Errorf("src rendered empty")
			}
			fs, err := h.sum(src)
			if err != nil {
				return ps, fmt.Errorf("src: %w", err)
			}
			ps.SrcPath, ps.SHA256, ps.Size = src, fs.sum, fs.size
		} else {
			ps.Content = []byte(content)
			sum := sha256.Sum256(ps.Content)
			ps.SHA256, ps.Size = hex.EncodeToString(sum[:]), int64(len(ps.Content))
		}
	case KindService:
		if ps.Unit == "" || strings.ContainsAny(ps.Unit, " \t\n'\"$;&|<>`\\") {
			return ps, fmt.Errorf("name %q: want a unit name", ps.Unit)
		}
		if ps.Systemctl == "" {
			ps.Systemctl = "systemctl"
		}
	case KindWaitHealthy:
		ps.Timeout = defaultHealthTimeout
		if timeout != "" {
			t, err := time.ParseDuration(timeout)
			if err != nil || t <= 0 {
				return ps, fmt.Errorf("timeout %q: want a duration such as 5m", timeout)
			}
			ps.Timeout = t
		}
		if settle != "" {
			t, err := time.ParseDuration(settle)
			if err != nil || t < 0 {
				return ps, fmt.Errorf("settle %q: want a duration such as 15s", settle)
			}
			ps.Settle = t
		}
		if ps.Settle >= ps.Timeout {
			return ps, fmt.Errorf("settle %s is not shorter than timeout %s", ps.Settle, ps.Timeout)
		}
	case KindDrain:
		if ps.Reason == "" {
			ps.Reason = "drained by ironrack playbook " + strconv.Quote(file)
		}
	}
	return ps, nil
}
