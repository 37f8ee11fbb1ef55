package provision

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
)

// failingStore is the real store whose SetCredential fails for one
// reference: Consul going away between the BMC's change and the store.
type failingStore struct {
	*inventory.Store
	ref string
}

func (f failingStore) SetCredential(ctx context.Context, ref, password string) error {
	if ref == f.ref {
		return errors.New("consul: connection refused (injected)")
	}
	return f.Store.SetCredential(ctx, ref, password)
}

func status(t *testing.T, r *testRack, i int, password string) error {
	t.Helper()
	b := r.sims[i]
	_, err := (&ipmi.Controller{}).PowerStatus(context.Background(), ipmi.Credentials{Host: b.Addr.String(), Username: b.Username, Password: password})
	return err
}

// TestRotateStoreFailureRollsBack: when the new password cannot be stored,
// the BMC is set back to the stored one, so the inventory still logs in.
func TestRotateStoreFailureRollsBack(t *testing.T) {
	r := newTestRack(t, "127.0.21.20", 2, -1)
	ctx := context.Background()
	m := r.ms[0]
	f := &Fleet{Inventory: failingStore{Store: r.store, ref: m.BMC.CredentialRef}}
	_, n := r.lastWhat(t, 0)
	o := f.RotatePasswords(ctx, []Selected{{Machine: m, ByID: true}}, RotateRequest{})[0]
	if o.OK() || o.Changed || !strings.Contains(o.Note, "set back") || !strings.Contains(o.Error, "injected") {
		t.Fatalf("outcome: %+v", o)
	}
	c, err := r.store.Credential(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != r.sims[0].Password {
		t.Error("the stored password changed")
	}
	if err := status(t, r, 0, c.Password); err != nil {
		t.Errorf("the stored password no longer logs in: %v", err)
	}
	if _, n2 := r.lastWhat(t, 0); n2 != n {
		t.Error("a failed rotation was recorded as one")
	}

	// The same store works for another machine: rotated and recorded.
	o = f.RotatePasswords(ctx, []Selected{{Machine: r.ms[1]}}, RotateRequest{Reason: "audit", Length: 12})[0]
	if !o.OK() || !o.Changed {
		t.Fatalf("rotation: %+v", o)
	}
	c, err = r.store.Credential(ctx, r.ms[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Password) != 12 || status(t, r, 1, c.Password) != nil || status(t, r, 1, r.sims[1].Password) == nil {
		t.Error("the BMC does not take exactly the new stored password")
	}
	if what, _ := r.lastWhat(t, 1); what != "bmc set-password" {
		t.Errorf("history: %q", what)
	}
}
