package ipmi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int{0, 8, 16, 20} {
		for range 50 {
			p, err := ipmi.GeneratePassword(n)
			if err != nil {
				t.Fatal(err)
			}
			want := n
			if n == 0 {
				want = 16
			}
			if len(p) != want {
				t.Fatalf("GeneratePassword(%d) = %d bytes", n, len(p))
			}
			if err := ipmi.ValidatePassword(p); err != nil {
				t.Fatalf("generated %q: %v", p, err)
			}
			for _, class := range []string{"abcdefghijkmnopqrstuvwxyz", "ABCDEFGHJKLMNPQRSTUVWXYZ", "23456789", "-_.+=@%^"} {
				if !strings.ContainsAny(p, class) {
					t.Fatalf("generated %q lacks one of %q", p, class)
				}
			}
			if seen[p] {
				t.Fatalf("generated %q twice", p)
			}
			seen[p] = true
		}
	}
	for _, n := range []int{7, 21, -1} {
		if _, err := ipmi.GeneratePassword(n); err == nil {
			t.Errorf("GeneratePassword(%d) succeeded", n)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	tests := map[string]struct {
		p  string
		ok bool
	}{
		"16 bytes":  {"abcdefghijklmnop", true},
		"20 bytes":  {"abcdefghijklmnopqrst", true},
		"21 bytes":  {"abcdefghijklmnopqrstu", false},
		"empty":     {"", false},
		"space":     {"abc def", false},
		"non-ascii": {"pässword", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := ipmi.ValidatePassword(tc.p); (err == nil) != tc.ok {
				t.Errorf("ValidatePassword(%q) = %v, want ok=%v", tc.p, err, tc.ok)
			}
		})
	}
}

func TestRotatePassword(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{}
	ctx := context.Background()
	old := creds(b)
	for range 2 {
		pw, err := ipmi.GeneratePassword(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RotatePassword(ctx, old, pw); err != nil {
			t.Fatalf("RotatePassword: %v", err)
		}
		newCred := old
		newCred.Password = pw
		if _, err := c.PowerStatus(ctx, newCred); err != nil {
			t.Errorf("new password: %v", err)
		}
		if _, err := c.PowerStatus(ctx, old); !errors.Is(err, ipmi.ErrAuth) {
			t.Errorf("old password after rotation: %v, want ErrAuth", err)
		}
		old = newCred
	}
}

// TestRotatePasswordTruncatedRollsBack: ipmi_sim accepts a 20-byte Set User
// Password but keeps only 16 bytes (some real BMCs do the same). The proof
// login with the new password fails, so the rotation must put the old
// password back over the session still open, and say the old one is active.
func TestRotatePasswordTruncatedRollsBack(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{}
	ctx := context.Background()
	err := c.RotatePassword(ctx, creds(b), "New-pass-1234-abcdef") // 20 bytes
	var rerr *ipmi.RotationError
	if !errors.As(err, &rerr) || rerr.Active != "old" {
		t.Fatalf("RotatePassword = %v, want RotationError with Active old", err)
	}
	if !errors.Is(err, ipmi.ErrAuth) || !strings.Contains(err.Error(), "restored the old one") {
		t.Errorf("err = %v, want the proof's ErrAuth and the rollback in it", err)
	}
	if _, err := c.PowerStatus(ctx, creds(b)); err != nil {
		t.Errorf("old password after rollback: %v", err)
	}
}

// TestRotatePasswordWrongCurrentKeepsOld: the login with the current
// password fails, so nothing is set.
func TestRotatePasswordWrongCurrentKeepsOld(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{}
	bad := creds(b)
	bad.Password = "stale"
	err := c.RotatePassword(context.Background(), bad, "Newpass-1234")
	var rerr *ipmi.RotationError
	if !errors.As(err, &rerr) || rerr.Active != "old" || !errors.Is(err, ipmi.ErrAuth) {
		t.Fatalf("RotatePassword = %v, want RotationError (auth) with Active old", err)
	}
	if _, err := c.PowerStatus(context.Background(), creds(b)); err != nil {
		t.Errorf("real password after failed rotation: %v", err)
	}
}

func TestRotatePasswordRejectsBadPassword(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{}
	err := c.RotatePassword(context.Background(), creds(b), "this-password-is-too-long")
	var rerr *ipmi.RotationError
	if !errors.As(err, &rerr) || rerr.Active != "old" {
		t.Fatalf("err = %v, want RotationError with Active old", err)
	}
	if sets, _ := b.Sets(); len(sets) != 0 {
		t.Errorf("sets %q", sets)
	}
	if _, err := c.PowerStatus(context.Background(), creds(b)); err != nil {
		t.Errorf("old password: %v", err)
	}
}
