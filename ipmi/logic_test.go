package ipmi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/google/go-cmp/cmp"
)

// Pure logic: the safety table, error classes, backoff. The BMC-facing
// behaviour is tested against ipmi_sim in the external test package.

func TestPlan(t *testing.T) {
	type want struct {
		Send  bool
		Want  PowerState
		Risky bool
		Warn  []WarningCode
		Err   error
	}
	tests := map[string]struct {
		action      PowerAction
		before      PowerState
		allowReboot bool
		want        want
	}{
		"on when off":                 {On, StateOff, false, want{Send: true, Want: StateOn}},
		"on when on sends nothing":    {On, StateOn, false, want{Want: StateOn}},
		"on when on, reboot allowed":  {On, StateOn, true, want{Want: StateOn}},
		"off when on needs reboot ok": {Off, StateOn, false, want{Err: ErrRebootNotAllowed}},
		"off when on, allowed":        {Off, StateOn, true, want{Send: true, Want: StateOff}},
		"off when off":                {Off, StateOff, false, want{Want: StateOff}},
		"cycle when on needs ok":      {Cycle, StateOn, false, want{Err: ErrRebootNotAllowed}},
		"cycle when on, allowed":      {Cycle, StateOn, true, want{Send: true, Want: StateOn, Risky: true}},
		"cycle when off does nothing": {Cycle, StateOff, true, want{Want: StateOff, Warn: []WarningCode{WarnNotRunning}}},
		"reset when on needs ok":      {Reset, StateOn, false, want{Err: ErrRebootNotAllowed}},
		"reset when on, allowed":      {Reset, StateOn, true, want{Send: true, Want: StateOn, Risky: true}},
		"reset when off does nothing": {Reset, StateOff, true, want{Want: StateOff, Warn: []WarningCode{WarnNotRunning}}},
		"unknown action":              {"soft", StateOn, true, want{Err: ErrUnsupported}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := plan(tc.action, tc.before, tc.allowReboot)
			got := want{Send: p.send, Want: p.want, Risky: p.risky}
			for _, w := range p.warnings {
				got.Warn = append(got.Warn, w.Code)
			}
			if err != nil {
				got = want{Err: tc.want.Err}
				if !errors.Is(err, tc.want.Err) {
					t.Fatalf("err = %v, want %v", err, tc.want.Err)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("plan(%s, %s, %v) (-want +got):\n%s", tc.action, tc.before, tc.allowReboot, diff)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := map[string]struct {
		err  error
		want string
	}{
		"rakp mismatch":         {fmt.Errorf("x: %w", client.ErrRAKPAuthentication), "auth"},
		"go-ipmi text":          {errors.New("connect20 failed ... err: RAKP2 authentication code mismatch: RAKP authentication failed"), "auth"},
		"unauthorized name":     {types.NewRmcpStatusError(types.RmcpStatusCodeUnauthorizedName), "auth"},
		"no cipher suite":       {types.NewRmcpStatusError(types.RmcpStatusCodeNoCipherSuiteMatch), "unsupported"},
		"insufficient priv":     {types.NewResponseError(types.CodeInsufficientPrivilege, ""), "auth"},
		"invalid command":       {types.NewResponseError(types.CodeInvalidCommand, ""), "unsupported"},
		"unspecified cc":        {types.NewResponseError(types.CodeUnspecifiedError, ""), "refused"},
		"refused port":          {&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNREFUSED)}, "unreachable"},
		"deadline":              {fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		"canceled":              {context.Canceled, "canceled"},
		"udp no match":          {errors.New("IPMI LAN: no UDP datagram matched before read deadline after 4 attempt(s)"), "timeout"},
		"ipmitool refused boot": {errors.New("<nil>: Set Chassis Boot Parameter 5 failed: Unspecified error"), "refused"},
		"redfish 401":           {errors.New("401 Unauthorized"), "auth"},
		"already classified":    {fmt.Errorf("%w: x", ErrNotApplied), "not-applied"},
		"reboot":                {fmt.Errorf("off: %w", ErrRebootNotAllowed), "reboot-not-allowed"},
		"unknown CA":            {&url.Error{Op: "Get", URL: "https://b/redfish/v1/", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, "tls"},
		"x509 text":             {errors.New(`Get "https://b/redfish/v1/": tls: failed to verify certificate: x509: certificate has expired`), "tls"},
		"reverted":              {fmt.Errorf("boot: %w", ErrReverted), "reverted"},
		"other":                 {errors.New("something odd"), "error"},
		"nil":                   {nil, "ok"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Reason(classify(tc.err)); got != tc.want {
				t.Errorf("Reason(classify(%v)) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"timeout":               {fmt.Errorf("a: %w", ErrTimeout), true},
		"unreachable":           {fmt.Errorf("a: %w", ErrUnreachable), true},
		"auth":                  {fmt.Errorf("a: %w", ErrAuth), false},
		"timeout after a cycle": {powerPlan{risky: true}.mark(fmt.Errorf("a: %w", ErrTimeout)), false},
		"timeout after an on":   {powerPlan{}.mark(fmt.Errorf("a: %w", ErrTimeout)), true},
		"nil":                   {nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Retryable(tc.err); got != tc.want {
				t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestParsePowerState(t *testing.T) {
	tests := map[string]PowerState{
		"on": StateOn, "off": StateOff, "Chassis Power is on\n": StateOn, "Chassis Power is off": StateOff,
		"On": StateOn, "PoweringOn": StateUnknown, "": StateUnknown,
	}
	for raw, want := range tests {
		if got := parsePowerState(raw); got != want {
			t.Errorf("parsePowerState(%q) = %s, want %s", raw, got, want)
		}
	}
}

func TestBackoffCap(t *testing.T) {
	base := 100 * time.Millisecond
	want := []time.Duration{100, 200, 400, 800, 800, 800}
	for attempt, w := range want {
		if got := backoffCap(base, attempt); got != w*time.Millisecond {
			t.Errorf("backoffCap(attempt %d) = %v, want %v", attempt, got, w*time.Millisecond)
		}
		for range 20 {
			if j := jitter(base, attempt); j < 0 || j >= w*time.Millisecond {
				t.Fatalf("jitter(attempt %d) = %v, outside [0, %v)", attempt, j, w*time.Millisecond)
			}
		}
	}
}

func TestBootWarnings(t *testing.T) {
	tests := map[string]struct {
		asked BootOptions
		got   BootOverride
		want  []WarningCode
	}{
		"all kept":         {BootOptions{true, true}, BootOverride{BootPXE, true, true, true}, nil},
		"ipmi_sim drops":   {BootOptions{true, true}, BootOverride{BootPXE, false, false, false}, []WarningCode{WarnPersistentDropped, WarnEFIDropped, WarnNotValid}},
		"one-time legacy":  {BootOptions{}, BootOverride{BootDisk, false, false, true}, nil},
		"efi dropped only": {BootOptions{EFI: true}, BootOverride{BootDisk, false, false, true}, []WarningCode{WarnEFIDropped}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []WarningCode
			for _, w := range bootWarnings(tc.asked, tc.got) {
				got = append(got, w.Code)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
