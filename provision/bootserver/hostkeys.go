package bootserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
	"github.com/ironrack/ironrack/provision/httpboot"
)

// RecordHostKeys implements httpboot.HostKeys: the inventory records the
// keys and burns the deploy's token (inventory.Store.RecordHostKeys). When
// ironrack has an SSH CA and this boot server holds the key file, it signs
// a host certificate per key (principals: machine ID, the deploy's host
// name, the machine's IP; HostCertLifetime) in the same step, and the
// answer carries them to the machine. A CA this boot server cannot open
// (no key file, or another one) is logged, and the keys are recorded
// without certificates: strict trust by key works without them, and
// `ironrack ssh-keys sign` signs later.
func (a *Backend) RecordHostKeys(ctx context.Context, token string, keys []string) (string, []string, error) {
	ca, err := a.sshCA(ctx)
	if err != nil {
		return "", nil, err
	}
	var sign func(m *inventory.Machine, spec *inventory.DeploySpec, keys []string) ([]string, error)
	if ca != nil {
		sign = func(m *inventory.Machine, spec *inventory.DeploySpec, keys []string) ([]string, error) {
			return ca.SignMachine(m.ID, spec.Hostname, m.IP, keys, a.HostCertLifetime, a.Store.Now())
		}
	}
	id, certs, err := a.Store.RecordHostKeys(ctx, token, keys, sign)
	switch {
	case errors.Is(err, inventory.ErrHostKeyToken):
		return id, nil, fmt.Errorf("%w: %w", httpboot.ErrHostKeyToken, err)
	case errors.Is(err, inventory.ErrBadHostKeys):
		return id, nil, fmt.Errorf("%w: %w", httpboot.ErrBadHostKeys, err)
	}
	return id, certs, err
}

// sshCA opens ironrack's SSH CA; nil when there is none or this boot
// server cannot open it (logged).
func (a *Backend) sshCA(ctx context.Context) (*hostkeys.CA, error) {
	pem, err := a.Store.SSHCAPrivateKey(ctx)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return nil, nil
	case errors.Is(err, inventory.ErrKeyFile), errors.Is(err, inventory.ErrSealed):
		a.log().Warn("bootserver: the SSH CA cannot be opened here; host keys are recorded without certificates", "err", err)
		return nil, nil
	case err != nil:
		return nil, err
	}
	ca, err := hostkeys.ParseCA(pem)
	if err != nil {
		a.log().Warn("bootserver: the SSH CA is unusable; host keys are recorded without certificates", "err", err)
		return nil, nil
	}
	return ca, nil
}
