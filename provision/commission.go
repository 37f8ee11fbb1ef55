package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// This file is the commission workflow (`ironrack commission`): the steps of
// deploy and release (power check, network boot and power through the Fleet,
// the wait on each machine's record) with the discovery agent's facts
// report as the result. The boot server commissions the machine from that
// report (provision/bootserver: commissioning → ready, or
// failed_commissioning when a hardware check fails).

// CommissionRequest is one commissioning of some machines.
type CommissionRequest struct {
	// AllowReboot lets the workflow power-cycle a machine that is on;
	// without it such a machine fails before anything changes.
	AllowReboot bool
	// Timeout bounds the wait for every machine's report. If 0, 20 minutes.
	Timeout time.Duration
	// Reason is recorded in the history.
	Reason string
	// Progress, if set, receives every history entry of the machines
	// (and each BMC failure) as it happens, one call at a time.
	Progress func(Event)
}

// commissionAction decides from a selected machine's state whether
// Commission takes it, and as whom; skips it (note says why); or refuses
// it (err), which it does only for a machine the operator named:
//   - new, failed_commissioning: taken (commissioning is a workflow's
//     transition); a machine already commissioning is taken as it is (a
//     run that was stopped, or whose machine never reported);
//   - broken, ready: taken only when named by ID, as the operator's
//     transition (broken → commissioning is the operator's alone, and a
//     ready machine leaves the pool);
//   - anything else: never (deployed and allocated machines belong to an
//     owner; failed deploys and releases are released first);
//   - nor a machine without a BMC address (enlisted by PXE, its rack sheet
//     row not imported yet): the workflow cannot power it, and
//     failed_commissioning would stop it from booting the agent by itself.
func commissionAction(s Selected) (by inventory.Actor, note string, err error) {
	m := s.Machine
	var hint string
	switch {
	case m.BMC.Address == "":
		hint = "it has no BMC address: import its rack sheet row (inventory import) first"
	case m.State == inventory.StateNew || m.State == inventory.StateFailedCommissioning || m.State == inventory.StateCommissioning:
		return inventory.System, "", nil
	case m.State == inventory.StateBroken || m.State == inventory.StateReady:
		if s.ByID {
			return inventory.Operator, "", nil
		}
		hint = fmt.Sprintf("name it by its ID (%s) to commission it again", m.ID)
	default:
		hint = "only new, commissioning and failed_commissioning machines are commissioned (broken and ready ones when named by ID)"
	}
	if s.Named {
		return 0, "", fmt.Errorf("machine %s is %s: %s", m.ID, m.State, hint)
	}
	return 0, fmt.Sprintf("%s: not commissioned; %s", m.State, hint), nil
}

// Commission commissions the selected machines, all at once, and waits for
// each to be ready or failed. For each machine commissionAction takes:
//
//  1. its power is read through its BMC; a machine that is on fails here
//     unless req.AllowReboot, before anything changes;
//  2. it moves to commissioning (history: who, and req.Reason);
//  3. the BMC sets network boot (persistent) and powers it on (or cycles
//     it, when it was on and reboots are allowed);
//  4. the boot server hands it the agent in commission mode; the agent
//     checks the hardware and reports its facts, and the boot server moves
//     the machine to ready (or failed_commissioning, the failed check in its
//     history); this waits for that (Consul blocking queries, bounded by
//     req.Timeout).
//
// A machine whose BMC fails in step 1 or 3 (unreachable, timeout, refused
// login, no stored credential) ends in failed_commissioning at once, the
// reason naming the BMC's address and the error; the others go on. A
// machine that has not reported at the deadline ends in
// failed_commissioning too, the reason saying so.
func (d *Deployer) Commission(ctx context.Context, sel []Selected, req CommissionRequest) []Result {
	ids := make([]string, len(sel))
	named := map[string]Selected{}
	for i, s := range sel {
		ids[i] = s.Machine.ID
		named[s.Machine.ID] = s
	}
	jobs, timeout, deadline, prog := d.begin(ctx, ids, "commission", req.Timeout, 20*time.Minute, req.Progress)
	actor := map[*wjob]inventory.Actor{}
	var take []*wjob
	for _, j := range live(jobs) {
		s := named[j.m.ID]
		s.Machine = j.m // its state now, not at selection
		by, note, err := commissionAction(s)
		switch {
		case err != nil:
			j.res.fail("select", err)
			j.end = time.Now()
		case note != "":
			j.res.Result, j.res.Note = "skipped", note
			j.end = time.Now()
		default:
			actor[j] = by
			take = append(take, j)
		}
	}
	d.checkPower(ctx, take, req.AllowReboot, "commission")
	for _, j := range take {
		if j.res.Err != nil && j.bmcErr == nil {
			j.end = time.Now()
			continue // on, and no reboot allowed: nothing changed
		}
		if j.m.State != inventory.StateCommissioning {
			m, err := d.Store.SetState(ctx, j.m.ID, inventory.StateCommissioning, actor[j], inventory.Change{What: "commission", Why: req.Reason, Who: d.Who})
			if err != nil {
				j.res.fail("commission", err)
				j.end = time.Now()
				continue
			}
			j.m = m
		}
		if j.bmcErr != nil {
			d.failCommission(ctx, j, "power", "reading the power", j.bmcErr, prog)
			continue
		}
		j.pending = true
	}
	d.bootAndPower(ctx, take, req.AllowReboot, req.Reason, func(j *wjob, step string, err error) {
		doing := "powering on"
		if step == "boot-device" {
			doing = "setting network boot"
		}
		d.failCommission(ctx, j, step, doing, err, prog)
	})
	d.waitAll(ctx, take, inventory.StateReady, inventory.StateFailedCommissioning, deadline, prog, func(j *wjob) error {
		why := fmt.Errorf("timeout: no report from the discovery agent within %v (BMC %s powered the machine on with network boot)", timeout, j.m.BMCKey())
		_, err := d.Store.FailCommission(context.WithoutCancel(ctx), j.m.ID, why, inventory.Change{Who: d.Who})
		return err
	})
	return d.results(ctx, jobs)
}

// failCommission ends a machine's commissioning after its BMC failed:
// failed_commissioning, with a reason that names the BMC (address and the
// error), in the result, the history and the progress.
func (d *Deployer) failCommission(ctx context.Context, j *wjob, step, doing string, err error, prog func(Event)) {
	bmc := j.m.BMCKey()
	if bmc == "" {
		bmc = "(no address)"
	}
	if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "machine "+j.m.ID+": ") {
		err = u // the Fleet's "machine ID: " prefix; the result and the history name it already
	}
	ferr := fmt.Errorf("BMC %s failed %s (%s): %w", bmc, doing, Reason(err), err)
	j.pending = false
	j.res.fail(step, ferr)
	j.end = time.Now()
	if _, err := d.Store.FailCommission(context.WithoutCancel(ctx), j.m.ID, ferr, inventory.Change{Who: d.Who}); err != nil {
		d.log().Warn("commission: could not mark failed", "machine", j.m.ID, "err", err)
	}
	prog(Event{Machine: j.m.ID, State: inventory.StateFailedCommissioning, Percent: -1, What: "commission", Message: ferr.Error(), At: j.end})
}
