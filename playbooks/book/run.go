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

// Prepared is a playbook planned for every target, ready to run through
// the fan-out: Work is its fanout.Work.
type Prepared struct {
	plans map[string]*HostPlan
	hosts []fanout.Host
	opt   Options
	mu    sync.Mutex
	steps map[string][]StepResult
	doing map[string]string
}

// Prepare plans the playbook for every target (PlanAll: refused, before any
// host is touched, if any plan fails) and returns what the fan-out runs.
func (p *Playbook) Prepare(targets []Target, vars map[string]string, opt Options) (*Prepared, error) {
	plans, err := p.PlanAll(targets, vars)
	if err != nil {
		return nil, err
	}
	pr := &Prepared{plans: plans, opt: opt, steps: map[string][]StepResult{}, doing: map[string]string{}}
	for _, t := range targets {
		pr.hosts = append(pr.hosts, t.Host)
	}
	return pr, nil
}

// Hosts are the targets' hosts, in the order given.
func (pr *Prepared) Hosts() []fanout.Host { return pr.hosts }

// Steps returns each host's step results so far, by machine ID.
func (pr *Prepared) Steps() map[string][]StepResult {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := make(map[string][]StepResult, len(pr.steps))
	for k, v := range pr.steps {
		out[k] = v
	}
	return out
}

// Doing says which step the machine is at: "step 4/10 copy (FILE:LINE)",
// or "logging in" before its first.
func (pr *Prepared) Doing(id string) string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if d, ok := pr.doing[id]; ok {
		return d
	}
	return "logging in"
}

// Work applies the host's plan over c. A host whose step fails ends with
// exit status 1 (its output names the step, FILE:LINE); a command cut off
// (connection lost, timeout, cancel) is an error, as the fan-out wants.
func (pr *Prepared) Work(ctx context.Context, h fanout.Host, c *remote.Client, out io.Writer) (int, error) {
	hp := pr.plans[h.ID]
	if hp == nil {
		return -1, fmt.Errorf("machine %s was not planned", h.ID)
	}
	opt := pr.opt
	opt.OnStep = func(i int, s *PlannedStep) {
		pr.mu.Lock()
		pr.doing[h.ID] = fmt.Sprintf("step %d/%d %s (%s)", i+1, len(hp.Steps), s.Label, s.Where)
		pr.mu.Unlock()
		if pr.opt.OnStep != nil {
			pr.opt.OnStep(i, s)
		}
	}
	res, err := hp.Apply(ctx, c, out, opt)
	pr.mu.Lock()
	pr.steps[h.ID] = res
	pr.mu.Unlock()
	if err == nil {
		return 0, nil
	}
	fmt.Fprintf(out, "failed: %v\n", err)
	var nr *notRun
	if ctx.Err() != nil || errors.As(err, &nr) {
		return -1, err
	}
	return 1, nil
}

// Run prepares the playbook and runs it through the fan-out: batches,
// failure thresholds and timeouts are plan's. The error is the fan-out's
// (fanout.ErrAborted when a batch exceeded its threshold).
func (p *Playbook) Run(ctx context.Context, targets []Target, vars map[string]string, plan fanout.Plan, opt Options) (*Report, error) {
	pr, err := p.Prepare(targets, vars, opt)
	if err != nil {
		return nil, err
	}
	fr, err := fanout.Run(ctx, pr.Hosts(), plan, pr.Work)
	return &Report{Report: fr, Steps: pr.Steps()}, err
}

// notRun marks an error where a command could not be run to an exit status
// (the connection was lost): the host did not fail a step, it broke.
type notRun struct{ err error }

func (e *notRun) Error() string { return e.err.Error() }
func (e *notRun) Unwrap() error { return e.err }
