package ipmi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/bmc-toolbox/bmclib/v2/bmc"
)

// MaxPasswordLen is the longest password IPMI 2.0 stores (Set User Password
// in its 20-byte form). IPMI 1.5 and some BMCs take only 16.
const MaxPasswordLen = 20

// Character classes for generated passwords: printable ASCII without
// quotes, backslash, space and characters shells and BMC web UIs mangle.
const (
	pwLower  = "abcdefghijkmnopqrstuvwxyz"
	pwUpper  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	pwDigit  = "23456789"
	pwSymbol = "-_.+=@%^"
)

// GeneratePassword returns a random password of length bytes (if 0, 16; at
// most MaxPasswordLen). 16 is the safe default: IPMI 1.5 BMCs, and some 2.0
// ones (ipmi_sim among them), keep only 16 bytes of a 20-byte password,
// which RotatePassword's proof would catch and roll back. It has at least
// one lowercase, uppercase, digit and symbol, for BMCs that enforce
// complexity.
func GeneratePassword(length int) (string, error) {
	if length == 0 {
		length = 16
	}
	if length < 8 || length > MaxPasswordLen {
		return "", fmt.Errorf("password length %d: want 8..%d", length, MaxPasswordLen)
	}
	classes := []string{pwLower, pwUpper, pwDigit, pwSymbol}
	all := strings.Join(classes, "")
	out := make([]byte, length)
	for i := range out {
		set := all
		if i < len(classes) {
			set = classes[i]
		}
		c, err := pick(set)
		if err != nil {
			return "", err
		}
		out[i] = c
	}
	// Shuffle so the class-guaranteed characters are not always first.
	for i := len(out) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		out[i], out[j.Int64()] = out[j.Int64()], out[i]
	}
	return string(out), nil
}

func pick(set string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
	if err != nil {
		return 0, fmt.Errorf("generate password: %w", err)
	}
	return set[n.Int64()], nil
}

// ValidatePassword checks that p can be stored by IPMI 2.0: 1..20 bytes of
// printable ASCII.
func ValidatePassword(p string) error {
	if len(p) == 0 || len(p) > MaxPasswordLen {
		return fmt.Errorf("password of %d bytes: want 1..%d", len(p), MaxPasswordLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x21 || p[i] > 0x7e {
			return fmt.Errorf("password byte %d is not printable ASCII", i)
		}
	}
	return nil
}

// RotationError is a failed rotation. Active says which password works on
// the BMC afterwards, so the caller stores the right one:
// "old" (nothing changed, or the change was rolled back), "new" (the BMC
// took the new password but the call failed after that), or "unknown"
// (neither login worked: someone must look).
type RotationError struct {
	Host   string
	Active string
	Err    error
}

func (e *RotationError) Error() string {
	return fmt.Sprintf("rotate password %s: %v (active password: %s)", e.Host, e.Err, e.Active)
}

func (e *RotationError) Unwrap() error { return e.Err }

// RotatePassword sets newPassword for cred.Username on the BMC (IPMI Set User
// Password), then proves a fresh login with it. Only a nil error means the
// BMC now has the new password; store it then and only then. If the proof
// fails, it puts the old password back over the session that is still open
// and proves that one. Failures are *RotationError with Active saying which
// password works.
func (c *Controller) RotatePassword(ctx context.Context, cred Credentials, newPassword string) error {
	if err := ValidatePassword(newPassword); err != nil {
		return &RotationError{Host: cred.Host, Active: "old", Err: err}
	}
	newCred := cred
	newCred.Password = newPassword
	need := func(d any) bool { _, ok := d.(bmc.UserUpdater); return ok }

	set := false
	var proofErr error
	_, err := c.with(ctx, cred, need, func(ctx context.Context, s *session) error {
		if _, err := s.client.UpdateUser(ctx, cred.Username, newPassword, ""); err != nil {
			return providerError(err)
		}
		set = true
		if proofErr = c.prove(ctx, newCred); proofErr == nil {
			return nil
		}
		// Roll back over the session opened with the old password.
		if _, err := s.client.UpdateUser(ctx, cred.Username, cred.Password, ""); err != nil {
			return fmt.Errorf("new password failed its login (%w); restoring the old one failed too: %w", proofErr, providerError(err))
		}
		return fmt.Errorf("new password failed its login; restored the old one: %w", proofErr)
	})
	if err == nil {
		return nil
	}
	if !set {
		if errors.Is(err, errMaybeApplied) || errors.Is(err, ErrTimeout) {
			return &RotationError{Host: cred.Host, Active: c.whichWorks(ctx, cred, newCred), Err: err}
		}
		return &RotationError{Host: cred.Host, Active: "old", Err: err}
	}
	return &RotationError{Host: cred.Host, Active: c.whichWorks(ctx, cred, newCred), Err: err}
}

// prove logs in with cred and reads the power state.
func (c *Controller) prove(ctx context.Context, cred Credentials) error {
	if _, err := c.PowerStatus(ctx, cred); err != nil {
		return fmt.Errorf("prove login: %w", err)
	}
	return nil
}

// whichWorks tells which of two credentials can log in now.
func (c *Controller) whichWorks(ctx context.Context, old, new Credentials) string {
	ctx = context.WithoutCancel(ctx)
	if c.prove(ctx, old) == nil {
		return "old"
	}
	if c.prove(ctx, new) == nil {
		return "new"
	}
	return "unknown"
}
