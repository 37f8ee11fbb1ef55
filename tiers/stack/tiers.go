package stack

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers"
)

// TierDef is one tier of the program.
type TierDef struct {
	Name     string
	Spread   string
	Services []inventory.DeployService
	// Sharded tiers keep a shard map: Project:<tier>Shards shards (default
	// DefaultShards; 0: unsharded) with Project:<tier>Replicas replicas
	// (default 0: the stored map's, or for a first map 3, fewer if the
	// tier's machines span fewer racks; see tiers.Shards).
	Sharded bool
}

// DefaultShards is a sharded tier's shard count when the stack config
// does not set it.
const DefaultShards = 256

// DefaultTiers are the shipped program's tiers, in the order they are
// listed: the resources of the YAML project (deploy/pulumi/tiers). Each
// call returns a new slice.
func DefaultTiers() []TierDef {
	return []TierDef{
		{Name: "ingestion", Spread: "rack", Services: []inventory.DeployService{{Name: "ingestion", Port: 9000}}},
		{Name: "storage", Spread: "rack", Services: []inventory.DeployService{{Name: "storage", Port: 9100}}, Sharded: true},
		{Name: "query", Spread: "rack", Services: []inventory.DeployService{{Name: "query", Port: 9200}}},
	}
}

// ShardsKeys are a sharded tier's layout keys in the stack config, without
// the project prefix: its shard count and replication factor.
func ShardsKeys(tier string) (shards, replicas string) { return tier + "Shards", tier + "Replicas" }

// shardsConfig reads a sharded tier's layout from the stack config (get
// looks a key up without the project prefix): <tier>Shards (default
// DefaultShards) and <tier>Replicas (default 0).
func shardsConfig(get func(key string) (string, bool), tier string) (count, replicas int, err error) {
	num := func(key string, def int) (int, error) {
		raw, ok := get(key)
		if !ok {
			return def, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s:%s is %q, not a whole number >= 0", Project, key, raw)
		}
		return n, nil
	}
	shardsKey, replicasKey := ShardsKeys(tier)
	if count, err = num(shardsKey, DefaultShards); err != nil {
		return 0, 0, err
	}
	if replicas, err = num(replicasKey, 0); err != nil {
		return 0, 0, err
	}
	return count, replicas, nil
}

// Specs are the program's tiers defs as tiers.Specs from the config (size,
// selector, spread, services, shards; what sizing, claiming and the shard
// map's racks depend on).
func Specs(defs []TierDef, cfg map[string]string) ([]tiers.Spec, error) {
	var out []tiers.Spec
	for _, t := range defs {
		raw := cfg[Project+":"+t.Name+"Size"]
		size, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s:%sSize is %q, not a size (a whole number >= 0)", Project, t.Name, raw)
		}
		sp := tiers.Spec{Name: t.Name, Size: size, Selector: cfg[Project+":"+t.Name+"Selector"], Spread: t.Spread,
			RootDisk: cfg[Project+":"+t.Name+"RootDisk"], RootLayout: cfg[Project+":"+t.Name+"RootLayout"]}
		sp.Services = append([]inventory.DeployService(nil), t.Services...)
		if t.Sharded {
			count, replicas, err := shardsConfig(func(k string) (string, bool) { v, ok := cfg[Project+":"+k]; return v, ok }, t.Name)
			if err != nil {
				return nil, err
			}
			if count > 0 {
				sp.Shards = &tiers.Shards{Count: count, Replicas: replicas}
			}
		}
		out = append(out, sp)
	}
	return out, nil
}
