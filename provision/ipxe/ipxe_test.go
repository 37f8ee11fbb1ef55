package ipxe_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/provision/ipxe"
)

var update = flag.Bool("update", os.Getenv("UPDATE_GOLDEN") == "1", "rewrite testdata/*.ipxe")

var env = ipxe.Env{BaseURL: "http://192.0.2.1:8080"}

var debian = ipxe.Image{Name: "debian", Version: "12.7", Kernel: "vmlinuz", Initrd: "initrd.img",
	Cmdline: "root=LABEL=ironrack-root ro console=ttyS0,115200n8"}

func machine(state string) ipxe.Machine {
	return ipxe.Machine{ID: "m-0001", MAC: "52:54:00:12:34:56", State: state, Image: debian, Token: "tok-abc123"}
}

func TestDecide(t *testing.T) {
	tests := map[string]struct {
		m    ipxe.Machine
		want ipxe.Action
		mode string
	}{
		"unknown":              {m: ipxe.Machine{State: ipxe.StateUnknown, MAC: "52:54:00:12:34:56"}, want: ipxe.ActionAgent, mode: ipxe.ModeDiscover},
		"new":                  {m: machine(ipxe.StateNew), want: ipxe.ActionAgent, mode: ipxe.ModeDiscover},
		"commissioning":        {m: machine(ipxe.StateCommissioning), want: ipxe.ActionAgent, mode: ipxe.ModeCommission},
		"ready":                {m: machine(ipxe.StateReady), want: ipxe.ActionAgent, mode: ipxe.ModeStandby},
		"allocated":            {m: machine(ipxe.StateAllocated), want: ipxe.ActionAgent, mode: ipxe.ModeStandby},
		"deploying":            {m: machine(ipxe.StateDeploying), want: ipxe.ActionAgent, mode: ipxe.ModeDeploy},
		"deployed":             {m: machine(ipxe.StateDeployed), want: ipxe.ActionOS},
		"deployed, bootloader": {m: ipxe.Machine{ID: "m-0002", State: ipxe.StateDeployed, Image: ipxe.Image{Name: "windows", Version: "2022"}}, want: ipxe.ActionLocalDisk},
		"releasing":            {m: machine(ipxe.StateReleasing), want: ipxe.ActionAgent, mode: ipxe.ModeWipe},
		"failed_commissioning": {m: machine(ipxe.StateFailedCommissioning), want: ipxe.ActionExit},
		"failed_deployment":    {m: machine(ipxe.StateFailedDeployment), want: ipxe.ActionExit},
		"failed_releasing":     {m: machine(ipxe.StateFailedReleasing), want: ipxe.ActionExit},
		"broken":               {m: machine(ipxe.StateBroken), want: ipxe.ActionExit},
		"retired":              {m: machine(ipxe.StateRetired), want: ipxe.ActionExit},
		"unrecognised":         {m: machine("DEPLOYED"), want: ipxe.ActionExit},
		"empty state":          {m: machine(""), want: ipxe.ActionExit},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := ipxe.Decide(tc.m)
			if diff := cmp.Diff([2]string{string(tc.want), tc.mode}, [2]string{string(d.Action), d.Mode}); diff != "" {
				t.Errorf("Decide(%s) (-want +got):\n%s", tc.m.State, diff)
			}
		})
	}
}

// TestDeployedNeverBootsAgent: whatever the image, a deployed machine's
// script never mentions the agent.
func TestDeployedNeverBootsAgent(t *testing.T) {
	for _, img := range []ipxe.Image{debian, {}, {Name: "x", Version: "1"}, {Kernel: "vmlinuz"}} {
		m := machine(ipxe.StateDeployed)
		m.Image = img
		if s := ipxe.Script(m, env); strings.Contains(s, "ironrack.mode") || strings.Contains(s, "/images/agent/") {
			t.Errorf("deployed machine with image %+v boots the agent:\n%s", img, s)
		}
	}
}

func TestScriptGolden(t *testing.T) {
	cases := map[string]ipxe.Machine{
		"unknown":              {State: ipxe.StateUnknown, MAC: "52:54:00:12:34:56"},
		"new":                  machine(ipxe.StateNew),
		"commissioning":        machine(ipxe.StateCommissioning),
		"ready":                machine(ipxe.StateReady),
		"allocated":            machine(ipxe.StateAllocated),
		"deploying":            machine(ipxe.StateDeploying),
		"deployed":             machine(ipxe.StateDeployed),
		"deployed-local-disk":  {ID: "m-0002", MAC: "52:54:00:12:34:57", State: ipxe.StateDeployed, Image: ipxe.Image{Name: "windows", Version: "2022"}},
		"releasing":            machine(ipxe.StateReleasing),
		"failed_commissioning": machine(ipxe.StateFailedCommissioning),
		"failed_deployment":    machine(ipxe.StateFailedDeployment),
		"failed_releasing":     machine(ipxe.StateFailedReleasing),
		"broken":               machine(ipxe.StateBroken),
		"retired":              machine(ipxe.StateRetired),
		"injection":            {ID: "m-0003\nshell", MAC: "52:54:00:12:34:58", State: ipxe.StateDeployed, Image: ipxe.Image{Name: "evil", Version: "1", Kernel: "vmlinuz", Cmdline: "ro\nshell"}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			got := ipxe.Script(m, env)
			path := filepath.Join("testdata", name+".ipxe")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (UPDATE_GOLDEN=1 creates it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}
