package ipmi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func TestPowerStatus(t *testing.T) {
	t.Parallel()
	bmcs := startSims(t, 2, ipmisim.Options{})
	if err := bmcs[1].SetPower(true); err != nil {
		t.Fatal(err)
	}
	c := &ipmi.Controller{}
	for i, want := range []ipmi.PowerState{ipmi.StateOff, ipmi.StateOn} {
		got, err := c.PowerStatus(context.Background(), creds(bmcs[i]))
		if err != nil || got != want {
			t.Errorf("PowerStatus(%s) = %s, %v; want %s", bmcs[i].Addr, got, err, want)
		}
	}
	if got := c.WorkingProvider(creds(bmcs[0])); got != "goipmi" {
		t.Errorf("WorkingProvider = %q, want goipmi", got)
	}
}

// TestPower checks every action against the safety table on a real sim, and
// proves with the chassis script's log which power sets reached the "machine".
func TestPower(t *testing.T) {
	t.Parallel()
	type out struct {
		Before, After ipmi.PowerState
		Changed       bool
		WouldChange   bool
		Warnings      []ipmi.WarningCode
		Sets          []string // chassis script "set" calls
		PowerFile     bool     // power state the script holds afterwards
	}
	tests := map[string]struct {
		on      bool
		action  ipmi.PowerAction
		opts    ipmi.PowerOptions
		wantErr error
		want    out
	}{
		"on when off": {false, ipmi.On, ipmi.PowerOptions{}, nil,
			out{ipmi.StateOff, ipmi.StateOn, true, true, nil, []string{"set power 1"}, true}},
		"on when on does nothing": {true, ipmi.On, ipmi.PowerOptions{}, nil,
			out{ipmi.StateOn, ipmi.StateOn, false, false, nil, nil, true}},
		"on when on, reboot allowed, still nothing": {true, ipmi.On, ipmi.PowerOptions{AllowReboot: true}, nil,
			out{ipmi.StateOn, ipmi.StateOn, false, false, nil, nil, true}},
		"off when on refused": {true, ipmi.Off, ipmi.PowerOptions{}, ipmi.ErrRebootNotAllowed,
			out{Sets: nil, PowerFile: true}},
		"off when on allowed": {true, ipmi.Off, ipmi.PowerOptions{AllowReboot: true}, nil,
			out{ipmi.StateOn, ipmi.StateOff, true, true, nil, []string{"set power 0"}, false}},
		"off when off": {false, ipmi.Off, ipmi.PowerOptions{}, nil,
			out{ipmi.StateOff, ipmi.StateOff, false, false, nil, nil, false}},
		"cycle when on refused": {true, ipmi.Cycle, ipmi.PowerOptions{}, ipmi.ErrRebootNotAllowed,
			out{Sets: nil, PowerFile: true}},
		"cycle when on allowed": {true, ipmi.Cycle, ipmi.PowerOptions{AllowReboot: true}, nil,
			out{ipmi.StateOn, ipmi.StateOn, true, true, nil, []string{"set power 0", "set power 1"}, true}},
		"cycle when off leaves it off": {false, ipmi.Cycle, ipmi.PowerOptions{AllowReboot: true}, nil,
			out{ipmi.StateOff, ipmi.StateOff, false, false, []ipmi.WarningCode{ipmi.WarnNotRunning}, nil, false}},
		"reset when on refused": {true, ipmi.Reset, ipmi.PowerOptions{}, ipmi.ErrRebootNotAllowed,
			out{Sets: nil, PowerFile: true}},
		"reset when on allowed": {true, ipmi.Reset, ipmi.PowerOptions{AllowReboot: true}, nil,
			out{ipmi.StateOn, ipmi.StateOn, true, true, nil, []string{"set reset 1"}, true}},
		"dry run on when off": {false, ipmi.On, ipmi.PowerOptions{DryRun: true}, nil,
			out{ipmi.StateOff, ipmi.StateOff, false, true, nil, nil, false}},
		"dry run off when on": {true, ipmi.Off, ipmi.PowerOptions{DryRun: true, AllowReboot: true}, nil,
			out{ipmi.StateOn, ipmi.StateOn, false, true, nil, nil, true}},
	}
	bmcs := startSims(t, len(tests), ipmisim.Options{})
	i := 0
	for name, tc := range tests {
		b := bmcs[i]
		i++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := b.SetPower(tc.on); err != nil {
				t.Fatal(err)
			}
			c := &ipmi.Controller{PollInterval: 50 * time.Millisecond}
			res, err := c.Power(context.Background(), creds(b), tc.action, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Power = %v, want %v", err, tc.wantErr)
			}
			got := out{Before: res.Before, After: res.After, Changed: res.Changed, WouldChange: res.WouldChange}
			if err != nil {
				got = out{}
			}
			for _, w := range res.Warnings {
				got.Warnings = append(got.Warnings, w.Code)
			}
			if got.Sets, err = b.Sets(); err != nil {
				t.Fatal(err)
			}
			if got.PowerFile, err = b.Power(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestOnWhenOnIssuesNoSet is the MAAS lesson on its own: "on" for a machine
// that is on must not send any chassis control, so the script sees only gets.
func TestOnWhenOnIssuesNoSet(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{PowerOn: true})[0]
	c := &ipmi.Controller{}
	for range 3 {
		res, err := c.Power(context.Background(), creds(b), ipmi.On, ipmi.PowerOptions{})
		if err != nil || res.Changed {
			t.Fatalf("Power(on) = %+v, %v; want unchanged", res, err)
		}
	}
	calls, err := b.Calls()
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("chassis script never called: the test would prove nothing")
	}
	for _, c := range calls {
		if c != "get power" {
			t.Errorf("chassis script call %q, want only \"get power\"", c)
		}
	}
}

func TestPowerVerifyFailsWhenStateDoesNotChange(t *testing.T) {
	t.Parallel()
	// A hook that forces the power file back to 0 models a machine whose
	// power supply refuses to come on: the BMC accepts the command, the
	// read-back never shows on.
	b := startSims(t, 1, ipmisim.Options{Hook: "#!/bin/sh\n[ \"$1\" = on ] && echo 0 > \"$2/power\"\nexit 0\n"})[0]
	c := &ipmi.Controller{PollInterval: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := c.Power(ctx, creds(b), ipmi.On, ipmi.PowerOptions{})
	if !errors.Is(err, ipmi.ErrNotApplied) {
		t.Fatalf("Power(on) = %+v, %v; want ErrNotApplied", res, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v, want about the 700ms deadline", d)
	}
}
