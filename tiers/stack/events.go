package stack

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// Step is one tier's change.
type Step struct {
	Tier       string   `json:"tier"`
	From       int      `json:"from"`
	To         int      `json:"to"`
	Op         string   `json:"op"`
	Add        []string `json:"add"`
	Remove     []string `json:"remove"`
	MachineIDs []string `json:"machine_ids"`
	Racks      []string `json:"racks"`
	// ShardMoves (sharded tiers): shard replicas the step moves.
	ShardMoves *int `json:"shard_moves,omitempty"`
}

// collect turns the engine's events into steps, one per tier resource.
func collect(ch <-chan events.EngineEvent, done chan<- map[string]Step, diags *[]string) {
	steps := map[string]Step{}
	for ev := range ch {
		if d := ev.DiagnosticEvent; d != nil && (d.Severity == "error") {
			*diags = append(*diags, strings.TrimSpace(d.Message))
		}
		var md *apitype.StepEventMetadata
		if ev.ResOutputsEvent != nil {
			md = &ev.ResOutputsEvent.Metadata
		}
		if md == nil || md.Type != "ironrack:index:Tier" {
			continue
		}
		s := Step{Tier: urnName(md.URN), Op: string(md.Op)}
		if md.New != nil {
			out := md.New.Outputs
			s.MachineIDs = strs(out["machineIds"])
			s.Racks = strs(out["racks"])
			s.Add = strs(out["added"])
			s.Remove = strs(out["removed"])
			s.To = len(s.MachineIDs)
			s.From = s.To - len(s.Add) + len(s.Remove)
			if v, ok := out["shardMoves"].(float64); ok {
				n := int(v)
				s.ShardMoves = &n
			}
		}
		if md.Op == apitype.OpSame && md.Old != nil {
			s.MachineIDs = strs(md.Old.Outputs["machineIds"])
			s.Racks = strs(md.Old.Outputs["racks"])
			s.From, s.To = len(s.MachineIDs), len(s.MachineIDs)
			s.Add, s.Remove = nil, nil
			if _, ok := md.Old.Outputs["shardMoves"]; ok {
				zero := 0
				s.ShardMoves = &zero
			}
		}
		steps[s.Tier] = s
	}
	done <- steps
}

func urnName(urn string) string {
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		return urn[i+2:]
	}
	return urn
}

func strs(v any) []string {
	a, _ := v.([]any)
	out := []string{}
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ordered lists the steps in the order of defs, then any other tier's by
// name.
func ordered(defs []TierDef, steps map[string]Step) []Step {
	var out []Step
	for _, t := range defs {
		if s, ok := steps[t.Name]; ok {
			out = append(out, s)
			delete(steps, t.Name)
		}
	}
	var rest []string
	for k := range steps {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, steps[k])
	}
	return out
}

// wait takes the collected steps. The engine closes the event stream when
// it ends; one that died before streaming never does, so the wait is
// bounded (the collector then ends with the process).
func wait(done <-chan map[string]Step) map[string]Step {
	select {
	case s := <-done:
		return s
	case <-time.After(10 * time.Second):
		return map[string]Step{}
	}
}

func engineError(err error, diags []string) error {
	if len(diags) > 0 {
		return fmt.Errorf("%s", strings.Join(diags, "\n"))
	}
	return err
}
