package netpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/ironrack/ironrack/inventory"
)

// Table is the nftables table ironrack owns on every machine: family inet,
// name ironrack. Nothing else on the host is touched.
const Table = "ironrack"

// versionComment prefixes the version in the table's comment and in the
// input chain's first rule's comment, where plan and status read it.
const versionComment = "ironrack version "

// Set is one named set of a ruleset: the addresses of a group of sources.
type Set struct {
	// Name is the nftables set's name, e.g. tier_storage_v4.
	Name string
	// Type is ipv4_addr or ipv6_addr.
	Type string
	// Interval is set for sets that may hold CIDRs (admins, drainers,
	// cidrs selectors); tier, tag and where sets hold host addresses.
	Interval bool
	// Elements are the addresses (CIDR form for prefixes), sorted.
	Elements []string
	// joined is Elements joined by ", ", rendered once per Compile.
	joined string
}

// Ruleset is one machine's rendered firewall.
type Ruleset struct {
	Machine string
	// Version is a hash of the rules and set declarations, without the
	// sets' elements: membership changes do not change it. It is the
	// table's comment on the host.
	Version string
	// Sets are the named sets the rules use, sorted by name.
	Sets []Set
	// Text is the nft -f input: it replaces the ironrack table, and only
	// it, in one transaction.
	Text string
	// Comments are the comments of the rules, in order (plan compares
	// them with the host's when the versions differ).
	Comments []string
}

var ruleComment = regexp.MustCompile(`comment "([^"]*)"$`)

// comments are the comments of rules that have one.
func comments(rules ...[]string) []string {
	var out []string
	for _, rs := range rules {
		for _, r := range rs {
			if m := ruleComment.FindStringSubmatch(r); m != nil {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// group is a set of sources, split by family, rendered once per Compile.
type group struct {
	base     string
	interval bool
	v4, v6   []netip.Prefix
	sets     []Set
}

// Compiled is a policy resolved against one view of the inventory: every
// source group's addresses, computed once for all machines.
type Compiled struct {
	p        *Policy
	machines []*inventory.Machine
	groups   map[string]*group
}

// Compile resolves p's source groups against machines.
func Compile(p *Policy, machines []*inventory.Machine) *Compiled {
	c := &Compiled{p: p, machines: machines, groups: map[string]*group{}}
	c.add("admins", true, p.Admins)
	c.add("drainers", true, p.Drainers)
	c.add("members", false, []Selector{{Any: true}})
	for _, r := range p.Rules {
		c.add(setBase(r.From), len(r.From.CIDRs) > 0, []Selector{r.From})
	}
	return c
}

func (c *Compiled) add(base string, interval bool, sel []Selector) {
	if _, ok := c.groups[base]; ok {
		return
	}
	g := &group{base: base, interval: interval}
	for _, p := range addrsOf(sel, c.machines) {
		if p.Addr().Is4() {
			g.v4 = append(g.v4, p)
		} else {
			g.v6 = append(g.v6, p)
		}
	}
	g.sets = []Set{
		{Name: base + "_v4", Type: "ipv4_addr", Interval: interval, Elements: elements(g.v4), joined: strings.Join(elements(g.v4), ", ")},
		{Name: base + "_v6", Type: "ipv6_addr", Interval: interval, Elements: elements(g.v6), joined: strings.Join(elements(g.v6), ", ")},
	}
	c.groups[base] = g
}

// addrsOf are the addresses sel selects: their CIDRs and the addresses of
// the machines they match, sorted and without duplicates.
func addrsOf(sel []Selector, machines []*inventory.Machine) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range sel {
		out = append(out, s.CIDRs...)
		if len(s.CIDRs) > 0 {
			continue
		}
		for _, m := range machines {
			a, err := netip.ParseAddr(m.IP)
			if err != nil || !s.Matches(m) {
				continue
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// setBase names a rule source's set: tier_NAME for tiers, otherwise a
// short hash of the selector (tag_, where_, cidr_), so names stay valid
// nftables identifiers whatever the selector says.
func setBase(s Selector) string {
	if s.Tier != "" && validIdent(s.Tier) && len(s.Tier) <= 40 {
		return "tier_" + s.Tier
	}
	h := sha256.Sum256([]byte(s.String()))
	kind := "sel"
	switch {
	case s.Tier != "":
		kind = "tier"
	case s.Tag != "":
		kind = "tag"
	case s.Where != "":
		kind = "where"
	case len(s.CIDRs) > 0:
		kind = "cidr"
	}
	return kind + "_" + hex.EncodeToString(h[:5])
}

func validIdent(s string) bool {
	for i, r := range s {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

func elements(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

// sets are the v4 and v6 sets of group base (shared by every machine's
// Ruleset: read only).
func (c *Compiled) sets(base string) []Set { return c.groups[base].sets }

// Render renders machine m's ruleset.
func Render(p *Policy, machines []*inventory.Machine, m *inventory.Machine) *Ruleset {
	return Compile(p, machines).Render(m)
}

// Render renders machine m's ruleset: input policy drop; established and
// related, loopback, the failsafe rules, then the policy's grants for m.
func (c *Compiled) Render(m *inventory.Machine) *Ruleset {
	rules, sets := c.rules(m)
	rs := &Ruleset{Machine: m.ID, Sets: sets}
	var output []string
	if ms := c.p.Mesh; ms != nil {
		output = append(output, fmt.Sprintf(`oifname %q ct state new drop comment "machines reach nothing through the mesh"`, ms.Interface))
	}
	rs.Comments = comments(rules, output)
	skeleton := renderText("", rs.Sets, rules, output, "", false)
	h := sha256.Sum256([]byte(skeleton))
	rs.Version = "v1-" + hex.EncodeToString(h[:6])
	rs.Text = renderText(fmt.Sprintf("# ironrack firewall for %s, from %s, version %s\n", m.ID, c.p.File, rs.Version),
		rs.Sets, rules, output, rs.Version, true)
	return rs
}

// SetsFor are the sets machine m's ruleset uses, without rendering it:
// what the watcher compares and pushes.
func (c *Compiled) SetsFor(m *inventory.Machine) []Set {
	_, sets := c.rules(m)
	return sets
}

// rules are m's input rules and the sets they use, sorted by name.
func (c *Compiled) rules(m *inventory.Machine) ([]string, []Set) {
	var rules []string
	used := map[string]bool{}
	accept := func(base, match, comment string) {
		used[base] = true
		rules = append(rules,
			fmt.Sprintf("ip saddr @%s_v4 %s accept comment %q", base, match, comment),
			fmt.Sprintf("ip6 saddr @%s_v6 %s accept comment %q", base, match, comment))
	}
	rules = append(rules,
		`ct state established,related accept`,
		`ct state invalid drop`,
		`iif "lo" accept`,
		`meta l4proto icmp accept comment "failsafe: ICMP"`,
		`icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, echo-reply, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept comment "failsafe: ICMPv6, neighbour discovery"`,
		fmt.Sprintf(`udp sport %d udp dport %d accept comment "failsafe: DHCP client replies"`, PortDHCPServer, PortDHCPClient),
		fmt.Sprintf(`udp sport %d udp dport %d accept comment "failsafe: DHCPv6 client replies"`, PortDHCP6Srv, PortDHCP6Cli),
	)
	if ms := c.p.Mesh; ms != nil {
		fam := "ip"
		if ms.AdminRange.Addr().Is6() {
			fam = "ip6"
		}
		for _, proto := range []string{"tcp", "udp"} {
			if ps := portsOf(c.p.AdminPorts, proto); ps != "" {
				rules = append(rules, fmt.Sprintf(`iifname %q %s saddr %s %s dport %s accept comment "failsafe: admin ports over the mesh"`,
					ms.Interface, fam, ms.AdminRange, proto, ps))
			}
		}
		accept("admins", fmt.Sprintf("udp dport %d", ms.Port), "failsafe: WireGuard from admins")
	} else {
		for _, proto := range []string{"tcp", "udp"} {
			if ps := portsOf(c.p.AdminPorts, proto); ps != "" {
				accept("admins", proto+" dport "+ps, "failsafe: admin ports from admins")
			}
		}
	}
	accept("members", fmt.Sprintf("meta l4proto { tcp, udp } th dport %d", PortSerfLAN), "failsafe: Consul serf LAN between members")
	if matchesAny(c.p.ConsulServers, m) {
		accept("members", fmt.Sprintf("tcp dport %d", PortServerRPC), "failsafe: Consul server RPC")
	}
	accept("drainers", fmt.Sprintf("tcp dport %d", PortAgentHTTP), "failsafe: Consul agent HTTP from drainers")
	if matchesAny(c.p.BootServers, m) {
		rules = append(rules,
			fmt.Sprintf(`udp dport { %d, %d, %d } accept comment "failsafe: boot server DHCP, TFTP, proxyDHCP"`, PortDHCPServer, PortTFTP, PortProxyDHCP),
			fmt.Sprintf(`tcp dport %d accept comment "failsafe: boot server HTTP and agent API"`, PortBootHTTP))
	}
	for _, r := range c.p.Rules {
		if !r.To.Matches(m) {
			continue
		}
		base := setBase(r.From)
		for _, proto := range []string{"tcp", "udp"} {
			if ps := portsOf(r.Ports, proto); ps != "" {
				accept(base, proto+" dport "+ps, fmt.Sprintf("policy line %d: from %s", r.Line, trunc(r.From.String(), 60)))
			}
		}
	}
	var bases []string
	for b := range used {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	var sets []Set
	for _, b := range bases {
		sets = append(sets, c.sets(b)...)
	}
	return rules, sets
}

func matchesAny(sel []Selector, m *inventory.Machine) bool {
	for _, s := range sel {
		if s.Matches(m) {
			return true
		}
	}
	return false
}

// trunc makes s safe inside an nft comment (printable ASCII, no quote or
// backslash) and at most n bytes.
func trunc(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < ' ' || r > '~':
			return '?'
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// portsOf renders ps's ports of proto as an nft set ("{ 22, 8500 }"); "" if none.
func portsOf(ps []Port, proto string) string {
	var nums []int
	for _, p := range ps {
		if p.Proto == proto {
			nums = append(nums, p.Number)
		}
	}
	if len(nums) == 0 {
		return ""
	}
	slices.Sort(nums)
	nums = slices.Compact(nums)
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = fmt.Sprint(n)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func renderText(header string, sets []Set, rules, output []string, version string, withElements bool) string {
	var b strings.Builder
	size := 4096 + 200*len(rules)
	for _, s := range sets {
		size += 100 + len(s.joined)
	}
	if withElements {
		b.Grow(size)
	}
	b.WriteString(header)
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\ntable inet %s {\n", Table, Table, Table)
	if version != "" {
		fmt.Fprintf(&b, "\tcomment %q\n", versionComment+version)
	}
	for _, s := range sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, s.Type)
		if s.Interval {
			b.WriteString("\t\tflags interval\n\t\tauto-merge\n")
		}
		if withElements && len(s.Elements) > 0 {
			j := s.joined
			if j == "" {
				j = strings.Join(s.Elements, ", ")
			}
			b.WriteString("\t\telements = { ")
			b.WriteString(j)
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n")
	if version != "" {
		// nft -j (1.0.6) leaves the table's comment out; a rule's is in.
		fmt.Fprintf(&b, "\t\tcounter comment %q\n", versionComment+version)
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
	if len(output) > 0 {
		b.WriteString("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n")
		for _, r := range output {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// SetUpdate is the nft -f input that replaces the elements of sets in the
// ironrack table, in one transaction, without touching rules.
func SetUpdate(sets []Set) string {
	var b strings.Builder
	for _, s := range sets {
		fmt.Fprintf(&b, "flush set inet %s %s\n", Table, s.Name)
		if len(s.Elements) > 0 {
			fmt.Fprintf(&b, "add element inet %s %s { %s }\n", Table, s.Name, strings.Join(s.Elements, ", "))
		}
	}
	return b.String()
}

// SetDelta is the nft -f input that turns set name's elements from old
// into new with add and delete element, one transaction, O(change). The
// transaction fails as a whole if the host's set is not old (an element
// to delete is missing, or the set is): the watcher then falls back to
// SetUpdate.
func SetDelta(name string, old, new []string) string {
	have := make(map[string]bool, len(old))
	for _, e := range old {
		have[e] = true
	}
	want := make(map[string]bool, len(new))
	var add, del []string
	for _, e := range new {
		want[e] = true
		if !have[e] {
			add = append(add, e)
		}
	}
	for _, e := range old {
		if !want[e] {
			del = append(del, e)
		}
	}
	var b strings.Builder
	if len(del) > 0 {
		fmt.Fprintf(&b, "delete element inet %s %s { %s }\n", Table, name, strings.Join(del, ", "))
	}
	if len(add) > 0 {
		fmt.Fprintf(&b, "add element inet %s %s { %s }\n", Table, name, strings.Join(add, ", "))
	}
	return b.String()
}
