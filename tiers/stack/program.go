package stack

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pconfig "github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// tierResource is the client side of ironrack:index:Tier.
type tierResource struct {
	pulumi.CustomResourceState
	MachineIds pulumi.StringArrayOutput `pulumi:"machineIds"`
	Racks      pulumi.StringArrayOutput `pulumi:"racks"`
	Added      pulumi.StringArrayOutput `pulumi:"added"`
	Removed    pulumi.StringArrayOutput `pulumi:"removed"`
	ShardMoves pulumi.IntPtrOutput      `pulumi:"shardMoves"`
}

// Program is the tier program: one ironrack:index:Tier per def, its size
// and selector from the stack config; drain, if set, is every tier's
// drainSeconds. picks, if set, gives each tier's `pick` input: the
// machines the stack's joint plan adds to it (Runner sets them before
// every run).
func Program(defs []TierDef, drain *int, picks func() map[string][]string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg := pconfig.New(ctx, Project)
		var pick map[string][]string
		if picks != nil {
			pick = picks()
		}
		for _, t := range defs {
			key := t.Name + "Size"
			raw, ok := cfg.Try(key)
			if ok != nil {
				return fmt.Errorf("%s:%s is not set (ironrack scale plan writes it)", Project, key)
			}
			size, err := strconv.Atoi(strings.TrimSpace(raw))
			if err != nil || size < 0 {
				return fmt.Errorf("%s:%s is %q, not a size (a whole number >= 0)", Project, key, raw)
			}
			svcs := pulumi.Array{}
			for _, s := range t.Services {
				m := pulumi.Map{"name": pulumi.String(s.Name), "port": pulumi.Int(s.Port)}
				if s.Check != "" {
					m["check"] = pulumi.String(s.Check)
				}
				svcs = append(svcs, m)
			}
			in := pulumi.Map{
				"name":     pulumi.String(t.Name),
				"size":     pulumi.Int(size),
				"selector": pulumi.String(cfg.Get(t.Name + "Selector")),
				"spread":   pulumi.String(t.Spread),
				"image":    pulumi.String(cfg.Get("image")),
				"services": svcs,
			}
			if ud := cfg.Get("userData"); ud != "" {
				// The operator's cloud-init, after ironrack's own: what the
				// tier's machines run (the tiers' software, or a stand-in).
				in["userData"] = pulumi.String(ud)
			}
			if rd := cfg.Get(t.Name + "RootDisk"); rd != "" {
				// The tier's class's root-device hint (ironrack scale writes it).
				in["rootDisk"] = pulumi.String(rd)
			}
			if rl := cfg.Get(t.Name + "RootLayout"); rl != "" {
				// The tier's root layout (flat or mirror; ironrack scale
				// writes the class's, or the operator sets it).
				in["rootLayout"] = pulumi.String(rl)
			}
			if drain != nil {
				in["drainSeconds"] = pulumi.Int(*drain)
			}
			if ids := pick[t.Name]; len(ids) > 0 {
				in["pick"] = pulumi.ToStringArray(ids)
			}
			if t.Sharded {
				count, replicas, err := shardsConfig(func(k string) (string, bool) { v, err := cfg.Try(k); return v, err == nil }, t.Name)
				if err != nil {
					return err
				}
				in["shards"] = pulumi.Map{"count": pulumi.Int(count), "replicas": pulumi.Int(replicas)}
			}
			var res tierResource
			if err := ctx.RegisterResource("ironrack:index:Tier", t.Name, in, &res); err != nil {
				return err
			}
			ctx.Export(t.Name+"MachineIds", res.MachineIds)
		}
		return nil
	}
}
