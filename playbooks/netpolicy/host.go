package netpolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// Runner runs one shell command on a host, with stdin, and returns its exit
// status. *remote.Client (playbooks/remote, SSH) satisfies it; tests run
// `ip netns exec NS sh -c CMD`. A Runner that also implements io.Closer is
// closed when the operation is done with it.
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exit int, err error)
}

// Dialer opens a new connection to machine m. Apply dials twice: once to
// install, and once more, through the new rules, to confirm.
type Dialer func(ctx context.Context, m *inventory.Machine) (Runner, error)

// DefaultStateDir is where the host keeps the pending rollback: the saved
// ruleset, the timer's PID, the mark of a rollback that ran.
const DefaultStateDir = "/run/ironrack/fw"

// DefaultConfirmWithin is how long an apply waits for its confirmation.
const DefaultConfirmWithin = 60 * time.Second

// Firewall runs the host side of the policy: plan, apply, confirm, status
// and set updates.
type Firewall struct {
	// Dial connects to a machine.
	Dial Dialer
	// Records keeps each machine's last apply. If nil, nothing is recorded.
	Records *Records
	// ConfirmWithin is how long the rollback waits. If 0, DefaultConfirmWithin.
	ConfirmWithin time.Duration
	// StateDir is the host's state directory. If "", DefaultStateDir.
	StateDir string
	// Timeout bounds each command on a host. If 0, 30s.
	Timeout time.Duration
	// Logger logs; nil discards.
	Logger *slog.Logger
}

var safePath = regexp.MustCompile(`^/[A-Za-z0-9/_.-]+$`)

func (f *Firewall) dir() (string, error) {
	d := f.StateDir
	if d == "" {
		d = DefaultStateDir
	}
	if !safePath.MatchString(d) {
		return "", fmt.Errorf("state dir %q: want an absolute path of letters, digits, /, _, . and -", d)
	}
	return d, nil
}

func (f *Firewall) log() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger
}

// run dials m and runs cmd, returning stdout; a non-zero exit is an error
// carrying stderr.
func (f *Firewall) run(ctx context.Context, r Runner, m *inventory.Machine, what, cmd string, stdin io.Reader) (string, int, error) {
	t := f.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := r.Run(ctx, cmd, stdin, &out, &errb)
	if err != nil {
		return out.String(), code, fmt.Errorf("%s on %s: %w", what, m.ID, err)
	}
	if code != 0 {
		return out.String(), code, fmt.Errorf("%s on %s: exit %d: %s", what, m.ID, code, strings.TrimSpace(errb.String()))
	}
	return out.String(), 0, nil
}

func (f *Firewall) dial(ctx context.Context, m *inventory.Machine) (Runner, func(), error) {
	r, err := f.Dial(ctx, m)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", m.ID, err)
	}
	return r, func() {
		if c, ok := r.(io.Closer); ok {
			_ = c.Close()
		}
	}, nil
}

// HostState is what a host runs, read from `nft -j list ruleset`.
type HostState struct {
	// Present is false when the host has no ironrack table.
	Present bool
	// Version is the ruleset's version ("" if none is recorded).
	Version string
	// Sets are the ironrack table's sets' elements by name.
	Sets map[string][]string
	// Rules counts the ironrack table's rules.
	Rules int
	// Comments are the comments of its rules that have one, but for the
	// version's.
	Comments []string
	// OtherTables are the host's other tables (family name), left alone.
	OtherTables []string
}

// ParseRuleset reads `nft -j list ruleset` output.
func ParseRuleset(b []byte) (*HostState, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %w", err)
	}
	hs := &HostState{Sets: map[string][]string{}}
	for _, obj := range doc.Nftables {
		switch {
		case obj["table"] != nil:
			var t struct{ Family, Name string }
			if err := json.Unmarshal(obj["table"], &t); err != nil {
				return nil, err
			}
			if t.Family == "inet" && t.Name == Table {
				hs.Present = true
			} else {
				hs.OtherTables = append(hs.OtherTables, t.Family+" "+t.Name)
			}
		case obj["set"] != nil:
			var s struct {
				Family, Table, Name string
				Elem                []json.RawMessage
			}
			if err := json.Unmarshal(obj["set"], &s); err != nil {
				return nil, err
			}
			if s.Family != "inet" || s.Table != Table {
				continue
			}
			els := []string{}
			for _, e := range s.Elem {
				els = append(els, elemString(e))
			}
			hs.Sets[s.Name] = els
		case obj["rule"] != nil:
			var r struct{ Family, Table, Comment string }
			if err := json.Unmarshal(obj["rule"], &r); err != nil {
				return nil, err
			}
			if r.Family != "inet" || r.Table != Table {
				continue
			}
			hs.Rules++
			if v, ok := strings.CutPrefix(r.Comment, versionComment); ok {
				if hs.Version == "" {
					hs.Version = v
				}
			} else if r.Comment != "" {
				hs.Comments = append(hs.Comments, r.Comment)
			}
		}
	}
	return hs, nil
}

// elemString renders a set element of nft's JSON: an address, a prefix or
// a range.
func elemString(e json.RawMessage) string {
	var s string
	if json.Unmarshal(e, &s) == nil {
		return s
	}
	var p struct {
		Prefix *struct {
			Addr string
			Len  int
		}
		Range []string
	}
	if json.Unmarshal(e, &p) == nil {
		if p.Prefix != nil {
			return fmt.Sprintf("%s/%d", p.Prefix.Addr, p.Prefix.Len)
		}
		if len(p.Range) == 2 {
			return p.Range[0] + "-" + p.Range[1]
		}
	}
	return string(e)
}

// Read reads what m runs now.
func (f *Firewall) Read(ctx context.Context, m *inventory.Machine) (*HostState, error) {
	r, done, err := f.dial(ctx, m)
	if err != nil {
		return nil, err
	}
	defer done()
	out, _, err := f.run(ctx, r, m, "nft -j list ruleset", "nft -j list ruleset", nil)
	if err != nil {
		return nil, err
	}
	return ParseRuleset([]byte(out))
}

// Diff says, line by line, what applying want changes on a host in state
// have. Empty means nothing.
func Diff(have *HostState, want *Ruleset) []string {
	var out []string
	switch {
	case !have.Present:
		out = append(out, fmt.Sprintf("+ table inet %s, version %s (the host has none)", Table, want.Version))
	case have.Version != want.Version:
		out = append(out, fmt.Sprintf("~ rules: version %s (%d rules) -> %s", orNone(have.Version), have.Rules, want.Version))
		// Rules by their comments, as a multiset.
		count := map[string]int{}
		for _, c := range have.Comments {
			count[c]++
		}
		for _, c := range want.Comments {
			if count[c] > 0 {
				count[c]--
				continue
			}
			out = append(out, "+ rule: "+c)
		}
		for _, c := range have.Comments {
			if count[c] > 0 {
				count[c]--
				out = append(out, "- rule: "+c)
			}
		}
	}
	wantNames := map[string]bool{}
	for _, s := range want.Sets {
		wantNames[s.Name] = true
		cur, ok := have.Sets[s.Name]
		if !ok && have.Present {
			out = append(out, fmt.Sprintf("+ set %s", s.Name))
		}
		var add, del []string
		for _, e := range s.Elements {
			if !slices.Contains(cur, e) {
				add = append(add, e)
			}
		}
		for _, e := range cur {
			if !slices.Contains(s.Elements, e) {
				del = append(del, e)
			}
		}
		for _, e := range add {
			out = append(out, fmt.Sprintf("+ %s %s", s.Name, e))
		}
		for _, e := range del {
			out = append(out, fmt.Sprintf("- %s %s", s.Name, e))
		}
	}
	var gone []string
	for name := range have.Sets {
		if !wantNames[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		out = append(out, fmt.Sprintf("- set %s", name))
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// applyScript installs stdin as the ironrack table in one nft -f
// transaction after arming the rollback: a process in its own session
// (setsid), detached from the connection, that restores the saved table
// after the delay unless confirm kills it first. It starts with an empty
// environment, so nothing that ends the session's processes by a mark in
// their environment (playbooks/remote on cancel) ends it too. The saved table is the
// one from before the first unconfirmed apply: a second apply while one
// is pending keeps it.
func applyScript(dir string, within time.Duration) string {
	secs := int((within + time.Second - 1) / time.Second)
	return fmt.Sprintf(`set -eu
d=%[1]s
umask 077
mkdir -p "$d"
cat > "$d/new.nft"
nft -c -f "$d/new.nft"
pending=
if [ -s "$d/rollback.pid" ] && kill -s 0 -- "-$(cat "$d/rollback.pid")" 2>/dev/null; then
  kill -- "-$(cat "$d/rollback.pid")" 2>/dev/null || true
  pending=1
fi
if [ -z "$pending" ]; then
  { echo 'add table inet %[3]s'; echo 'delete table inet %[3]s'; nft list table inet %[3]s 2>/dev/null || true; } > "$d/rollback.tmp"
  mv "$d/rollback.tmp" "$d/rollback.nft"
fi
rm -f "$d/rolledback"
env -i PATH="$PATH" setsid sh -c 'sleep %[2]d; nft -f "$0/rollback.nft" && date +%%s > "$0/rolledback"; rm -f "$0/rollback.pid"' "$d" </dev/null >/dev/null 2>&1 &
echo $! > "$d/rollback.pid"
nft -f "$d/new.nft"
echo "armed $!"
`, dir, secs, Table)
}

// confirmScript kills the pending rollback and prints the version the host
// runs after it.
func confirmScript(dir string) string {
	return fmt.Sprintf(`d=%[1]s
v=$(nft list table inet %[2]s 2>/dev/null | sed -n 's/.*comment "%[3]s\([^"]*\)".*/\1/p' | head -n1)
p=$(cat "$d/rollback.pid" 2>/dev/null)
if [ -n "$p" ] && { kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null; }; then
  rm -f "$d/rollback.pid"
  v=$(nft list table inet %[2]s 2>/dev/null | sed -n 's/.*comment "%[3]s\([^"]*\)".*/\1/p' | head -n1)
  echo "confirmed $v"
  exit 0
fi
if [ -e "$d/rolledback" ]; then echo "rolled back at $(cat "$d/rolledback")"; exit 3; fi
echo "nothing pending; running $v"
exit 4
`, dir, Table, versionComment)
}

// ApplyResult is one machine's apply.
type ApplyResult struct {
	Machine string
	Version string
	// Confirmed is set when the apply was confirmed over a new connection
	// made through the new rules.
	Confirmed bool
	// RollbackAt is when the host restores its previous ruleset unless
	// confirmed (zero if confirmed).
	RollbackAt time.Time
}

// ErrRolledBack is returned by Confirm when the rollback already ran.
var ErrRolledBack = errors.New("the rollback already ran")

// Apply installs rs on m and arms the rollback. With selfConfirm it then
// opens a new connection, which the new rules must admit (the first one
// lives on as established and proves nothing), and confirms over it; if
// that fails the host returns to its previous ruleset when the timer runs
// out, and the error says so.
func (f *Firewall) Apply(ctx context.Context, m *inventory.Machine, rs *Ruleset, selfConfirm bool) (*ApplyResult, error) {
	dir, err := f.dir()
	if err != nil {
		return nil, err
	}
	within := f.ConfirmWithin
	if within == 0 {
		within = DefaultConfirmWithin
	}
	r, done, err := f.dial(ctx, m)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, _, err := f.run(ctx, r, m, "apply", applyScript(dir, within), strings.NewReader(rs.Text))
	done()
	if err != nil {
		return nil, err
	}
	res := &ApplyResult{Machine: m.ID, Version: rs.Version, RollbackAt: start.Add(within)}
	f.log().Info("applied; rollback armed", "machine", m.ID, "version", rs.Version, "host", strings.TrimSpace(out), "within", within)
	f.record(ctx, m, Record{Version: rs.Version, AppliedAt: start.UTC()})
	if !selfConfirm {
		return res, nil
	}
	if err := f.Confirm(ctx, m, rs.Version); err != nil {
		return res, fmt.Errorf("apply %s: not confirmed over a new connection (%w); the previous ruleset returns by %s",
			m.ID, err, res.RollbackAt.Format(time.TimeOnly))
	}
	res.Confirmed, res.RollbackAt = true, time.Time{}
	return res, nil
}

// Confirm opens a new connection to m and stops its pending rollback. If
// want is not empty, the host must then run that version.
func (f *Firewall) Confirm(ctx context.Context, m *inventory.Machine, want string) error {
	dir, err := f.dir()
	if err != nil {
		return err
	}
	r, done, err := f.dial(ctx, m)
	if err != nil {
		return err
	}
	defer done()
	out, code, err := f.run(ctx, r, m, "confirm", confirmScript(dir), nil)
	out = strings.TrimSpace(out)
	switch {
	case code == 3:
		return fmt.Errorf("confirm %s: %w (%s)", m.ID, ErrRolledBack, out)
	case code == 4:
		return fmt.Errorf("confirm %s: %s", m.ID, out)
	case err != nil:
		return err
	}
	got := strings.TrimPrefix(out, "confirmed ")
	if want != "" && got != want {
		return fmt.Errorf("confirm %s: the host runs version %s, not %s (the rollback ran first)", m.ID, orNone(got), want)
	}
	now := time.Now().UTC()
	if f.Records != nil {
		if err := f.Records.Update(ctx, m.ID, func(r *Record) { r.Confirmed, r.ConfirmedAt = true, &now }); err != nil {
			f.log().Warn("record confirm", "machine", m.ID, "err", err)
		}
	}
	return nil
}

func (f *Firewall) record(ctx context.Context, m *inventory.Machine, rec Record) {
	if f.Records == nil {
		return
	}
	if err := f.Records.Put(ctx, m.ID, rec); err != nil {
		f.log().Warn("record apply", "machine", m.ID, "err", err)
	}
}

// Pending reports whether m has a rollback armed.
func (f *Firewall) Pending(ctx context.Context, m *inventory.Machine) (bool, error) {
	dir, err := f.dir()
	if err != nil {
		return false, err
	}
	r, done, err := f.dial(ctx, m)
	if err != nil {
		return false, err
	}
	defer done()
	out, _, err := f.run(ctx, r, m, "read rollback", fmt.Sprintf(`d=%s; if [ -s "$d/rollback.pid" ] && kill -s 0 -- "-$(cat "$d/rollback.pid")" 2>/dev/null; then echo pending; else echo none; fi`, dir), nil)
	return strings.TrimSpace(out) == "pending", err
}

// UpdateSets replaces the elements of sets on m in one nft transaction,
// rules untouched.
func (f *Firewall) UpdateSets(ctx context.Context, m *inventory.Machine, sets []Set) error {
	return f.nftInput(ctx, m, "update sets", SetUpdate(sets))
}

// nftInput runs nft -f - with input on m: one transaction.
func (f *Firewall) nftInput(ctx context.Context, m *inventory.Machine, what, input string) error {
	if input == "" {
		return nil
	}
	r, done, err := f.dial(ctx, m)
	if err != nil {
		return err
	}
	defer done()
	_, _, err = f.run(ctx, r, m, what, "nft -f -", strings.NewReader(input))
	return err
}
