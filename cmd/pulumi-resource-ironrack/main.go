// Command pulumi-resource-ironrack is the Pulumi provider `ironrack`
// (resource ironrack:index:Tier; see package tiers/provider). The Pulumi
// engine starts it; it is not run by hand.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/provider"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-ironrack: %v\n", err)
		os.Exit(1)
	}
}

// deployers is the provider's registry of deployers (config
// ironrack:deployer).
func deployers() provider.Deployers {
	return provider.Deployers{
		// state: the lifecycle and the services' registration only; no machine
		// is touched (tests and measurements).
		"state": func(e provider.DeployerEnv) (tiers.Deployer, error) {
			return &tiers.StateDeployer{Store: e.Store, Client: e.Client, Who: e.Who}, nil
		},
		// provision: the deploy and release workflows `ironrack deploy` runs.
		"provision": func(e provider.DeployerEnv) (tiers.Deployer, error) {
			return &tiers.ProvisionDeployer{
				Workflows: &provision.Deployer{
					Store:  e.Store,
					Images: &images.Catalog{KV: e.Client.KV(), Prefix: e.Prefix},
					Who:    e.Who,
					Logger: e.Logger,
					Fleet:  &provision.Fleet{Inventory: e.Store, Controller: &ipmi.Controller{Logger: e.Logger}, Who: e.Who, Logger: e.Logger},
				},
				ConsulJoin: e.ConsulJoin, AllowReboot: e.AllowReboot, SSHKeys: e.SSHKeys, AgentToken: e.ConsulToken,
			}, nil
		},
	}
}

func run(ctx context.Context) error {
	prov, err := provider.New(deployers())
	if err != nil {
		return err
	}
	return prov.Run(ctx, provider.Name, provider.Version)
}
