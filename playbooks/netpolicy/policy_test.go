package netpolicy

import (
	"errors"
	"strings"
	"testing"
)

// TestPolicyRefusals: an unknown tier, tag or field name, a bad file and a
// policy that cuts every admin off are refused with FILE:LINE; a selector
// that matches nothing today is a warning.
func TestPolicyRefusals(t *testing.T) {
	base := "admins: [10.0.0.1]\nrules:\n"
	cases := map[string]struct {
		src      string
		wantErr  string
		wantWarn string
		noAdmin  bool
	}{
		"unknown tier": {src: base + "  - from: {tier: ingestion}\n    to: {tier: storag}\n    ports: [9100/tcp]\n",
			wantErr: `p.yaml:4: rule to: unknown tier "storag"`},
		"unknown tag": {src: base + "  - from: {tag: colour=blue}\n    to: {tier: storage}\n    ports: [9100/tcp]\n",
			wantErr: `p.yaml:3: rule from: unknown tag "colour"`},
		"unknown field": {src: base + "  - from: {where: 'rackk == \"r1\"'}\n    to: {tier: storage}\n    ports: [9100/tcp]\n",
			wantErr: `p.yaml:3: where-expression`},
		"bad port": {src: base + "  - from: {tier: query}\n    to: {tier: storage}\n    ports: [9100/tcp, 70000/tcp]\n",
			wantErr: `p.yaml:5: port "70000/tcp"`},
		"bad yaml":    {src: "admins: [10.0.0.1\nrules: x\n", wantErr: `p.yaml: yaml: line`},
		"unknown key": {src: "admins: [10.0.0.1]\nrulez: []\n", wantErr: `p.yaml:2: unknown key "rulez"`},
		"bad cidr":    {src: "admins: [10.0.0.300/24]\n", wantErr: `p.yaml:1: admins: "10.0.0.300/24" is not an address or CIDR`},
		"rule without ports": {src: base + "  - from: {tier: query}\n    to: {tier: storage}\n",
			wantErr: `p.yaml:3: rule has no ports`},
		"no admins":           {src: "rules: []\n", wantErr: "p.yaml:1: no admins", noAdmin: false},
		"admins match nobody": {src: "admins: [{tier: query}]\n", wantErr: "cuts every admin off", noAdmin: true},
		"empty tier is a warning": {src: base + "  - from: {tier: query}\n    to: {tier: storage}\n    ports: [9100/tcp]\n",
			wantWarn: "p.yaml:3: rule from: tier query matches no machine today"},
	}
	known := Known{Tiers: []string{"ingestion", "storage", "query"}, Machines: threeTier()[:4]} // no query machine
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.src))
			var warn []string
			if err == nil {
				warn, err = p.Check(known)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !strings.Contains(strings.Join(warn, "\n"), tc.wantWarn) {
					t.Fatalf("warnings %q, want %q", warn, tc.wantWarn)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.noAdmin != errors.Is(err, ErrNoAdmin) {
				t.Fatalf("errors.Is(ErrNoAdmin) = %v for %v", !tc.noAdmin, err)
			}
		})
	}
}
