package provision

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"golang.org/x/sync/errgroup"
)

// This file holds the bulk BMC workflows: power status and changes, and boot
// overrides over an inventory selection, with the changes recorded in each
// machine's history. rotate.go adds BMC password rotation. The safety rules
// that need the inventory (a deployed machine is rebooted only when named by
// ID) live here; the ones that need only the BMC (On never cycles, a running
// machine is not turned off without AllowReboot) live in ipmi.

// MachineFinder resolves a selection. *inventory.Store satisfies it.
type MachineFinder interface {
	// Find resolves a machine ID, serial or MAC to one machine.
	Find(ctx context.Context, key string) (*inventory.Machine, error)
	// List returns the machines matching q.
	List(ctx context.Context, q inventory.Query) ([]*inventory.Machine, error)
}

// BMCInventory is what the bulk BMC workflows need from the inventory.
// *inventory.Store satisfies it.
type BMCInventory interface {
	// Credential decrypts a machine's BMC login.
	Credential(ctx context.Context, m *inventory.Machine) (inventory.Credential, error)
	// Credentials decrypts many machines' logins with batched reads;
	// per-machine problems come back keyed by machine ID.
	Credentials(ctx context.Context, ms []*inventory.Machine) (map[string]inventory.Credential, map[string]error, error)
	// Update rewrites a machine with CAS and records change in its history.
	Update(ctx context.Context, id string, by inventory.Actor, change inventory.Change, fn func(m *inventory.Machine) error) (*inventory.Machine, error)
	// SetCredential seals and stores a password under a reference
	// (password rotation).
	SetCredential(ctx context.Context, ref, password string) error
	// List returns the machines matching q (password rotation reads which
	// machines share a credential reference).
	List(ctx context.Context, q inventory.Query) ([]*inventory.Machine, error)
}

// Selected is one machine a bulk BMC workflow acts on.
type Selected struct {
	Machine *inventory.Machine
	// ByID is true when the operator named this machine by its machine ID
	// (not by serial, MAC or an expression). Only such a deployed machine
	// may be turned off, cycled or reset.
	ByID bool
	// Named is true when the operator named this machine on the command
	// line (by ID, serial or MAC) rather than selecting it by expression.
	Named bool
}

// Select resolves machines named on the command line (IDs, serials or MACs;
// duplicates collapse) or, when keys is empty, the machines matching q.
func Select(ctx context.Context, inv MachineFinder, keys []string, q inventory.Query) ([]Selected, error) {
	if len(keys) == 0 {
		ms, err := inv.List(ctx, q)
		if err != nil {
			return nil, err
		}
		out := make([]Selected, len(ms))
		for i, m := range ms {
			out[i] = Selected{Machine: m}
		}
		return out, nil
	}
	var out []Selected
	at := map[string]int{}
	for _, k := range keys {
		m, err := inv.Find(ctx, k)
		if err != nil {
			return nil, err
		}
		byID := inventory.IsID(k) && k == m.ID
		if i, ok := at[m.ID]; ok {
			out[i].ByID = out[i].ByID || byID
			continue
		}
		at[m.ID] = len(out)
		out = append(out, Selected{Machine: m, ByID: byID, Named: true})
	}
	return out, nil
}

// Sentinels of the workflows, beside ipmi's (see Outcome.Reason).
var (
	// ErrDeployed: off, cycle or reset of a deployed machine that the
	// operator did not name by its ID. It also matches
	// ipmi.ErrRebootNotAllowed.
	ErrDeployed = fmt.Errorf("deployed machine not named by ID: %w", ipmi.ErrRebootNotAllowed)
	// ErrCredential: the machine's BMC login could not be read from the
	// inventory (no BMC address, no credential reference, no key file).
	ErrCredential = errors.New("no usable BMC credential")
)

// Outcome is the result of one machine in a bulk BMC workflow. It is what
// the CLI's summary table prints, and its JSON form is what -o json prints.
type Outcome struct {
	Machine string `json:"machine"`
	// BMC is the BMC's address:port.
	BMC string `json:"bmc"`
	// Action is "status", "on", "off", "cycle", "reset", "boot pxe",
	// "set-password".
	Action string `json:"action"`
	// Result is "ok" or "failed".
	Result string `json:"result"`
	// Reason is "ok" or the class of the failure: ipmi's reasons ("auth",
	// "unreachable", "timeout", "unsupported", "refused", "not-applied",
	// "reboot-not-allowed", "canceled", "error"), "deployed" (ErrDeployed)
	// or "credential" (ErrCredential).
	Reason string `json:"reason"`
	// Before and After are the power state (power), the boot override
	// (boot) or the credential reference (set-password) before and after.
	Before string `json:"before"`
	After  string `json:"after"`
	// Changed is true if a change was sent to the BMC (a password set,
	// for set-password: the BMC was rotated).
	Changed bool `json:"changed"`
	// DryRun marks outcomes of --dry-run; Note says what would be done.
	DryRun bool `json:"dry_run"`
	// Note is one sentence for people: "would power off", "already on".
	Note     string   `json:"note"`
	Warnings []string `json:"warnings"`
	// Error is the failure's full message (never a password).
	Error    string        `json:"error"`
	Attempts int           `json:"attempts"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	// Err is the failure, for callers that branch on it.
	Err error `json:"-"`
}

// OK reports whether the machine succeeded.
func (o Outcome) OK() bool { return o.Err == nil }

func (o *Outcome) fail(err error) {
	o.Err = err
	o.Result, o.Reason, o.Error = "failed", Reason(err), err.Error()
}

func (o *Outcome) warn(w ...ipmi.Warning) {
	for _, x := range w {
		o.Warnings = append(o.Warnings, string(x.Code)+": "+x.Message)
	}
}

// Reason is the word for err's class in Outcome.Reason: "ok", "deployed",
// "credential", or ipmi.Reason's.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrDeployed):
		return "deployed"
	case errors.Is(err, ErrCredential):
		return "credential"
	}
	return ipmi.Reason(err)
}

// Fleet runs BMC operations over many machines: bounded concurrency overall
// and per BMC, a deadline per call and jittered retries (ipmi.Bulk), with
// credentials read from the inventory and every change recorded in the
// machine's history. Reads are not recorded.
type Fleet struct {
	// Inventory is where credentials come from and history goes. Required.
	Inventory BMCInventory
	// Controller talks to the BMCs. If nil, a zero ipmi.Controller with its
	// Timeout set to Bulk.CallTimeout.
	Controller *ipmi.Controller
	// Bulk bounds each batch (Concurrency, PerBMC, CallTimeout, Retries,
	// Progress). The zero value works.
	Bulk ipmi.BulkOptions
	// Who is recorded in history. If empty, the store's default.
	Who string
	// Logger receives debug logs (never passwords). If nil, discarded.
	Logger *slog.Logger
	// BMCRoots are the CAs a Redfish BMC's certificate must chain to (the
	// site's CA file) unless its record pins a certificate or says
	// insecure. If nil, the system's roots.
	BMCRoots *x509.CertPool
}

// PowerRequest qualifies a power change.
type PowerRequest struct {
	// AllowReboot permits off, cycle and reset of machines that are on.
	AllowReboot bool
	// DryRun reads the power state and reports what would be done; it
	// changes nothing and records nothing.
	DryRun bool
	// Reason is recorded in history as the why.
	Reason string
}

// BootRequest is a boot override.
type BootRequest struct {
	Device  ipmi.BootDevice
	Options ipmi.BootOptions
	// DryRun reads the current override and reports what would be set.
	DryRun bool
	Reason string
}

func (f *Fleet) controller() *ipmi.Controller {
	if f.Controller != nil {
		return f.Controller
	}
	f.Controller = &ipmi.Controller{Logger: f.Logger, Timeout: f.Bulk.CallTimeout}
	return f.Controller
}

func (f *Fleet) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// job is one selected machine with its outcome and, once loaded, its login.
type job struct {
	sel  Selected
	out  Outcome
	cred ipmi.Credentials
	// run is false once the job failed before reaching the BMC.
	run bool
}

// prepare builds the jobs, reads the credentials (one batched read for all),
// and fails the machines that fail check (nil: none) or have no usable
// credential.
func (f *Fleet) prepare(ctx context.Context, sel []Selected, action string, check func(Selected) error) []*job {
	jobs := make([]*job, len(sel))
	var need []*inventory.Machine
	for i, s := range sel {
		m := s.Machine
		j := &job{sel: s, run: true, out: Outcome{Machine: m.ID, BMC: m.BMCKey(), Action: action, Result: "ok", Reason: "ok", Warnings: []string{}}}
		jobs[i] = j
		if check != nil {
			if err := check(s); err != nil {
				j.out.fail(err)
				j.run = false
				continue
			}
		}
		if m.BMC.Address == "" {
			j.out.fail(fmt.Errorf("machine %s has no BMC address: %w", m.ID, ErrCredential))
			j.run = false
			continue
		}
		need = append(need, m)
	}
	creds, errs, err := f.Inventory.Credentials(ctx, need)
	for _, j := range jobs {
		if !j.run {
			continue
		}
		m := j.sel.Machine
		c, ok := creds[m.ID]
		switch {
		case err != nil:
			j.out.fail(fmt.Errorf("%w: %w", ErrCredential, err))
		case !ok:
			j.out.fail(fmt.Errorf("%w: %w", ErrCredential, errs[m.ID]))
		default:
			j.cred = ipmi.Credentials{
				Host:     m.BMC.Address,
				Port:     m.BMC.Port,
				Username: c.Username,
				Password: c.Password,
				Protocol: ipmi.Protocol(m.BMC.Protocol),
				TLS:      f.bmcTLS(m.BMC),
			}
			if j.cred.TLS.Insecure {
				msg := "the BMC's certificate is not checked (bmc_tls insecure); pin it or give the site's CA"
				j.out.Warnings = append(j.out.Warnings, string(ipmi.WarnInsecureTLS)+": "+msg)
				f.logger().Warn("BMC TLS not verified", "machine", m.ID, "bmc", m.BMCKey(), "why", "bmc_tls insecure in the inventory")
			}
			continue
		}
		j.run = false
	}
	return jobs
}

func (f *Fleet) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// bmcTLS is how a BMC's certificate is checked, from its record.
func (f *Fleet) bmcTLS(b inventory.BMC) ipmi.TLS {
	switch {
	case b.Protocol != inventory.ProtocolRedfish:
		return ipmi.TLS{Roots: f.BMCRoots}
	case b.TLS == inventory.TLSInsecure:
		return ipmi.TLS{Insecure: true}
	case b.TLS != "":
		return ipmi.TLS{Pin: b.TLS}
	}
	return ipmi.TLS{Roots: f.BMCRoots}
}

// targets are the jobs that reach the BMC, as ipmi.Bulk targets named by
// their index in jobs.
func targets(jobs []*job) ([]ipmi.Target, []*job) {
	var ts []ipmi.Target
	var js []*job
	for _, j := range jobs {
		if j.run {
			ts = append(ts, ipmi.Target{ID: j.sel.Machine.ID, Credentials: j.cred})
			js = append(js, j)
		}
	}
	return ts, js
}

// bulkOptions are f.Bulk with Progress also counting the jobs that failed
// before reaching a BMC, so a progress display reaches its total.
func (f *Fleet) bulkOptions(jobs []*job) ipmi.BulkOptions {
	o := f.Bulk
	p := o.Progress
	if p == nil {
		return o
	}
	skipped := 0
	for _, j := range jobs {
		if !j.run {
			skipped++
			p(ipmi.Progress{Done: skipped, Total: len(jobs), Target: ipmi.Target{ID: j.sel.Machine.ID}, Err: j.out.Err})
		}
	}
	o.Progress = func(x ipmi.Progress) {
		x.Done += skipped
		x.Total = len(jobs)
		p(x)
	}
	return o
}

func outcomes(jobs []*job) []Outcome {
	out := make([]Outcome, len(jobs))
	for i, j := range jobs {
		out[i] = j.out
	}
	return out
}

// PowerStatus reads the power state of each machine. Nothing is recorded.
func (f *Fleet) PowerStatus(ctx context.Context, sel []Selected) []Outcome {
	jobs := f.prepare(ctx, sel, "status", nil)
	ts, js := targets(jobs)
	ctl := f.controller()
	res := ipmi.Bulk(ctx, ts, f.bulkOptions(jobs), func(ctx context.Context, t ipmi.Target) (ipmi.PowerState, error) {
		return ctl.PowerStatus(ctx, t.Credentials)
	})
	for i, r := range res {
		j := js[i]
		j.out.Attempts, j.out.Elapsed = r.Attempts, r.Elapsed
		if r.Err != nil {
			j.out.fail(fmt.Errorf("machine %s: %w", j.sel.Machine.ID, r.Err))
			continue
		}
		j.out.After = string(r.Value)
	}
	return outcomes(jobs)
}

// disruptive reports whether action can stop a running machine.
func disruptive(action ipmi.PowerAction) bool {
	return action == ipmi.Off || action == ipmi.Cycle || action == ipmi.Reset
}

// Power changes the power of each machine safely:
//   - on never cycles and leaves a machine that is on alone;
//   - off, cycle and reset of a machine that is on need AllowReboot;
//   - off, cycle and reset of a deployed machine are refused (ErrDeployed)
//     unless the operator named it by ID, before any BMC is contacted;
//   - every write is read back (ipmi.Controller.Power).
//
// A power command sent to a BMC is recorded in the machine's history
// ("power off", why: r.Reason), also when its read-back failed; a machine
// left as it was (on of a machine that is on) and dry runs are not.
func (f *Fleet) Power(ctx context.Context, sel []Selected, action ipmi.PowerAction, r PowerRequest) []Outcome {
	check := func(s Selected) error {
		if disruptive(action) && s.Machine.State == inventory.StateDeployed && !s.ByID {
			return fmt.Errorf("power %s %s: %w; name it by its ID (%s) on the command line to %s it", action, s.Machine.ID, ErrDeployed, s.Machine.ID, action)
		}
		return nil
	}
	jobs := f.prepare(ctx, sel, string(action), check)
	ts, js := targets(jobs)
	ctl := f.controller()
	opts := ipmi.PowerOptions{AllowReboot: r.AllowReboot, DryRun: r.DryRun}
	// sent remembers the machines any attempt sent a command to: after a
	// retry, the last attempt may find nothing left to do.
	var mu sync.Mutex
	sent := map[string]bool{}
	res := ipmi.Bulk(ctx, ts, f.bulkOptions(jobs), func(ctx context.Context, t ipmi.Target) (ipmi.PowerResult, error) {
		v, err := ctl.Power(ctx, t.Credentials, action, opts)
		if !opts.DryRun && (v.Changed || v.WouldChange && err != nil) {
			mu.Lock()
			sent[t.ID] = true
			mu.Unlock()
		}
		return v, err
	})
	for i, x := range res {
		j := js[i]
		o := &j.out
		o.Attempts, o.Elapsed, o.DryRun = x.Attempts, x.Elapsed, r.DryRun
		v := x.Value
		o.Before, o.After, o.Changed = string(v.Before), string(v.After), v.Changed
		if sent[j.sel.Machine.ID] && !v.Changed && x.Err == nil {
			// An earlier attempt's command took effect; this one found it done.
			o.Changed = true
			o.Warnings = append(o.Warnings, "retried: an earlier attempt sent the command and timed out; this attempt found it done")
		}
		o.warn(v.Warnings...)
		if x.Err != nil {
			o.fail(fmt.Errorf("machine %s: %w", j.sel.Machine.ID, x.Err))
		}
		switch {
		case x.Err != nil && errors.Is(x.Err, ipmi.ErrRebootNotAllowed):
			o.Note = fmt.Sprintf("machine is on; %s needs --allow-reboot", action)
		case r.DryRun && v.WouldChange:
			o.Note = fmt.Sprintf("would power %s", action)
		case r.DryRun:
			o.Note = "would do nothing"
		case x.Err == nil && !o.Changed:
			o.Note = fmt.Sprintf("nothing to do: machine is %s", v.Before)
		}
	}
	// Record the commands sent, by any attempt.
	f.record(ctx, js, func(j *job, i int) (inventory.Change, bool) {
		if !sent[j.sel.Machine.ID] {
			return inventory.Change{}, false
		}
		what := "power " + string(action)
		if res[i].Err != nil {
			what += " (failed: " + j.out.Reason + ")"
		}
		return inventory.Change{What: what, Why: r.Reason, Who: f.Who}, true
	})
	return outcomes(jobs)
}

// SetBoot sets the boot override of each machine and reads it back. What the
// BMC silently dropped (persistent, EFI, the valid bit) comes back as
// warnings. A successful set is recorded in history ("boot pxe
// persistent efi"); a dry run reads the current override and records
// nothing.
func (f *Fleet) SetBoot(ctx context.Context, sel []Selected, r BootRequest) []Outcome {
	what := "boot " + string(r.Device)
	if r.Options.Persistent {
		what += " persistent"
	}
	if r.Options.EFI {
		what += " efi"
	}
	jobs := f.prepare(ctx, sel, what, nil)
	ts, js := targets(jobs)
	ctl := f.controller()
	if r.DryRun {
		res := ipmi.Bulk(ctx, ts, f.bulkOptions(jobs), func(ctx context.Context, t ipmi.Target) (ipmi.BootOverride, error) {
			return ctl.BootDevice(ctx, t.Credentials)
		})
		for i, x := range res {
			o := &js[i].out
			o.Attempts, o.Elapsed, o.DryRun = x.Attempts, x.Elapsed, true
			if x.Err != nil {
				o.fail(fmt.Errorf("machine %s: %w", js[i].sel.Machine.ID, x.Err))
				continue
			}
			o.Before = describeBoot(x.Value)
			o.Note = "would set " + strings.TrimPrefix(what, "boot ")
		}
		return outcomes(jobs)
	}
	res := ipmi.Bulk(ctx, ts, f.bulkOptions(jobs), func(ctx context.Context, t ipmi.Target) (ipmi.BootResult, error) {
		return ctl.SetBootDevice(ctx, t.Credentials, r.Device, r.Options)
	})
	for i, x := range res {
		o := &js[i].out
		o.Attempts, o.Elapsed = x.Attempts, x.Elapsed
		o.warn(x.Value.Warnings...)
		if x.Value.ReadBack != nil {
			o.After = describeBoot(*x.Value.ReadBack)
		}
		if x.Err != nil {
			o.fail(fmt.Errorf("machine %s: %w", js[i].sel.Machine.ID, x.Err))
			continue
		}
		o.Changed = true
	}
	f.record(ctx, js, func(j *job, i int) (inventory.Change, bool) {
		return inventory.Change{What: what, Why: r.Reason, Who: f.Who}, res[i].Err == nil
	})
	return outcomes(jobs)
}

// describeBoot is a boot override in a few words: "pxe (once, legacy)".
func describeBoot(b ipmi.BootOverride) string {
	if b.Device == ipmi.BootNone || b.Device == "" {
		return "none"
	}
	when, mode := "once", "legacy"
	if b.Persistent {
		when = "persistent"
	}
	if b.EFI {
		mode = "efi"
	}
	s := fmt.Sprintf("%s (%s, %s)", b.Device, when, mode)
	if !b.Valid {
		s += " not valid"
	}
	return s
}

// record writes one history entry per job that change says changed,
// 8 at a time. A failed history write is a warning on the outcome: the BMC
// change happened and cannot be undone by failing the machine.
func (f *Fleet) record(ctx context.Context, js []*job, change func(j *job, i int) (inventory.Change, bool)) {
	ctx = context.WithoutCancel(ctx) // a change that happened is recorded even after ^C
	var g errgroup.Group
	g.SetLimit(8)
	for i, j := range js {
		c, ok := change(j, i)
		if !ok {
			continue
		}
		g.Go(func() error {
			if err := f.note(ctx, j.sel.Machine.ID, c); err != nil {
				j.out.Warnings = append(j.out.Warnings, "history-not-recorded: "+err.Error())
			}
			return nil
		})
	}
	_ = g.Wait()
}

// note appends a history entry without changing the machine.
func (f *Fleet) note(ctx context.Context, id string, c inventory.Change) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := f.Inventory.Update(ctx, id, inventory.Operator, c, func(*inventory.Machine) error { return nil })
	if err != nil {
		f.log().Warn("history not recorded", "machine", id, "what", c.What, "err", err)
	}
	return err
}
