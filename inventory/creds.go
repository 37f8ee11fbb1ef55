package inventory

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"
)

func (s *Store) credKey(ref string) string { return s.key("creds", ref) }

// credRefFor is the reference of a password given inline in a rack sheet.
func credRefFor(id string) string { return "bmc/" + id }

func (s *Store) sealer() (*Sealer, error) {
	if s.cfg.Sealer == nil {
		return nil, fmt.Errorf("%w: no key file configured (--key-file)", ErrKeyFile)
	}
	return s.cfg.Sealer, nil
}

// rawCredential reads the sealed box of a reference; nil if absent.
func (s *Store) rawCredential(ctx context.Context, ref string) ([]byte, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.credKey(ref), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read credential %s: %w", ref, err)
	}
	if kv == nil {
		return nil, nil
	}
	return kv.Value, nil
}

// Credential returns the BMC login of a machine, decrypted. It is the only
// way a password leaves the store; callers must not log it.
func (s *Store) Credential(ctx context.Context, m *Machine) (Credential, error) {
	if m.BMC.CredentialRef == "" {
		return Credential{}, fmt.Errorf("machine %s has no BMC credential: %w", m.ID, ErrNotFound)
	}
	box, err := s.rawCredential(ctx, m.BMC.CredentialRef)
	if err != nil {
		return Credential{}, err
	}
	if box == nil {
		return Credential{}, fmt.Errorf("machine %s: credential %s: %w", m.ID, m.BMC.CredentialRef, ErrNotFound)
	}
	sl, err := s.sealer()
	if err != nil {
		return Credential{}, err
	}
	pw, err := sl.Open(box)
	if err != nil {
		return Credential{}, fmt.Errorf("machine %s: credential %s: %w", m.ID, m.BMC.CredentialRef, err)
	}
	return Credential{Username: m.BMC.Username, Password: string(pw)}, nil
}

// SetCredential seals and stores a password under ref, e.g. a shared
// credential that rack sheets name in bmc_credential_ref.
func (s *Store) SetCredential(ctx context.Context, ref, password string) error {
	if !credRefRE.MatchString(ref) {
		return fmt.Errorf("malformed credential reference %q", ref)
	}
	sl, err := s.sealer()
	if err != nil {
		return err
	}
	box, err := sl.Seal([]byte(password))
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.c.KV().Put(&api.KVPair{Key: s.credKey(ref), Value: box}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("store credential %s: %w", ref, err)
	}
	return nil
}
