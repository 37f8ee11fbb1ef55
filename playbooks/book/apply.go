package book

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Runner runs one command on one host: *remote.Client satisfies it. The
// command is a shell command line; stdin, if not nil, is copied to it.
// exit is the command's exit status; err is set only when the command could
// not be run to an exit status (connection lost, timeout).
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exit int, err error)
}

// Gate is Consul as the drain, undrain and wait-healthy steps see it
// (*Consul). Healthy is one read: nil when every health check of the
// machine passes.
type Gate interface {
	Drain(ctx context.Context, machineID, reason string) error
	Undrain(ctx context.Context, machineID string) error
	Healthy(ctx context.Context, machineID string) error
}

// Options configure Apply. The zero value applies the steps.
type Options struct {
	// Check reports what each step would change and changes nothing: copy
	// and template compare the remote file's sha256, mode and owner; run
	// runs only its unless probe; only-if runs its probe (probes must be
	// read-only); service, drain and undrain are reported as would-change;
	// wait-healthy reads the health once.
	Check bool
	// Gate serves drain, undrain and wait-healthy. A playbook with one of
	// them and no Gate fails at that step.
	Gate Gate
	// Poll is wait-healthy's pause between reads. If 0, 1s.
	Poll time.Duration
	// OnStep, when set, is called as each step starts (i counts from 0).
	OnStep func(i int, s *PlannedStep)
}

// Status is what a step did.
type Status string

// A step's statuses.
const (
	Changed     Status = "changed"
	Unchanged   Status = "unchanged"
	WouldChange Status = "would-change"
	Skipped     Status = "skipped"
	Failed      Status = "failed"
)

// StepResult is one step's outcome.
type StepResult struct {
	Where  string `json:"where"`
	Step   string `json:"step"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Apply runs the host's steps in order through r, writing one line per
// step (and the output of the commands it runs) to out. It stops at the
// first failed step and returns its error; the results so far are returned
// either way. A failed only-if ends the host's steps without error.
func (hp *HostPlan) Apply(ctx context.Context, r Runner, out io.Writer, opt Options) ([]StepResult, error) {
	if out == nil {
		out = io.Discard
	}
	var results []StepResult
	n := len(hp.Steps)
	for i := range hp.Steps {
		s := &hp.Steps[i]
		if err := ctx.Err(); err != nil {
			// Cancelled or timed out between steps: start no other.
			return results, fmt.Errorf("before %s (%s): %w", s.Label, s.Where, err)
		}
		if opt.OnStep != nil {
			opt.OnStep(i, s)
		}
		res := StepResult{Where: s.Where, Step: s.Label}
		var err error
		var stop bool
		if s.Skip {
			res.Status, res.Detail = Skipped, "when: false"
		} else {
			res.Status, res.Detail, stop, err = s.apply(ctx, hp, r, out, opt)
		}
		if err != nil {
			res.Status, res.Detail = Failed, err.Error()
		}
		results = append(results, res)
		line := fmt.Sprintf("[%d/%d] %s (%s): %s", i+1, n, s.Label, s.Where, res.Status)
		if res.Detail != "" {
			line += ": " + res.Detail
		}
		fmt.Fprintln(out, line)
		if err != nil {
			return results, fmt.Errorf("%s: %s: %w", s.Where, s.Label, err)
		}
		if stop {
			for j := i + 1; j < n; j++ {
				results = append(results, StepResult{Where: hp.Steps[j].Where, Step: hp.Steps[j].Label, Status: Skipped, Detail: "only-if at " + s.Where})
			}
			break
		}
	}
	return results, nil
}

// run runs cmd, its output to out, and returns its exit status.
func run(ctx context.Context, r Runner, cmd string, stdin io.Reader, out io.Writer) (int, error) {
	code, err := r.Run(ctx, cmd, stdin, out, out)
	if err != nil {
		return code, &notRun{err}
	}
	return code, nil
}

// capture runs cmd and returns its stdout; stderr goes to out.
func capture(ctx context.Context, r Runner, cmd string, out io.Writer) (string, int, error) {
	var b bytes.Buffer
	code, err := r.Run(ctx, cmd, nil, &b, out)
	if err != nil {
		return "", code, &notRun{err}
	}
	return b.String(), code, nil
}

func (s *PlannedStep) apply(ctx context.Context, hp *HostPlan, r Runner, out io.Writer, opt Options) (Status, string, bool, error) {
	id := hp.Machine.ID
	change := func(what string) (Status, string, bool, error) {
		if opt.Check {
			return WouldChange, "would " + what, false, nil
		}
		return Changed, "", false, nil
	}
	switch s.Kind {
	case KindRun:
		if s.Unless != "" {
			code, err := run(ctx, r, s.Unless, nil, out)
			if err != nil {
				return "", "", false, fmt.Errorf("unless: %w", err)
			}
			if code == 0 {
				return Unchanged, "unless exited 0", false, nil
			}
		}
		if opt.Check {
			return WouldChange, "would run", false, nil
		}
		code, err := run(ctx, r, s.Cmd, nil, out)
		if err != nil {
			return "", "", false, err
		}
		if code != 0 {
			return "", "", false, fmt.Errorf("exit status %d", code)
		}
		return Changed, "", false, nil
	case KindOnlyIf:
		code, err := run(ctx, r, s.Cmd, nil, out)
		if err != nil {
			return "", "", false, err
		}
		if code != 0 {
			return Unchanged, fmt.Sprintf("exit status %d: the host's remaining steps are skipped", code), true, nil
		}
		return Unchanged, "exit status 0: continue", false, nil
	case KindCopy, KindTemplate:
		return s.copy(ctx, r, out, opt)
	case KindService:
		if opt.Check {
			return WouldChange, "would " + s.Action + " " + s.Unit, false, nil
		}
		cmd := shellQuote(s.Systemctl) + " " + s.Action + " " + shellQuote(s.Unit)
		code, err := run(ctx, r, cmd, nil, out)
		if err != nil {
			return "", "", false, err
		}
		if code != 0 {
			return "", "", false, fmt.Errorf("%s %s %s: exit status %d", s.Systemctl, s.Action, s.Unit, code)
		}
		return Changed, s.Action + " " + s.Unit, false, nil
	case KindDrain, KindUndrain:
		if opt.Gate == nil {
			return "", "", false, errors.New("no Consul to drain through (the command has no --consul)")
		}
		if opt.Check {
			return change(string(s.Kind) + " machine " + id + "'s services")
		}
		var err error
		if s.Kind == KindDrain {
			err = opt.Gate.Drain(ctx, id, s.Reason)
		} else {
			err = opt.Gate.Undrain(ctx, id)
		}
		if err != nil {
			return "", "", false, err
		}
		return Changed, "", false, nil
	case KindWaitHealthy:
		if opt.Gate == nil {
			return "", "", false, errors.New("no Consul to read health from (the command has no --consul)")
		}
		if opt.Check {
			if err := opt.Gate.Healthy(ctx, id); err != nil {
				return WouldChange, "would wait; not healthy now: " + err.Error(), false, nil
			}
			return Unchanged, "healthy now", false, nil
		}
		return s.waitHealthy(ctx, id, opt)
	}
	return "", "", false, fmt.Errorf("unknown step kind %q", s.Kind)
}

// waitHealthy polls the Gate until every check has passed, without a
// break, for Settle: right after a restart Consul still shows the result of
// the check's last run, from before the restart, until the check runs
// again; a Settle longer than the checks' interval sees the new process.
func (s *PlannedStep) waitHealthy(ctx context.Context, id string, opt Options) (Status, string, bool, error) {
	poll := opt.Poll
	if poll <= 0 {
		poll = time.Second
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var passing time.Time // start of the current run of passing reads
	for {
		err := opt.Gate.Healthy(wctx, id)
		switch {
		case err != nil:
			passing = time.Time{}
		case passing.IsZero():
			passing = time.Now()
		}
		if err == nil && time.Since(passing) >= s.Settle {
			return Changed, "healthy after " + time.Since(start).Round(100*time.Millisecond).String(), false, nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return "", "", false, fmt.Errorf("not healthy: %v (%w)", err, ctx.Err())
			}
			if err == nil {
				return "", "", false, fmt.Errorf("not healthy for %s in a row within %s", s.Settle, s.Timeout)
			}
			return "", "", false, fmt.Errorf("not healthy within %s: %w", s.Timeout, err)
		case <-time.After(poll):
		}
	}
}

// copy makes Dest hold the content with Mode and Owner: it reads the remote
// file's sha256, mode and owner first and sends the content only when the
// hash differs. The content goes to a temporary file beside Dest, is
// checked against its sha256 there, then renamed over Dest.
func (s *PlannedStep) copy(ctx context.Context, r Runner, out io.Writer, opt Options) (Status, string, bool, error) {
	d := shellQuote(s.Dest)
	probe := `d=` + d + `; if [ -L "$d" ] || { [ -e "$d" ] && [ ! -f "$d" ]; }; then echo notfile; elif [ -f "$d" ]; then ` +
		`sha256sum < "$d" | cut -c1-64 && stat -c '%a %U %G' "$d"; else echo absent; fi`
	got, code, err := capture(ctx, r, probe, out)
	if err != nil {
		return "", "", false, fmt.Errorf("read %s: %w", s.Dest, err)
	}
	if code != 0 {
		return "", "", false, fmt.Errorf("read %s: exit status %d", s.Dest, code)
	}
	lines := strings.Fields(got)
	var diffs []string
	var send bool
	switch {
	case len(lines) == 1 && lines[0] == "notfile":
		return "", "", false, fmt.Errorf("%s exists and is not a regular file", s.Dest)
	case len(lines) == 1 && lines[0] == "absent":
		send, diffs = true, []string{"create"}
	case len(lines) == 4:
		if lines[0] != s.SHA256 {
			send, diffs = true, []string{"rewrite content sha256 " + short(lines[0]) + " → " + short(s.SHA256)}
		}
		if s.Mode != "" {
			want, _ := strconv.ParseUint(s.Mode, 8, 32)
			have, _ := strconv.ParseUint(lines[1], 8, 32)
			if want != have {
				diffs = append(diffs, fmt.Sprintf("set mode %04o → %04o", have, want))
			}
		}
		if s.Owner != "" {
			u, g, hasGroup := strings.Cut(s.Owner, ":")
			if u != lines[2] || hasGroup && g != lines[3] {
				diffs = append(diffs, fmt.Sprintf("set owner %s:%s → %s", lines[2], lines[3], s.Owner))
			}
		}
	default:
		return "", "", false, fmt.Errorf("read %s: unexpected answer %q", s.Dest, got)
	}
	if len(diffs) == 0 {
		return Unchanged, "sha256 " + short(s.SHA256), false, nil
	}
	detail := strings.Join(diffs, ", ")
	if opt.Check {
		return WouldChange, "would " + detail, false, nil
	}
	var cmd string
	var stdin io.Reader
	if send {
		mode := s.Mode
		if mode == "" {
			mode = "0644"
			if len(lines) == 4 {
				mode = lines[1] // keep an existing file's mode
			}
		}
		cmd = `set -e; d=` + d + `; dir=$(dirname "$d"); mkdir -p "$dir"; t=$(mktemp "$dir/.ironrack-copy.XXXXXX"); ` +
			`trap 'rm -f "$t"' EXIT; cat > "$t"; ` +
			`got=$(sha256sum < "$t" | cut -c1-64); if [ "$got" != ` + s.SHA256 + ` ]; then echo "copy to $d: sha256 $got after transfer, want ` + s.SHA256 + `" >&2; exit 1; fi; ` +
			`chmod ` + mode + ` "$t"; `
		if s.Owner != "" {
			cmd += `chown ` + shellQuote(s.Owner) + ` "$t"; `
		}
		cmd += `sync "$t" 2>/dev/null || true; mv -f "$t" "$d"; trap - EXIT`
		if s.SrcPath != "" {
			f, err := os.Open(s.SrcPath)
			if err != nil {
				return "", "", false, err
			}
			defer f.Close()
			stdin = f
		} else {
			stdin = bytes.NewReader(s.Content)
		}
	} else {
		cmd = `set -e; d=` + d + `; `
		if s.Mode != "" {
			cmd += `chmod ` + s.Mode + ` "$d"; `
		}
		if s.Owner != "" {
			cmd += `chown ` + shellQuote(s.Owner) + ` "$d"; `
		}
	}
	code, err = run(ctx, r, cmd, stdin, out)
	if err != nil {
		return "", "", false, fmt.Errorf("write %s: %w", s.Dest, err)
	}
	if code != 0 {
		return "", "", false, fmt.Errorf("write %s: exit status %d", s.Dest, code)
	}
	return Changed, detail, false, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}
