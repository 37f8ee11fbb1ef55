// Package tiers owns the Tier: a named set of machines claimed from the
// inventory for one owner (a Pulumi resource), deployed, and serving Consul
// services whose health checks pass. It holds the reconcile logic the Pulumi
// provider (cmd/pulumi-resource-ironrack, package tiers/provider) and
// `ironrack scale` share:
//
//   - Plan says, changing nothing, which machines a step adds (the ready
//     machines inventory.Allocate would claim for this owner) and which it
//     removes (the members ranked lowest by rendezvous hash of owner and
//     machine ID, spread kept even across racks): the preview an operator
//     signs off.
//   - Apply converges: it adopts every machine the owner already holds
//     (an interrupted run leaves no orphans), finishes half-done releases,
//     drains and releases what it removes, claims and deploys what it adds,
//     and waits for the services' health checks.
//   - Destroy drains and releases every machine of the owner.
//
// Deploying goes through the Deployer seam. ProvisionDeployer runs the
// provision workflows (the deploy and release `ironrack deploy` runs);
// StateDeployer moves machines through the lifecycle and registers their
// services in the Consul catalog without touching a machine (for tests and
// measurements). CheckPool checks that the ready pool meets several tiers'
// steps at once; PlanStack (over JointPick) plans a stack's tiers together,
// picking their new machines from one read of the pool, disjointly and
// deterministically, and Spec.Pick makes Plan and Apply take exactly
// those machines: what `ironrack scale preview` lists is what `scale
// apply` claims.
//
// A tier's services are inventory.DeployServices, checked by the
// inventory's one rule (Spec.Validate). ProviderConfig is the Pulumi
// provider's configuration, which the provider (tiers/provider) and the
// tier program (tiers/stack) share.
//
// The package reaches Consul only through *inventory.Store, the provision
// workflows and, for services and their health, Consul's catalog, agent
// and health APIs; it reads no ironrack keys itself.
package tiers
