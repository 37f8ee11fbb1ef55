package tiers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/placement"

	"github.com/ironrack/ironrack/internal/hrw"
)

// Deployer puts an OS on claimed machines and takes it off again. It is the
// seam between the tier logic and the machines: StateDeployer only moves
// them through the lifecycle; the provision adapter boots and images them.
type Deployer interface {
	// Deploy takes allocated (or half-deployed: deploying) machines to
	// deployed, with their services registered, and returns them as
	// recorded. It is called again for the same machines after an
	// interruption and must pick up where it stopped.
	Deploy(ctx context.Context, ms []*inventory.Machine, spec Spec) ([]*inventory.Machine, error)
	// Drain takes deployed machines out of their services (deregisters
	// them) so no new work reaches them. Idempotent.
	Drain(ctx context.Context, ms []*inventory.Machine, spec Spec) error
	// Release wipes machines that were deployed (or whose deploy or
	// release failed) and returns them to the pool: → releasing → ready.
	// Idempotent for machines already releasing.
	Release(ctx context.Context, ms []*inventory.Machine, spec Spec) error
}

// HealthWaiter waits until services pass their health checks on machines.
// ConsulHealth is the implementation; its contract: return nil once every
// (machine, service) pair has at least one check and all of them pass,
// and an error naming the pairs still failing when ctx ends.
type HealthWaiter interface {
	WaitHealthy(ctx context.Context, ms []*inventory.Machine, services []inventory.DeployService) error
	// WaitGone returns once no machine of ms serves the services with
	// passing checks.
	WaitGone(ctx context.Context, ms []*inventory.Machine, services []inventory.DeployService) error
}

// Reconciler converges tiers. The zero value is not usable: Store,
// Deployer and Health are required.
type Reconciler struct {
	Store    *inventory.Store
	Deployer Deployer
	Health   HealthWaiter
	// HealthTimeout bounds the wait for health checks after a deploy. If
	// 0, 10 minutes.
	HealthTimeout time.Duration
	// Who is recorded in the machines' history. If empty, the store's.
	Who string
	// Shards keeps sharded tiers' shard maps (Spec.Shards); required for
	// them only. Apply stores the map after new machines are deployed and
	// before removed ones are drained; Destroy deletes it.
	Shards ShardStore
	// Logger receives progress. If nil, logs are discarded.
	Logger *slog.Logger
}

// Plan is one step of a tier: what it holds and what changes.
type Plan struct {
	Owner string
	Spec  Spec
	// Members are the machines the owner holds that count toward the
	// size: allocated, deploying or deployed.
	Members []*inventory.Machine
	// Add are the ready machines the step claims (as the claim will pick
	// them against an unchanged pool).
	Add []*inventory.Machine
	// Remove are the members the step drains and releases.
	Remove []*inventory.Machine
	// Leaving are machines the owner still holds on their way out (a
	// release or deploy that failed or was interrupted); the step
	// releases them and they do not count.
	Leaving []*inventory.Machine
	// Shards is a sharded tier's map step over Final (nil if unsharded):
	// in Plan the preview, after Apply what was stored. For a tier no
	// longer sharded whose map remains, a step with Removed set: Apply
	// deletes the map.
	Shards *placement.Step
}

// Final is the tier after the step: members minus removals plus additions,
// sorted by ID.
func (p *Plan) Final() []*inventory.Machine {
	gone := ids(p.Remove)
	var out []*inventory.Machine
	for _, m := range p.Members {
		if !gone[m.ID] {
			out = append(out, m)
		}
	}
	out = append(out, p.Add...)
	sortByID(out)
	return out
}

// Changes reports whether the step does anything.
func (p *Plan) Changes() bool {
	if len(p.Add)+len(p.Remove)+len(p.Leaving) > 0 {
		return true
	}
	for _, m := range p.Members {
		if m.State != inventory.StateDeployed {
			return true
		}
	}
	return false
}

func (r *Reconciler) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r.Logger
}

func (r *Reconciler) change(what, why string) inventory.Change {
	return inventory.Change{What: what, Why: why, Who: r.Who}
}

// held lists the owner's machines, split into members and leaving ones.
func (r *Reconciler) held(ctx context.Context, owner string) (members, leaving []*inventory.Machine, err error) {
	w, err := inventory.ParseWhere("owner == " + strconv.Quote(owner))
	if err != nil {
		return nil, nil, fmt.Errorf("owner %s: %w", owner, err)
	}
	ms, err := r.Store.List(ctx, inventory.Query{Where: w})
	if err != nil {
		return nil, nil, fmt.Errorf("list machines of %s: %w", owner, err)
	}
	for _, m := range ms {
		switch m.State {
		case inventory.StateAllocated, inventory.StateDeploying, inventory.StateDeployed:
			members = append(members, m)
		case inventory.StateReleasing, inventory.StateFailedReleasing, inventory.StateFailedDeployment:
			leaving = append(leaving, m)
		}
		// Others (broken, retired, commissioning by hand) have left the
		// owner's control; an operator took them.
	}
	sortByID(members)
	sortByID(leaving)
	return members, leaving, nil
}

// Plan computes the step to spec for owner and changes nothing. A step up
// larger than the ready pool can meet is an error wrapping
// inventory.ErrInsufficient that names the shortfall.
func (r *Reconciler) Plan(ctx context.Context, owner string, spec Spec) (*Plan, error) {
	return r.plan(ctx, owner, spec, true)
}

// plan is Plan; pick says whether to pick the machines a step up adds
// (Apply claims them instead: the same choice, one pool read fewer).
func (r *Reconciler) plan(ctx context.Context, owner string, spec Spec, pick bool) (*Plan, error) {
	if errs := spec.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("tier %s: %w", spec.Name, joinFieldErrors(errs))
	}
	members, leaving, err := r.held(ctx, owner)
	if err != nil {
		return nil, err
	}
	p := &Plan{Owner: owner, Spec: spec, Members: members, Leaving: leaving}
	switch {
	case len(members) > spec.Size:
		p.Remove = chooseRemovals(owner, members, len(members)-spec.Size, spec.Spread == "rack")
	case len(members) < spec.Size && pick:
		w, err := spec.where()
		if err != nil {
			return nil, err
		}
		named, err := spec.picked(members, spec.Size-len(members))
		if err != nil {
			return nil, err
		}
		p.Add, err = r.Store.Allocate(ctx, inventory.AllocateRequest{
			Count: spec.Size - len(members), Where: w, Spread: spec.Spread, Owner: owner, Tier: spec.Name, DryRun: true,
			IDs: named,
		})
		if err != nil {
			return nil, fmt.Errorf("tier %s: step %d → %d: %w", spec.Name, len(members), spec.Size, err)
		}
	case len(members) >= spec.Size:
		if _, err := spec.picked(members, 0); err != nil {
			return nil, err
		}
	}
	if pick {
		// A sharded tier's map is checked (replicas on distinct racks)
		// before anything is claimed or released.
		if p.Shards, err = r.shardStep(ctx, spec, p.Final(), false); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Apply converges the owner's tier to spec and returns the step it took
// and the tier's machines. Run again after an interruption (a killed
// process, a failed deploy), it adopts what the owner already holds and
// finishes the step; it never claims a machine twice.
func (r *Reconciler) Apply(ctx context.Context, owner string, spec Spec) (*Plan, []*inventory.Machine, error) {
	p, err := r.plan(ctx, owner, spec, spec.Shards != nil)
	if err != nil {
		return nil, nil, err
	}
	log := r.log().With("tier", spec.Name, "owner", owner)
	log.Info("step", "members", len(p.Members), "size", spec.Size, "remove", len(p.Remove), "leaving", len(p.Leaving))
	if err := r.release(ctx, p.Leaving, spec, "finish the release of a machine the tier left"); err != nil {
		return p, nil, err
	}
	var keep []*inventory.Machine
	gone := ids(p.Remove)
	for _, m := range p.Members {
		if !gone[m.ID] {
			keep = append(keep, m)
		}
	}
	if len(p.Remove) > 0 {
		// Shards move off the removed machines before they are wiped.
		if p.Shards, err = r.shardStep(ctx, spec, keep, true); err != nil {
			return p, nil, err
		}
	}
	if err := r.drainAndRelease(ctx, p.Remove, spec, fmt.Sprintf("tier %s steps down to %d", spec.Name, spec.Size)); err != nil {
		return p, nil, err
	}
	if n := spec.Size - len(keep); n > 0 {
		w, err := spec.where()
		if err != nil {
			return p, nil, err
		}
		named, err := spec.picked(keep, n)
		if err != nil {
			return p, nil, err
		}
		got, err := r.Store.Allocate(ctx, inventory.AllocateRequest{
			Count: n, Where: w, Spread: spec.Spread, Owner: owner, Tier: spec.Name, IDs: named,
			Change: r.change("allocate", fmt.Sprintf("tier %s steps up to %d", spec.Name, spec.Size)),
		})
		if err != nil {
			return p, nil, fmt.Errorf("tier %s: step %d → %d: %w", spec.Name, len(keep), spec.Size, err)
		}
		p.Add = got
		keep = append(keep, got...)
	}
	var todo, done []*inventory.Machine
	for _, m := range keep {
		if m.State == inventory.StateDeployed {
			done = append(done, m)
		} else {
			todo = append(todo, m)
		}
	}
	if len(todo) > 0 {
		log.Info("deploy", "machines", idList(todo))
		deployed, err := r.Deployer.Deploy(ctx, todo, spec)
		if err != nil {
			return p, nil, fmt.Errorf("tier %s: deploy: %w", spec.Name, err)
		}
		done = append(done, deployed...)
	}
	sortByID(done)
	if len(spec.Services) > 0 && len(done) > 0 {
		timeout := r.HealthTimeout
		if timeout == 0 {
			timeout = 10 * time.Minute
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.Health.WaitHealthy(hctx, done, spec.Services)
		cancel()
		if err != nil {
			return p, done, fmt.Errorf("tier %s: health checks: %w", spec.Name, err)
		}
	}
	// Shards move onto new machines once they are deployed and serving.
	st, err := r.shardStep(ctx, spec, done, true)
	if err != nil {
		return p, done, err
	}
	if st != nil && (len(p.Remove) == 0 || st.Moves > 0) {
		p.Shards = st
	}
	return p, done, nil
}

// Destroy drains and releases every machine the owner holds.
func (r *Reconciler) Destroy(ctx context.Context, owner string, spec Spec) error {
	members, leaving, err := r.held(ctx, owner)
	if err != nil {
		return err
	}
	if r.Shards != nil {
		// No map points at machines about to be wiped (nor lingers from
		// when the tier was sharded).
		if err := r.Shards.Delete(ctx, spec.Name); err != nil {
			return fmt.Errorf("tier %s: %w", spec.Name, err)
		}
	}
	if err := r.release(ctx, leaving, spec, "finish the release of a machine the tier left"); err != nil {
		return err
	}
	return r.drainAndRelease(ctx, members, spec, fmt.Sprintf("tier %s is deleted", spec.Name))
}

// drainAndRelease takes machines out of their services, waits for in-flight
// work, and releases them.
func (r *Reconciler) drainAndRelease(ctx context.Context, ms []*inventory.Machine, spec Spec, why string) error {
	if len(ms) == 0 {
		return nil
	}
	var deployed []*inventory.Machine
	for _, m := range ms {
		if m.State == inventory.StateDeployed {
			deployed = append(deployed, m)
		}
	}
	if len(deployed) > 0 {
		r.log().Info("drain", "tier", spec.Name, "machines", idList(deployed))
		if err := r.Deployer.Drain(ctx, deployed, spec); err != nil {
			return fmt.Errorf("tier %s: drain: %w", spec.Name, err)
		}
		if len(spec.Services) > 0 {
			gctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := r.Health.WaitGone(gctx, deployed, spec.Services)
			cancel()
			if err != nil {
				return fmt.Errorf("tier %s: drain: %w", spec.Name, err)
			}
		}
		if spec.Drain > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(spec.Drain):
			}
		}
	}
	return r.release(ctx, ms, spec, why)
}

// release returns machines to the pool: allocated ones directly, the
// others through the deployer, which wipes them.
func (r *Reconciler) release(ctx context.Context, ms []*inventory.Machine, spec Spec, why string) error {
	var claimed, wipe []*inventory.Machine
	for _, m := range ms {
		if m.State == inventory.StateAllocated {
			claimed = append(claimed, m)
		} else {
			wipe = append(wipe, m)
		}
	}
	if len(claimed) > 0 {
		if _, err := r.Store.Release(ctx, claimed, r.change("release", why)); err != nil {
			return fmt.Errorf("tier %s: release %v: %w", spec.Name, idList(claimed), err)
		}
	}
	if len(wipe) > 0 {
		r.log().Info("release", "tier", spec.Name, "machines", idList(wipe))
		if err := r.Deployer.Release(ctx, wipe, spec); err != nil {
			return fmt.Errorf("tier %s: release: %w", spec.Name, err)
		}
	}
	return nil
}

// picked is the spec's Pick less the machines the tier holds: the n
// machines a step up claims, or nil when the spec names none. A Pick that
// does not name exactly n more is an error: the tier changed since the
// joint plan.
func (s Spec) picked(held []*inventory.Machine, n int) ([]string, error) {
	if len(s.Pick) == 0 {
		return nil, nil
	}
	have := ids(held)
	var out []string
	for _, id := range s.Pick {
		if !have[id] {
			out = append(out, id)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("tier %s: the stack's plan picked %d machines to add (%v) but the step from %d to %d needs %d: the tier changed since the plan; plan again",
			s.Name, len(out), out, len(held), s.Size, n)
	}
	return out, nil
}

// Score is the rendezvous score of a machine for an owner: higher stays
// longer. Deterministic, independent of the other machines.
func Score(owner, id string) uint64 { return hrw.Score(owner, id) }

// chooseRemovals picks n of the members to remove: machines not yet
// deployed first (cheapest to give back), then the lowest rendezvous
// scores; with spread, always from a rack holding the most members, so the
// spread stays even.
func chooseRemovals(owner string, members []*inventory.Machine, n int, spread bool) []*inventory.Machine {
	rest := append([]*inventory.Machine(nil), members...)
	less := func(a, b *inventory.Machine) bool { // a leaves before b
		da, db := a.State == inventory.StateDeployed, b.State == inventory.StateDeployed
		if da != db {
			return !da
		}
		sa, sb := Score(owner, a.ID), Score(owner, b.ID)
		if sa != sb {
			return sa < sb
		}
		return a.ID < b.ID
	}
	var out []*inventory.Machine
	for range n {
		perRack := map[string]int{}
		for _, m := range rest {
			perRack[m.Rack]++
		}
		best := -1
		for i, m := range rest {
			if best < 0 {
				best = i
				continue
			}
			b := rest[best]
			if spread && perRack[m.Rack] != perRack[b.Rack] {
				if perRack[m.Rack] > perRack[b.Rack] {
					best = i
				}
				continue
			}
			if less(m, b) {
				best = i
			}
		}
		out = append(out, rest[best])
		rest = append(rest[:best], rest[best+1:]...)
	}
	sortByID(out)
	return out
}

func joinFieldErrors(fe []*FieldError) error {
	errs := make([]error, len(fe))
	for i, e := range fe {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func ids(ms []*inventory.Machine) map[string]bool {
	out := make(map[string]bool, len(ms))
	for _, m := range ms {
		out[m.ID] = true
	}
	return out
}

func idList(ms []*inventory.Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// IDs lists machines' IDs in order.
func IDs(ms []*inventory.Machine) []string { return idList(ms) }

func sortByID(ms []*inventory.Machine) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}
