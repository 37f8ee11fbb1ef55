package book

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is a step's kind.
type Kind string

// The step kinds.
const (
	KindRun         Kind = "run"
	KindCopy        Kind = "copy"
	KindTemplate    Kind = "template"
	KindService     Kind = "service"
	KindDrain       Kind = "drain"
	KindUndrain     Kind = "undrain"
	KindWaitHealthy Kind = "wait-healthy"
	KindOnlyIf      Kind = "only-if"
)

// Kinds lists every step kind, in the order the docs give them.
var Kinds = []Kind{KindRun, KindCopy, KindTemplate, KindService, KindDrain, KindUndrain, KindWaitHealthy, KindOnlyIf}

// Playbook is a parsed playbook file.
type Playbook struct {
	// File names the playbook in errors (its path, or builtin/NAME.yaml).
	File        string
	Name        string
	Description string
	// Vars are the declared vars in file order.
	Vars  []Var
	Steps []Step
}

// Var is a declared var. A var without a default is required.
type Var struct {
	Name string
	Line int
	// Default is nil when the var is required.
	Default *template.Template
	// Doc is the comment on the var's line, if any.
	Doc string
}

// Step is one parsed step. Its string options are templates, rendered per
// machine by Plan.
type Step struct {
	Kind Kind
	Line int
	// Name is the optional name: key.
	Name string
	// When, if set, renders to "true" or "false" (or empty: false).
	When *template.Template

	// run: Cmd and Unless; only-if: Cmd.
	Cmd, Unless *template.Template
	// copy: Src (a local path) and Dest; template: Body (parsed from the
	// src file or content) and Dest. Mode is octal ("" leaves an existing
	// file's mode alone; a new file gets 0644); Owner is USER[:GROUP].
	Src, Dest, Owner *template.Template
	Content          *template.Template
	Mode             string
	// service: Unit, Action (restart|reload), Systemctl (default
	// "systemctl").
	Unit, Systemctl *template.Template
	Action          string
	// drain: Reason. wait-healthy: Timeout (a duration; default 5m) and
	// Settle (default 0).
	Reason, Timeout, Settle *template.Template
}

// Where is FILE:LINE of the step.
func (s *Step) where(file string) string { return fmt.Sprintf("%s:%d", file, s.Line) }

// Label is how the step is shown: its name, or its kind.
func (s *Step) Label() string {
	if s.Name != "" {
		return string(s.Kind) + " " + strconv.Quote(s.Name)
	}
	return string(s.Kind)
}

// ReadFile reads a file a playbook names (a template step's src), relative
// to the playbook's own directory.
type ReadFile func(name string) ([]byte, error)

// Parse parses a playbook. file names it in errors; read, if not nil, reads
// the files its template steps name (relative paths are relative to the
// playbook's directory). Every error is "FILE:LINE: problem".
func Parse(file string, data []byte, read ReadFile) (*Playbook, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlErr(file, err)
	}
	p := &parser{file: file, read: read}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s:1: empty playbook: want a mapping with steps:", file)
	}
	pb, err := p.playbook(doc.Content[0])
	if err != nil {
		return nil, err
	}
	return pb, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErr turns yaml.v3's "yaml: line N: msg" into FILE:N: msg.
func yamlErr(file string, err error) error {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(l, "yaml: unmarshal errors:"))
		if l == "" {
			continue
		}
		if m := yamlLineRE.FindStringSubmatch(l); m != nil {
			l = file + ":" + m[1] + ": " + m[2]
		} else {
			l = file + ": " + strings.TrimPrefix(l, "yaml: ")
		}
		lines = append(lines, l)
	}
	return errors.New(strings.Join(lines, "\n"))
}

type parser struct {
	file string
	read ReadFile
}

func (p *parser) errf(n *yaml.Node, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", p.file, n.Line, fmt.Sprintf(format, a...))
}

// pairs returns a mapping's key/value nodes, refusing duplicates.
func (p *parser) pairs(n *yaml.Node, what string) ([][2]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "%s: want a mapping, got %s", what, kindName(n))
	}
	seen := map[string]bool{}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, p.errf(k, "%s: keys must be strings", what)
		}
		if seen[k.Value] {
			return nil, p.errf(k, "%s: %s given twice", what, k.Value)
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

func (p *parser) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, "%s: want a string, got %s", what, kindName(n))
	}
	return n.Value, nil
}

// tmpl parses a scalar node as a template.
func (p *parser) tmpl(n *yaml.Node, what string) (*template.Template, error) {
	s, err := p.str(n, what)
	if err != nil {
		return nil, err
	}
	return p.parseTemplate(n, what, s)
}

func (p *parser) parseTemplate(n *yaml.Node, what, text string) (*template.Template, error) {
	t, err := newTemplate(fmt.Sprintf("%s:%d", p.file, n.Line)).Parse(text)
	if err != nil {
		return nil, p.errf(n, "%s: bad template: %s", what, templateErr(err))
	}
	return t, nil
}

// templateErr drops text/template's "template: NAME:LINE:COL:" prefix and
// "executing ..." framing: the caller already says where.
func templateErr(err error) string {
	s := err.Error()
	if _, after, ok := strings.Cut(s, "error calling "); ok {
		if _, msg, ok := strings.Cut(after, ": "); ok {
			return msg
		}
	}
	if _, after, ok := strings.Cut(s, `" at `); ok && strings.Contains(s, "executing ") {
		return after
	}
	s = strings.TrimPrefix(s, "template: ")
	if i := strings.Index(s, ": "); i >= 0 && strings.Count(s[:i], ":") <= 3 {
		s = s[i+2:]
	}
	return s
}

func (p *parser) playbook(n *yaml.Node) (*Playbook, error) {
	kv, err := p.pairs(n, "playbook")
	if err != nil {
		return nil, err
	}
	pb := &Playbook{File: p.file}
	var steps *yaml.Node
	for _, e := range kv {
		k, v := e[0], e[1]
		switch k.Value {
		case "name":
			if pb.Name, err = p.str(v, "name"); err != nil {
				return nil, err
			}
		case "description":
			if pb.Description, err = p.str(v, "description"); err != nil {
				return nil, err
			}
		case "vars":
			if pb.Vars, err = p.vars(v); err != nil {
				return nil, err
			}
		case "steps":
			steps = v
		default:
			return nil, p.errf(k, "unknown key %q (want name, description, vars, steps)", k.Value)
		}
	}
	if steps == nil {
		return nil, p.errf(n, "no steps:")
	}
	if steps.Kind != yaml.SequenceNode {
		return nil, p.errf(steps, "steps: want a list, got %s", kindName(steps))
	}
	if len(steps.Content) == 0 {
		return nil, p.errf(steps, "steps: empty")
	}
	for _, sn := range steps.Content {
		s, err := p.step(sn)
		if err != nil {
			return nil, err
		}
		pb.Steps = append(pb.Steps, *s)
	}
	return pb, nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (p *parser) vars(n *yaml.Node) ([]Var, error) {
	kv, err := p.pairs(n, "vars")
	if err != nil {
		return nil, err
	}
	var out []Var
	for _, e := range kv {
		k, v := e[0], e[1]
		if !validVarName(k.Value) {
			return nil, p.errf(k, "vars: %q is not a var name (letters, digits, _; a template reads it as .Vars.NAME)", k.Value)
		}
		vr := Var{Name: k.Value, Line: k.Line, Doc: strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v.LineComment), "#"))}
		if vr.Doc == "" {
			vr.Doc = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(k.LineComment), "#"))
		}
		if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			if vr.Default, err = p.tmpl(v, "vars: "+k.Value); err != nil {
				return nil, err
			}
		}
		out = append(out, vr)
	}
	return out, nil
}

// options are the keys each kind's mapping takes; the first listed are
// required.
var options = map[Kind]struct{ required, optional []string }{
	KindRun:         {[]string{"cmd"}, []string{"unless"}},
	KindCopy:        {[]string{"src", "dest"}, []string{"mode", "owner"}},
	KindTemplate:    {[]string{"dest"}, []string{"src", "content", "mode", "owner"}},
	KindService:     {[]string{"name", "action"}, []string{"systemctl"}},
	KindDrain:       {nil, []string{"reason"}},
	KindUndrain:     {nil, nil},
	KindWaitHealthy: {nil, []string{"timeout", "settle"}},
	KindOnlyIf:      {[]string{"cmd"}, nil},
}

func (p *parser) step(n *yaml.Node) (*Step, error) {
	kv, err := p.pairs(n, "step")
	if err != nil {
		return nil, err
	}
	s := &Step{Line: n.Line}
	var body *yaml.Node
	var kindKey *yaml.Node
	for _, e := range kv {
		k, v := e[0], e[1]
		switch k.Value {
		case "name":
			if s.Name, err = p.str(v, "name"); err != nil {
				return nil, err
			}
		case "when":
			if s.When, err = p.tmpl(v, "when"); err != nil {
				return nil, err
			}
		default:
			kind := Kind(k.Value)
			if _, ok := options[kind]; !ok {
				return nil, p.errf(k, "unknown step kind or key %q (kinds: %s; keys: name, when)", k.Value, kindList())
			}
			if kindKey != nil {
				return nil, p.errf(k, "step has two kinds, %s and %s: one step, one kind", kindKey.Value, k.Value)
			}
			kindKey, body, s.Kind = k, v, kind
		}
	}
	if kindKey == nil {
		return nil, p.errf(n, "step has no kind (one of %s)", kindList())
	}
	what := string(s.Kind)
	opts := map[string]*yaml.Node{}
	switch {
	case body.Kind == yaml.ScalarNode && body.Tag == "!!null":
	case body.Kind == yaml.ScalarNode && (s.Kind == KindRun || s.Kind == KindOnlyIf):
		opts["cmd"] = body // the shorthand: run: CMD
	default:
		okv, err := p.pairs(body, what)
		if err != nil {
			return nil, err
		}
		o := options[s.Kind]
		allowed := append(append([]string(nil), o.required...), o.optional...)
		for _, e := range okv {
			if !contains(allowed, e[0].Value) {
				want := "no options"
				if len(allowed) > 0 {
					want = "want " + strings.Join(allowed, ", ")
				}
				return nil, p.errf(e[0], "%s: unknown option %q (%s)", what, e[0].Value, want)
			}
			opts[e[0].Value] = e[1]
		}
	}
	for _, r := range options[s.Kind].required {
		if opts[r] == nil {
			return nil, p.errf(body, "%s: %s: is required", what, r)
		}
	}
	t := func(key string) (*template.Template, error) {
		if opts[key] == nil {
			return nil, nil
		}
		return p.tmpl(opts[key], what+" "+key)
	}
	var errs [10]error
	s.Settle, errs[9] = t("settle")
	s.Cmd, errs[0] = t("cmd")
	s.Unless, errs[1] = t("unless")
	s.Src, errs[2] = t("src")
	s.Dest, errs[3] = t("dest")
	s.Owner, errs[4] = t("owner")
	s.Reason, errs[5] = t("reason")
	s.Timeout, errs[6] = t("timeout")
	s.Systemctl, errs[7] = t("systemctl")
	if s.Kind == KindService {
		s.Unit, errs[8] = t("name")
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	if m := opts["mode"]; m != nil {
		if s.Mode, err = p.str(m, what+" mode"); err != nil {
			return nil, err
		}
		if v, err := strconv.ParseUint(s.Mode, 8, 32); err != nil || v > 0o7777 {
			return nil, p.errf(m, "%s mode %q: want octal such as \"0644\"", what, s.Mode)
		}
	}
	if a := opts["action"]; a != nil {
		if s.Action, err = p.str(a, what+" action"); err != nil {
			return nil, err
		}
		if s.Action != "restart" && s.Action != "reload" {
			return nil, p.errf(a, "service action %q: want restart or reload", s.Action)
		}
	}
	if s.Kind == KindTemplate {
		src, content := opts["src"], opts["content"]
		switch {
		case src != nil && content != nil:
			return nil, p.errf(src, "template: give src or content, not both")
		case src == nil && content == nil:
			return nil, p.errf(body, "template: src or content is required")
		case content != nil:
			if s.Content, err = p.tmpl(content, "template content"); err != nil {
				return nil, err
			}
		default:
			name, err := p.str(src, "template src")
			if err != nil {
				return nil, err
			}
			if p.read == nil {
				return nil, p.errf(src, "template src %q: this playbook cannot read files", name)
			}
			if !path.IsAbs(name) {
				name = path.Join(path.Dir(p.file), name)
			}
			b, err := p.read(name)
			if err != nil {
				return nil, p.errf(src, "template src: %v", err)
			}
			c, err := newTemplate(name).Parse(string(b))
			if err != nil {
				return nil, p.errf(src, "template src %s: bad template: %s", name, strings.TrimPrefix(err.Error(), "template: "))
			}
			s.Content = c
			s.Src = nil
		}
	}
	return s, nil
}

func kindList() string {
	var b bytes.Buffer
	for i, k := range Kinds {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(k))
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// newTemplate is a template with the functions playbooks get and
// missingkey=error (a misspelt var is an error, not "<no value>").
func newTemplate(name string) *template.Template {
	return template.New(name).Option("missingkey=error").Funcs(funcs)
}

var funcs = template.FuncMap{
	// sq quotes a string for the remote shell: 'it'\''s'.
	"sq": shellQuote,
	// base and dir are path.Base and path.Dir.
	"base": path.Base,
	"dir":  path.Dir,
	// trimSuffix SUFFIX S, hasPrefix PREFIX S, hasSuffix SUFFIX S: the
	// string comes last so they chain in pipelines.
	"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
	"hasPrefix":  func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
	"hasSuffix":  func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
	// fail stops the plan with the message: a playbook's own checks.
	"fail": func(msg string) (string, error) { return "", errors.New(msg) },
	// pathName returns s if it is one safe path element (letters, digits,
	// ".", "_", "+", "-"; not "." or ".."), else fails naming what.
	"pathName": func(what, s string) (string, error) {
		if !pathNameRE.MatchString(s) || s == "." || s == ".." {
			return "", fmt.Errorf("%s %q: want one path element of letters, digits, '.', '_', '+', '-'", what, s)
		}
		return s, nil
	},
	// number returns s if it is a whole number (0 or more), else fails
	// naming what.
	"number": func(what, s string) (string, error) {
		if !numberRE.MatchString(s) {
			return "", fmt.Errorf("%s %q: want a whole number", what, s)
		}
		return s, nil
	},
}

var (
	pathNameRE = regexp.MustCompile(`^[A-Za-z0-9._+-]+$`)
	numberRE   = regexp.MustCompile(`^[0-9]{1,6}$`)
)

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// defaultHealthTimeout is wait-healthy's deadline when the step gives none.
const defaultHealthTimeout = 5 * time.Minute

// LoadFile reads and parses a playbook file from disk.
func LoadFile(name string) (*Playbook, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("playbook: %w", err)
	}
	return Parse(name, b, os.ReadFile)
}
