// Command pulumi-resource-ironrack is the Pulumi provider `ironrack`
// (resource ironrack:index:Tier; see package tiers/provider). The Pulumi
// engine starts it; it is not run by hand.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
	"github.com/ironrack/ironrack/tiers/provider"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-ironrack: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	prov, err := provider.New(provider.Deployers{
		"state": func(s *inventory.Store, c *api.Client, who string) (tiers.Deployer, error) {
			return &tiers.StateDeployer{Store: s, Client: c, Who: who}, nil
		},
	})
	if err != nil {
		return err
	}
	return prov.Run(ctx, provider.Name, provider.Version)
}
