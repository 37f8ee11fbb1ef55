package builtin

import (
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// Every built-in parses, and deploy plans for a machine with its vars.
func TestBuiltinsParse(t *testing.T) {
	if len(Names()) == 0 {
		t.Fatal("no built-in playbooks")
	}
	for _, n := range Names() {
		if _, err := Load(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	pb, err := Load("deploy")
	if err != nil {
		t.Fatal(err)
	}
	m := &inventory.Machine{ID: "m1"}
	hp, err := pb.Plan(m, map[string]string{"service": "ingest", "release": "/etc/hostname"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hp.Vars["version"] != "hostname" || hp.Vars["base"] != "/srv/ingest" {
		t.Errorf("vars: %v", hp.Vars)
	}
	if _, err := pb.Plan(m, map[string]string{"service": "ingest"}, nil); err == nil {
		t.Error("deploy without a release planned")
	} else {
		t.Log(err)
	}
	if _, err := pb.Plan(m, map[string]string{"release": "x.tgz"}, nil); err == nil {
		t.Error("deploy without a service planned")
	} else {
		t.Log(err)
	}
	if _, err := pb.Plan(m, map[string]string{"service": "a", "release": "/x/../..tar.gz"}, nil); err == nil {
		t.Error("version .. planned")
	} else {
		t.Log(err)
	}
	for _, v := range []map[string]string{
		{"service": "a", "release": "x.tgz", "version": "1; rm -rf /"},
		{"service": "a", "rollback": "true", "version": "../etc"},
		{"service": "a", "rollback": "yes"},
		{"service": "a", "release": "x.tgz", "keep": "-1"},
		{"service": "a b", "release": "x.tgz"},
	} {
		if _, err := pb.Plan(m, v, nil); err == nil {
			t.Errorf("deploy with %v planned", v)
		} else {
			t.Log(err)
		}
	}
	if _, err := Load("nope"); err == nil {
		t.Error("Load(nope) worked")
	}
}
