package agent

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// IPv6URL reports whether the boot server's URL (ironrack.url) names it by
// an IPv6 literal (http://[2001:db8::1]:8080): the agent then configures
// its NIC by DHCPv6 instead of DHCPv4.
func IPv6URL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(u.Hostname())
	return err == nil && a.Is6() && !a.Is4In6()
}

// LeaseAddr6 is the address a DHCPv6 Reply grants: the first IA_NA
// address, a global unicast IPv6 address with a nonzero valid lifetime.
// A Reply without one (NoAddrsAvail, a stateless server) is an error that
// says so, with the server's status message if it sent one.
func LeaseAddr6(reply *dhcpv6.Message) (netip.Addr, error) {
	if reply == nil {
		return netip.Addr{}, errors.New("dhcpv6: no reply")
	}
	if reply.MessageType != dhcpv6.MessageTypeReply {
		return netip.Addr{}, fmt.Errorf("dhcpv6: a %s, not a Reply", reply.MessageType)
	}
	if st := reply.Options.Status(); st != nil && st.StatusCode != 0 {
		return netip.Addr{}, fmt.Errorf("dhcpv6: server says %s: %s", st.StatusCode, st.StatusMessage)
	}
	for _, ia := range reply.Options.IANA() {
		if st := ia.Options.Status(); st != nil && st.StatusCode != 0 {
			return netip.Addr{}, fmt.Errorf("dhcpv6: no address: %s: %s", st.StatusCode, st.StatusMessage)
		}
		for _, a := range ia.Options.Addresses() {
			ip, ok := netip.AddrFromSlice(a.IPv6Addr)
			if ok && ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && a.ValidLifetime > 0 {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, errors.New("dhcpv6: the Reply grants no address (is the server stateful, with --dhcp6-range?)")
}

// Inet6Addr is one line of /proc/net/if_inet6 for an address.
type Inet6Addr struct {
	// Tentative: still in duplicate address detection (IFA_F_TENTATIVE).
	Tentative bool
	// Failed: duplicate address detection found the address in use
	// (IFA_F_DADFAILED).
	Failed bool
}

// Inet6State finds ip on nic in /proc/net/if_inet6's text (address, index,
// prefix length, scope, flags, name; hex fields) and reports its state;
// ok is false when the address is not there.
func Inet6State(procText []byte, nic string, ip netip.Addr) (st Inet6Addr, ok bool) {
	want := hex.EncodeToString(ip.AsSlice())
	sc := bufio.NewScanner(bytes.NewReader(procText))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[5] != nic || !strings.EqualFold(f[0], want) {
			continue
		}
		flags, err := strconv.ParseUint(f[4], 16, 32)
		if err != nil {
			return Inet6Addr{}, false
		}
		return Inet6Addr{Tentative: flags&0x40 != 0, Failed: flags&0x08 != 0}, true
	}
	return Inet6Addr{}, false
}
