package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/agent"
)

func identify(t *testing.T, name string) []uint16 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "identify", name))
	if err != nil {
		t.Fatal(err)
	}
	w, err := agent.ParseIdentify(string(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return w
}

// TestATASecurityFromIdentify decodes real `hdparm --Istdout` dumps
// (testdata/identify/README.md): QEMU's AHCI disk has no security feature
// set, an old Seagate HDD has it without enhanced erase or estimate, a
// Samsung SSD is frozen with both estimates.
func TestATASecurityFromIdentify(t *testing.T) {
	tests := map[string]struct {
		file    string
		want    agent.ATASecurity
		refusal string
		timeout time.Duration // EraseTimeout(Enhanced, 64 GB)
	}{
		"qemu ahci": {file: "qemu-ahci.txt",
			want:    agent.ATASecurity{Model: "IRONRACK-HDD", Serial: "SATA-1"},
			refusal: "does not support the ATA security feature set",
			timeout: 64e9/40e6*time.Second*3/2 + 5*time.Minute},
		"seagate hdd": {file: "seagate-st3160023as.txt",
			want:    agent.ATASecurity{Model: "ST3160023AS", Serial: "3JS2KSL3", Supported: true},
			timeout: 64e9/40e6*time.Second*3/2 + 5*time.Minute},
		"samsung ssd, frozen": {file: "samsung-870qvo-frozen.txt",
			want: agent.ATASecurity{Model: "Samsung SSD 870 QVO 4TB", Serial: "S5STNF0W706332M", Supported: true, Frozen: true, Enhanced: true,
				EraseTime: 4 * time.Minute, EnhancedEraseTime: 8 * time.Minute},
			refusal: "frozen",
			timeout: 8*time.Minute + 4*time.Minute + 5*time.Minute},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := agent.SecurityFromIdentify(identify(t, tc.file))
			if d := cmp.Diff(tc.want, s); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
			if r := s.Refusal(); tc.refusal == "" && r != "" || !strings.Contains(r, tc.refusal) {
				t.Errorf("refusal %q, want one containing %q", r, tc.refusal)
			}
			if got := s.EraseTimeout(s.Enhanced, 64e9); got != tc.timeout {
				t.Errorf("timeout %s, want %s", got, tc.timeout)
			}
		})
	}
}

// TestATASecurityWords flips word 128's bits on the Seagate dump: each
// state the erase must not start in is refused with its reason, and the
// extended time format (word 89 bit 15) is read.
func TestATASecurityWords(t *testing.T) {
	base := identify(t, "seagate-st3160023as.txt")
	tests := map[string]struct {
		w128, w89 uint16
		refusal   string
		erase     time.Duration
		atLeast   bool
	}{
		"supported":            {w128: 0x0001},
		"enabled":              {w128: 0x0003, refusal: "already has a user password"},
		"locked":               {w128: 0x0007, refusal: "locked"},
		"frozen":               {w128: 0x0009, refusal: "frozen"},
		"count expired":        {w128: 0x0011, refusal: "attempt counter expired"},
		"estimate 2 units":     {w128: 0x0001, w89: 0x0002, erase: 4 * time.Minute},
		"estimate maximum":     {w128: 0x0001, w89: 0x00ff, erase: 510 * time.Minute, atLeast: true},
		"extended format":      {w128: 0x0001, w89: 0x8000 | 300, erase: 600 * time.Minute},
		"extended format, max": {w128: 0x0001, w89: 0xffff, erase: 0x7fff * 2 * time.Minute, atLeast: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := append([]uint16(nil), base...)
			w[128], w[89] = tc.w128, tc.w89
			s := agent.SecurityFromIdentify(w)
			if r := s.Refusal(); tc.refusal == "" && r != "" || !strings.Contains(r, tc.refusal) {
				t.Errorf("refusal %q, want one containing %q", r, tc.refusal)
			}
			if s.EraseTime != tc.erase || s.AtLeastErase != tc.atLeast {
				t.Errorf("erase time %s (at least: %v), want %s (%v)", s.EraseTime, s.AtLeastErase, tc.erase, tc.atLeast)
			}
		})
	}
}

// TestParseIdentifyErrors: what is not 256 words of IDENTIFY data is an
// error naming the line or the reason; hdparm's all-zero answer for a SCSI
// disk (captured on QEMU's virtio-scsi) is not an ATA disk.
func TestParseIdentifyErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "identify", "seagate-st3160023as.txt"))
	if err != nil {
		t.Fatal(err)
	}
	scsi, err := os.ReadFile(filepath.Join("testdata", "identify", "qemu-virtio-scsi.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct{ in, want string }{
		"scsi disk":    {string(scsi), "all words zero"},
		"empty":        {"", "0 words, want 256"},
		"short line":   {strings.Replace(string(good), "0000 0000 0000 0000 0000 0000 0000 7ea5", "0000 0000 0000 7ea5", 1), "line 38: 4 fields"},
		"not hex":      {strings.Replace(string(good), "0c5a 3fff", "0c5a 3ffg", 1), "line 7: \"3ffg\""},
		"trailing":     {string(good) + "SG_IO: bad sense\n", "line 39"},
		"checksum bad": {strings.Replace(string(good), "0c5a 3fff", "0c5b 3fff", 1), "checksum fails"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := agent.ParseIdentify(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// ataSim is a drive's ATA security state machine (ACS-3 7.46: SEC1
// disabled, SEC5 enabled and unlocked, frozen states), for the erase
// sequence's pure logic; the real drive is hdparm's (and the QEMU test's
// refusal). fail makes a command fail; calls records the commands.
type ataSim struct {
	words    []uint16
	password string
	fail     map[string]error
	hang     bool // Erase blocks until ctx is done
	calls    []string
}

func (d *ataSim) Identify(context.Context) ([]uint16, error) {
	d.calls = append(d.calls, "identify")
	if err := d.fail["identify"]; err != nil {
		return nil, err
	}
	return append([]uint16(nil), d.words...), nil
}

func (d *ataSim) SetPassword(_ context.Context, pw string) error {
	d.calls = append(d.calls, "set-pass "+pw)
	if err := d.fail["set-pass"]; err != nil {
		return err
	}
	if d.words[128]&0x8 != 0 {
		return errors.New("frozen: aborted")
	}
	d.password = pw
	d.words[128] |= 0x2
	d.words[85] |= 0x2
	return nil
}

func (d *ataSim) Erase(ctx context.Context, pw string, enhanced bool) error {
	d.calls = append(d.calls, fmt.Sprintf("erase enhanced=%v %s", enhanced, pw))
	if d.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if err := d.fail["erase"]; err != nil {
		return err
	}
	if d.words[128]&0x2 == 0 || pw != d.password {
		return errors.New("aborted")
	}
	d.password = ""
	d.words[128] &^= 0x2
	d.words[85] &^= 0x2
	return nil
}

func (d *ataSim) Disable(_ context.Context, pw string) error {
	d.calls = append(d.calls, "disable "+pw)
	if err := d.fail["disable"]; err != nil {
		return err
	}
	if pw != d.password {
		return errors.New("aborted: wrong password")
	}
	d.password = ""
	d.words[128] &^= 0x2
	d.words[85] &^= 0x2
	return nil
}

// TestATAEraseRun is the erase sequence against the state machine: the
// password is noted before it is set; enhanced erase when supported;
// refusals issue no command after IDENTIFY; a failed erase removes the
// password again, or says the drive may be locked with it.
func TestATAEraseRun(t *testing.T) {
	const pw = "ironrack-0123456789abcdef"
	seagate := identify(t, "seagate-st3160023as.txt")
	samsung := identify(t, "samsung-870qvo-frozen.txt")
	thawed := append([]uint16(nil), samsung...)
	thawed[128] &^= 0x8 // the same SSD, unfrozen
	tests := map[string]struct {
		words   []uint16
		fail    map[string]error
		noteErr error
		wantErr string // "" is success
		noSec   bool   // errors.Is(err, ErrNoSecureErase)
		calls   []string
		locked  bool // the drive ends with security enabled
	}{
		"hdd, normal erase": {words: seagate,
			calls: []string{"identify", "set-pass " + pw, "identify", "erase enhanced=false " + pw, "identify"}},
		"ssd, enhanced erase": {words: thawed,
			calls: []string{"identify", "set-pass " + pw, "identify", "erase enhanced=true " + pw, "identify"}},
		"frozen: refused": {words: samsung, wantErr: "sda (ATA Samsung SSD 870 QVO 4TB, serial S5STNF0W706332M): the drive's security is frozen", noSec: true,
			calls: []string{"identify"}},
		"not ata: refused": {words: seagate, fail: map[string]error{"identify": errors.New("hdparm --Istdout: all words zero")},
			wantErr: "sda is not an ATA disk", noSec: true, calls: []string{"identify"}},
		"note fails: not started": {words: seagate, noteErr: errors.New("boot server unreachable"),
			wantErr: "not started, the temporary password could not be recorded first", calls: []string{"identify"}},
		"erase fails, password removed": {words: seagate, fail: map[string]error{"erase": errors.New("I/O error")},
			wantErr: "security erase: I/O error; the temporary password was removed (security disabled), the drive is not locked",
			calls:   []string{"identify", "set-pass " + pw, "identify", "erase enhanced=false " + pw, "identify", "disable " + pw, "identify"}},
		"erase fails, disable fails": {words: seagate, fail: map[string]error{"erase": errors.New("I/O error"), "disable": errors.New("aborted")},
			wantErr: `the drive may be locked with ATA user password "` + pw + `": unlock with hdparm --user-master u --security-unlock ` + pw + " /dev/sda",
			locked:  true,
			calls:   []string{"identify", "set-pass " + pw, "identify", "erase enhanced=false " + pw, "identify", "disable " + pw}},
		"set-pass fails, nothing set": {words: seagate, fail: map[string]error{"set-pass": errors.New("aborted")},
			wantErr: "set the temporary password: aborted; the drive has no password set",
			calls:   []string{"identify", "set-pass " + pw, "identify"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := &ataSim{words: append([]uint16(nil), tc.words...), fail: tc.fail}
			var notes []string
			e := agent.ATAErase{Drive: d, Name: "sda", SizeBytes: 160e9, Password: pw, Note: func(m string) error {
				notes = append(notes, fmt.Sprintf("%s (after %d calls)", m, len(d.calls)))
				return tc.noteErr
			}}
			how, err := e.Run(context.Background())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Run: %q, %v; want error containing %q", how, err, tc.wantErr)
			}
			if errors.Is(err, agent.ErrNoSecureErase) != tc.noSec {
				t.Errorf("errors.Is(%v, ErrNoSecureErase) = %v, want %v", err, !tc.noSec, tc.noSec)
			}
			if d := cmp.Diff(tc.calls, d.calls); d != "" {
				t.Errorf("commands -want +got:\n%s", d)
			}
			if (d.words[128]&0x2 != 0) != tc.locked {
				t.Errorf("drive ends with security enabled %v, want %v", d.words[128]&0x2 != 0, tc.locked)
			}
			setAt := -1
			for i, c := range d.calls {
				if strings.HasPrefix(c, "set-pass") {
					setAt = i
				}
			}
			if setAt >= 0 && (len(notes) == 0 || !strings.Contains(notes[0], `password "`+pw+`"`) || !strings.HasSuffix(notes[0], fmt.Sprintf("(after %d calls)", setAt))) {
				t.Errorf("the password was set without being noted first: notes %q, commands %q", notes, d.calls)
			}
			if err == nil && !strings.HasPrefix(how, "ATA ") {
				t.Errorf("done: %q", how)
			}
		})
	}
}

// TestATAEraseTimeout: an erase the drive does not finish within the
// timeout fails; the wait is bounded by the context, the running erase is
// noted, and the password removal is tried.
func TestATAEraseTimeout(t *testing.T) {
	d := &ataSim{words: identify(t, "seagate-st3160023as.txt"), hang: true, fail: map[string]error{"disable": errors.New("busy")}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var notes []string
	e := agent.ATAErase{Drive: d, Name: "sdb", SizeBytes: 1e9, Password: "pw", Every: 50 * time.Millisecond,
		Note: func(m string) error { notes = append(notes, m); return nil }}
	start := time.Now()
	_, err := e.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "may be locked with ATA user password \"pw\"") {
		t.Fatalf("Run: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Run took %s past its context", time.Since(start))
	}
	if len(notes) < 2 || !strings.Contains(notes[1], "/dev/sdb: security erase running for") {
		t.Errorf("notes: %q", notes)
	}
}

// TestATAEraseTimeoutBounds: without an estimate the wait is the disk at
// 40 MB/s and never under 20 minutes, each plus a half and 5 minutes; an
// estimate at the field's maximum is a floor, not the wait.
func TestATAEraseTimeoutBounds(t *testing.T) {
	var s agent.ATASecurity
	if got, want := s.EraseTimeout(false, 1e6), 35*time.Minute; got != want {
		t.Errorf("small disk, no estimate: %s, want %s", got, want)
	}
	if got, want := s.EraseTimeout(false, 4e12), 1e5*time.Second*3/2+5*time.Minute; got != want {
		t.Errorf("4 TB, no estimate: %s, want %s", got, want)
	}
	s = agent.ATASecurity{EnhancedEraseTime: 510 * time.Minute, AtLeastEnhancedErase: true}
	if got, want := s.EraseTimeout(true, 1e12), 765*time.Minute+5*time.Minute; got != want {
		t.Errorf("1 TB, estimate more than 510 min: %s, want %s", got, want)
	}
	if got, want := s.EraseTimeout(true, 8e12), 2e5*time.Second*3/2+5*time.Minute; got != want {
		t.Errorf("8 TB, estimate more than 510 min: %s, want %s", got, want)
	}
}
