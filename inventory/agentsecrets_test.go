package inventory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/internal/consuldev"
)

func TestAgentSecrets(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()

	// None set: the zero value, and no key file needed to learn that.
	bare := New(c, Config{})
	if a, err := bare.AgentSecrets(ctx); err != nil || a != (AgentSecrets{}) {
		t.Fatalf("unset: %v, %v", a, err)
	}

	ca, err := os.ReadFile("testdata/consul-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := os.ReadFile("testdata/consul-leaf.pem")
	if err != nil {
		t.Fatal(err)
	}
	want := AgentSecrets{GossipKey: "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", Token: "2f1c3e8a-6a7b-4c1d-9e2f-0a1b2c3d4e5f", CACert: string(ca)}
	if err := s.SetAgentSecrets(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AgentSecrets(ctx); err != nil || got != want {
		t.Fatalf("read back %v, %v", got, err)
	}
	// Sealed at rest: neither value is in Consul in the clear.
	kv, _, err := c.KV().Get(s.agentSecretsKey(), nil)
	if err != nil || kv == nil {
		t.Fatalf("stored value: %v %v", kv, err)
	}
	for _, v := range []string{want.GossipKey, want.Token} {
		if strings.Contains(string(kv.Value), v) {
			t.Errorf("stored value holds a secret in the clear")
		}
	}
	// Printing never shows them.
	for _, out := range []string{fmt.Sprint(want), fmt.Sprintf("%v %+v %#v %s", want, want, want, want)} {
		if strings.Contains(out, want.Token) || strings.Contains(out, want.GossipKey) {
			t.Errorf("printed: %s", out)
		}
	}
	// Another key file, or none, cannot open them, and says so.
	other := New(c, Config{Sealer: NewSealer([32]byte{9})})
	if _, err := other.AgentSecrets(ctx); !errors.Is(err, ErrSealed) {
		t.Errorf("wrong key file: %v, want ErrSealed", err)
	}
	if _, err := bare.AgentSecrets(ctx); !errors.Is(err, ErrKeyFile) {
		t.Errorf("no key file: %v, want ErrKeyFile", err)
	}

	// Bad values are refused by name, never echoed, and change nothing.
	for name, bad := range map[string]struct {
		a    AgentSecrets
		want string
	}{
		"key not base64":  {AgentSecrets{GossipKey: "not base64!"}, "gossip key"},
		"key of 20 bytes": {AgentSecrets{GossipKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "gossip key"},
		"token not uuid":  {AgentSecrets{Token: "root"}, "ACL token"},
		"token with line": {AgentSecrets{Token: want.Token + "\n"}, "ACL token"},
		"ca not pem":      {AgentSecrets{CACert: "hunter2"}, "CA certificate: no PEM CERTIFICATE block"},
		"ca is a leaf":    {AgentSecrets{CACert: string(leaf)}, "is not a CA certificate"},
		"ca and a key":    {AgentSecrets{CACert: string(ca) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "block 2 is a PRIVATE KEY"},
		"ca then junk":    {AgentSecrets{CACert: string(ca) + "junk"}, "trailing data"},
		"ca too big":      {AgentSecrets{CACert: strings.Repeat(string(ca), 200)}, "more than 65536"},
		"datacenter":      {AgentSecrets{Datacenter: "fra 1"}, `datacenter "fra 1"`},
	} {
		err := s.SetAgentSecrets(ctx, bad.a)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, bad.want)
			continue
		}
		if bad.a.Token != "" && strings.Contains(err.Error(), strings.TrimSpace(bad.a.Token)) {
			t.Errorf("%s: error echoes the value: %v", name, err)
		}
	}
	if got, err := s.AgentSecrets(ctx); err != nil || got != want {
		t.Fatalf("after refused sets: %v, %v", got, err)
	}

	// The gossip key alone; then the zero value deletes them.
	if err := s.SetAgentSecrets(ctx, AgentSecrets{GossipKey: want.GossipKey}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AgentSecrets(ctx); got.Token != "" || got.GossipKey != want.GossipKey {
		t.Errorf("key only: %v", got)
	}
	if err := s.SetAgentSecrets(ctx, AgentSecrets{}); err != nil {
		t.Fatal(err)
	}
	if kv, _, _ := c.KV().Get(s.agentSecretsKey(), nil); kv != nil {
		t.Errorf("cleared secrets still stored")
	}
}

// TestDatacenter: the datacenter is the agent's own, read with a token
// that may read the agent, and from the catalog's only datacenter with one
// that may not (default-deny ACLs, no token).
func TestDatacenter(t *testing.T) {
	const mgmt = "5b0c1e2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
	agent := consuldev.TWith(t, consuldev.Options{Bind: "127.0.33.1", Token: mgmt, ExtraHCL: `datacenter = "fra1"` + consuldev.ACL(mgmt)})
	for name, token := range map[string]string{"management": mgmt, "anonymous": ""} {
		c, err := api.NewClient(&api.Config{Address: agent.Addr, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		s := New(c, Config{})
		for range 2 { // the second from memory
			if dc, err := s.Datacenter(context.Background()); err != nil || dc != "fra1" {
				t.Errorf("%s token: datacenter %q, %v; want fra1", name, dc, err)
			}
		}
	}
}
