package inventory

import (
	"context"
	"fmt"
	"strings"
	"sync"

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

// rawCredentials reads the sealed boxes of many references in batched read
// transactions (128 keys each, 8 at once); absent references are left out.
func (s *Store) rawCredentials(ctx context.Context, refs []string) (map[string][]byte, error) {
	keys := make([]string, len(refs))
	for i, ref := range refs {
		keys[i] = s.credKey(ref)
	}
	prefix := s.credKey("")
	boxes := map[string][]byte{}
	var mu sync.Mutex
	err := s.getMany(ctx, keys, func(kvs []*api.KVPair) error {
		mu.Lock()
		defer mu.Unlock()
		for _, kv := range kvs {
			boxes[strings.TrimPrefix(kv.Key, prefix)] = kv.Value
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	return boxes, nil
}

// Credentials decrypts the BMC logins of many machines at once: each
// distinct reference is read once, in batched read transactions. Per-machine
// problems (no reference, missing or undecryptable value) come back in errs
// keyed by machine ID; err is for Consul itself failing.
func (s *Store) Credentials(ctx context.Context, ms []*Machine) (creds map[string]Credential, errs map[string]error, err error) {
	creds, errs = map[string]Credential{}, map[string]error{}
	var refs []string
	seen := map[string]bool{}
	for _, m := range ms {
		if ref := m.BMC.CredentialRef; ref != "" && !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	boxes, err := s.rawCredentials(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	sl, serr := s.sealer()
	for _, m := range ms {
		ref := m.BMC.CredentialRef
		box, ok := boxes[ref]
		switch {
		case ref == "":
			errs[m.ID] = fmt.Errorf("machine %s has no BMC credential: %w", m.ID, ErrNotFound)
		case !ok:
			errs[m.ID] = fmt.Errorf("machine %s: credential %s: %w", m.ID, ref, ErrNotFound)
		case serr != nil:
			errs[m.ID] = serr
		default:
			pw, err := sl.Open(box)
			if err != nil {
				errs[m.ID] = fmt.Errorf("machine %s: credential %s: %w", m.ID, ref, err)
				continue
			}
			creds[m.ID] = Credential{Username: m.BMC.Username, Password: string(pw)}
		}
	}
	return creds, errs, nil
}
