package stack

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/tiers"
)

// TestSpecsShards: Specs reads the storage tier's shard layout from the
// stack config as the program does: DefaultShards when unset, 0 for
// unsharded, and an error naming a bad value.
func TestSpecsShards(t *testing.T) {
	base := map[string]string{Project + ":ingestionSize": "1", Project + ":storageSize": "3", Project + ":querySize": "0"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[Project+":"+kv[i]] = kv[i+1]
		}
		return m
	}
	for name, tc := range map[string]struct {
		cfg     map[string]string
		want    *tiers.Shards
		wantErr string
	}{
		"default":    {cfg: with(), want: &tiers.Shards{Count: DefaultShards}},
		"set":        {cfg: with("storageShards", "16", "storageReplicas", "3"), want: &tiers.Shards{Count: 16, Replicas: 3}},
		"unsharded":  {cfg: with("storageShards", "0"), want: nil},
		"bad count":  {cfg: with("storageShards", "many"), wantErr: `ironrack-tiers:storageShards is "many", not a whole number >= 0`},
		"bad factor": {cfg: with("storageReplicas", "-1"), wantErr: `ironrack-tiers:storageReplicas is "-1"`},
	} {
		t.Run(name, func(t *testing.T) {
			specs, err := Specs(DefaultTiers(), tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range specs {
				want := (*tiers.Shards)(nil)
				if sp.Name == "storage" {
					want = tc.want
				}
				if diff := cmp.Diff(want, sp.Shards); diff != "" {
					t.Errorf("tier %s shards (-want +got):\n%s", sp.Name, diff)
				}
			}
		})
	}
}

// TestSpecsRootDisk: a tier's root-device hint comes from <tier>RootDisk,
// its root layout from <tier>RootLayout.
func TestSpecsRootDisk(t *testing.T) {
	cfg := map[string]string{Project + ":ingestionSize": "1", Project + ":storageSize": "1", Project + ":querySize": "0",
		Project + ":storageRootDisk": "not rotational", Project + ":storageRootLayout": "mirror"}
	specs, err := Specs(DefaultTiers(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if want := map[string]string{"storage": "not rotational"}[s.Name]; s.RootDisk != want {
			t.Errorf("tier %s: root disk %q, want %q", s.Name, s.RootDisk, want)
		}
		if want := map[string]string{"storage": "mirror"}[s.Name]; s.RootLayout != want {
			t.Errorf("tier %s: root layout %q, want %q", s.Name, s.RootLayout, want)
		}
	}
}
