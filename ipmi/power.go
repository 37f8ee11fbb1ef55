package ipmi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// PowerStatus reads the chassis power state.
func (c *Controller) PowerStatus(ctx context.Context, cred Credentials) (PowerState, error) {
	st := StateUnknown
	_, err := c.with(ctx, cred, nil, func(ctx context.Context, s *session) error {
		var err error
		st, err = s.powerState(ctx)
		return err
	})
	if err != nil {
		return StateUnknown, fmt.Errorf("power status %s: %w", cred.Host, err)
	}
	return st, nil
}

// Power changes the chassis power safely and verifies the change by reading
// it back until it matches or the deadline passes:
//
//   - On of a machine that is on sends nothing. On never cycles.
//   - Off, Cycle and Reset of a machine that is on fail with
//     ErrRebootNotAllowed unless opts.AllowReboot.
//   - Off of a machine that is off sends nothing; Cycle and Reset of a
//     machine that is off send nothing and warn WarnNotRunning.
//
// A Cycle or Reset that fails after the command may have reached the BMC is
// not retried by Bulk nor repeated through another provider.
func (c *Controller) Power(ctx context.Context, cred Credentials, action PowerAction, opts PowerOptions) (PowerResult, error) {
	start := c.clock().Now()
	var res PowerResult
	prov, err := c.with(ctx, cred, nil, func(ctx context.Context, s *session) error {
		res = PowerResult{Action: action, Provider: s.provider}
		before, err := s.powerState(ctx)
		if err != nil {
			return err
		}
		res.Before, res.After = before, before
		p, err := plan(action, before, opts.AllowReboot)
		if err != nil {
			return err
		}
		res.Warnings = p.warnings
		res.WouldChange = p.send
		if !p.send || opts.DryRun {
			return nil
		}
		if err := s.setPower(ctx, action); err != nil {
			return p.mark(err)
		}
		res.Changed = true
		res.After, err = c.awaitPower(ctx, s, action, p.want, &res)
		return p.mark(err)
	})
	res.Elapsed = c.clock().Now().Sub(start)
	if err != nil {
		return res, fmt.Errorf("power %s %s: %w", action, cred.Host, err)
	}
	res.Provider = prov
	return res, nil
}

// powerPlan is what to do for an action given the state read before.
type powerPlan struct {
	send     bool       // send the command
	want     PowerState // state to read back afterwards
	warnings []Warning
	// risky: the command is not idempotent (a repeat reboots again).
	risky bool
}

// mark tags a failure after a risky command may have been sent, so that
// nothing repeats it.
func (p powerPlan) mark(err error) error {
	if err == nil || !p.risky {
		return err
	}
	return fmt.Errorf("%w (%w)", err, errMaybeApplied)
}

// plan is the safety table. It is pure, so the table test covers it all.
func plan(action PowerAction, before PowerState, allowReboot bool) (powerPlan, error) {
	on := before == StateOn
	switch action {
	case On:
		return powerPlan{send: !on, want: StateOn}, nil
	case Off:
		if on && !allowReboot {
			return powerPlan{}, fmt.Errorf("off: %w", ErrRebootNotAllowed)
		}
		return powerPlan{send: on, want: StateOff}, nil
	case Cycle, Reset:
		if !on {
			return powerPlan{want: before, warnings: []Warning{{
				Code:    WarnNotRunning,
				Message: fmt.Sprintf("machine is %s; %s does nothing (use on)", before, action),
			}}}, nil
		}
		if !allowReboot {
			return powerPlan{}, fmt.Errorf("%s: %w", action, ErrRebootNotAllowed)
		}
		return powerPlan{send: true, want: StateOn, risky: true}, nil
	}
	return powerPlan{}, fmt.Errorf("power action %q: %w", action, ErrUnsupported)
}

// awaitPower polls until the power reads want. For Cycle it first waits (up
// to 2 s) to see the machine off, so that a BMC that has not yet acted on
// the cycle does not count as verified; if the off period is too short to
// see, it says so in a warning.
func (c *Controller) awaitPower(ctx context.Context, s *session, action PowerAction, want PowerState, res *PowerResult) (PowerState, error) {
	if action == Cycle {
		seen, err := c.pollPower(ctx, s, StateOff, 2*time.Second)
		if err != nil && !errors.Is(err, ErrNotApplied) {
			return seen, err
		}
		if seen != StateOff {
			res.Warnings = append(res.Warnings, Warning{Code: WarnNotVerified,
				Message: "did not see the machine off during the cycle; verified only that it is on"})
		}
	}
	return c.pollPower(ctx, s, want, 0)
}

// pollPower reads the power state until it is want, ctx ends, or (if
// window > 0) window passes. It returns the last state read.
func (c *Controller) pollPower(ctx context.Context, s *session, want PowerState, window time.Duration) (PowerState, error) {
	clk := c.clock()
	start := clk.Now()
	last := StateUnknown
	for i := 0; ; i++ {
		st, err := s.powerState(ctx)
		if err == nil {
			last = st
			if st == want {
				return st, nil
			}
		}
		if window > 0 && clk.Now().Sub(start) >= window {
			return last, fmt.Errorf("power reads %s after %v, want %s: %w", last, window, want, ErrNotApplied)
		}
		if ctx.Err() != nil || sleep(ctx, clk, c.pollInterval()) != nil {
			if err != nil && last == StateUnknown {
				return last, fmt.Errorf("read back power: %w", err)
			}
			return last, fmt.Errorf("power reads %s at the deadline, want %s: %w", last, want, ErrNotApplied)
		}
	}
}

// powerState reads the state through bmclib and normalizes the providers'
// words ("on", "Chassis Power is on", "On", "PoweringOn").
func (s *session) powerState(ctx context.Context) (PowerState, error) {
	raw, err := s.client.GetPowerState(ctx)
	if err != nil {
		return StateUnknown, providerError(err)
	}
	return parsePowerState(raw), nil
}

func parsePowerState(raw string) PowerState {
	w := strings.Fields(strings.ToLower(raw))
	if len(w) == 0 {
		return StateUnknown
	}
	switch w[len(w)-1] {
	case "on":
		return StateOn
	case "off":
		return StateOff
	}
	return StateUnknown
}

func (s *session) setPower(ctx context.Context, action PowerAction) error {
	ok, err := s.client.SetPowerState(ctx, string(action))
	if err != nil {
		return providerError(err)
	}
	if !ok {
		return fmt.Errorf("%s: power %s not acknowledged: %w", s.provider, action, ErrRefused)
	}
	return nil
}
