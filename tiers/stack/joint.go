package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ironrack/ironrack/tiers"
)

// Plan is the stack's step as the engine will be asked to take it, planned
// in-process from the inventory and changing nothing: every tier's spec
// from the config, the tiers' new machines picked jointly and disjointly
// in the order of the program's tiers (tiers.Reconciler.PlanStack). A step
// the ready pool cannot meet is an error (a *tiers.ShortfallError) before
// the engine runs.
func (r *Runner) Plan(ctx context.Context) ([]*tiers.Plan, error) {
	if r.o.Store == nil {
		return nil, errors.New("no inventory store: the stack's joint plan reads the ready pool (Options.Store)")
	}
	specs, err := Specs(r.o.Tiers, r.o.Config)
	if err != nil {
		return nil, err
	}
	ts := make([]tiers.StackTier, len(specs))
	for i, sp := range specs {
		ts[i] = tiers.StackTier{Owner: Owner(r.o.Stack, sp.Name), Spec: sp}
	}
	rec := &tiers.Reconciler{Store: r.o.Store, Shards: r.o.Shards}
	return rec.PlanStack(ctx, ts)
}

// picks are the plans' new machines by tier: the tiers' `pick` inputs.
func picks(plans []*tiers.Plan) map[string][]string {
	out := map[string][]string{}
	for _, p := range plans {
		if len(p.Add) > 0 {
			out[p.Spec.Name] = tiers.IDs(p.Add)
		}
	}
	return out
}

// previewRecord is what Preview planned, kept in the work directory
// (preview.<stack>.json) so Up can hold the step to it.
type previewRecord struct {
	// Key identifies the config the step was planned for (backend,
	// inventory, tier config).
	Key string `json:"key"`
	// Tiers are each tier's machines after the step, and what it added.
	Tiers map[string]previewTier `json:"tiers"`
}

type previewTier struct {
	Final []string `json:"final"`
	Add   []string `json:"add"`
}

func (r *Runner) previewPath() string {
	return filepath.Join(r.o.WorkDir, "preview."+r.o.Stack+".json")
}

// configKey digests what the step depends on besides the pool.
func (r *Runner) configKey() string {
	lines := []string{"backend=" + r.o.Backend, "consul=" + r.o.Provider.Consul, "prefix=" + r.o.Provider.Prefix}
	for k, v := range r.o.Config {
		lines = append(lines, k+"="+v)
	}
	sort.Strings(lines[3:])
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

func record(key string, plans []*tiers.Plan) previewRecord {
	rec := previewRecord{Key: key, Tiers: map[string]previewTier{}}
	for _, p := range plans {
		add := tiers.IDs(p.Add)
		sort.Strings(add)
		rec.Tiers[p.Spec.Name] = previewTier{Final: tiers.IDs(p.Final()), Add: add}
	}
	return rec
}

func (r *Runner) savePreview(plans []*tiers.Plan) error {
	b, err := json.MarshalIndent(record(r.configKey(), plans), "", "  ")
	if err != nil {
		return err
	}
	tmp := r.previewPath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record the preview: %w", err)
	}
	if err := os.Rename(tmp, r.previewPath()); err != nil {
		return fmt.Errorf("record the preview: %w", err)
	}
	return nil
}

func (r *Runner) dropPreview() {
	if err := os.Remove(r.previewPath()); err != nil && !errors.Is(err, os.ErrNotExist) && r.o.Logger != nil {
		r.o.Logger.Warn("remove the preview record", "path", r.previewPath(), "err", err)
	}
}

// checkPreview holds the step to the last Preview of the same config: each
// tier must end with the machines the preview listed (what an earlier,
// interrupted run already claimed counts). Without a preview of this
// config there is nothing to hold to.
func (r *Runner) checkPreview(plans []*tiers.Plan) error {
	b, err := os.ReadFile(r.previewPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the preview record: %w", err)
	}
	var prev previewRecord
	if err := json.Unmarshal(b, &prev); err != nil {
		return fmt.Errorf("preview record %s: %w", r.previewPath(), err)
	}
	now := record(r.configKey(), plans)
	if prev.Key != now.Key {
		return nil // previewed another config: this step was not previewed
	}
	var diffs []string
	for _, t := range r.o.Tiers {
		was, is := prev.Tiers[t.Name], now.Tiers[t.Name]
		if slices.Equal(was.Final, is.Final) {
			continue
		}
		gone, added := setDiff(was.Final, is.Final), setDiff(is.Final, was.Final)
		diffs = append(diffs, fmt.Sprintf("tier %s: previewed +%v, now +%v (not in the step any more: %v; not previewed: %v)",
			t.Name, was.Add, is.Add, gone, added))
	}
	if len(diffs) == 0 {
		return nil
	}
	msg := "the step differs from the last preview of this config (the ready pool or the tiers changed since):\n  " + strings.Join(diffs, "\n  ")
	if r.o.Replan {
		if r.o.Logger != nil {
			r.o.Logger.Warn("re-planned: "+msg, "stack", r.o.Stack)
		}
		return nil
	}
	return errors.New(msg + "\npreview again to see the step, or re-plan (ironrack scale apply --replan) to take it")
}

// setDiff lists the members of a not in b.
func setDiff(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
