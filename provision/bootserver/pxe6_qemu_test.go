package bootserver_test

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
)

// pxe6Wait bounds TestUEFIPXEBootIPv6: OVMF on q35 under TCG on a busy
// machine, a TFTP fetch of ipxe.efi, then iPXE and the agent.
const pxe6Wait = 8 * time.Minute

// TestUEFIPXEBootIPv6: an unknown machine boots by OVMF's own PXE over
// IPv6 against the boot server alone. The firmware has IPv4 off (fw_cfg
// IPv4Support=no, IPv4PXESupport=no: no PXEv4, no HTTPv4) and no NIC ROM,
// so its first entry is PXEv6: it solicits DHCPv6 with arch 7 and vendor
// class PXEClient (its DUID is a DUID-UUID: the server finds the MAC in the
// EUI-64 link-local source), gets an address and option 59
// tftp://[2001:db8:b007::1]/ipxe.efi (no option 16: see TestReply6UEFIPXE),
// fetches ipxe.efi over TFTP on IPv6, and iPXE takes the machine to the
// agent, whose facts commission it in Consul; the DHCPv6 lease is in Consul
// too. The firmware stage is IPv6 only; the lab's segment also carries
// DHCPv4, which iPXE and the agent (DHCPv4 only) still use, as in
// TestUEFIHTTPBootIPv6 (docs/boot-server.md, Outside CI).
//
// Outside CI (minutes of TCG): run it with
//
//	IRONRACK_QEMU_ALL=1 go test ./provision/bootserver -run TestUEFIPXEBootIPv6 -count=1 -v -timeout 15m
func TestUEFIPXEBootIPv6(t *testing.T) {
	if os.Getenv("IRONRACK_QEMU_ALL") == "" {
		t.Skip("outside CI (minutes of TCG); IRONRACK_QEMU_ALL=1 runs it")
	}
	l := labtest.New(t, labtest.Config{IPv6Only: true})
	for _, f := range []string{labtest.OVMFCode4M, labtest.OVMFVars4M} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
		}
	}
	mac := "52:54:00:40:00:16"
	start := time.Now()
	v := l.Start(labtest.VMSpec{MAC: mac, Serial: "PXE-V6", PXEBoot6: true,
		UUID: "6a0f3c1e-0000-4000-8000-000000000016", MemMiB: 1024, CPUs: 1, DiskGB: 1})
	t.Cleanup(func() {
		if t.Failed() {
			// The firmware's own words (">>Start PXE over IPv6", "Station
			// IP address is", PXE-E errors) are on the console.
			t.Logf("console (head):\n%s", head(v.Console(), 60))
		}
	})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(pxe6Wait))
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, l.LogTail(80))
	}
	t.Logf("IPv6 PXE boot to ready in %v", time.Since(start).Round(time.Second))
	checkFactsIn(t, v, m, netip.MustParsePrefix("2001:db8:b007::/64"))

	log := l.LogTail(5000)
	// The firmware's offer: option 59 names ipxe.efi over TFTP on the
	// server's IPv6 address.
	if want := `file=tftp://[` + labtest.ServerIP6 + `]/ipxe.efi`; !strings.Contains(log, want) {
		t.Errorf("no DHCPv6 reply handed out %s:\n%s", want, labtest.Tail(log, 60))
	}
	// ipxe.efi went over TFTP to an IPv6 peer in the boot prefix.
	sent := regexp.MustCompile(`msg="tftp: sent" file=ipxe.efi peer=(\S+)`).FindAllStringSubmatch(log, -1)
	v6 := false
	for _, s := range sent {
		t.Logf("tftp: ipxe.efi sent to %s", s[1])
		v6 = v6 || strings.HasPrefix(s[1], "[2001:db8:b007::")
	}
	if !v6 {
		t.Errorf("ipxe.efi was not sent over TFTP to an IPv6 peer (%v):\n%s", sent, labtest.Tail(log, 60))
	}
	if strings.Contains(log, "/ipxe/ipxe.efi") {
		t.Errorf("an HTTP boot URL was handed out: the firmware took HTTPv6, not PXEv6")
	}
	h := strings.Join(l.History(m.ID), "\n")
	for _, w := range []string{"enlist: network boot from an unknown MAC", "boot agent discover", "commission: facts from the discovery agent"} {
		if !strings.Contains(h, w) {
			t.Errorf("history lacks %q:\n%s", w, h)
		}
	}
	checkLease6(t, l, mac)
	// The lab's segment is IPv6-only (its boot server serves no DHCPv4,
	// NoDHCP4): iPXE fetched its script and the agent reported over
	// IPv6.
	con, err := os.ReadFile(v.SerialLog)
	if err != nil {
		t.Fatal(err)
	}
	u := regexp.MustCompile(`ironrack-agent: mode=\S+ url=(\S+)`).FindSubmatch(con)
	if u == nil || !strings.HasPrefix(string(u[1]), "http://["+labtest.ServerIP6+"]") {
		t.Errorf("the agent did not report over IPv6 (url %q)", u)
	}
}

// head is the first n lines of s.
func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
