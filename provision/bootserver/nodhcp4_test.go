package bootserver_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// TestNewNoDHCP4: an IPv6-only boot LAN's server has no "dhcp" part, and
// is refused without stateful DHCPv6 (its machines would get no address).
func TestNewNoDHCP4(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ipxe-src")
	os.MkdirAll(src, 0o755)
	for _, name := range []string{"undionly.kpxe", "ipxe.efi"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := bootserver.Config{
		DHCP:    dhcp.Config{Interface: "lo", Address: netip.MustParsePrefix("127.0.0.1/8")},
		DHCP6:   dhcp.Config6{Interface: "lo", Address: netip.MustParsePrefix("2001:db8::1/64")},
		DataDir: dir, IPXEDir: src, NoRA: true, NoDHCP4: true,
		Store: inventory.New(client, inventory.Config{Who: "test"}),
	}
	if _, err := bootserver.New(cfg); err == nil || !strings.Contains(err.Error(), "needs stateful DHCPv6") {
		t.Errorf("no DHCPv4, stateless DHCPv6: %v", err)
	}
	cfg.DHCP6.RangeFirst, cfg.DHCP6.RangeLast = netip.MustParseAddr("2001:db8::100"), netip.MustParseAddr("2001:db8::1ff")
	s, err := bootserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range s.Parts() {
		names = append(names, p.Name)
	}
	if slices.Contains(names, "dhcp") || !slices.Contains(names, "dhcp6") {
		t.Errorf("parts %v: want dhcp6 and no dhcp", names)
	}
}
