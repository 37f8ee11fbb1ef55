package lab

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
)

// The lab's Redfish tests listen on 127.0.24.0/24 (port 443, as the lab's
// BMCs do).

// TestRedfishLab checks the lab's Redfish wiring without a namespace or a
// VM: --redfish K gives the first K machines Redfish BMCs; the BMC runs from
// the files the supervisor writes (as `ironrack lab redfish-bmc` runs it),
// verified against the lab's CA; its power writes the power and requests
// files the supervisor follows to start and stop QEMU, exactly as
// ipmi_sim's chassis script does; a machine's quirk reaches its BMC; the
// rack sheet names each BMC's protocol and imports; the exports carry the
// lab's CA.
func TestRedfishLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("listens on port 443: needs root")
	}
	cfg := Config{Name: "rf", Machines: 3, Racks: 1, Redfish: 2, RedfishQuirks: map[int]string{2: "revert-boot"},
		Secret: "s", Subnet: netip.MustParsePrefix("127.0.24.0/24")}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	l := cfg.Layout()
	var protos []string
	for _, m := range l.Machines {
		protos = append(protos, m.Protocol())
	}
	if !slices.Equal(protos, []string{"redfish", "redfish", "ipmi"}) || l.Machines[1].RedfishQuirk != "revert-boot" || l.Machines[0].RedfishQuirk != "" {
		t.Fatalf("protocols %v, quirks %q %q", protos, l.Machines[0].RedfishQuirk, l.Machines[1].RedfishQuirk)
	}

	dir := t.TempDir()
	ca, err := redfishsim.NewCA("lab test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Machines[:2] {
		if err := writeMachine(dir, m); err != nil {
			t.Fatal(err)
		}
		if err := writeRedfish(dir, m, ca); err != nil {
			t.Fatal(err)
		}
		srv, err := RedfishBMC(machineDir(dir, m), nil)
		if err != nil {
			t.Fatal(err)
		}
		servetest.Run(t, 5*time.Second, srv.Serve)
	}
	if argv := redfishArgv(dir, l, Config{Binary: "/bin/ironrack"}, l.Machines[0]); !slices.Equal(argv[:5], []string{"ip", "netns", "exec", l.NS, "/bin/ironrack"}) ||
		!slices.Contains(argv, "redfish-bmc") || slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, l.Machines[0].BMCPassword) }) {
		t.Errorf("argv %q: want ironrack lab redfish-bmc in the namespace, no password", argv)
	}

	m := l.Machines[0]
	md := machineDir(dir, m)
	cred := bmcCredentials(m, ca.Pool())
	ctl := &ipmi.Controller{Timeout: 5 * time.Second}
	ctx := context.Background()
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(md, name))
		return strings.TrimSpace(string(b))
	}
	if st, err := ctl.PowerStatus(ctx, cred); err != nil || st != ipmi.StateOff {
		t.Fatalf("status: %s, %v", st, err)
	}
	steps := []struct {
		action ipmi.PowerAction
		power  string
	}{{ipmi.On, "1"}, {ipmi.Off, "0"}, {ipmi.On, "1"}, {ipmi.Cycle, "1"}}
	for _, s := range steps {
		if _, err := ctl.Power(ctx, cred, s.action, ipmi.PowerOptions{AllowReboot: true}); err != nil {
			t.Fatalf("%s: %v", s.action, err)
		}
		if got := read("power"); got != s.power {
			t.Errorf("after %s the power file reads %q, want %q", s.action, got, s.power)
		}
	}
	if got, want := strings.Fields(read("requests")), []string{"on", "off", "on", "reset"}; !slices.Equal(got, want) {
		t.Errorf("requests %q, want %q (what the supervisor follows)", got, want)
	}
	// The supervisor marks a machine whose QEMU ended as off; the BMC reads it.
	os.WriteFile(filepath.Join(md, "power"), []byte("0\n"), 0o644)
	if st, err := ctl.PowerStatus(ctx, cred); err != nil || st != ipmi.StateOff {
		t.Errorf("status after the VM ended: %s, %v", st, err)
	}
	// Another CA's pool is refused: the lab's BMCs are verified.
	other, _ := redfishsim.NewCA("other")
	if _, err := ctl.PowerStatus(ctx, bmcCredentials(m, other.Pool())); ipmi.Reason(err) != "tls" {
		t.Errorf("status with another CA: %v", err)
	}
	// Machine 2's quirk reached its BMC.
	_, err = (&ipmi.Controller{Timeout: 5 * time.Second}).SetBootDevice(ctx, bmcCredentials(l.Machines[1], ca.Pool()), ipmi.BootPXE, ipmi.BootOptions{})
	if ipmi.Reason(err) != "reverted" {
		t.Errorf("boot on the revert-boot BMC: %v", err)
	}

	sheet := filepath.Join(dir, SheetFile)
	if err := writeSheet(sheet, l.Machines); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(sheet)
	defer f.Close()
	rows, err := inventory.ParseSheet(sheet, f)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if r.BMCProtocol != l.Machines[i].Protocol() || r.BMCPassword != l.Machines[i].BMCPassword {
			t.Errorf("sheet row %d: protocol %s", i+1, r.BMCProtocol)
		}
	}
	env := Info(cfg, dir).Env()
	if !slices.Contains(env, [2]string{"IRONRACK_BMC_CA_FILE", filepath.Join(dir, BMCCAFile)}) {
		t.Errorf("exports lack the lab's CA: %v", env)
	}
	cfg.Redfish, cfg.RedfishQuirks = 0, nil
	for _, kv := range Info(cfg, dir).Env() {
		if kv[0] == "IRONRACK_BMC_CA_FILE" {
			t.Error("a lab without Redfish BMCs exports a CA file")
		}
	}
}

func TestRedfishConfigCheck(t *testing.T) {
	for name, c := range map[string]Config{
		"too many":      {Name: "x", Machines: 2, Racks: 1, Redfish: 3},
		"negative":      {Name: "x", Machines: 2, Racks: 1, Redfish: -1},
		"quirk not rf":  {Name: "x", Machines: 2, Racks: 1, Redfish: 1, RedfishQuirks: map[int]string{2: "stall"}},
		"unknown quirk": {Name: "x", Machines: 2, Racks: 1, Redfish: 1, RedfishQuirks: map[int]string{1: "sulk"}},
	} {
		if err := c.Check(); err == nil {
			t.Errorf("%s: %+v passed Check", name, c)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
