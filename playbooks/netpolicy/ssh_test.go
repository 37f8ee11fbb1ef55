package netpolicy

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/remote"
)

// TestApplyOverSSH applies through the real SSH client to a real sshd host
// (its own network and mount namespaces): confirmed over a second SSH
// connection; then a ruleset that cuts the test process's SSH off is not
// confirmed, and the timer, detached from the session, restores the
// previous ruleset so a new SSH login works again.
func TestApplyOverSSH(t *testing.T) {
	c := sshhosts.Start(t, 1)
	guardRootRuleset(t)
	h := c.Hosts[0]
	admin := c.Subnet.Addr().Next().String() // the test process's end of the LAN
	m := &inventory.Machine{ID: h.Name, IP: h.IP, Tier: "storage"}
	dials := 0
	fw := &Firewall{
		ConfirmWithin: 3 * time.Second,
		Dial: func(ctx context.Context, m *inventory.Machine) (Runner, error) {
			dials++
			return remote.Dial(ctx, remote.Target{ID: m.ID, Addr: h.Addr}, remote.Options{
				HostKeyCallback: c.HostKeyCallback(), Auth: []ssh.AuthMethod{ssh.PublicKeys(c.Signer)},
				ConnectTimeout: time.Second})
		},
	}
	ctx := context.Background()
	src := "admins: [" + admin + "]\nrules: []\n"
	good := Render(mustPolicy(t, src, []*inventory.Machine{m}), []*inventory.Machine{m}, m)
	res, err := fw.Apply(ctx, m, good, true)
	if err != nil || !res.Confirmed {
		t.Fatalf("apply over SSH: %+v, %v", res, err)
	}
	if dials != 2 {
		t.Errorf("apply dialled %d times, want 2 (install, then confirm over a new connection)", dials)
	}
	bad := Render(mustPolicy(t, "admins: [192.0.2.99]\nrules: []\n", []*inventory.Machine{m}), []*inventory.Machine{m}, m)
	start := time.Now()
	if _, err := fw.Apply(ctx, m, bad, true); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("a ruleset cutting SSH off: %v", err)
	}
	for {
		hs, err := fw.Read(ctx, m)
		if err == nil {
			if hs.Version != good.Version {
				t.Fatalf("after the rollback the host runs %q, want %q", hs.Version, good.Version)
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no SSH login 10s after the apply (timer 3s): %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if took := time.Since(start); took < 2500*time.Millisecond {
		t.Errorf("SSH back after %v, before the 3s timer", took)
	}
}
