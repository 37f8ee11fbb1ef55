package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file reads an ATA drive's security state from its IDENTIFY DEVICE
// data (ACS-3, table 45: words 82, 85, 89, 90 and 128), as `hdparm
// --Istdout` prints it. The agent's ATA security erase (SecureErase) acts on
// it; the functions here are pure, so real dumps in testdata stand in for
// drives.

// IdentifyWords is the number of 16-bit words of IDENTIFY DEVICE data.
const IdentifyWords = 256

// ParseIdentify reads `hdparm --Istdout` output: an optional "/dev/sdX:"
// header and hdparm's settings lines, then 256 hexadecimal words, 8 a
// line. A line that is not 8 words is an error naming its line number,
// as are a word count other than 256, all-zero data (what hdparm prints
// for a disk that answers no ATA PASS-THROUGH, such as a SCSI disk) and a
// failed integrity word (word 255: signature 0xa5 in its low byte, then a
// checksum making the 512 bytes sum to zero).
func ParseIdentify(out string) ([]uint16, error) {
	var words []uint16
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !isHexWord(f[0]) {
			if len(words) > 0 && len(f) > 0 {
				return nil, fmt.Errorf("identify data line %d: %q after %d words is not 8 hexadecimal words", n, sc.Text(), len(words))
			}
			continue // header: "/dev/sda:", hdparm's settings
		}
		if len(f) != 8 {
			return nil, fmt.Errorf("identify data line %d: %d fields, want 8 hexadecimal words", n, len(f))
		}
		for _, w := range f {
			if !isHexWord(w) {
				return nil, fmt.Errorf("identify data line %d: %q is not a hexadecimal word", n, w)
			}
			v, _ := strconv.ParseUint(w, 16, 16)
			words = append(words, uint16(v))
		}
	}
	if len(words) != IdentifyWords {
		return nil, fmt.Errorf("identify data: %d words, want %d", len(words), IdentifyWords)
	}
	zero := true
	for _, w := range words {
		zero = zero && w == 0
	}
	if zero {
		return nil, errors.New("identify data: all words zero (the disk answered no ATA IDENTIFY DEVICE)")
	}
	if words[255]&0xff == 0xa5 {
		var sum byte
		for _, w := range words {
			sum += byte(w) + byte(w>>8)
		}
		if sum != 0 {
			return nil, fmt.Errorf("identify data: integrity word %#04x: checksum fails (bytes sum to %#02x, want 0)", words[255], sum)
		}
	}
	return words, nil
}

func isHexWord(s string) bool {
	if len(s) != 4 {
		return false
	}
	_, err := strconv.ParseUint(s, 16, 16)
	return err == nil
}

// ATASecurity is an ATA drive's security feature set as IDENTIFY DEVICE
// reports it.
type ATASecurity struct {
	// Model and Serial are words 27-46 and 10-19, trimmed.
	Model, Serial string
	// Supported is word 82 bit 1 (and word 128 bit 0); Enabled, a user
	// password is set, word 85 bit 1 (and word 128 bit 1).
	Supported, Enabled bool
	// Locked (word 128 bit 2): the drive refuses media access until
	// unlocked. Frozen (bit 3): security commands are refused until the
	// drive is reset (the firmware froze it at boot). CountExpired (bit
	// 4): too many wrong passwords since power on.
	Locked, Frozen, CountExpired bool
	// Enhanced (word 128 bit 5): ENHANCED SECURITY ERASE UNIT is
	// supported.
	Enhanced bool
	// EraseTime and EnhancedEraseTime are the drive's estimates (words 89
	// and 90); 0 when it gives none. AtLeast* say the value is the format's
	// maximum ("more than 508 minutes").
	EraseTime, EnhancedEraseTime       time.Duration
	AtLeastErase, AtLeastEnhancedErase bool
}

// SecurityFromIdentify decodes the security words of IDENTIFY DEVICE data
// (ParseIdentify's).
func SecurityFromIdentify(w []uint16) ATASecurity {
	if len(w) < IdentifyWords {
		return ATASecurity{}
	}
	// Words 82 and 85 are valid when words 83 and 87 say so (bits 15:14 =
	// 01); word 128 bit 0 says the set is supported on its own.
	valid := func(word uint16) bool { return word&0xc000 == 0x4000 }
	st := w[128]
	s := ATASecurity{Model: identString(w[27:47]), Serial: identString(w[10:20]),
		Supported: valid(w[83]) && w[82]&0x2 != 0 || st&0x1 != 0,
		Enabled:   valid(w[87]) && w[85]&0x2 != 0}
	if st&0x1 != 0 {
		s.Enabled = s.Enabled || st&0x2 != 0
		s.Locked = st&0x4 != 0
		s.Frozen = st&0x8 != 0
		s.CountExpired = st&0x10 != 0
		s.Enhanced = st&0x20 != 0
	}
	s.EraseTime, s.AtLeastErase = eraseTime(w[89])
	s.EnhancedEraseTime, s.AtLeastEnhancedErase = eraseTime(w[90])
	return s
}

// eraseTime decodes word 89 or 90: with bit 15 set (ACS-3's extended
// format) bits 14:0, else bits 7:0, count 2-minute units; 0 is no
// estimate, the field's maximum "more than" that.
func eraseTime(word uint16) (time.Duration, bool) {
	v, max := word&0xff, uint16(0xff)
	if word&0x8000 != 0 {
		v, max = word&0x7fff, 0x7fff
	}
	return time.Duration(v) * 2 * time.Minute, v == max
}

// identString is an ATA string: two characters a word, the first in the
// high byte, padded with spaces.
func identString(w []uint16) string {
	b := make([]byte, 0, 2*len(w))
	for _, x := range w {
		b = append(b, byte(x>>8), byte(x))
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, string(b)))
}

// Refusal is why the security erase cannot run on this drive, or "" when
// it can: the set unsupported, a password already set, the drive locked,
// frozen or out of password attempts. Nothing has been written when it is
// said.
func (s ATASecurity) Refusal() string {
	switch {
	case !s.Supported:
		return "the drive does not support the ATA security feature set (IDENTIFY word 82 bit 1)"
	case s.Locked:
		return "the drive is locked by a password set before (unlock it with hdparm --security-unlock, or erase it with its password by hand)"
	case s.Frozen:
		return "the drive's security is frozen (the firmware froze it at boot; a suspend/resume or a hot-plug of the drive unfreezes it, which this agent does not attempt: unfreeze it and release again, or release with --erase zero)"
	case s.CountExpired:
		return "the drive's password attempt counter expired (power-cycle the drive)"
	case s.Enabled:
		return "the drive already has a user password set (disable it with hdparm --security-disable first)"
	}
	return ""
}

// EraseTimeout is how long the agent waits for SECURITY ERASE UNIT (the
// enhanced one if enhanced): the drive's estimate and a half, plus 5
// minutes. Without an estimate, or one at the field's maximum, it is at
// least the time to write sizeBytes at 40 MB/s, plus a half, and never
// under 30 minutes.
func (s ATASecurity) EraseTimeout(enhanced bool, sizeBytes int64) time.Duration {
	est, atLeast := s.EraseTime, s.AtLeastErase
	if enhanced {
		est, atLeast = s.EnhancedEraseTime, s.AtLeastEnhancedErase
	}
	if est == 0 || atLeast {
		est = max(est, time.Duration(sizeBytes/40e6)*time.Second, 20*time.Minute)
	}
	return est + est/2 + 5*time.Minute
}

// ATADrive is the ATA security commands the erase sequence issues to one
// drive (hdparm's, in the agent).
type ATADrive interface {
	// Identify returns the drive's IDENTIFY DEVICE words.
	Identify(ctx context.Context) ([]uint16, error)
	// SetPassword sets the user password (SECURITY SET PASSWORD, high
	// security), which enables security.
	SetPassword(ctx context.Context, password string) error
	// Erase runs SECURITY ERASE PREPARE and SECURITY ERASE UNIT (enhanced
	// if asked) with the user password; ctx bounds the wait.
	Erase(ctx context.Context, password string, enhanced bool) error
	// Disable runs SECURITY DISABLE PASSWORD with the user password.
	Disable(ctx context.Context, password string) error
}

// ATAErase is one ATA security erase: the drive, its name and size (for
// messages and the timeout without an estimate), the temporary password
// and Note, which records a message in the machine's history.
type ATAErase struct {
	Drive ATADrive
	// Name is the kernel's name (sda).
	Name      string
	SizeBytes int64
	// Password is the temporary user password (at most 32 bytes; the
	// erase clears it).
	Password string
	// Note records a message in the machine's history; the password is
	// set only once Note has recorded it, so a drive is never left locked
	// with a password the inventory does not hold.
	Note func(msg string) error
	// Every is how often a running erase is noted (elapsed against the
	// drive's estimate). If 0, 5 minutes.
	Every time.Duration
}

// Run reads the drive's security state and refuses (ErrNoSecureErase,
// nothing written) a drive that does not support the security feature
// set, is locked, frozen, out of password attempts or already has a
// password. Otherwise it notes the temporary password, sets it, erases
// (enhanced when the drive supports it) within EraseTimeout, and checks
// that security is disabled afterwards (the erase clears the password).
// When anything fails after the password was set it tries SECURITY
// DISABLE with it; the error then says whether that worked or the drive
// may be locked with the password. It returns what was done.
func (e ATAErase) Run(ctx context.Context) (string, error) {
	dev := "/dev/" + e.Name
	w, err := e.Drive.Identify(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %s is not an ATA disk (%v)", ErrNoSecureErase, e.Name, err)
	}
	s := SecurityFromIdentify(w)
	if r := s.Refusal(); r != "" {
		return "", fmt.Errorf("%w: %s (ATA %s, serial %s): %s", ErrNoSecureErase, e.Name, s.Model, s.Serial, r)
	}
	kind, est := "security erase", s.EraseTime
	if s.Enhanced {
		kind, est = "enhanced security erase", s.EnhancedEraseTime
	}
	timeout := s.EraseTimeout(s.Enhanced, e.SizeBytes)
	estimate := "no estimate"
	if est > 0 {
		estimate = "estimate " + est.String()
	}
	if err := e.Note(fmt.Sprintf("erase secure: %s (ATA %s, serial %s): temporary ATA user password %q (if the erase is interrupted, unlock with hdparm --user-master u --security-unlock %s %s, then --security-disable); %s (%s, waiting up to %s)",
		dev, s.Model, s.Serial, e.Password, e.Password, dev, kind, estimate, timeout)); err != nil {
		return "", fmt.Errorf("%s: ATA security erase not started, the temporary password could not be recorded first: %w", e.Name, err)
	}
	if err := e.Drive.SetPassword(ctx, e.Password); err != nil {
		return "", e.recover(ctx, fmt.Errorf("%s: set the temporary password: %w", e.Name, err))
	}
	if w, err := e.Drive.Identify(ctx); err != nil {
		return "", e.recover(ctx, fmt.Errorf("%s: identify after setting the password: %w", e.Name, err))
	} else if !SecurityFromIdentify(w).Enabled {
		return "", fmt.Errorf("%s: the drive accepted the password but security is not enabled; not erased", e.Name)
	}
	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	stop := e.noteWhile(ectx, dev, kind, est, start)
	err = e.Drive.Erase(ectx, e.Password, s.Enhanced)
	stop()
	took := time.Since(start).Round(time.Second)
	if err != nil {
		if ectx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer within %s: %w", timeout, err)
		}
		return "", e.recover(ctx, fmt.Errorf("%s: %s: %w", e.Name, kind, err))
	}
	w, err = e.Drive.Identify(ctx)
	if err != nil {
		return "", e.recover(ctx, fmt.Errorf("%s: identify after the erase: %w", e.Name, err))
	}
	if after := SecurityFromIdentify(w); after.Enabled || after.Locked {
		return "", e.recover(ctx, fmt.Errorf("%s: %s reported success, but security is still enabled", e.Name, kind))
	}
	return fmt.Sprintf("ATA %s in %s, security disabled after", kind, took), nil
}

// recover runs after a failure once the password was (or may have been)
// set: when the drive's security is enabled it tries SECURITY DISABLE with
// the temporary password, and the error says whether the drive is left
// without a password or may be locked with it.
func (e ATAErase) recover(ctx context.Context, cause error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	w, err := e.Drive.Identify(dctx)
	if err == nil && !SecurityFromIdentify(w).Enabled {
		return fmt.Errorf("%w; the drive has no password set (security disabled), it is not locked", cause)
	}
	derr := e.Drive.Disable(dctx, e.Password)
	if derr == nil {
		w, err := e.Drive.Identify(dctx)
		switch {
		case err != nil:
			derr = fmt.Errorf("identify after disable: %w", err)
		case SecurityFromIdentify(w).Enabled:
			derr = errors.New("security still enabled after disable")
		default:
			return fmt.Errorf("%w; the temporary password was removed (security disabled), the drive is not locked", cause)
		}
	}
	return fmt.Errorf("%w; removing the temporary password failed (%v): the drive may be locked with ATA user password %q: unlock with hdparm --user-master u --security-unlock %s /dev/%s, then --security-disable %s",
		cause, derr, e.Password, e.Password, e.Name, e.Password)
}

// noteWhile notes the running erase every e.Every until stop is called.
func (e ATAErase) noteWhile(ctx context.Context, dev, kind string, est time.Duration, start time.Time) (stop func()) {
	every := e.Every
	if every <= 0 {
		every = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				msg := fmt.Sprintf("erase secure: %s: %s running for %s", dev, kind, time.Since(start).Round(time.Second))
				if est > 0 {
					msg += fmt.Sprintf(" (the drive's estimate: %s)", est)
				}
				_ = e.Note(msg)
			}
		}
	}()
	return func() { cancel(); <-done }
}
