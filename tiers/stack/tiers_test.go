package stack

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"gopkg.in/yaml.v3"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
)

// TestDefaultTiersMatchYAML: the inline program's tiers are the shipped
// YAML project's resources: same names, spread, services and sharding.
func TestDefaultTiersMatchYAML(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "pulumi", "tiers", "Pulumi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var proj struct {
		Resources map[string]struct {
			Type       string `yaml:"type"`
			Properties struct {
				Name     string                    `yaml:"name"`
				Spread   string                    `yaml:"spread"`
				Services []inventory.DeployService `yaml:"services"`
				Shards   map[string]any            `yaml:"shards"`
			} `yaml:"properties"`
		} `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &proj); err != nil {
		t.Fatal(err)
	}
	var fromYAML []TierDef
	for name, r := range proj.Resources {
		if r.Type != "ironrack:index:Tier" || r.Properties.Name != name {
			t.Errorf("resource %s: type %s name %s", name, r.Type, r.Properties.Name)
		}
		fromYAML = append(fromYAML, TierDef{Name: name, Spread: r.Properties.Spread, Services: r.Properties.Services, Sharded: r.Properties.Shards != nil})
	}
	byName := func(a, b TierDef) bool { return a.Name < b.Name }
	if diff := cmp.Diff(DefaultTiers(), fromYAML, cmpopts.SortSlices(byName)); diff != "" {
		t.Errorf("DefaultTiers (-inline +YAML):\n%s", diff)
	}
}

// TestProviderSettings: every field of the provider's configuration is
// written under its pulumi tag, except the secret, which is never stored.
func TestProviderSettings(t *testing.T) {
	pc := tiers.ProviderConfig{Consul: "c:8500", ConsulToken: "secret", Prefix: "p", KeyFile: "/k", Deployer: "state",
		HealthTimeoutSeconds: 60, Who: "me", ConsulJoin: "192.0.2.1", AllowReboot: true, SSHKeys: []string{"ssh-ed25519 AAAA x"}}
	cm, err := providerSettings(pc)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range cm {
		s, err := v.Value(config.NopDecrypter)
		if err != nil {
			t.Fatal(err)
		}
		got[k.String()] = s
	}
	want := map[string]string{
		"ironrack:consul": "c:8500", "ironrack:prefix": "p", "ironrack:keyFile": "/k", "ironrack:deployer": "state",
		"ironrack:healthTimeoutSeconds": "60", "ironrack:who": "me", "ironrack:consulJoin": "192.0.2.1",
		"ironrack:allowReboot": "true", "ironrack:sshKeys": `["ssh-ed25519 AAAA x"]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if cm, err := providerSettings(tiers.ProviderConfig{Deployer: "state"}); err != nil || len(cm) != 1 {
		t.Errorf("unset fields are written: %v %v", cm, err)
	}
}
