package tiers

// ProviderConfig is the Pulumi provider's configuration: stack config
// `ironrack:KEY`, KEY each field's pulumi tag. The provider's Config
// (tiers/provider) embeds it, so its schema is this struct's; the tier
// program (tiers/stack) writes it into the stack settings from the same
// tags. It lives here and not in tiers/provider so that the CLI, which runs
// the program, does not link the provider's SDK.
type ProviderConfig struct {
	// Consul is the inventory's Consul HTTP address. If empty,
	// CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
	Consul string `pulumi:"consul,optional"`
	// ConsulToken is the Consul ACL token. If empty, CONSUL_HTTP_TOKEN. It
	// is a secret: the program passes it in the environment, never in the
	// stack settings.
	ConsulToken string `pulumi:"consulToken,optional" provider:"secret"`
	// Prefix is the inventory's KV prefix. If empty, "ironrack".
	Prefix string `pulumi:"prefix,optional"`
	// KeyFile seals the BMC credentials; read only when a deployer powers
	// machines.
	KeyFile string `pulumi:"keyFile,optional"`
	// Deployer names the deployer in the provider's registry.
	Deployer string `pulumi:"deployer"`
	// HealthTimeoutSeconds bounds the wait for health checks; 0: 600.
	HealthTimeoutSeconds int `pulumi:"healthTimeoutSeconds,optional"`
	// Who is recorded in the machines' history; "": "pulumi".
	Who string `pulumi:"who,optional"`
	// ConsulJoin is what deployed machines' Consul agents join; "": the
	// consul address's host.
	ConsulJoin string `pulumi:"consulJoin,optional"`
	// AllowReboot lets the provision deployer power-cycle a machine that
	// is on.
	AllowReboot bool `pulumi:"allowReboot,optional"`
	// SSHKeys are root's authorized_keys lines on the deployed OS.
	SSHKeys []string `pulumi:"sshKeys,optional"`
}
