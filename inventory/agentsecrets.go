package inventory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/hashicorp/consul/api"
)

// A deployed machine's Consul client agent joins the inventory's cluster.
// A production cluster encrypts its gossip and enforces ACLs, so the agent
// needs the cluster's gossip key and an ACL token of its own. They are set
// once per inventory, sealed like BMC passwords (the key file), at
//
//	PREFIX/secrets/consul-agent   secretbox of AgentSecrets as JSON
//
// and the boot server opens them when it renders a deploy's NoCloud seed.

// AgentSecrets are what every deployed machine's Consul agent is given.
// Either may be empty. Its String method never prints them.
type AgentSecrets struct {
	// GossipKey is the cluster's gossip encryption key (consul keygen):
	// base64 of 16, 24 or 32 bytes.
	GossipKey string `json:"gossip_key,omitempty"`
	// Token is the ACL token the agent uses for its node and for the
	// machine's services: a UUID (its SecretID).
	Token string `json:"token,omitempty"`
}

var tokenRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks both values; errors name the field, never the value.
func (a AgentSecrets) Validate() error {
	var errs []error
	if a.GossipKey != "" {
		raw, err := base64.StdEncoding.DecodeString(a.GossipKey)
		if err != nil || (len(raw) != 16 && len(raw) != 24 && len(raw) != 32) {
			errs = append(errs, errors.New("gossip key: want base64 of 16, 24 or 32 bytes (consul keygen)"))
		}
	}
	if a.Token != "" && !tokenRE.MatchString(a.Token) {
		errs = append(errs, errors.New("ACL token: want a UUID (the token's SecretID)"))
	}
	return errors.Join(errs...)
}

// String says which secrets are set, never what they are.
func (a AgentSecrets) String() string {
	set := func(v string) string {
		if v == "" {
			return "unset"
		}
		return "set"
	}
	return fmt.Sprintf("gossip key %s, ACL token %s", set(a.GossipKey), set(a.Token))
}

// GoString keeps %#v from printing the secrets too.
func (a AgentSecrets) GoString() string { return a.String() }

func (s *Store) agentSecretsKey() string { return s.key("secrets", "consul-agent") }

// AgentSecrets returns the deployed agents' secrets, opened; the zero
// value if none are set (which needs no key file). Callers must not log
// them.
func (s *Store) AgentSecrets(ctx context.Context) (AgentSecrets, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.agentSecretsKey(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return AgentSecrets{}, fmt.Errorf("read consul agent secrets: %w", err)
	}
	if kv == nil {
		return AgentSecrets{}, nil
	}
	sl, err := s.sealer()
	if err != nil {
		return AgentSecrets{}, fmt.Errorf("consul agent secrets are set: %w", err)
	}
	b, err := sl.Open(kv.Value)
	if err != nil {
		return AgentSecrets{}, fmt.Errorf("consul agent secrets at %s: %w", kv.Key, err)
	}
	var a AgentSecrets
	if err := json.Unmarshal(b, &a); err != nil {
		return AgentSecrets{}, fmt.Errorf("consul agent secrets at %s: %w", kv.Key, err)
	}
	return a, nil
}

// SetAgentSecrets validates, seals and stores the deployed agents'
// secrets, replacing what was set; the zero value deletes them. Machines
// deployed from then on get them; deployed ones keep what they have.
func (s *Store) SetAgentSecrets(ctx context.Context, a AgentSecrets) error {
	if err := a.Validate(); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if a == (AgentSecrets{}) {
		if _, err := s.c.KV().Delete(s.agentSecretsKey(), wo); err != nil {
			return fmt.Errorf("delete consul agent secrets: %w", err)
		}
		return nil
	}
	sl, err := s.sealer()
	if err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	box, err := sl.Seal(b)
	if err != nil {
		return err
	}
	if _, err := s.c.KV().Put(&api.KVPair{Key: s.agentSecretsKey(), Value: box}, wo); err != nil {
		return fmt.Errorf("store consul agent secrets: %w", err)
	}
	return nil
}
