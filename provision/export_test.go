package provision

import (
	"testing"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
)

// NewTestRack is newTestRack (n powered-on sims from first, imported as
// rack rp, every credential stored) for the external tests: the commission
// test plays the agent through provision/bootserver, which imports
// provision.
func NewTestRack(t *testing.T, first string, n int) (*inventory.Store, []*ipmisim.BMC, []*inventory.Machine) {
	r := newTestRack(t, first, n, -1)
	return r.store, r.sims, r.ms
}
