package bootserver_test

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
)

// TestIPv6OnlyDeployedBoot: a deployed machine whose ip is IPv6 (its
// DHCPv6 lease) boots its OS with the NoCloud seed at the boot server's
// [IPv6] URL and cloud-init's network-config= for its boot MAC (DHCPv6, no
// DHCPv4), and its user-data posts the host keys to the [IPv6] URL; an
// IPv4 machine of the same server keeps the IPv4 URLs and cloud-init's own
// network fallback. The deployed OS's Consul agent binds the recorded IPv6
// address (the image's default bind template takes the first IPv4 one).
// Real Consul (the adapter's store).
func TestIPv6OnlyDeployedBoot(t *testing.T) {
	inv, st := testInventory(t)
	inv.BaseURL, inv.BaseURL6 = "http://192.0.2.1:8080", "http://[2001:db8:b007::1]:8080"
	dir := images.Dir(inv.DataDir, "debian", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, images.KernelFile), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deployed := func(mac, serial, ip, join string) *inventory.DeploySpec {
		t.Helper()
		m, _, err := st.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Commission(ctx, m.ID, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(ctx, m.ID, inventory.Operator, inventory.Change{What: "ip", Why: "test"}, func(m *inventory.Machine) error {
			m.IP = ip
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, m.ID, "alice", "", inventory.Change{}); err != nil {
			t.Fatal(err)
		}
		_, spec, err := st.StartDeploy(ctx, m.ID, inventory.DeploySpec{Image: "debian", ImageVersion: "1", Hostname: serial,
			SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, ConsulJoin: join}, inventory.Change{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.FinishDeploy(ctx, m.ID, nil, inventory.Change{What: "deploy", Why: "test"}); err != nil {
			t.Fatal(err)
		}
		return spec
	}
	for name, c := range map[string]struct {
		mac, ip, base, join, bind string
		netcfg                    bool
	}{
		"ipv6-only": {"52:54:00:60:00:01", "2001:db8:b007::105", inv.BaseURL6, "2001:db8:b007::1", `"bind_addr": "2001:db8:b007::105"`, true},
		"ipv4":      {"52:54:00:60:00:02", "192.0.2.105", inv.BaseURL, "192.0.2.1", `"bind_addr": "{{ GetAllInterfaces`, false},
	} {
		t.Run(name, func(t *testing.T) {
			spec := deployed(c.mac, "v6-"+strings.ReplaceAll(name, "-", ""), c.ip, c.join)
			hw, _ := net.ParseMAC(c.mac)
			m, err := inv.MachineByMAC(ctx, hw)
			if err != nil {
				t.Fatal(err)
			}
			cl := m.Image.Cmdline
			if !strings.Contains(cl, "ds=nocloud-net;s="+c.base+"/nocloud/"+spec.NoCloudToken+"/") {
				t.Errorf("cmdline lacks the seed at %s:\n%s", c.base, cl)
			}
			_, frag, found := strings.Cut(cl, "network-config=")
			if found != c.netcfg {
				t.Fatalf("network-config= on the cmdline: %v, want %v:\n%s", found, c.netcfg, cl)
			}
			if found {
				raw, err := base64.StdEncoding.DecodeString(strings.Fields(frag)[0])
				if err != nil || !strings.Contains(string(raw), `macaddress: "`+c.mac+`"`) || !strings.Contains(string(raw), "dhcp4: false") {
					t.Errorf("network config %q (%v): want DHCPv6 only on %s", raw, err, c.mac)
				}
			}
			user, ok, err := inv.NoCloud(ctx, spec.NoCloudToken, "user-data")
			if err != nil || !ok {
				t.Fatalf("user-data: %v %v", ok, err)
			}
			if want := c.base + wire.HostKeysPath; !strings.Contains(string(user), want) {
				t.Errorf("user-data does not post the host keys to %s:\n%s", want, user)
			}
			if !strings.Contains(string(user), c.bind) {
				t.Errorf("the Consul agent's config lacks %s:\n%s", c.bind, user)
			}
		})
	}
}
