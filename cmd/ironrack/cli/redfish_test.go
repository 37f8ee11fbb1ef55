package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/internal/redfishtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
)

// rfRack is a CLI against real Consul and a rack of redfishsim BMCs, each on
// its own address from 127.0.22.1 (as BMCs in a rack; ipmi.Bulk limits
// calls per address), imported as rack r22. TestImportPinsCertificate uses
// 127.0.23.1.
type rfRack struct {
	*rackEnv
	bmcs   []*redfishtest.BMC
	caFile string
}

// rfMachine is one BMC of the rack: its quirk, power at start, which CA
// signs its certificate (the site's or another), and its bmc_tls cell
// ("@pin" is replaced by its certificate's fingerprint).
type rfMachine struct {
	quirk   redfishsim.Quirk
	on      bool
	otherCA bool
	tls     string
}

func newRFRack(t *testing.T, ms []rfMachine) *rfRack {
	t.Helper()
	site, other := redfishtest.NewCA(t), redfishtest.NewCA(t)
	r := &rfRack{rackEnv: &rackEnv{cliEnv: newCLI(t)}, caFile: redfishtest.WriteCA(t, site)}
	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_port,bmc_protocol,bmc_username,bmc_password,bmc_tls,macs\n")
	for i, m := range ms {
		ca := site
		if m.otherCA {
			ca = other
		}
		b := redfishtest.Start(t, redfishtest.Options{Addr: netip.AddrFrom4([4]byte{127, 0, 22, byte(1 + i)}), CA: ca, On: m.on, Quirk: m.quirk})
		r.bmcs = append(r.bmcs, b)
		tls := m.tls
		if tls == "@pin" {
			tls = ipmi.Fingerprint(b.Leaf)
		}
		serial := fmt.Sprintf("S22-%03d", i)
		fmt.Fprintf(&sheet, "r22,%d,%s,%s,%d,redfish,%s,%s,%s,52:54:00:22:%02x:01\n", i+1, serial, b.Host, b.Port, b.Username, b.Password, tls, i)
		r.ids = append(r.ids, inventory.MachineID(serial))
	}
	file := filepath.Join(t.TempDir(), "r22.csv")
	if err := os.WriteFile(file, []byte(sheet.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ok("inventory", "import", file)
	return r
}

// rf runs a power or boot command against the site's CA file.
func (r *rfRack) rf(args ...string) (map[string]provision.Outcome, string, error) {
	return r.outcomes(append([]string{"--bmc-ca-file", r.caFile}, args...)...)
}

func hasWarning(ws []string, code string) bool {
	return slices.ContainsFunc(ws, func(w string) bool { return strings.HasPrefix(w, code+":") })
}

// TestRedfishCLI runs ironrack's power and boot commands against Redfish
// BMCs (redfishsim over TLS, a certificate from a test CA): status, on,
// off, cycle and reset verified by reading back, the boot override, each
// quirk ending in its class with the real delays (3 s applied within the
// 5 s deadline, 20 s past it), a certificate from an unknown CA refused, a
// pinned one accepted, and insecure warning on every use.
func TestRedfishCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul; skipped with -short")
	}
	r := newRFRack(t, []rfMachine{
		0: {on: true},
		1: {quirk: redfishsim.QuirkSlowPower},
		2: {quirk: redfishsim.QuirkLatePower},
		3: {quirk: redfishsim.QuirkRevertBoot, on: true},
		4: {quirk: redfishsim.QuirkIgnoreReset},
		5: {quirk: redfishsim.QuirkStall},
		6: {otherCA: true, on: true},
		7: {otherCA: true, on: true, tls: "@pin"},
		8: {otherCA: true, on: true, tls: "insecure"},
	})
	ids, bmcs := r.ids, r.bmcs

	t.Run("status, on, off, cycle, reset", func(t *testing.T) {
		got, _, err := r.rf("power", "status", ids[0])
		if o := got[ids[0]]; err != nil || o.After != "on" || o.BMC != fmt.Sprintf("%s:%d", bmcs[0].Host, bmcs[0].Port) {
			t.Fatalf("status: %+v, %v", o, err)
		}
		got, _, err = r.rf("power", "off", "--allow-reboot", ids[0])
		if o := got[ids[0]]; err != nil || !o.Changed || o.After != "off" {
			t.Fatalf("off: %+v, %v", o, err)
		}
		got, _, err = r.rf("power", "on", ids[0])
		if o := got[ids[0]]; err != nil || !o.Changed || o.After != "on" {
			t.Fatalf("on: %+v, %v", o, err)
		}
		// cycle is bmclib's ForceRestart: a reset, the power stays on, so the
		// off period cannot be seen and the row says so.
		got, _, err = r.rf("power", "cycle", "--allow-reboot", ids[0])
		if o := got[ids[0]]; err != nil || !o.Changed || o.After != "on" || !hasWarning(o.Warnings, "not-verified") {
			t.Fatalf("cycle: %+v, %v", o, err)
		}
		// reset is bmclib's PowerCycle: off for a second, then on.
		got, _, err = r.rf("power", "reset", "--allow-reboot", ids[0])
		if o := got[ids[0]]; err != nil || !o.Changed || o.After != "on" {
			t.Fatalf("reset: %+v, %v", o, err)
		}
		if c, want := bmcs[0].Chassis.Calls(), []string{"off", "on", "reset", "off", "on"}; !slices.Equal(c, want) {
			t.Errorf("chassis saw %q, want %q", c, want)
		}
	})

	t.Run("boot override", func(t *testing.T) {
		got, _, err := r.rf("boot", "pxe", "--persistent", "--efi", ids[0])
		if o := got[ids[0]]; err != nil || o.After != "pxe (persistent, efi)" || len(o.Warnings) != 0 {
			t.Fatalf("boot pxe persistent efi: %+v, %v", o, err)
		}
		if en, tg, md := bmcs[0].Boot(); en != "Continuous" || tg != "Pxe" || md != "UEFI" {
			t.Errorf("BMC holds %s %s %s", en, tg, md)
		}
		got, _, err = r.rf("boot", "disk", ids[0])
		if o := got[ids[0]]; err != nil || o.After != "disk (once, legacy)" {
			t.Fatalf("boot disk: %+v, %v", o, err)
		}
		if en, tg, md := bmcs[0].Boot(); en != "Once" || tg != "Hdd" || md != "Legacy" {
			t.Errorf("BMC holds %s %s %s", en, tg, md)
		}
	})

	t.Run("quirks end in their class", func(t *testing.T) {
		start := time.Now()
		// One command, so the three share the 5 s deadline.
		got, _, err := r.rf("power", "on", ids[1], ids[2], ids[4])
		if err == nil {
			t.Error("power on with a late BMC succeeded")
		}
		if o := got[ids[1]]; o.Result != "ok" || o.After != "on" {
			t.Errorf("slow-power (applied after 3 s): %+v", o)
		}
		if o := got[ids[2]]; o.Reason != "not-applied" {
			t.Errorf("late-power (applied after 20 s): %+v", o)
		}
		t.Logf("power on: %v", time.Since(start))
		if el := time.Since(start); el < 3*time.Second || el > 15*time.Second {
			t.Errorf("took %v, want the 5 s deadline", el)
		}
		if o := got[ids[4]]; o.Reason != "not-applied" || bmcs[4].Resets() != 1 {
			t.Errorf("ignore-reset: %+v, %d resets received", o, bmcs[4].Resets())
		}
		got, _, _ = r.rf("boot", "pxe", ids[3])
		if o := got[ids[3]]; o.Reason != "reverted" || !strings.Contains(o.Error, "reverted by BMC") {
			t.Errorf("revert-boot: %+v", o)
		}
		start = time.Now()
		got, _, _ = r.rf("power", "status", "--timeout", "2s", "--retries", "0", ids[5])
		if o := got[ids[5]]; o.Reason != "timeout" {
			t.Errorf("stall: %+v", o)
		}
		if el := time.Since(start); el > 8*time.Second {
			t.Errorf("a stalled BMC took %v, want its 2 s deadline", el)
		}
	})

	t.Run("certificates", func(t *testing.T) {
		got, all, err := r.rf("power", "status", ids[6], ids[7], ids[8])
		if err == nil || !strings.Contains(err.Error(), ids[6]+" tls") {
			t.Errorf("unknown CA: err %v", err)
		}
		if o := got[ids[6]]; o.Reason != "tls" || !strings.Contains(o.Error, "BMC certificate not trusted") ||
			!strings.Contains(o.Error, "certificate signed by unknown authority") {
			t.Errorf("unknown CA: %+v", o)
		}
		if o := got[ids[7]]; o.Result != "ok" || o.After != "on" || len(o.Warnings) != 0 {
			t.Errorf("pinned: %+v", o)
		}
		if o := got[ids[8]]; o.Result != "ok" || !hasWarning(o.Warnings, "tls-insecure") {
			t.Errorf("insecure: %+v", o)
		}
		if !strings.Contains(all, "BMC TLS not verified") {
			t.Errorf("insecure use not logged:\n%s", all)
		}
		// Without --bmc-ca-file the site's CA is unknown too (system roots).
		got, _, _ = r.outcomes("power", "status", ids[0])
		if o := got[ids[0]]; o.Reason != "tls" {
			t.Errorf("no CA file: %+v", o)
		}
		// A bad CA file is named.
		bad := filepath.Join(t.TempDir(), "ca.pem")
		os.WriteFile(bad, []byte("not a cert\n"), 0o644)
		if _, _, err := r.run("", "--bmc-ca-file", bad, "power", "status", ids[0]); err == nil || !strings.Contains(err.Error(), bad+":1: no PEM certificate") {
			t.Errorf("bad CA file: %v", err)
		}
	})
}

// TestImportPinsCertificate: bmc_tls "pin" fetches the BMC's certificate at
// import and pins it once the operator confirms its fingerprint; off a
// terminal the import refuses, naming the line and the fingerprint to
// check; a refused fingerprint or an unreachable BMC imports nothing.
func TestImportPinsCertificate(t *testing.T) {
	b := redfishtest.Start(t, redfishtest.Options{Addr: netip.MustParseAddr("127.0.23.1"), On: true})
	fp := ipmi.Fingerprint(b.Leaf)
	sheet := fmt.Sprintf("rack,slot,serial,bmc_address,bmc_port,bmc_protocol,bmc_username,bmc_password,bmc_tls\n"+
		"r23,1,S23-1,%s,%d,redfish,%s,%s,pin\n", b.Host, b.Port, b.Username, b.Password)
	parse := func() []inventory.SheetRow {
		rows, err := inventory.ParseSheet("r23.csv", strings.NewReader(sheet))
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	ctx := context.Background()

	var asked string
	rows := parse()
	if err := resolvePins(ctx, "r23.csv", rows, 5*time.Second, func(q string) (bool, error) { asked = q; return true, nil }); err != nil {
		t.Fatal(err)
	}
	if rows[0].BMCTLS != fp || !strings.Contains(asked, "r23.csv:2: BMC "+b.Host) || !strings.Contains(asked, fp) {
		t.Errorf("pinned %q after asking %q, want %s", rows[0].BMCTLS, asked, fp)
	}
	rows = parse()
	err := resolvePins(ctx, "r23.csv", rows, 5*time.Second, func(string) (bool, error) { return false, nil })
	if err == nil || !strings.Contains(err.Error(), "r23.csv:2: bmc_tls: pin: fingerprint "+fp+" of BMC") {
		t.Errorf("refused fingerprint: %v", err)
	}
	unreach := strings.Replace(sheet, fmt.Sprint(b.Port), "1", 1)
	rows, _ = inventory.ParseSheet("r23.csv", strings.NewReader(unreach))
	if err := resolvePins(ctx, "r23.csv", rows, 5*time.Second, nil); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable BMC: %v", err)
	}

	if testing.Short() {
		return
	}
	// Through the CLI, off a terminal: refused with what to do, nothing stored.
	c := newCLI(t)
	file := filepath.Join(t.TempDir(), "r23.csv")
	os.WriteFile(file, []byte(sheet), 0o600)
	_, _, err = c.run("", "inventory", "import", file)
	if err == nil || !strings.Contains(err.Error(), file+":2: bmc_tls: pin: BMC "+b.Host) || !strings.Contains(err.Error(), fp) ||
		!strings.Contains(err.Error(), "not a terminal") {
		t.Fatalf("import with pin off a terminal: %v", err)
	}
	if out := c.ok("-o", "json", "inventory", "list", "--rack", "r23"); strings.Contains(out, "S23-1") {
		t.Errorf("a refused import stored the machine:\n%s", out)
	}
	// The confirmed fingerprint written in the sheet imports, and is used.
	os.WriteFile(file, []byte(strings.Replace(sheet, ",pin\n", ","+strings.ToUpper(fp)+"\n", 1)), 0o600)
	c.ok("inventory", "import", file)
	if out := c.ok("-o", "json", "inventory", "show", "S23-1"); !strings.Contains(out, `"tls": "`+fp+`"`) {
		t.Errorf("stored record lacks the pin:\n%s", out)
	}
	if out := c.ok("power", "status", "S23-1"); !strings.Contains(out, "1 ok, 0 failed") {
		t.Errorf("status through the pin:\n%s", out)
	}
}

// TestParseCAFile: every certificate of a site's CA file is taken; a block
// that is not a certificate, or does not parse, is named by FILE:LINE.
func TestParseCAFile(t *testing.T) {
	a, b := redfishtest.NewCA(t), redfishtest.NewCA(t)
	good := append(append([]byte("# the site's BMC CAs\n"), a.PEM()...), b.PEM()...)
	pool, err := parseCAFile("ca.pem", good)
	if err != nil || !pool.Equal(func() *x509.CertPool { p := a.Pool(); p.AddCert(b.Cert); return p }()) {
		t.Fatalf("two CAs: %v", err)
	}
	lines := strings.Count(string(a.PEM()), "\n")
	for name, tc := range map[string]struct {
		data string
		want string
	}{
		"empty":   {"", "ca.pem:1: no PEM certificate"},
		"a key":   {string(a.PEM()) + "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", fmt.Sprintf("ca.pem:%d: a EC PRIVATE KEY block, want CERTIFICATE", lines+1)},
		"not DER": {"\n\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca.pem:3: certificate: x509:"},
	} {
		if _, err := parseCAFile("ca.pem", []byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
