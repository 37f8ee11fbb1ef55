package ipmi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/internal/redfishtest"
	"github.com/ironrack/ironrack/ipmi"
)

func rfCreds(b *redfishtest.BMC) ipmi.Credentials {
	return ipmi.Credentials{Host: b.Host, Port: b.Port, Username: b.Username, Password: b.Password,
		Protocol: ipmi.ProtocolRedfish, TLS: ipmi.TLS{Roots: b.CA.Pool()}}
}

// TestRedfishTLS: the BMC's certificate is verified against the site's CA;
// one from another CA is refused before anything is sent; a pinned
// certificate is accepted without its CA, a wrong pin refused; insecure
// accepts anything.
func TestRedfishTLS(t *testing.T) {
	b := redfishtest.Start(t, redfishtest.Options{On: true})
	other := redfishtest.NewCA(t)
	ctx := context.Background()
	ctl := &ipmi.Controller{Timeout: 5 * time.Second}
	pin := ipmi.Fingerprint(b.Leaf)
	wrongPin := "sha256:" + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	for name, tc := range map[string]struct {
		tls    ipmi.TLS
		reason string
	}{
		"site CA":      {ipmi.TLS{Roots: b.CA.Pool()}, "ok"},
		"unknown CA":   {ipmi.TLS{Roots: other.Pool()}, "tls"},
		"system roots": {ipmi.TLS{}, "tls"},
		"pinned":       {ipmi.TLS{Pin: pin, Roots: other.Pool()}, "ok"},
		"wrong pin":    {ipmi.TLS{Pin: wrongPin}, "tls"},
		"insecure":     {ipmi.TLS{Insecure: true}, "ok"},
	} {
		t.Run(name, func(t *testing.T) {
			cred := rfCreds(b)
			cred.TLS = tc.tls
			st, err := ctl.PowerStatus(ctx, cred)
			if got := ipmi.Reason(err); got != tc.reason {
				t.Fatalf("reason %s, want %s (err %v)", got, tc.reason, err)
			}
			if err == nil && st != ipmi.StateOn {
				t.Errorf("state %s, want on", st)
			}
			if tc.reason == "tls" && !errors.Is(err, ipmi.ErrTLS) {
				t.Errorf("err %v is not ErrTLS", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestRedfishQuirks: each quirk of the sim ends in its class (delays
// shortened; the CLI test runs the real 3 s one).
func TestRedfishQuirks(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		quirk  redfishsim.Quirk
		boot   bool
		reason string
	}{
		"no quirk power": {redfishsim.QuirkNone, false, "ok"},
		"no quirk boot":  {redfishsim.QuirkNone, true, "ok"},
		"slow power":     {redfishsim.QuirkSlowPower, false, "ok"},
		"late power":     {redfishsim.QuirkLatePower, false, "not-applied"},
		"revert boot":    {redfishsim.QuirkRevertBoot, true, "reverted"},
		"ignore reset":   {redfishsim.QuirkIgnoreReset, false, "not-applied"},
		"stall":          {redfishsim.QuirkStall, false, "timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := redfishtest.Start(t, redfishtest.Options{Quirk: tc.quirk, Delays: redfishsim.Delays{
				SlowPower: 300 * time.Millisecond, LatePower: 5 * time.Second, RevertBoot: 100 * time.Millisecond}})
			ctl := &ipmi.Controller{Timeout: 2 * time.Second, BootSettle: 300 * time.Millisecond}
			var err error
			if tc.boot {
				var res ipmi.BootResult
				res, err = ctl.SetBootDevice(ctx, rfCreds(b), ipmi.BootPXE, ipmi.BootOptions{Persistent: true, EFI: true})
				if err == nil && (res.ReadBack == nil || *res.ReadBack != (ipmi.BootOverride{Device: ipmi.BootPXE, Persistent: true, EFI: true, Valid: true})) {
					t.Errorf("read back %+v, want pxe persistent efi", res.ReadBack)
				}
			} else {
				_, err = ctl.Power(ctx, rfCreds(b), ipmi.On, ipmi.PowerOptions{})
			}
			if got := ipmi.Reason(err); got != tc.reason {
				t.Fatalf("reason %s, want %s (err %v)", got, tc.reason, err)
			}
			t.Logf("%v", err)
		})
	}
}
