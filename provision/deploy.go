package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
)

// This file is the deploy and release workflows, shared by the CLI
// (`ironrack deploy`, `ironrack release`) and the Pulumi provider (commission.go
// adds commissioning on the same steps): claim,
// deploy spec, PXE boot and power through the Fleet, then wait — with
// Consul blocking queries on each machine's record — for the agent's result,
// which the boot server writes (provision/bootserver, deploy.go).

// DeployStore is what the deploy and release workflows need from the
// inventory. *inventory.Store satisfies it.
type DeployStore interface {
	Get(ctx context.Context, id string) (*inventory.Machine, error)
	Claim(ctx context.Context, id, owner, tier string, change inventory.Change) (*inventory.Machine, error)
	StartDeploy(ctx context.Context, id string, spec inventory.DeploySpec, change inventory.Change) (*inventory.Machine, *inventory.DeploySpec, error)
	FinishDeploy(ctx context.Context, id string, failure error, change inventory.Change) (*inventory.Machine, error)
	StartReleaseErase(ctx context.Context, id, erase string, change inventory.Change) (*inventory.Machine, error)
	FinishRelease(ctx context.Context, id string, failure error, change inventory.Change) (*inventory.Machine, error)
	Release(ctx context.Context, ms []*inventory.Machine, change inventory.Change) ([]*inventory.Machine, error)
	SetState(ctx context.Context, id string, to inventory.State, by inventory.Actor, change inventory.Change) (*inventory.Machine, error)
	FailCommission(ctx context.Context, id string, failure error, change inventory.Change) (*inventory.Machine, error)
	Watch(ctx context.Context, id string, index uint64, wait time.Duration) (*inventory.Machine, int64, uint64, error)
	HistoryRange(ctx context.Context, id string, after, upto int64) ([]inventory.HistoryEntry, error)
}

// ImageCatalog finds image versions. *images.Catalog satisfies it.
type ImageCatalog interface {
	Get(ctx context.Context, name, version string) (images.Manifest, error)
	List(ctx context.Context) ([]images.Manifest, error)
}

// Deployer runs the workflows that boot machines into the agent through
// their BMCs and wait for its report: deploy, release and commission. Its
// zero value is not usable: Store and Fleet are required.
type Deployer struct {
	// Store is the inventory. Required.
	Store DeployStore
	// Fleet sets the boot device and the power through the BMCs. Required;
	// its Inventory must be the same inventory.
	Fleet *Fleet
	// Images checks that the image exists and resolves a missing version.
	// If nil, the request's version is taken as given.
	Images ImageCatalog
	// Who is recorded in history. If empty, the store's default.
	Who string
	// Logger receives debug logs. If nil, discarded.
	Logger *slog.Logger
	// WatchWait bounds each blocking query. If 0, 30s.
	WatchWait time.Duration
}

// DeployRequest is one deploy of one image to some machines.
type DeployRequest struct {
	// Owner claims ready machines (allocated ones must be Owner's already).
	// Required: the operator for the CLI, the stack's URN for Pulumi.
	Owner string
	// Tier is recorded on machines claimed here; may be empty.
	Tier string
	// Image and Version name a catalog version. An empty Version takes the
	// image's only version (several are an error that lists them).
	Image, Version string
	// Hostnames gives machines their host names by ID; a machine not in it
	// gets HostnamePrefix-N (N from 1, in ID order) or, without a prefix,
	// its machine ID.
	Hostnames      map[string]string
	HostnamePrefix string
	SSHKeys        []string
	UserData       string
	Role           string
	ConsulJoin     string
	// Services are registered with each machine's own Consul agent (which
	// needs ConsulJoin), with their health checks.
	Services []inventory.DeployService
	// RootDisk is the root-device hint (inventory.ParseDiskWhere), applied
	// to each machine's recorded disks before anything changes: no match
	// fails the machine at "select". Empty: the agent's first fit.
	RootDisk string
	// RootLayout is inventory.LayoutFlat (or empty) or LayoutMirror.
	RootLayout string
	// AllowReboot lets the workflow power-cycle a machine that is on;
	// without it such a machine fails before anything changes.
	AllowReboot bool
	// Timeout bounds the wait for every machine's result. If 0, 30 minutes.
	Timeout time.Duration
	// Reason is recorded in the history.
	Reason string
	// Progress, if set, receives every step and agent event as it happens,
	// one call at a time.
	Progress func(Event)
}

// ReleaseRequest is the release of some machines.
type ReleaseRequest struct {
	// AllowReboot lets the workflow power-cycle a machine that is on to
	// wipe it; without it such a machine fails before anything changes.
	AllowReboot bool
	// Erase is the wipe's erase level (inventory.EraseQuick, EraseZero,
	// EraseSecure). If empty, quick.
	Erase string
	// Timeout bounds the wait for every wipe. If 0, 20 minutes.
	Timeout  time.Duration
	Reason   string
	Progress func(Event)
}

// Event is one step of a machine's deploy or release.
type Event struct {
	Machine string          `json:"machine"`
	State   inventory.State `json:"state"`
	// Percent is the agent's progress, or -1 when the event has none.
	Percent int    `json:"percent"`
	What    string `json:"what"`
	Message string `json:"message"`
	At      time.Time
}

// Result is one machine's outcome; what the CLI's summary table prints.
type Result struct {
	Machine  string `json:"machine"`
	Hostname string `json:"hostname"`
	// Serial and BMC (address:port) identify the machine in the rack.
	Serial string `json:"serial"`
	BMC    string `json:"bmc"`
	// Action is "deploy", "release" or "commission".
	Action string `json:"action"`
	// State is the machine's state at the end.
	State inventory.State `json:"state"`
	// Result is "ok", "failed", or "skipped" (commission: a machine the
	// selection matched that is not to be commissioned; Note says why).
	Result string `json:"result"`
	// Step names where it failed: "select", "image", "power", "allocate",
	// "deploy", "commission", "boot-device", "agent", "timeout", "canceled".
	Step  string `json:"step"`
	Error string `json:"error"`
	// Note is one sentence for people about a machine that did not fail:
	// why it was skipped.
	Note    string        `json:"note"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Err     error         `json:"-"`
}

// OK reports whether the machine succeeded.
func (r Result) OK() bool { return r.Err == nil }

func (r *Result) fail(step string, err error) {
	r.Result, r.Step, r.Err, r.Error = "failed", step, err, err.Error()
}

func (d *Deployer) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// job is one machine of a workflow.
type wjob struct {
	res     Result
	m       *inventory.Machine
	spec    inventory.DeploySpec
	on      bool
	start   time.Time
	seq     int64
	pending bool
	// end is when the machine's workflow ended (zero: at results).
	end time.Time
	// bmcErr is set when checkPower could not read the power through the
	// BMC (as opposed to a machine that is on).
	bmcErr error
}

// Deploy deploys req's image to the machines ids, all at once, and waits
// for each to be deployed or failed. For each machine:
//
//  1. it must be ready, or allocated to req.Owner; it must be off unless
//     req.AllowReboot (checked through the BMC before anything changes);
//  2. a ready machine is claimed for req.Owner (allocated);
//  3. allocated → deploying, with its deploy spec, in one transaction;
//  4. the BMC sets network boot (persistent) and powers it on (or cycles
//     it, when it was on and reboots are allowed);
//  5. the agent writes the image and reports; the boot server moves the
//     machine to deployed or failed_deployment; this waits for that
//     (Consul blocking queries, bounded by req.Timeout) and passes the
//     agent's progress to req.Progress. A machine still deploying at the
//     deadline is moved to failed_deployment.
//
// A failure before step 3 leaves the machine as it was (a claim made in
// step 2 is kept: the machine stays the owner's); from step 3 on, it ends in
// failed_deployment with the step and the error in its history.
func (d *Deployer) Deploy(ctx context.Context, ids []string, req DeployRequest) []Result {
	jobs, timeout, deadline, prog := d.begin(ctx, ids, "deploy", req.Timeout, 30*time.Minute, req.Progress)
	version, verr := d.resolveImage(ctx, req.Image, req.Version)
	names := hostnames(ids, req)
	for _, j := range jobs {
		if j.res.Err != nil {
			continue
		}
		j.res.Hostname = names[j.m.ID]
		j.spec = inventory.DeploySpec{Image: req.Image, ImageVersion: version, Hostname: names[j.m.ID], SSHKeys: req.SSHKeys,
			Role: req.Role, UserData: req.UserData, ConsulJoin: req.ConsulJoin, Services: req.Services,
			RootDisk: req.RootDisk, RootLayout: req.RootLayout}
		switch {
		case verr != nil:
			j.res.fail("image", verr)
		case j.m.State == inventory.StateAllocated && j.m.Owner != req.Owner:
			j.res.fail("select", fmt.Errorf("machine %s is allocated to %q, not %q", j.m.ID, j.m.Owner, req.Owner))
		case j.m.State != inventory.StateReady && j.m.State != inventory.StateAllocated:
			j.res.fail("select", fmt.Errorf("machine %s is %s: only ready machines (or allocated to %s) are deployed", j.m.ID, j.m.State, req.Owner))
		default:
			err := j.spec.Validate()
			if err == nil {
				// What cloud-init will get must render, before anything changes.
				err = NoCloudSeed(j.m.ID, &j.spec, inventory.AgentSecrets{}, "").Validate()
			}
			if err == nil && j.spec.RootDisk != "" {
				// The hint against the record's facts, before anything changes;
				// StartDeploy applies it again in its transaction.
				_, err = inventory.ChooseRootDisks(j.spec.RootDisk, j.spec.RootLayout, j.m.Disks)
			}
			if err != nil {
				j.res.fail("select", fmt.Errorf("machine %s: %w", j.m.ID, err))
			}
		}
	}
	d.checkPower(ctx, jobs, req.AllowReboot, "deploy")
	change := inventory.Change{Who: d.Who, Why: req.Reason}
	for _, j := range live(jobs) {
		if _, err := d.Store.Claim(ctx, j.m.ID, req.Owner, req.Tier, inventory.Change{Who: d.Who, Why: req.Reason}); err != nil {
			j.res.fail("allocate", err)
			continue
		}
		c := change
		c.What = "deploy"
		m, _, err := d.Store.StartDeploy(ctx, j.m.ID, j.spec, c)
		if err != nil {
			j.res.fail("deploy", err)
			continue
		}
		j.m, j.pending = m, true
	}
	d.bootAndPower(ctx, jobs, req.AllowReboot, req.Reason, func(j *wjob, step string, err error) {
		if _, ferr := d.Store.FinishDeploy(context.WithoutCancel(ctx), j.m.ID, fmt.Errorf("%s: %w", step, err), inventory.Change{Who: d.Who}); ferr != nil {
			d.log().Warn("deploy: could not mark failed", "machine", j.m.ID, "err", ferr)
		}
	})
	d.waitAll(ctx, jobs, inventory.StateDeployed, inventory.StateFailedDeployment, deadline, prog, func(j *wjob) error {
		_, err := d.Store.FinishDeploy(context.WithoutCancel(ctx), j.m.ID, fmt.Errorf("timeout: no result from the agent within %v", timeout), inventory.Change{Who: d.Who})
		return err
	})
	return d.results(ctx, jobs)
}

// Release releases the machines ids: an allocated machine goes back to the
// pool at once; a deployed one (or one whose deploy or wipe failed) is
// wiped by the agent — releasing, network boot, power on or cycle (which
// needs req.AllowReboot when it is on) — and is ready again when the agent
// reports the wipe done. A ready machine is left alone.
func (d *Deployer) Release(ctx context.Context, ids []string, req ReleaseRequest) []Result {
	jobs, timeout, deadline, prog := d.begin(ctx, ids, "release", req.Timeout, 20*time.Minute, req.Progress)
	if req.Erase == "" {
		req.Erase = inventory.EraseQuick
	}
	if err := inventory.ValidateErase(req.Erase); err != nil {
		for _, j := range live(jobs) {
			j.res.fail("select", err)
		}
	}
	var wipe []*wjob
	for _, j := range live(jobs) {
		switch j.m.State {
		case inventory.StateReady:
			j.res.Step = "already ready"
		case inventory.StateAllocated:
			if _, err := d.Store.Release(ctx, []*inventory.Machine{j.m}, inventory.Change{Who: d.Who, Why: req.Reason}); err != nil {
				j.res.fail("release", err)
			}
		case inventory.StateDeployed, inventory.StateFailedDeployment, inventory.StateFailedReleasing:
			wipe = append(wipe, j)
		default:
			j.res.fail("select", fmt.Errorf("machine %s is %s: only allocated, deployed or failed machines are released", j.m.ID, j.m.State))
		}
	}
	d.checkPower(ctx, wipe, req.AllowReboot, "release")
	for _, j := range live(wipe) {
		m, err := d.Store.StartReleaseErase(ctx, j.m.ID, req.Erase, inventory.Change{Who: d.Who, Why: req.Reason})
		if err != nil {
			j.res.fail("release", err)
			continue
		}
		j.m, j.pending = m, true
	}
	d.bootAndPower(ctx, wipe, req.AllowReboot, req.Reason, func(j *wjob, step string, err error) {
		if _, ferr := d.Store.FinishRelease(context.WithoutCancel(ctx), j.m.ID, fmt.Errorf("%s: %w", step, err), inventory.Change{Who: d.Who}); ferr != nil {
			d.log().Warn("release: could not mark failed", "machine", j.m.ID, "err", ferr)
		}
	})
	d.waitAll(ctx, wipe, inventory.StateReady, inventory.StateFailedReleasing, deadline, prog, func(j *wjob) error {
		_, err := d.Store.FinishRelease(context.WithoutCancel(ctx), j.m.ID, fmt.Errorf("timeout: no wipe result from the agent within %v", timeout), inventory.Change{Who: d.Who})
		return err
	})
	return d.results(ctx, jobs)
}

// begin is how every workflow starts: its timeout (def if 0) and deadline,
// the caller's progress callback serialized, and the machines' jobs.
func (d *Deployer) begin(ctx context.Context, ids []string, action string, timeout, def time.Duration, progress func(Event)) ([]*wjob, time.Duration, time.Time, func(Event)) {
	if timeout == 0 {
		timeout = def
	}
	deadline := time.Now().Add(timeout)
	return d.load(ctx, ids, action), timeout, deadline, d.progress(progress)
}

// progress serializes the caller's callback.
func (d *Deployer) progress(fn func(Event)) func(Event) {
	if fn == nil {
		return func(Event) {}
	}
	var mu sync.Mutex
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		fn(e)
	}
}

// load reads the machines; duplicates collapse.
func (d *Deployer) load(ctx context.Context, ids []string, action string) []*wjob {
	seen := map[string]bool{}
	var jobs []*wjob
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		j := &wjob{res: Result{Machine: id, Action: action, Result: "ok"}, start: time.Now()}
		// The history sequence now: events are streamed from here on.
		m, seq, _, err := d.Store.Watch(ctx, id, 0, 0)
		if err != nil {
			j.res.fail("select", err)
		} else {
			j.m, j.res.State, j.seq = m, m.State, seq
			j.res.Serial, j.res.BMC = m.Serial, m.BMCKey()
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func live(jobs []*wjob) []*wjob {
	var out []*wjob
	for _, j := range jobs {
		if j.res.Err == nil && j.m != nil {
			out = append(out, j)
		}
	}
	return out
}

// resolveImage checks the image in the catalog and picks its version.
func (d *Deployer) resolveImage(ctx context.Context, name, version string) (string, error) {
	if name == "" {
		return "", errors.New("no image given")
	}
	if d.Images == nil {
		if version == "" {
			return "", fmt.Errorf("image %s: no version given and no catalog to look it up", name)
		}
		return version, nil
	}
	if version != "" {
		if _, err := d.Images.Get(ctx, name, version); err != nil {
			return "", err
		}
		return version, nil
	}
	all, err := d.Images.List(ctx)
	if err != nil && len(all) == 0 {
		return "", err
	}
	var vs []string
	for _, m := range all {
		if m.Name == name {
			vs = append(vs, m.Version)
		}
	}
	switch len(vs) {
	case 0:
		return "", fmt.Errorf("image %s: no version in the catalog (ironrack images list): %w", name, images.ErrNotFound)
	case 1:
		return vs[0], nil
	}
	return "", fmt.Errorf("image %s has %d versions (%s): name one as %s:VERSION", name, len(vs), strings.Join(vs, ", "), name)
}

// hostnames names each machine: req.Hostnames, else prefix-N in ID order,
// else the machine ID.
func hostnames(ids []string, req DeployRequest) map[string]string {
	sorted := append([]string(nil), ids...)
	sort.Strings(sorted)
	out := map[string]string{}
	n := 0
	for _, id := range sorted {
		if _, dup := out[id]; dup {
			continue
		}
		n++
		switch {
		case req.Hostnames[id] != "":
			out[id] = req.Hostnames[id]
		case req.HostnamePrefix != "":
			out[id] = req.HostnamePrefix + "-" + strconv.Itoa(n)
		default:
			out[id] = id
		}
	}
	return out
}

// checkPower reads every live job's power state through its BMC. A machine
// that is on fails unless reboots are allowed; nothing has changed yet.
func (d *Deployer) checkPower(ctx context.Context, jobs []*wjob, allowReboot bool, action string) {
	lj := live(jobs)
	if len(lj) == 0 {
		return
	}
	sel := make([]Selected, len(lj))
	for i, j := range lj {
		sel[i] = Selected{Machine: j.m, ByID: true}
	}
	outs := d.Fleet.PowerStatus(ctx, sel)
	for i, o := range outs {
		j := lj[i]
		switch {
		case o.Err != nil:
			j.bmcErr = o.Err
			j.res.fail("power", o.Err)
		case o.After == string(ipmi.StateOn) && !allowReboot:
			j.res.fail("power", fmt.Errorf("machine %s is on: %s power-cycles it only with allow-reboot (--allow-reboot)", j.m.ID, action))
		default:
			j.on = o.After == string(ipmi.StateOn)
		}
	}
}

// bootAndPower sets network boot and powers on (or cycles) the pending
// jobs; a failure is passed to failed (which ends the workflow's state)
// and fails the job.
func (d *Deployer) bootAndPower(ctx context.Context, jobs []*wjob, allowReboot bool, reason string, failed func(*wjob, string, error)) {
	var pend []*wjob
	for _, j := range jobs {
		if j.pending {
			pend = append(pend, j)
		}
	}
	if len(pend) == 0 {
		return
	}
	sel := func(js []*wjob) []Selected {
		out := make([]Selected, len(js))
		for i, j := range js {
			out[i] = Selected{Machine: j.m, ByID: true}
		}
		return out
	}
	boot := d.Fleet.SetBoot(ctx, sel(pend), BootRequest{Device: ipmi.BootPXE, Options: ipmi.BootOptions{Persistent: true}, Reason: reason})
	var off, on []*wjob
	for i, o := range boot {
		j := pend[i]
		if o.Err != nil {
			j.pending = false
			j.res.fail("boot-device", o.Err)
			failed(j, "boot-device", o.Err)
			continue
		}
		if j.on {
			on = append(on, j)
		} else {
			off = append(off, j)
		}
	}
	power := func(js []*wjob, action ipmi.PowerAction) {
		if len(js) == 0 {
			return
		}
		outs := d.Fleet.Power(ctx, sel(js), action, PowerRequest{AllowReboot: allowReboot, Reason: reason})
		for i, o := range outs {
			j := js[i]
			if o.Err != nil {
				j.pending = false
				j.res.fail("power", o.Err)
				failed(j, "power", o.Err)
			}
		}
	}
	power(off, ipmi.On)
	power(on, ipmi.Cycle)
}

var percentRE = regexp.MustCompile(`(\d{1,3})%`)

// waitAll waits for every pending job to reach ok or bad, passing each new
// history entry to prog; at the deadline, timeout ends a job still waiting.
func (d *Deployer) waitAll(ctx context.Context, jobs []*wjob, ok, bad inventory.State, deadline time.Time, prog func(Event), timeout func(*wjob) error) {
	var wg sync.WaitGroup
	for _, j := range jobs {
		if !j.pending {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.wait(ctx, j, ok, bad, deadline, prog, timeout)
		}()
	}
	wg.Wait()
}

func (d *Deployer) wait(ctx context.Context, j *wjob, ok, bad inventory.State, deadline time.Time, prog func(Event), timeout func(*wjob) error) {
	id := j.m.ID
	wait := d.WatchWait
	if wait == 0 {
		wait = 30 * time.Second
	}
	var index uint64
	var last string
	first := true
	for {
		left := time.Until(deadline)
		if left <= 0 {
			// The result may have landed since the last watch returned.
			if m, err := d.Store.Get(context.WithoutCancel(ctx), id); err == nil && (m.State == ok || m.State == bad) {
				j.m = m
				break
			}
			if err := timeout(j); err != nil && !errors.Is(err, inventory.ErrConflict) {
				d.log().Warn("wait: could not end the workflow at its deadline", "machine", id, "err", err)
			}
			j.end = time.Now()
			j.res.fail("timeout", fmt.Errorf("machine %s: no result by the deadline (last: %s)", id, orNone(last)))
			return
		}
		w := min(wait, left)
		if first {
			w = 0
		}
		m, seq, idx, err := d.Store.Watch(ctx, id, index, w)
		if err != nil {
			if ctx.Err() != nil {
				j.res.fail("canceled", fmt.Errorf("machine %s: stopped waiting (%v); the workflow goes on without this command", id, ctx.Err()))
				return
			}
			d.log().Debug("wait: watch failed; retrying", "machine", id, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		first = false
		index = idx
		if seq > j.seq {
			entries, err := d.Store.HistoryRange(ctx, id, j.seq, seq)
			if err == nil {
				for _, e := range entries {
					ev := Event{Machine: id, State: m.State, Percent: -1, What: e.What, Message: e.Why, At: e.At}
					if e.To != "" {
						ev.State = e.To
					}
					if strings.Contains(e.Why, "progress") {
						if p := percentRE.FindStringSubmatch(e.Why); p != nil {
							ev.Percent, _ = strconv.Atoi(p[1])
						}
					}
					last = e.What + ": " + e.Why
					prog(ev)
				}
				j.seq = seq
			}
		}
		j.m = m
		if m.State == ok || m.State == bad {
			break
		}
	}
	j.end = time.Now()
	if j.m.State == bad {
		j.res.fail("agent", fmt.Errorf("machine %s is %s: %s", id, bad, orNone(last)))
	}
}

func orNone(s string) string {
	if s == "" {
		return "nothing reported"
	}
	return s
}

// results fills in each job's final state and time.
func (d *Deployer) results(ctx context.Context, jobs []*wjob) []Result {
	out := make([]Result, len(jobs))
	for i, j := range jobs {
		if j.m != nil {
			if m, err := d.Store.Get(context.WithoutCancel(ctx), j.m.ID); err == nil {
				j.m = m
			}
			j.res.State = j.m.State
		}
		if j.end.IsZero() {
			j.end = time.Now()
		}
		j.res.Elapsed = j.end.Sub(j.start)
		out[i] = j.res
	}
	return out
}
