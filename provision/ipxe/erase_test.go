package ipxe

import (
	"strings"
	"testing"
)

// TestWipeErase: a releasing machine's erase level is on the agent's
// command line; no other mode carries it.
func TestWipeErase(t *testing.T) {
	env := Env{BaseURL: "http://192.0.2.1:8080"}
	m := Machine{ID: "m-0123456789ab", MAC: "52:54:00:00:00:01", State: StateReleasing, Token: "t", Erase: "zero"}
	if s := Script(m, env); !strings.Contains(s, "ironrack.mode=wipe ") || !strings.Contains(s, " ironrack.erase=zero ") {
		t.Errorf("wipe script lacks the erase level:\n%s", s)
	}
	m.State = StateDeploying
	if s := Script(m, env); strings.Contains(s, "ironrack.erase") {
		t.Errorf("deploy script carries an erase level:\n%s", s)
	}
}
