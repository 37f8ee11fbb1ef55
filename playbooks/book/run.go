package book

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/fanout"
	"github.com/ironrack/ironrack/playbooks/remote"
)

// Target is one machine a playbook runs on: its inventory record (what
// templates see) and where to log in.
type Target struct {
	Machine *inventory.Machine
	Host    fanout.Host
}

// Report is a playbook run: the fan-out's report (one result per host,
// batches, abort) and each host's step results by machine ID.
type Report struct {
	*fanout.Report
	Steps map[string][]StepResult
}

// PlanAll plans the playbook for every target, before any host is touched:
// the first machine whose plan fails refuses the whole run.
func (p *Playbook) PlanAll(targets []Target, vars map[string]string) (map[string]*HostPlan, error) {
	if err := p.CheckVars(vars); err != nil {
		return nil, err
	}
	h := &Hasher{}
	plans := make(map[string]*HostPlan, len(targets))
	for _, t := range targets {
		if t.Machine == nil || t.Machine.ID != t.Host.ID {
			return nil, fmt.Errorf("target %s: machine record missing or for another machine", t.Host.ID)
		}
		if _, dup := plans[t.Host.ID]; dup {
			return nil, fmt.Errorf("machine %s selected twice", t.Host.ID)
		}
		hp, err := p.Plan(t.Machine, vars, h)
		if err != nil {
			return nil, err
		}
		plans[t.Host.ID] = hp
	}
	return plans, nil
}

// Run plans the playbook for every target (refusing it, before any host
// is touched, if any plan fails), then applies it through the fan-out:
// batches, failure thresholds and timeouts are plan's. A host whose step
// fails ends with exit status 1 (its output names the step, FILE:LINE);
// one that cannot be reached is the fan-out's unreachable. The error is
// the fan-out's (fanout.ErrAborted when a batch exceeded its threshold).
func (p *Playbook) Run(ctx context.Context, targets []Target, vars map[string]string, plan fanout.Plan, opt Options) (*Report, error) {
	plans, err := p.PlanAll(targets, vars)
	if err != nil {
		return nil, err
	}
	hosts := make([]fanout.Host, len(targets))
	for i, t := range targets {
		hosts[i] = t.Host
	}
	rep := &Report{Steps: map[string][]StepResult{}}
	var mu sync.Mutex
	work := func(ctx context.Context, h fanout.Host, c *remote.Client, out io.Writer) (int, error) {
		res, err := plans[h.ID].Apply(ctx, c, out, opt)
		mu.Lock()
		rep.Steps[h.ID] = res
		mu.Unlock()
		if err == nil {
			return 0, nil
		}
		fmt.Fprintf(out, "failed: %v\n", err)
		if ctx.Err() != nil {
			// Timed out or cancelled: the fan-out says which.
			return -1, err
		}
		var nr *notRun
		if errors.As(err, &nr) {
			return -1, err
		}
		return 1, nil
	}
	fr, err := fanout.Run(ctx, hosts, plan, work)
	rep.Report = fr
	return rep, err
}

// notRun marks an error where a command could not be run to an exit status
// (the connection was lost): the host did not fail a step, it broke.
type notRun struct{ err error }

func (e *notRun) Error() string { return e.err.Error() }
func (e *notRun) Unwrap() error { return e.err }
