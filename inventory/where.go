package inventory

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// Where is a compiled selection expression over a machine's JSON field
// names, plus tags.KEY and drift (true when the machine has drifted).
//
// The grammar is expr-lang's: and or not, == != < <= > >= in, matches,
// contains, startsWith, endsWith, len(), literals and lists. A field a machine
// lacks (an empty string, an unknown number such as cpu_cores before
// discovery, a tag it does not carry) is nil, and a comparison with nil is
// unknown rather than false: `not (mem_gb >= 128)` does not select a machine
// whose memory is unknown, and `tier != "query"` does not select one with no
// tier. Only an explicit `tier == nil` / `tier != nil` tests for presence.
// A machine is selected only when the whole expression is true.
//
// disks and nics are lists of objects; LIST.FIELD projects one field of
// every element (disks.rotational, nics.driver), and a list of booleans is
// true when any element is: `disks.rotational` selects machines with a
// rotational disk, `"mlx5_core" in nics.driver` those with such a NIC.
// expr-lang's any/all/none/filter take predicates over the elements:
// `all(disks, not .rotational)`, `any(nics, .speed_mbps >= 25000)`.
type Where struct {
	src  string
	prog *vm.Program
	// idents are the top-level fields the expression reads.
	idents map[string]bool
	// pushdown are equalities on string meta keys that hold for every
	// selected machine; Consul filters on them exactly.
	pushdown map[string]string
}

// Fields are the names a where-expression may use (tags.KEY reads a tag):
// Machine's JSON field names, in order. machineEnv gives each its value.
var Fields = jsonNames(reflect.TypeFor[Machine]())

// whereExcluded are the machine fields (JSON paths) that machineEnv leaves
// out. TestMachineFieldsCarried fails when machineEnv lacks a field of
// Machine not in this list. bmc.credential_ref has never been offered to
// where-expressions; offering it is a decision of its own.
var whereExcluded = []string{"bmc.credential_ref"}

// jsonNames are the JSON names of struct type t's fields, in order.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if name, ok := jsonName(f); ok {
			names = append(names, name)
		}
	}
	return names
}

// jsonName is f's name in JSON; false if encoding/json leaves it out.
func jsonName(f reflect.StructField) (string, bool) {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch {
	case !f.IsExported() || name == "-":
		return "", false
	case name == "":
		return f.Name, true
	}
	return name, true
}

var fieldSet = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range Fields {
		m[f] = true
	}
	return m
}()

// unknown is the third truth value: a comparison with a missing field.
type unknownT struct{}

var unknown = unknownT{}

// ParseWhere compiles a where-expression. An empty string selects every
// machine. Errors name the position and what is wrong.
func ParseWhere(src string) (*Where, error) {
	return compileWhere(src, fieldSet, machineNames)
}

// machineNames are what an unknown-field error offers for a machine.
var machineNames = append(slices.Clone(Fields), "tags.KEY")

// compileWhere compiles src over the names in fields (names lists them
// for errors).
func compileWhere(src string, fields map[string]bool, names []string) (*Where, error) {
	w := &Where{src: src, idents: map[string]bool{}, pushdown: map[string]string{}}
	if strings.TrimSpace(src) == "" {
		return w, nil
	}
	if len(src) > 4096 {
		return nil, fmt.Errorf("where-expression longer than 4096 characters")
	}
	p := &patcher{w: w, fields: fields, names: names}
	regexes := &sync.Map{}
	prog, err := expr.Compile(src,
		expr.AllowUndefinedVariables(),
		expr.MaxNodes(2000),
		expr.DisableBuiltin("now"), expr.DisableBuiltin("date"),
		expr.Patch(p),
		expr.Function("__cmp", func(params ...any) (any, error) { return cmpFn(regexes, params...) }),
		expr.Function("__arith", arithFn),
		expr.Function("__and", andFn),
		expr.Function("__or", orFn),
		expr.Function("__not", notFn),
		expr.Function("__project", projectFn),
	)
	if err != nil {
		return nil, fmt.Errorf("where-expression %q: %w", src, err)
	}
	if p.err != nil {
		return nil, fmt.Errorf("where-expression %q: %w", src, p.err)
	}
	w.prog = prog
	w.pushdown = pushdown(prog.Node())
	return w, nil
}

// String returns the source.
func (w *Where) String() string { return w.src }

// patcher rewrites comparisons and boolean operators into three-valued
// functions, and records which fields are read.
type patcher struct {
	w *Where
	// fields are the names the expression may read (names in order, for
	// the error).
	fields map[string]bool
	names  []string
	err    error
}

var cmpOps = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"in": true, "matches": true, "contains": true, "startsWith": true, "endsWith": true}

func (p *patcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if strings.HasPrefix(n.Value, "__") || n.Value == "$env" {
			return
		}
		if !p.fields[n.Value] && p.err == nil {
			p.err = fmt.Errorf("unknown field %q (fields: %s)", n.Value, strings.Join(p.names, ", "))
		}
		p.w.idents[n.Value] = true
	case *ast.MemberNode:
		// disks.rotational, nics.driver: the field of every element, a list.
		id, ok := n.Node.(*ast.IdentifierNode)
		prop, isStr := n.Property.(*ast.StringNode)
		if !ok || !isStr || listFields[id.Value] == nil {
			return
		}
		if !slices.Contains(listFields[id.Value], prop.Value) && p.err == nil {
			p.err = fmt.Errorf("%s has no field %q (fields: %s)", id.Value, prop.Value, strings.Join(listFields[id.Value], ", "))
		}
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__project"},
			Arguments: []ast.Node{n.Node, &ast.StringNode{Value: prop.Value}}})
	case *ast.BinaryNode:
		switch {
		case cmpOps[n.Operator]:
			if isNil(n.Left) || isNil(n.Right) {
				return // explicit presence test: plain semantics
			}
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__cmp"},
				Arguments: []ast.Node{&ast.StringNode{Value: n.Operator}, n.Left, n.Right}})
		case arithOps[n.Operator]:
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__arith"},
				Arguments: []ast.Node{&ast.StringNode{Value: n.Operator}, n.Left, n.Right}})
		case n.Operator == "and" || n.Operator == "&&":
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__and"}, Arguments: []ast.Node{n.Left, n.Right}})
		case n.Operator == "or" || n.Operator == "||":
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__or"}, Arguments: []ast.Node{n.Left, n.Right}})
		}
	case *ast.UnaryNode:
		if n.Operator == "not" || n.Operator == "!" {
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__not"}, Arguments: []ast.Node{n.Node}})
		}
	}
}

// listFields are the fields of the elements of the list fields, which
// LIST.FIELD projects: disks.rotational is every disk's rotational flag.
var listFields = map[string][]string{
	"disks": jsonNames(reflect.TypeFor[Disk]()),
	"nics":  jsonNames(reflect.TypeFor[NIC]()),
}

// projectFn is LIST.FIELD: the field of every element, in order.
func projectFn(params ...any) (any, error) {
	l, ok := params[0].([]any)
	if !ok {
		return unknown, nil
	}
	out := make([]any, len(l))
	for i, e := range l {
		out[i] = e.(map[string]any)[params[1].(string)]
	}
	return out, nil
}

var arithOps = map[string]bool{"+": true, "-": true, "*": true, "/": true, "%": true, "**": true, "^": true}

// arithFn does arithmetic; a missing operand makes the result unknown.
func arithFn(params ...any) (out any, err error) {
	op, a, b := params[0].(string), params[1], params[2]
	if a == nil || b == nil || a == unknown || b == unknown {
		return unknown, nil
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot compute %T %s %T: %v", a, op, b, r)
		}
	}()
	switch op {
	case "+":
		return runtime.Add(a, b), nil
	case "-":
		return runtime.Subtract(a, b), nil
	case "*":
		return runtime.Multiply(a, b), nil
	case "/":
		return runtime.Divide(a, b), nil
	case "%":
		return runtime.Modulo(a, b), nil
	}
	return runtime.Exponent(a, b), nil
}

func isNil(n ast.Node) bool { _, ok := n.(*ast.NilNode); return ok }

// cmpFn compares with three-valued logic. regexCache holds the compiled
// `matches` patterns of one expression (string → *regexp.Regexp).
func cmpFn(regexCache *sync.Map, params ...any) (out any, err error) {
	op, a, b := params[0].(string), params[1], params[2]
	if a == nil || b == nil || a == unknown || b == unknown {
		return unknown, nil
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot compare %T %s %T: %v", a, op, b, r)
		}
	}()
	switch op {
	case "==":
		return runtime.Equal(a, b), nil
	case "!=":
		return !runtime.Equal(a, b), nil
	case "<":
		return runtime.Less(a, b), nil
	case "<=":
		return runtime.LessOrEqual(a, b), nil
	case ">":
		return runtime.More(a, b), nil
	case ">=":
		return runtime.MoreOrEqual(a, b), nil
	case "in":
		return runtime.In(a, b), nil
	}
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return nil, fmt.Errorf("%s needs strings, got %T and %T", op, a, b)
	}
	switch op {
	case "matches":
		v, ok := regexCache.Load(bs)
		if !ok {
			re, err := regexp.Compile(bs)
			if err != nil {
				return nil, fmt.Errorf("matches: bad regular expression %q: %w", bs, err)
			}
			v, _ = regexCache.LoadOrStore(bs, re)
		}
		return v.(*regexp.Regexp).MatchString(as), nil
	case "contains":
		return strings.Contains(as, bs), nil
	case "startsWith":
		return strings.HasPrefix(as, bs), nil
	case "endsWith":
		return strings.HasSuffix(as, bs), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

// truth maps a value to true, false or unknown. A list of booleans (a
// projection such as disks.rotational) is true when any element is.
func truth(v any) (any, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case unknownT, nil:
		return unknown, nil
	case []any:
		anyTrue := false
		for _, e := range v {
			b, ok := e.(bool)
			if !ok {
				return nil, fmt.Errorf("expected a boolean or a list of booleans, got a list holding %T %v", e, e)
			}
			anyTrue = anyTrue || b
		}
		return anyTrue, nil
	}
	return nil, fmt.Errorf("expected a boolean, got %T %v", v, v)
}

func andFn(params ...any) (any, error) { return kleene(params, false) }

func orFn(params ...any) (any, error) { return kleene(params, true) }

// kleene combines two truth values in three-valued logic: the dominant value
// (false for and, true for or) decides alone, then unknown, then the other.
func kleene(params []any, dominant bool) (any, error) {
	a, err := truth(params[0])
	if err != nil {
		return nil, err
	}
	b, err := truth(params[1])
	if err != nil {
		return nil, err
	}
	switch {
	case a == dominant || b == dominant:
		return dominant, nil
	case a == unknown || b == unknown:
		return unknown, nil
	}
	return !dominant, nil
}

func notFn(params ...any) (any, error) {
	a, err := truth(params[0])
	if err != nil {
		return nil, err
	}
	if a == unknown {
		return unknown, nil
	}
	return !a.(bool), nil
}

// pushdown collects `field == "literal"` conjuncts on string meta keys from
// the top-level chain of __and calls.
func pushdown(n ast.Node) map[string]string {
	out := map[string]string{}
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		c, ok := n.(*ast.CallNode)
		if !ok {
			return
		}
		callee, ok := c.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		switch callee.Value {
		case "__and":
			walk(c.Arguments[0])
			walk(c.Arguments[1])
		case "__cmp":
			if op, ok := c.Arguments[0].(*ast.StringNode); !ok || op.Value != "==" {
				return
			}
			id, lit := c.Arguments[1], c.Arguments[2]
			if _, ok := id.(*ast.IdentifierNode); !ok {
				id, lit = lit, id
			}
			ident, ok1 := id.(*ast.IdentifierNode)
			str, ok2 := lit.(*ast.StringNode)
			if ok1 && ok2 && stringMetaKeys[ident.Value] {
				if prev, dup := out[ident.Value]; dup && prev != str.Value {
					out[ident.Value] = "\x00contradiction" // matches nothing
					return
				}
				out[ident.Value] = str.Value
			}
		}
	}
	walk(n)
	return out
}

// Match evaluates the expression for one machine.
func (w *Where) Match(m *Machine) (bool, error) {
	if w.prog == nil {
		return true, nil
	}
	return w.run(machineEnv(m, w.idents))
}

// vms are reusable expression machines: a VM is not safe for concurrent
// use, but reusing one saves its stack's allocation on every record.
var vms = sync.Pool{New: func() any { return &vm.VM{} }}

// Env is a machine's whole where-environment, built once with NewEnv so a
// caller that keeps machines in memory (the web UI's cache) evaluates
// every later expression on it without rebuilding it. It must not be
// modified.
type Env struct{ env map[string]any }

// allFields are every field name, for NewEnv.
var allFields = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range Fields {
		m[f] = true
	}
	return m
}()

// NewEnv builds m's environment for MatchEnv.
func NewEnv(m *Machine) Env { return Env{machineEnv(m, allFields)} }

// MatchEnv is Match on an environment built by NewEnv.
func (w *Where) MatchEnv(e Env) (bool, error) {
	if w.prog == nil {
		return true, nil
	}
	v := vms.Get().(*vm.VM)
	out, err := v.Run(w.prog, e.env)
	vms.Put(v)
	if err != nil {
		for id := range w.idents {
			if _, ok := e.env[id]; !ok {
				return false, nil // a builtin got a missing field: unknown
			}
		}
		return false, fmt.Errorf("where-expression %q: %w", w.src, err)
	}
	t, err := truth(out)
	if err != nil {
		return false, fmt.Errorf("where-expression %q: %w", w.src, err)
	}
	return t == true, nil
}

func (w *Where) run(env map[string]any) (bool, error) {
	v := vms.Get().(*vm.VM)
	out, err := v.Run(w.prog, env)
	vms.Put(v)
	if err != nil {
		if len(env) < len(w.idents) {
			// A builtin got a missing field (e.g. upper(tier) with no
			// tier): unknown, like any other use of a missing field.
			return false, nil
		}
		return false, fmt.Errorf("where-expression %q: %w", w.src, err)
	}
	t, err := truth(out)
	if err != nil {
		return false, fmt.Errorf("where-expression %q: %w", w.src, err)
	}
	return t == true, nil
}

// Prefilter reports whether m can match at all: whether it holds every
// `field == "literal"` conjunct the expression pushes down (to Consul, for
// the store). It is a cheap check on plain fields for callers that hold
// machines in memory; Match decides.
func (w *Where) Prefilter(m *Machine) bool {
	for k, v := range w.pushdown {
		if v == "\x00contradiction" {
			return false
		}
		if got, ok := metaValue(m, k); ok && got != v {
			return false
		}
	}
	return true
}

// metaValue is m's value of the string meta field k.
func metaValue(m *Machine, k string) (string, bool) {
	for _, f := range metaFields {
		if f.key == k && !f.num {
			return f.get(m), true
		}
	}
	return "", false
}

// onlyMeta reports whether every field the expression reads is in NodeMeta,
// so it can be decided from the catalog alone.
func (w *Where) onlyMeta() bool {
	for id := range w.idents {
		if id == "id" {
			continue
		}
		if !stringMetaKeys[id] && !numMetaKeys[id] {
			return false
		}
	}
	return true
}

// matchMeta evaluates the expression from a node's meta.
func (w *Where) matchMeta(id string, meta map[string]string) (bool, error) {
	if w.prog == nil {
		return true, nil
	}
	env := make(map[string]any, len(w.idents))
	for f := range w.idents {
		if f == "id" {
			env[f] = id
			continue
		}
		v, ok := meta[f]
		if !ok {
			continue
		}
		if numMetaKeys[f] {
			n, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			env[f] = n
			continue
		}
		env[f] = v
	}
	return w.run(env)
}

// machineEnv builds the expression environment of m with just the fields
// the expression reads. Empty strings and unknown numbers are left out (nil).
// It is written out field by field for speed (a query evaluates it on every
// record it reads); TestMachineFieldsCarried checks that it carries every
// field of Machine but whereExcluded.
func machineEnv(m *Machine, idents map[string]bool) map[string]any {
	env := make(map[string]any, len(idents))
	str := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	for f := range idents {
		switch f {
		case "id":
			str(f, m.ID)
		case "serial":
			str(f, m.Serial)
		case "rack":
			str(f, m.Rack)
		case "slot":
			str(f, m.Slot)
		case "face":
			str(f, m.Face)
		case "u_height":
			if m.UHeight > 0 {
				env[f] = m.UHeight
			}
		case "vendor":
			str(f, m.Vendor)
		case "model":
			str(f, m.Model)
		case "uuid":
			str(f, m.UUID)
		case "firmware":
			str(f, m.Firmware)
		case "cpu_model":
			str(f, m.CPUModel)
		case "ip":
			str(f, m.IP)
		case "state":
			str(f, string(m.State))
		case "tier":
			str(f, m.Tier)
		case "owner":
			str(f, m.Owner)
		case "source":
			str(f, m.Source)
		case "cpu_cores":
			if m.CPUCores > 0 {
				env[f] = m.CPUCores
			}
		case "mem_gb":
			if m.MemGB > 0 {
				env[f] = m.MemGB
			}
		case "drift":
			env[f] = len(m.Drift) > 0
		case "host_keys", "host_certs":
			src := m.HostKeys
			if f == "host_certs" {
				src = m.HostCerts
			}
			l := make([]any, len(src))
			for i, k := range src {
				l[i] = k
			}
			env[f] = l
		case "tags":
			t := make(map[string]any, len(m.Tags))
			for k, v := range m.Tags {
				t[k] = v
			}
			env[f] = t
		case "bmc":
			b := map[string]any{"port": m.BMC.Port}
			if m.BMC.Address != "" {
				b["address"] = m.BMC.Address
			}
			if m.BMC.Protocol != "" {
				b["protocol"] = m.BMC.Protocol
			}
			if m.BMC.Username != "" {
				b["username"] = m.BMC.Username
			}
			if m.BMC.TLS != "" {
				b["tls"] = m.BMC.TLS
			}
			env[f] = b
		case "nics":
			l := make([]any, len(m.NICs))
			for i, n := range m.NICs {
				l[i] = map[string]any{"mac": n.MAC, "name": n.Name, "primary": n.Primary, "speed_mbps": n.SpeedMbps, "driver": n.Driver}
			}
			env[f] = l
		case "disks":
			l := make([]any, len(m.Disks))
			for i, d := range m.Disks {
				l[i] = map[string]any{"name": d.Name, "size_bytes": int(d.SizeBytes), "model": d.Model, "serial": d.Serial, "rotational": d.Rotational, "wwn": d.WWN}
			}
			env[f] = l
		case "created_at":
			env[f] = m.CreatedAt.UTC().Format(time.RFC3339)
		case "updated_at":
			env[f] = m.UpdatedAt.UTC().Format(time.RFC3339)
		}
	}
	return env
}
