package inventory

import (
	"errors"
	"fmt"
	"sort"
)

// State is a machine's lifecycle state.
type State string

// The lifecycle. The main path is new → commissioning → ready → allocated →
// deploying → deployed → releasing → ready; each step that can fail has a
// failed_ state; broken and retired are set by operators.
const (
	StateNew                 State = "new"
	StateCommissioning       State = "commissioning"
	StateReady               State = "ready"
	StateAllocated           State = "allocated"
	StateDeploying           State = "deploying"
	StateDeployed            State = "deployed"
	StateReleasing           State = "releasing"
	StateFailedCommissioning State = "failed_commissioning"
	StateFailedDeployment    State = "failed_deployment"
	StateFailedReleasing     State = "failed_releasing"
	StateBroken              State = "broken"
	StateRetired             State = "retired"
)

// Actor says who may take a transition: the workflows (commission, deploy,
// release, allocate) or an operator by hand.
type Actor int

const (
	// System transitions are taken by ironrack's workflows.
	System Actor = 1 << iota
	// Operator transitions are taken by a person with `inventory set-state`.
	Operator
)

func (a Actor) String() string {
	switch a {
	case System:
		return "system"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("actor(%d)", int(a))
}

// states lists every state with a one-line meaning (used in errors and docs).
var states = map[State]string{
	StateNew:                 "enlisted, not yet commissioned",
	StateCommissioning:       "the agent is checking the hardware",
	StateReady:               "commissioned and free in the pool",
	StateAllocated:           "claimed by an owner, not yet deployed",
	StateDeploying:           "the agent is writing the OS image",
	StateDeployed:            "running its deployed OS",
	StateReleasing:           "the agent is wiping the disks",
	StateFailedCommissioning: "commissioning failed; see history",
	StateFailedDeployment:    "deployment failed; see history",
	StateFailedReleasing:     "wiping failed; see history",
	StateBroken:              "marked broken by an operator",
	StateRetired:             "taken out of service by an operator",
}

// transitions is THE table: from → to → who may take it. Every state change
// in ironrack goes through it.
var transitions = map[State]map[State]Actor{
	StateNew: {
		StateCommissioning: System | Operator,
	},
	StateCommissioning: {
		StateReady:               System,
		StateFailedCommissioning: System,
	},
	StateReady: {
		StateAllocated:     System,
		StateCommissioning: System | Operator, // re-commission a free machine
	},
	StateAllocated: {
		StateDeploying: System,
		StateReady:     System, // allocation released before deploy
	},
	StateDeploying: {
		StateDeployed:         System,
		StateFailedDeployment: System,
	},
	StateDeployed: {
		StateReleasing: System,
	},
	StateReleasing: {
		StateReady:           System,
		StateFailedReleasing: System,
	},
	StateFailedCommissioning: {
		StateCommissioning: System | Operator,
	},
	StateFailedDeployment: {
		StateReleasing:     System, // release wipes what was half written
		StateCommissioning: Operator,
	},
	StateFailedReleasing: {
		StateReleasing:     System, // retry the wipe
		StateCommissioning: Operator,
	},
	StateBroken: {
		StateCommissioning: Operator, // back to ready only through commissioning
	},
	StateRetired: {
		StateCommissioning: Operator, // un-retire: re-commission before reuse
	},
}

// ErrTransition is returned, wrapped in a *TransitionError, for a state change
// the table does not allow.
var ErrTransition = errors.New("transition not allowed")

// TransitionError explains a refused transition.
type TransitionError struct {
	From, To State
	By       Actor
}

func (e *TransitionError) Error() string {
	allowed := Transitions(e.From, e.By)
	hint := "none"
	if len(allowed) > 0 {
		hint = fmt.Sprint(allowed)
	}
	return fmt.Sprintf("%s → %s not allowed for %s (allowed from %s: %s)", e.From, e.To, e.By, e.From, hint)
}

func (e *TransitionError) Unwrap() error { return ErrTransition }

// CanTransition reports whether `by` may move a machine from one state to
// another. Operators may also mark any machine broken or retired.
func CanTransition(from, to State, by Actor) error {
	if _, ok := states[from]; !ok {
		return fmt.Errorf("unknown state %q", from)
	}
	if _, ok := states[to]; !ok {
		return fmt.Errorf("unknown state %q", to)
	}
	if by == Operator && from != to && (to == StateBroken || to == StateRetired) && from != StateRetired {
		return nil
	}
	if transitions[from][to]&by != 0 {
		return nil
	}
	return &TransitionError{From: from, To: to, By: by}
}

// Transitions lists the states `by` may move a machine to from `from`.
func Transitions(from State, by Actor) []State {
	var out []State
	for to := range states {
		if CanTransition(from, to, by) == nil {
			out = append(out, to)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// States lists every state.
func States() []State {
	out := make([]State, 0, len(states))
	for s := range states {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ParseState returns the State named s, or an error listing the states.
func ParseState(s string) (State, error) {
	if _, ok := states[State(s)]; ok {
		return State(s), nil
	}
	return "", fmt.Errorf("unknown state %q (want one of %v)", s, States())
}
