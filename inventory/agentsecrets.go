package inventory

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"

	"github.com/hashicorp/consul/api"
)

// A deployed machine's Consul client agent joins the inventory's cluster.
// A production cluster encrypts its gossip, enforces ACLs and verifies TLS
// on its RPC, so the agent needs the cluster's gossip key, an ACL token of
// its own and the CA that signed the servers' certificates (it then gets
// its own certificate from the servers: auto_encrypt). They are set once
// per inventory, sealed like BMC passwords (the key file), at
//
//	PREFIX/secrets/consul-agent   secretbox of AgentSecrets as JSON
//
// and the boot server opens them when it renders a deploy's NoCloud seed.

// AgentSecrets are what every deployed machine's Consul agent is given.
// Any may be empty. Its String method never prints them.
type AgentSecrets struct {
	// GossipKey is the cluster's gossip encryption key (consul keygen):
	// base64 of 16, 24 or 32 bytes.
	GossipKey string `json:"gossip_key,omitempty"`
	// Token is the ACL token the agent uses for its node and for the
	// machine's services: a UUID (its SecretID).
	Token string `json:"token,omitempty"`
	// CACert is the PEM of the CA certificate(s) the servers' TLS
	// certificates chain to. Not secret; kept here so that one record says
	// how agents join.
	CACert string `json:"ca_cert,omitempty"`
	// Datacenter is the joined cluster's datacenter. Not secret. If
	// empty, the inventory's own (Store.Datacenter): an agent of another
	// datacenter is refused by the servers.
	Datacenter string `json:"datacenter,omitempty"`
}

var datacenterRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// MaxCACert bounds AgentSecrets.CACert, in bytes (a Consul value is at
// most 512 KiB).
const MaxCACert = 64 << 10

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
	if a.Datacenter != "" && !datacenterRE.MatchString(a.Datacenter) {
		errs = append(errs, fmt.Errorf("datacenter %q: want letters, digits, _ and - (up to 64)", a.Datacenter))
	}
	if a.CACert != "" {
		if err := validateCACert(a.CACert); err != nil {
			errs = append(errs, fmt.Errorf("CA certificate: %w", err))
		}
	}
	return errors.Join(errs...)
}

// validateCACert: PEM holding only CERTIFICATE blocks, at least one, each
// an X.509 CA certificate.
func validateCACert(text string) error {
	if len(text) > MaxCACert {
		return fmt.Errorf("%d bytes, more than %d", len(text), MaxCACert)
	}
	rest := []byte(text)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("block %d is a %s, want CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("block %d: %w", n, err)
		}
		if !c.IsCA {
			return fmt.Errorf("block %d (%s) is not a CA certificate", n, c.Subject)
		}
	}
	if n == 0 {
		return errors.New("no PEM CERTIFICATE block")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("trailing data after the last PEM block")
	}
	return nil
}

// String says which secrets are set, never what they are.
func (a AgentSecrets) String() string {
	set := func(v string) string {
		if v == "" {
			return "unset"
		}
		return "set"
	}
	dc := a.Datacenter
	if dc == "" {
		dc = "the inventory's"
	}
	return fmt.Sprintf("gossip key %s, ACL token %s, CA certificate %s, datacenter %s", set(a.GossipKey), set(a.Token), set(a.CACert), dc)
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

// Datacenter is the datacenter of the Consul agent the store talks to,
// read once (from the agent's config, or, for a token without agent:read,
// the catalog's only datacenter) and then remembered.
func (s *Store) Datacenter(ctx context.Context) (string, error) {
	if dc := s.dc.Load(); dc != nil {
		return *dc, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var self struct{ Config struct{ Datacenter string } }
	_, err := s.c.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx))
	dc := self.Config.Datacenter
	if err != nil || dc == "" {
		var dcs []string
		_, cerr := s.c.Raw().Query("/v1/catalog/datacenters", &dcs, (&api.QueryOptions{}).WithContext(ctx))
		switch {
		case cerr != nil:
			return "", fmt.Errorf("consul datacenter: agent: %v; catalog: %w", err, cerr)
		case len(dcs) != 1:
			return "", fmt.Errorf("consul datacenter: agent: %v; the catalog knows %d datacenters %q: set one with `ironrack consul-agent set --datacenter`", err, len(dcs), dcs)
		}
		dc = dcs[0]
	}
	s.dc.Store(&dc)
	return dc, nil
}
