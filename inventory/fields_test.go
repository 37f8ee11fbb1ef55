package inventory

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// TestMachineFieldsCarried guards the places that restate Machine's fields.
// It sets every field of a Machine, recursively (BMC, NICs, disks, drift),
// to a value of its own and checks that each consumer carries each field,
// unless the consumer's exclusion list names it or a field above it. A
// field added to Machine fails here until every consumer carries it or
// excludes it on purpose.
func TestMachineFieldsCarried(t *testing.T) {
	full := fullMachine(t)
	all, leaves := machinePaths(reflect.TypeFor[Machine](), "")
	consumers := map[string]struct {
		owner    string // where to carry or exclude a field
		excluded []string
		carries  func(t *testing.T, m *Machine) func(path string) bool
	}{
		"stored record": {owner: "recordJSON and its MarshalJSON/UnmarshalJSON in encode.go", carries: recordCarries},
		"where-language": {owner: "machineEnv, or whereExcluded, in where.go", excluded: whereExcluded,
			carries: whereCarries},
		"node meta": {owner: "metaFields, or metaExcluded, in machine.go", excluded: metaExcluded,
			carries: metaCarries},
		"rack sheet (export, then import)": {owner: "WriteSheet and ParseSheet, or sheetExcluded, in sheet.go",
			excluded: sheetExcluded, carries: sheetCarries},
	}
	for name, c := range consumers {
		t.Run(name, func(t *testing.T) {
			for _, e := range c.excluded {
				if !slices.Contains(all, e) {
					t.Errorf("%s excludes %q, which is no field of Machine", name, e)
				}
			}
			carried := c.carries(t, full)
			for _, p := range leaves {
				if excludes(c.excluded, p) {
					continue
				}
				if !carried(p) {
					t.Errorf("Machine field %s is not carried by the %s: carry it, or exclude it, in %s", p, name, c.owner)
				}
			}
		})
	}
}

// excludes reports whether list names path or a field above it.
func excludes(list []string, path string) bool {
	for _, e := range list {
		if path == e || strings.HasPrefix(path, e+".") {
			return true
		}
	}
	return false
}

// recordCarries: a field is carried when it survives the stored record's
// encoding and decoding unchanged.
func recordCarries(t *testing.T, m *Machine) func(string) bool {
	b, err := record{Machine: *m, HistorySeq: 7}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := r.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if r.HistorySeq != 7 {
		t.Errorf("history_seq %d read back as %d", 7, r.HistorySeq)
	}
	return sameAt(m, &r.Machine)
}

// whereCarries: a field is carried when a where-expression may name it and
// machineEnv gives it the machine's value. Times are RFC 3339 text; a
// boolean standing for a list (drift: true when the machine has drifted)
// carries the list's fields as a summary.
func whereCarries(t *testing.T, m *Machine) func(string) bool {
	idents := map[string]bool{}
	for _, f := range Fields {
		idents[f] = true
	}
	env := machineEnv(m, idents)
	return func(path string) bool {
		segs := strings.Split(path, ".")
		if !fieldSet[segs[0]] {
			return false
		}
		if lf, ok := listFields[segs[0]]; ok && len(segs) > 1 && !slices.Contains(lf, segs[1]) {
			return false
		}
		v, ok := env[segs[0]]
		for _, s := range segs[1:] {
			if !ok {
				return false
			}
			switch x := v.(type) {
			case bool:
				return x
			case []any:
				if len(x) == 0 {
					return false
				}
				el, isMap := x[0].(map[string]any)
				v, ok = el[s]
				ok = ok && isMap
			case map[string]any:
				v, ok = x[s]
			default:
				return false
			}
		}
		if !ok {
			return false
		}
		want := leafValues(reflect.ValueOf(m).Elem(), segs)[0]
		if tm, isTime := want.(time.Time); isTime {
			return v == tm.UTC().Format(time.RFC3339)
		}
		return fmt.Sprint(v) == fmt.Sprint(want)
	}
}

// metaCarries: a field is carried when the node's meta holds its value.
func metaCarries(t *testing.T, m *Machine) func(string) bool {
	all, _ := machinePaths(reflect.TypeFor[Machine](), "")
	for _, f := range metaFields {
		if !slices.Contains(all, f.key) {
			t.Errorf("metaFields has %q, which is no field of Machine", f.key)
		}
	}
	meta := m.nodeMeta()
	return func(path string) bool {
		v, ok := meta[path]
		return ok && v == fmt.Sprint(leafValues(reflect.ValueOf(m).Elem(), strings.Split(path, "."))[0])
	}
}

// sheetCarries: a field is carried when it survives WriteSheet, ParseSheet
// and applying the row to a new machine.
func sheetCarries(t *testing.T, m *Machine) func(string) bool {
	var b bytes.Buffer
	skipped, err := WriteSheet(&b, []*Machine{m})
	if err != nil || len(skipped) > 0 {
		t.Fatalf("WriteSheet: skipped %d, %v", len(skipped), err)
	}
	rows, err := ParseSheet("export.csv", &b)
	if err != nil || len(rows) != 1 {
		t.Fatalf("ParseSheet of\n%s: %d rows, %v", b.String(), len(rows), err)
	}
	return sameAt(m, rows[0].machine(MachineID("another"), nil))
}

// sameAt: a field is carried from a to b when it holds the same values.
func sameAt(a, b *Machine) func(string) bool {
	return func(path string) bool {
		segs := strings.Split(path, ".")
		return cmp.Equal(leafValues(reflect.ValueOf(a).Elem(), segs), leafValues(reflect.ValueOf(b).Elem(), segs))
	}
}

var timeType = reflect.TypeFor[time.Time]()

// machinePaths lists the JSON paths of struct type t's fields under prefix:
// all of them, and the leaves. The fields of a list's elements are under
// the list's name (nics.mac); a time or a map is a leaf.
func machinePaths(t reflect.Type, prefix string) (all, leaves []string) {
	for f := range t.Fields() {
		name, ok := jsonName(f)
		if !ok {
			continue
		}
		p := prefix + name
		all = append(all, p)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct || ft == timeType {
			leaves = append(leaves, p)
			continue
		}
		a, l := machinePaths(ft, p+".")
		all, leaves = append(all, a...), append(leaves, l...)
	}
	return all, leaves
}

// leafValues are the values at a path in v, one per list element on the way.
func leafValues(v reflect.Value, segs []string) []any {
	if v.Kind() == reflect.Slice && len(segs) > 0 {
		var out []any
		for i := range v.Len() {
			out = append(out, leafValues(v.Index(i), segs)...)
		}
		return out
	}
	if len(segs) == 0 {
		return []any{v.Interface()}
	}
	for i := range v.NumField() {
		if name, ok := jsonName(v.Type().Field(i)); ok && name == segs[0] {
			return leafValues(v.Field(i), segs[1:])
		}
	}
	panic("no field " + segs[0] + " in " + v.Type().String())
}

// fullMachine is a valid Machine with every field set, recursively, each to
// a value of its own: strings to their path, numbers to a count, booleans
// to true, lists to one element. Fields with a format take a valid value.
func fullMachine(t *testing.T) *Machine {
	m := &Machine{}
	n := 0
	fill(reflect.ValueOf(m).Elem(), "", &n)
	m.ID = MachineID(m.Serial)
	m.UUID = "4c4c4544-0047-3510-8051-b4c04f4e3332"
	m.Firmware = FirmwareUEFI
	m.IP = "192.0.2.7"
	m.State = StateDeployed
	m.Face = FaceRear
	m.BMC.Protocol = ProtocolRedfish
	m.BMC.TLS = "sha256:5663de810551f269ea5c9a17b800d776710415b3e04b3fe20d8dde393ce50b01"
	m.NICs[0].MAC = "52:54:00:12:34:56"
	m.HostKeys, m.HostCerts = testHostKey(t)
	if errs := m.Validate(); len(errs) > 0 {
		t.Fatalf("the full machine is invalid: %v", errs)
	}
	return m
}

func fill(v reflect.Value, path string, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, *n, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if name, ok := jsonName(v.Type().Field(i)); ok {
				fill(v.Field(i), strings.TrimPrefix(path+"."+name, "."), n)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), path, n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		key, val := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(key, path+"-key", n)
		fill(val, path, n)
		v.SetMapIndex(key, val)
	case reflect.String:
		v.SetString(path)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	default:
		panic(fmt.Sprintf("fill: %s is a %s; teach fill and the consumers about it", path, v.Type()))
	}
}

// testHostKey is a host key (from a fixed seed) and a host certificate of
// it, as a machine's record keeps them.
func testHostKey(t *testing.T) (keys, certs []string) {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	ca := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	caSigner, err := ssh.NewSignerFromKey(ca)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: pub, CertType: ssh.HostCert, ValidPrincipals: []string{"m-0123456789ab"},
		ValidAfter: 1, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, caSigner); err != nil {
		t.Fatal(err)
	}
	return []string{CanonicalKey(pub)}, []string{CanonicalKey(cert)}
}
