package provider

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/inventory"
)

// TestServiceArgsMatchDeployService: the Pulumi input of a service carries
// every field of inventory.DeployService, the one definition, under the
// same name, except the ones listed here (not inputs of the schema).
func TestServiceArgsMatchDeployService(t *testing.T) {
	notInputs := map[string]bool{"interval": true}
	tags := func(typ reflect.Type, key string) []string {
		var out []string
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get(key), ",")
			if !notInputs[name] {
				out = append(out, name)
			}
		}
		return out
	}
	want := tags(reflect.TypeFor[inventory.DeployService](), "json")
	got := tags(reflect.TypeFor[ServiceArgs](), "pulumi")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ServiceArgs fields (-DeployService +ServiceArgs):\n%s", diff)
	}
}

// TestServiceCheckStrict: a tier's services are checked by the inventory's
// rule, and each refusal names the Pulumi input: no ttl check, no HTTP path
// with a space, no _ in a name.
func TestServiceCheckStrict(t *testing.T) {
	for name, tc := range map[string]struct {
		svc  ServiceArgs
		want string
	}{
		"ttl":        {ServiceArgs{Name: "a", Port: 1, Check: "ttl"}, "services[0].check"},
		"http space": {ServiceArgs{Name: "a", Port: 1, Check: "http:/a b"}, "services[0].check"},
		"name _":     {ServiceArgs{Name: "a_b", Port: 1}, "services[0].name"},
		"port":       {ServiceArgs{Name: "a", Port: 0}, "services[0].port"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := TierArgs{Name: "q", Size: 1, Services: []ServiceArgs{tc.svc}}.spec().Validate()
			if len(errs) != 1 || errs[0].Field != tc.want {
				t.Fatalf("errors %v, want one naming %s", errs, tc.want)
			}
		})
	}
	args := TierArgs{Name: "q", Size: 1, Services: []ServiceArgs{{Name: "ssh", Port: 22}, {Name: "api", Port: 80, Check: "http:/healthz"}}}
	if errs := args.spec().Validate(); len(errs) > 0 {
		t.Fatalf("good services: %v", errs)
	}
}

// TestRootLayoutInput: the Tier's rootLayout reaches the spec, and a bad
// one is refused naming the Pulumi input with what it accepts.
func TestRootLayoutInput(t *testing.T) {
	args := TierArgs{Name: "storage", Size: 2, RootDisk: "size_bytes >= 2e9", RootLayout: "mirror"}
	if s := args.spec(); s.RootLayout != "mirror" || s.RootDisk != "size_bytes >= 2e9" {
		t.Errorf("spec root %q %q, want the inputs", s.RootLayout, s.RootDisk)
	}
	if errs := args.spec().Validate(); len(errs) > 0 {
		t.Errorf("good mirror: %v", errs)
	}
	for name, tc := range map[string]struct {
		args TierArgs
		want string
	}{
		"unknown":        {TierArgs{Name: "q", Size: 1, RootDisk: "not rotational", RootLayout: "raid1"}, `rootLayout: root layout "raid1": want flat or mirror`},
		"mirror no hint": {TierArgs{Name: "q", Size: 1, RootLayout: "mirror"}, "rootLayout: root layout mirror needs a root disk hint that matches two disks"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := tc.args.spec().Validate()
			if len(errs) != 1 || errs[0].Error() != tc.want {
				t.Fatalf("errors %v, want %q", errs, tc.want)
			}
		})
	}
}
