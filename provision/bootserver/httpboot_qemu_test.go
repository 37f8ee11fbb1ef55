package bootserver_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
)

// httpBootWait bounds one UEFI HTTP boot test: OVMF on q35 under TCG, on a
// busy machine, then iPXE and the agent.
const httpBootWait = 5 * time.Minute

// TestUEFIHTTPBootIPv4: an unknown machine boots by UEFI HTTP boot over
// IPv4 against the boot server alone: OVMF's own stack (no NIC ROM, only
// its HTTPv4 entry) asks DHCPv4 as HTTPClient arch 16, gets the URL of
// ipxe.efi, fetches it over HTTP, and iPXE takes the machine to the agent,
// whose facts commission it in Consul.
func TestUEFIHTTPBootIPv4(t *testing.T) {
	uefiHTTPBoot(t, 4)
}

// TestUEFIHTTPBootIPv6: the same over IPv6: the router advertisement
// carries the prefix and M/O, OVMF's HTTPv6 entry solicits DHCPv6 (its
// DUID is a DUID-UUID: the server finds its MAC in the EUI-64 link-local
// source address), gets option 59 with the bracketed URL of ipxe.efi and
// option 16 HTTPClient, fetches it over IPv6, and the agent's facts land
// in Consul; the DHCPv6 lease is in Consul too. The VM waits a few seconds
// in OVMF's boot menu (labtest: HTTPBoot 6) so that its link-local address
// has finished duplicate address detection before the HTTPv6 entry starts
// DHCPv6 (docs/boot-server.md, UEFI HTTP boot over IPv6).
func TestUEFIHTTPBootIPv6(t *testing.T) {
	uefiHTTPBoot(t, 6)
}

func uefiHTTPBoot(t *testing.T, ipv int) {
	l := labtest.New(t, labtest.Config{IPv6: ipv == 6})
	for _, f := range []string{labtest.OVMFCode4M, labtest.OVMFVars4M} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("needs ovmf (scripts/setup installs it): %v", err)
		}
	}
	mac := "52:54:00:40:00:04"
	if ipv == 6 {
		mac = "52:54:00:40:00:06"
	}
	start := time.Now()
	v := l.Start(labtest.VMSpec{MAC: mac, Serial: "HTTP-V" + string(rune('0'+ipv)), HTTPBoot: ipv,
		UUID: "6a0f3c1e-0000-4000-8000-00000000000" + string(rune('0'+ipv)), MemMiB: 1024, CPUs: 1, DiskGB: 1})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(httpBootWait))
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, l.LogTail(60))
	}
	t.Logf("IPv%d HTTP boot to ready in %v", ipv, time.Since(start).Round(time.Second))
	checkFacts(t, v, m)
	log := l.LogTail(5000)
	want := `file=http://192.0.2.1:8080/ipxe/ipxe.efi`
	if ipv == 6 {
		want = `file=http://[` + labtest.ServerIP6 + `]:8080/ipxe/ipxe.efi`
	}
	if !strings.Contains(log, want) {
		t.Errorf("no reply handed out %s:\n%s", want, labtest.Tail(log, 60))
	}
	if strings.Contains(log, `msg="tftp: sent"`) {
		t.Errorf("the machine fetched something over TFTP: not an HTTP boot")
	}
	h := strings.Join(l.History(m.ID), "\n")
	for _, w := range []string{"enlist: network boot from an unknown MAC", "boot agent discover", "commission: facts from the discovery agent"} {
		if !strings.Contains(h, w) {
			t.Errorf("history lacks %q:\n%s", w, h)
		}
	}
	if ipv == 6 {
		checkLease6(t, l, mac)
	}
}

// checkLease6 checks that Consul holds a DHCPv6 lease for mac in the lab's
// IPv6 prefix.
func checkLease6(t *testing.T, l *labtest.Lab, mac string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ls, err := l.Store.Leases6(ctx)
	found := false
	for _, x := range ls {
		found = found || x.MAC == mac && strings.HasPrefix(x.IP, "2001:db8:b007::")
	}
	if err != nil || !found {
		t.Errorf("no DHCPv6 lease for %s in Consul: %+v, %v", mac, ls, err)
	}
}
