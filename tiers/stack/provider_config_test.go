package stack_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/tiertest"
	"github.com/ironrack/ironrack/tiers/stack"
)

// TestEngineStateDeployerProvisionConfigReachesProvider: the provision
// deployer's settings (sshKeys as a list, consulJoin, allowReboot) go
// through the stack config to the provider, which decodes and checks them
// when it is configured: a malformed key fails the run naming
// ironrack:sshKeys, a well-formed one passes (state deployer: no machine is
// touched; the preview claims nothing).
func TestEngineStateDeployerProvisionConfigReachesProvider(t *testing.T) {
	env := tiertest.Start(t)
	tiertest.SeedReady(t, env.Store, 6, 3)
	ctx := context.Background()
	o := options(t, env, [3]int{1, 1, 1})
	o.Provider.ConsulJoin, o.Provider.AllowReboot = "192.0.2.1", true
	o.Provider.SSHKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo test@lab", "not a key"}
	if _, err := stack.Preview(ctx, o); err == nil || !strings.Contains(err.Error(), "ironrack:sshKeys") || !strings.Contains(err.Error(), "ssh key 2") {
		t.Fatalf("preview with a malformed second ssh key: %v, want refused naming ironrack:sshKeys and key 2", err)
	}
	o.Provider.SSHKeys = o.Provider.SSHKeys[:1]
	steps, err := stack.Preview(ctx, o)
	if err != nil {
		t.Fatalf("preview with one good ssh key: %v", err)
	}
	if len(steps) != 3 {
		t.Fatalf("preview steps %+v, want 3 tiers", steps)
	}
}
