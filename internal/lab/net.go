package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ip runs `ip args...` with a 30 s bound; the error carries its output.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// buildNetwork creates the lab's namespace, bridge (Server/24 and every
// BMC's address /32 on it), the veth from the host (HostIP/24 on the host's
// end, IPv6 off there so the boot server's router advertisements configure
// nothing on the host), and a tap per machine on the bridge.
func buildNetwork(l Layout) error {
	nsArgs := func(args ...string) []string { return append([]string{"-n", l.NS}, args...) }
	steps := [][]string{
		{"netns", "add", l.NS},
		nsArgs("link", "set", "lo", "up"),
		nsArgs("link", "add", l.Bridge, "type", "bridge"),
		nsArgs("addr", "add", l.Server.String()+"/24", "dev", l.Bridge),
	}
	for _, m := range l.Machines {
		steps = append(steps, nsArgs("addr", "add", m.BMC.String()+"/32", "dev", l.Bridge))
	}
	steps = append(steps,
		nsArgs("link", "set", l.Bridge, "up"),
		[]string{"link", "add", l.HostLink, "type", "veth", "peer", "name", l.PeerLink, "netns", l.NS},
		nsArgs("link", "set", l.PeerLink, "master", l.Bridge, "up"),
	)
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+l.HostLink+"/disable_ipv6", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("disable IPv6 on %s: %w", l.HostLink, err)
	}
	steps = [][]string{
		{"addr", "add", l.HostIP.String() + "/24", "dev", l.HostLink},
		{"link", "set", l.HostLink, "up"},
	}
	for _, m := range l.Machines {
		steps = append(steps,
			nsArgs("tuntap", "add", "dev", m.Tap, "mode", "tap"),
			nsArgs("link", "set", m.Tap, "master", l.Bridge, "up"))
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// linkExists reports whether the host has a link called name.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// nsExists reports whether the namespace ns exists.
func nsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// subnetBase is where labs' /24s are taken from: 10.213.X.0/24.
var subnetBase = netip.MustParsePrefix("10.213.0.0/16")

// chooseSubnet picks the lab's /24: 10.213.X.0/24 with X from a hash of the
// name, moving on while the /24 overlaps an address or route of the host
// or the subnet of another lab in taken.
func chooseSubnet(name string, taken []netip.Prefix) (netip.Prefix, error) {
	busy, err := hostPrefixes()
	if err != nil {
		return netip.Prefix{}, err
	}
	busy = append(busy, taken...)
	h, _ := hex.DecodeString(hash8(name))
	b := subnetBase.Addr().As4()
	for i := range 256 {
		b[2] = h[0] + byte(i)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		free := true
		for _, o := range busy {
			if o.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in %s for lab %s: every one is used by the host or another lab", subnetBase, name)
}

// hostPrefixes are the host's IPv4 addresses (as their subnets) and its
// routes other than the default route.
func hostPrefixes() ([]netip.Prefix, error) {
	var ps []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
				ps = append(ps, p.Masked())
			}
		}
	}
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read the host's routes: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(f[1])
		mask, err2 := hex.DecodeString(f[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		bits := 0
		for m := binary.LittleEndian.Uint32(mask); m != 0; m >>= 1 {
			bits += int(m & 1)
		}
		if bits == 0 {
			continue // the default route covers everything
		}
		// the kernel prints the address as a host-order (little-endian) word
		d := [4]byte{dst[3], dst[2], dst[1], dst[0]}
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked())
	}
	return ps, nil
}
