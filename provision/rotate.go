package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"golang.org/x/sync/errgroup"
)

// RotateRequest qualifies a BMC password rotation.
type RotateRequest struct {
	// DryRun proves a login with each stored password and reports where the
	// new one would be stored; it changes nothing.
	DryRun bool
	// Reason is recorded in history as the why.
	Reason string
	// Length of the generated passwords. If 0, 16 (see
	// ipmi.GeneratePassword).
	Length int
}

// OwnCredentialRef is the credential reference of one machine's own BMC
// password: "bmc/<machine-id>", as an import stores a rack sheet's inline
// password.
func OwnCredentialRef(id string) string { return "bmc/" + id }

// RotatePasswords gives each machine's BMC a new random password. For each
// BMC it sets the password on the BMC, proves a fresh login with it, and
// only then stores it; on any failure the stored password stays the one the
// BMC accepts (ipmi.RotationError.Active says which one that is).
//
// A password is stored where the machine's credential reference points,
// unless other machines use the same reference (a shared credential, e.g.
// one per rack): a rotated BMC no longer has the shared password, so before
// touching the BMC the machine gets its own reference, OwnCredentialRef,
// holding the current password, and the rotation then stores there. The
// inventory therefore names the working password at every step.
//
// Each rotation is recorded in history ("bmc set-password"); the password
// never is. Rotations are not retried: a retry after a timeout could log in
// with a password the BMC no longer has.
func (f *Fleet) RotatePasswords(ctx context.Context, sel []Selected, r RotateRequest) []Outcome {
	jobs := f.prepare(ctx, sel, "set-password", nil)
	users, err := f.refUsers(ctx)
	if err != nil {
		for _, j := range jobs {
			if j.run {
				j.out.fail(fmt.Errorf("machine %s: read which machines share its credential: %w", j.sel.Machine.ID, err))
				j.run = false
			}
		}
		return outcomes(jobs)
	}
	for _, j := range jobs {
		m := j.sel.Machine
		j.out.Before, j.out.After = m.BMC.CredentialRef, m.BMC.CredentialRef
		if !j.run {
			continue
		}
		if n := users[m.BMC.CredentialRef] - 1; n > 0 && m.BMC.CredentialRef != OwnCredentialRef(m.ID) {
			if r.DryRun {
				j.out.Note = fmt.Sprintf("would move to its own reference %s (%s is shared with %d other machines), then rotate", OwnCredentialRef(m.ID), m.BMC.CredentialRef, n)
				continue
			}
			if err := f.ownRef(ctx, j, n, r.Reason); err != nil {
				j.out.fail(err)
				j.run = false
			}
		}
	}

	ts, js := targets(jobs)
	ctl := f.controller()
	o := f.bulkOptions(jobs)
	if r.DryRun {
		res := ipmi.Bulk(ctx, ts, o, func(ctx context.Context, t ipmi.Target) (ipmi.PowerState, error) {
			return ctl.PowerStatus(ctx, t.Credentials)
		})
		for i, x := range res {
			j := js[i]
			j.out.Attempts, j.out.Elapsed, j.out.DryRun = x.Attempts, x.Elapsed, true
			if x.Err != nil {
				j.out.fail(fmt.Errorf("machine %s: the stored password does not log in: %w", j.sel.Machine.ID, x.Err))
				continue
			}
			if j.out.Note == "" {
				j.out.Note = "would rotate and store under " + j.sel.Machine.BMC.CredentialRef
			}
		}
		return outcomes(jobs)
	}

	o.Retries = -1
	res := ipmi.Bulk(ctx, ts, o, func(ctx context.Context, t ipmi.Target) (string, error) {
		pw, err := ipmi.GeneratePassword(r.Length)
		if err != nil {
			return "", err
		}
		return pw, ctl.RotatePassword(ctx, t.Credentials, pw)
	})

	// Store what the BMCs now accept, 8 at a time.
	sctx := context.WithoutCancel(ctx) // a BMC that took a password must get it stored even after ^C
	var g errgroup.Group
	g.SetLimit(8)
	for i, x := range res {
		j := js[i]
		j.out.Attempts, j.out.Elapsed = x.Attempts, x.Elapsed
		var re *ipmi.RotationError
		switch {
		case x.Err == nil:
		case errors.As(x.Err, &re) && re.Active == "new":
			j.out.warn(ipmi.Warning{Code: "rotation-error", Message: "the BMC reported an error but the new password logs in, so it was stored: " + re.Err.Error()})
		case errors.As(x.Err, &re) && re.Active == "unknown":
			j.out.fail(fmt.Errorf("machine %s: %w", j.sel.Machine.ID, x.Err))
			j.out.Note = "neither the stored nor the new password logs in now (BMC frozen or unreachable?); the stored password was left as it was: check the BMC and prove it with power status"
			continue
		default:
			j.out.fail(fmt.Errorf("machine %s: %w", j.sel.Machine.ID, x.Err))
			j.out.Note = "not rotated; the stored password is unchanged"
			continue
		}
		g.Go(func() error {
			f.store(sctx, ctl, j, x.Value, r.Reason)
			return nil
		})
	}
	_ = g.Wait()
	return outcomes(jobs)
}

// refUsers counts the machines per credential reference.
func (f *Fleet) refUsers(ctx context.Context) (map[string]int, error) {
	all, err := f.Inventory.List(ctx, inventory.Query{})
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, m := range all {
		if m.BMC.CredentialRef != "" {
			n[m.BMC.CredentialRef]++
		}
	}
	return n, nil
}

// ownRef moves a machine off a shared credential reference: it stores the
// current (working) password under OwnCredentialRef and points the machine
// at it, before its BMC is touched.
func (f *Fleet) ownRef(ctx context.Context, j *job, others int, why string) error {
	m := j.sel.Machine
	own := OwnCredentialRef(m.ID)
	if err := f.Inventory.SetCredential(ctx, own, j.cred.Password); err != nil {
		return fmt.Errorf("machine %s: give it its own credential reference %s: %w", m.ID, own, err)
	}
	shared := m.BMC.CredentialRef
	change := inventory.Change{What: "bmc credential-ref " + own, Who: f.Who,
		Why: fmt.Sprintf("own reference before password rotation (was %s, shared with %d other machines)", shared, others)}
	if why != "" {
		change.Why = why + "; " + change.Why
	}
	nm, err := f.Inventory.Update(ctx, m.ID, inventory.Operator, change, func(x *inventory.Machine) error {
		if x.BMC.CredentialRef != shared {
			return fmt.Errorf("credential reference changed to %s meanwhile", x.BMC.CredentialRef)
		}
		x.BMC.CredentialRef = own
		return nil
	})
	if err != nil {
		return fmt.Errorf("machine %s: point it at its own credential reference %s: %w", m.ID, own, err)
	}
	j.sel.Machine = nm
	j.out.After = own
	return nil
}

// store saves a rotated password and records the rotation. If the password
// cannot be stored, it puts the stored one back on the BMC, so that the
// inventory's password keeps working.
func (f *Fleet) store(ctx context.Context, ctl *ipmi.Controller, j *job, pw, why string) {
	m := j.sel.Machine
	ref := m.BMC.CredentialRef
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := f.Inventory.SetCredential(sctx, ref, pw)
	cancel()
	if err != nil {
		newCred := j.cred
		newCred.Password = pw
		back := ctl.RotatePassword(ctx, newCred, j.cred.Password)
		if back == nil {
			j.out.fail(fmt.Errorf("machine %s: store the new password under %s: %w", m.ID, ref, err))
			j.out.Note = "not rotated: storing failed, and the BMC was set back to the stored password"
			return
		}
		j.out.fail(fmt.Errorf("machine %s: store the new password under %s: %w; setting the stored password back on the BMC failed too: %w", m.ID, ref, err, back))
		j.out.Note = "the BMC has a password the inventory does not hold: reset it on the BMC and store it with `ironrack bmc credential set " + ref + "`"
		return
	}
	j.out.Changed, j.out.After = true, ref
	j.out.Note = "rotated; the new password is stored under " + ref
	hctx := context.WithoutCancel(ctx)
	if err := f.note(hctx, m.ID, inventory.Change{What: "bmc set-password", Why: why, Who: f.Who}); err != nil {
		j.out.Warnings = append(j.out.Warnings, "history-not-recorded: "+err.Error())
	}
}
