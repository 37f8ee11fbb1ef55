package provision_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
	"github.com/ironrack/ironrack/playbooks/remote"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/provision/ready"
)

// TestDeployIPv6OnlyQEMU: an IPv6-only machine is discovered, deployed and
// reached over SSH on IPv6. The lab's boot LAN offers no IPv4 to anyone
// (labtest IPv6Only: stateful DHCPv6 and the RA's M/O flags; DHCPv4 off
// its ports). The machine boots by UEFI HTTP boot over IPv6 (as
// TestUEFIHTTPBootIPv6), iPXE asks DHCPv6 and fetches its script over
// IPv6, the agent takes a DHCPv6 lease and reports its facts to the
// bracketed IPv6 URL; its v6 lease is its ip in the inventory. It is then
// deployed with the Debian image through the same workflow
// TestDeployDebianQEMU uses (BMC power-on, the agent writes the image over
// IPv6, reboots); the deployed OS gets its network from the
// network-config= fragment the boot server adds for an IPv6-only machine
// (DHCPv6, no DHCPv4), fetches its NoCloud seed from the [IPv6] URL and
// posts its host keys there. provision/ready then logs in over SSH on the
// recorded IPv6 address with the recorded host keys (playbooks/hostkeys,
// strict), and playbooks/remote runs commands that show the address is
// the recorded one and that the machine has no IPv4 address.
//
// Outside CI (about 10-20 minutes of TCG): IRONRACK_QEMU_ALL=1.
func TestDeployIPv6OnlyQEMU(t *testing.T) {
	if os.Getenv("IRONRACK_QEMU_ALL") == "" {
		t.Skip("outside CI (10-20 min of TCG); IRONRACK_QEMU_ALL=1 runs it")
	}
	l := labtest.New(t, labtest.Config{IPv6Only: true, Tools: []string{"debootstrap", "mkfs.ext4", "ipmi_sim"}})
	ctx := context.Background()
	l.DebianImage()
	key := labtest.NewSSHKey(t)
	prefix := netip.MustParsePrefix(labtest.ServerCIDR6).Masked()
	base6 := "http://[" + labtest.ServerIP6 + "]:8080"

	mac := "52:54:00:60:00:66"
	start := time.Now()
	v := l.Start(labtest.VMSpec{MAC: mac, Serial: "V6ONLY-1", HTTPBoot: 6, UUID: "6a0f3c1e-0000-4000-8000-000000000066",
		MemMiB: 1024, CPUs: 1, DiskGB: 2, Reboot: true})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(8*time.Minute))
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, l.LogTail(80))
	}
	t.Logf("discovered over IPv6 in %v", time.Since(start).Round(time.Second))
	ip, err := netip.ParseAddr(m.IP)
	if err != nil || !prefix.Contains(ip) {
		t.Fatalf("machine ip %q: want its DHCPv6 lease in %s", m.IP, prefix)
	}
	if !strings.Contains(labtest.Tail(v.Console(), 400), "ironrack-agent: dhcpv6 on") {
		t.Errorf("the agent did not configure its NIC by DHCPv6:\n%s", labtest.Tail(v.Console(), 40))
	}
	if ls, err := l.Store.Leases(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, x := range ls {
			if x.MAC == mac {
				t.Errorf("the machine has a DHCPv4 lease on an IPv6-only LAN: %+v", x)
			}
		}
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("discovered VM did not power off")
	}
	l.AttachBMC(v, netip.MustParseAddr("127.0.31.66"), m.ID)

	d := deployer(l)
	var evs events
	res := d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "debian",
		Hostnames: map[string]string{m.ID: "v6-1"}, SSHKeys: []string{key.Authorized}, Role: "web", Timeout: 15 * time.Minute, Progress: evs.add})
	t.Logf("deploy events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateDeployed {
		t.Fatalf("deploy: %+v\nconsole:\n%s\nserver log:\n%s", res, labtest.Tail(v.Console(), 40), l.LogTail(60))
	}

	// The first boot posts its host keys to the [IPv6] URL of its seed.
	deadline := time.Now().Add(8 * time.Minute)
	for {
		if m, err = l.Store.Get(ctx, m.ID); err == nil && len(m.HostKeys) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no host keys recorded (%v)\nconsole:\n%s\nserver log:\n%s", err, labtest.Tail(v.Console(), 60), l.LogTail(60))
		}
		time.Sleep(2 * time.Second)
	}
	if m.IP != ip.String() {
		t.Errorf("machine ip changed from %s to %s across the deploy", ip, m.IP)
	}
	posted := false
	for _, line := range strings.Split(l.LogTail(100000), "\n") {
		posted = posted || strings.Contains(line, "httpboot: host keys recorded") && strings.Contains(line, "remote=["+ip.String()+"]:")
	}
	if !posted {
		t.Errorf("the boot server logged no host-key report from [%s]", ip)
	}

	// SSH on the recorded IPv6 address, trusting only the recorded keys.
	trust, err := hostkeys.New(hostkeys.Hosts([]*inventory.Machine{m}, 22), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(m.IP, "22")
	rc := ready.Config{SSH: &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback: trust.HostKeyCallback(), Timeout: 10 * time.Second}, Command: "cloud-init status --wait >/dev/null; true"}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := l.NS.Do(func() error { return rc.Wait(rctx, ready.Target{ID: m.ID, Addr: addr}) }); err != nil {
		t.Fatalf("ready: %v\nconsole:\n%s", err, labtest.Tail(v.Console(), 40))
	}

	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := l.NS.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, a)
			return err
		})
		return c, err
	}
	c, err := remote.Dial(ctx, remote.Target{ID: m.ID, Addr: addr}, remote.Options{HostKeyCallback: trust.HostKeyCallback(),
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)}, DialContext: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := func(cmd string) string {
		t.Helper()
		var out, errb bytes.Buffer
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if code, err := c.Run(rctx, cmd, nil, &out, &errb); err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v: %s%s", cmd, code, err, out.String(), errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	if h := run("hostname"); h != "v6-1" {
		t.Errorf("hostname %q, want v6-1 (from the seed)", h)
	}
	if s := run("cloud-init status"); !strings.Contains(s, "done") {
		t.Errorf("cloud-init status: %q", s)
	}
	if v4 := run("ip -4 -o addr show scope global"); v4 != "" {
		t.Errorf("the deployed OS has IPv4 addresses:\n%s", v4)
	}
	if v4 := run("ip -4 route show"); v4 != "" {
		t.Errorf("the deployed OS has IPv4 routes:\n%s", v4)
	}
	v6 := run("ip -6 -o addr show scope global")
	if !strings.Contains(v6, " "+ip.String()+"/") {
		t.Errorf("the deployed OS lacks its recorded address %s:\n%s", ip, v6)
	}
	cmdline := run("cat /proc/cmdline")
	if !strings.Contains(cmdline, "s="+base6+"/nocloud/") || !strings.Contains(cmdline, "network-config=") {
		t.Errorf("kernel command line lacks the [IPv6] seed URL or the network config:\n%s", cmdline)
	}
	if keys := run("cat /root/.ssh/authorized_keys"); !strings.Contains(keys, strings.Fields(key.Authorized)[1]) {
		t.Errorf("root's authorized_keys lacks the deploy's key:\n%s", keys)
	}
	t.Logf("IPv6-only machine %s deployed and reached at %s in %v; its addresses:\n%s", m.ID, addr, time.Since(start).Round(time.Second), v6)
}
