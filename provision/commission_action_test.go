package provision

import (
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// TestCommissionAction is which machines the commission workflow takes, as
// whom, and what it skips or refuses, by state and by how it was selected.
func TestCommissionAction(t *testing.T) {
	type want struct {
		by   inventory.Actor
		skip bool
		err  bool
	}
	tests := map[string]struct {
		state       inventory.State
		byID, named bool
		noBMC       bool
		want        want
	}{
		"new without a BMC address is skipped": {state: inventory.StateNew, noBMC: true, want: want{skip: true}},
		"new without a BMC address, named":     {state: inventory.StateNew, noBMC: true, byID: true, named: true, want: want{err: true}},
		"new by expression":                    {state: inventory.StateNew, want: want{by: inventory.System}},
		"failed_commissioning by serial":       {state: inventory.StateFailedCommissioning, named: true, want: want{by: inventory.System}},
		"commissioning is resumed":             {state: inventory.StateCommissioning, want: want{by: inventory.System}},
		"ready by expression is skipped":       {state: inventory.StateReady, want: want{skip: true}},
		"ready by serial is refused":           {state: inventory.StateReady, named: true, want: want{err: true}},
		"ready by ID, as the operator":         {state: inventory.StateReady, byID: true, named: true, want: want{by: inventory.Operator}},
		"broken by expression is skipped":      {state: inventory.StateBroken, want: want{skip: true}},
		"broken by ID, as the operator":        {state: inventory.StateBroken, byID: true, named: true, want: want{by: inventory.Operator}},
		"deployed by ID is refused":            {state: inventory.StateDeployed, byID: true, named: true, want: want{err: true}},
		"failed_deployment by expression":      {state: inventory.StateFailedDeployment, want: want{skip: true}},
		"retired by ID is refused":             {state: inventory.StateRetired, byID: true, named: true, want: want{err: true}},
		"allocated by expression is skipped":   {state: inventory.StateAllocated, want: want{skip: true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := &inventory.Machine{ID: inventory.MachineID("S"), State: tc.state, BMC: inventory.BMC{Address: "10.1.0.7"}}
			if tc.noBMC {
				m.BMC.Address = ""
			}
			by, note, err := commissionAction(Selected{Machine: m, ByID: tc.byID, Named: tc.named})
			got := want{by: by, skip: note != "", err: err != nil}
			if got != tc.want {
				t.Errorf("got %+v (note %q, err %v), want %+v", got, note, err, tc.want)
			}
			// Whatever it takes, the lifecycle table lets it take.
			if err == nil && note == "" && tc.state != inventory.StateCommissioning {
				if terr := inventory.CanTransition(tc.state, inventory.StateCommissioning, by); terr != nil {
					t.Errorf("taken as %s, but the table refuses: %v", by, terr)
				}
			}
		})
	}
}
