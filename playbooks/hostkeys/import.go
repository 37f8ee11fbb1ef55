package hostkeys

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/inventory"
)

// Entry is one host key line of known_hosts or ssh-keyscan output.
type Entry struct {
	// Line is its line number in the file.
	Line int
	// Hosts are its host names as written ("10.0.0.5", "[10.0.0.5]:2222",
	// "m-0123456789ab").
	Hosts []string
	Key   ssh.PublicKey
}

// maxImportLine bounds one line of an imported file.
const maxImportLine = 64 << 10

// ParseKnownHosts reads known_hosts or ssh-keyscan output (name is the
// file, for errors). Blank lines and comments are skipped. A marker
// (@cert-authority, @revoked), a hashed host name, a wildcard or negated
// pattern, or a line that does not parse is an error "FILE:LINE: problem":
// an import names hosts, it does not express policy.
func ParseKnownHosts(name string, r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxImportLine)
	var out []Entry
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		switch {
		case err != nil:
			return nil, fmt.Errorf("%s:%d: not a known_hosts line (HOSTS TYPE BASE64): %v", name, n, err)
		case marker != "":
			return nil, fmt.Errorf("%s:%d: @%s lines are not imported (give the hosts' own keys)", name, n, marker)
		case key == nil:
			return nil, fmt.Errorf("%s:%d: no key", name, n)
		}
		if _, isCert := key.(*ssh.Certificate); isCert {
			return nil, fmt.Errorf("%s:%d: a certificate, not a host key", name, n)
		}
		for _, h := range hosts {
			if strings.HasPrefix(h, "|") {
				return nil, fmt.Errorf("%s:%d: hashed host name %.20q…: ironrack cannot tell which machine it is; give plain names (ssh-keyscan without -H)", name, n, h)
			}
			if strings.ContainsAny(h, "*?!") {
				return nil, fmt.Errorf("%s:%d: pattern %q: give the host's own name or address", name, n, h)
			}
		}
		out = append(out, Entry{Line: n, Hosts: hosts, Key: key})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no host keys in it", name)
	}
	return out, nil
}

// Imported are the keys of one machine an import found.
type Imported struct {
	Machine *inventory.Machine
	// Keys are canonical lines, in file order, one per key type.
	Keys []string
	// Lines are the file lines they came from.
	Lines []int
}

// Match matches entries to machines by ID or IP (a "[IP]:PORT" host is its
// IP). An entry naming no machine, or naming two, or a machine given two
// different keys of one type, is an error "FILE:LINE: problem" quoting the
// host. The result is sorted by machine ID.
func Match(name string, entries []Entry, ms []*inventory.Machine) ([]Imported, error) {
	byName := map[string]*inventory.Machine{}
	for _, m := range ms {
		byName[m.ID] = m
		if m.IP != "" {
			byName[m.IP] = m
		}
	}
	got := map[string]*Imported{}
	types := map[string]map[string]string{} // id -> type -> key
	for _, e := range entries {
		var m *inventory.Machine
		for _, h := range e.Hosts {
			host := h
			if hh, _, err := net.SplitHostPort(h); err == nil && strings.HasPrefix(h, "[") {
				host = hh
			}
			mm := byName[host]
			if mm == nil {
				return nil, fmt.Errorf("%s:%d: host %q is no machine in the inventory (match by machine ID or IP); refused", name, e.Line, h)
			}
			if m != nil && mm.ID != m.ID {
				return nil, fmt.Errorf("%s:%d: hosts name two machines, %s and %s", name, e.Line, m.ID, mm.ID)
			}
			m = mm
		}
		canon := inventory.CanonicalKey(e.Key)
		if types[m.ID] == nil {
			types[m.ID] = map[string]string{}
		}
		if prev, ok := types[m.ID][e.Key.Type()]; ok {
			if prev != canon {
				return nil, fmt.Errorf("%s:%d: a second, different %s key for machine %s", name, e.Line, e.Key.Type(), m.ID)
			}
			continue
		}
		types[m.ID][e.Key.Type()] = canon
		im := got[m.ID]
		if im == nil {
			im = &Imported{Machine: m}
			got[m.ID] = im
		}
		im.Keys = append(im.Keys, canon)
		im.Lines = append(im.Lines, e.Line)
	}
	var out []Imported
	for _, im := range got {
		out = append(out, *im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Machine.ID < out[j].Machine.ID })
	return out, nil
}
