package netpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ironrack/ironrack/inventory"
)

// Failsafe ports. No policy removes them: Render writes them into every
// ruleset before the policy's own grants.
const (
	PortSSH        = 22
	PortSerfLAN    = 8301 // Consul serf LAN, tcp and udp, between members
	PortServerRPC  = 8300 // Consul server RPC, tcp, to the servers
	PortAgentHTTP  = 8500 // Consul agent HTTP, tcp, from the hosts that drain tiers
	PortDHCPServer = 67
	PortDHCPClient = 68
	PortDHCP6Srv   = 547
	PortDHCP6Cli   = 546
	PortTFTP       = 69
	PortProxyDHCP  = 4011
	PortBootHTTP   = 8080 // the boot server's HTTP (iPXE scripts, images, the agent API); bootserver.Config.HTTPPort's default
)

// Port is one port and protocol a rule opens.
type Port struct {
	Number int
	// Proto is "tcp" or "udp".
	Proto string
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Proto) }

// Selector chooses sources or destinations. Exactly one of Tier, Tag, Where
// or CIDRs is set (Any selects every machine, as a destination only).
type Selector struct {
	Tier  string
	Tag   string // KEY=VALUE
	Where string
	CIDRs []netip.Prefix
	Any   bool

	where *inventory.Where
	line  int
}

// String is the selector as an operator wrote it.
func (s Selector) String() string {
	switch {
	case s.Tier != "":
		return "tier " + s.Tier
	case s.Tag != "":
		return "tag " + s.Tag
	case s.Where != "":
		return "where " + s.Where
	case s.Any:
		return "any machine"
	}
	var parts []string
	for _, p := range s.CIDRs {
		parts = append(parts, p.String())
	}
	return "cidrs " + strings.Join(parts, ",")
}

// Matches reports whether machine m is selected. CIDR selectors match a
// machine whose address lies in one of them.
func (s Selector) Matches(m *inventory.Machine) bool {
	switch {
	case s.Any:
		return true
	case s.Tier != "":
		return m.Tier == s.Tier
	case s.Tag != "":
		k, v, _ := strings.Cut(s.Tag, "=")
		got, ok := m.Tags[k]
		return ok && got == v
	case s.where != nil:
		ok, err := s.where.Match(m)
		return err == nil && ok
	}
	a, err := netip.ParseAddr(m.IP)
	if err != nil {
		return false
	}
	for _, p := range s.CIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Rule grants From access to Ports on the machines To selects.
type Rule struct {
	From  Selector
	To    Selector
	Ports []Port
	Line  int
}

// Policy is a parsed policy file. See docs/network-policy.md.
type Policy struct {
	// File is the file's name, for messages.
	File string
	// Admins are the admin sources: CIDRs and selectors.
	Admins []Selector
	// AdminPorts are open to the admins on every machine; 22/tcp always is.
	AdminPorts []Port
	// Drainers are the hosts that drain tiers: they reach the Consul
	// agent's HTTP port on every machine.
	Drainers []Selector
	// ConsulServers are the machines that run Consul servers: they take
	// server RPC (8300/tcp) from every member.
	ConsulServers []Selector
	// BootServers are the machines that run `ironrack serve`: they take
	// DHCP, proxyDHCP, TFTP and the boot HTTP port from anywhere, since a
	// machine being re-provisioned has no address of its own yet.
	BootServers []Selector
	// Rules are the grants, in file order.
	Rules []Rule
	// Mesh, if set, moves the admin ports onto the WireGuard admin mesh:
	// they answer only on its interface, from its admin range.
	Mesh *Mesh
}

// Mesh is the policy's mesh section.
type Mesh struct {
	// Interface is the mesh interface. If "", wg0.
	Interface string
	// AdminRange holds the admins' mesh addresses (playbooks/mesh's
	// admin range).
	AdminRange netip.Prefix
	// Port is WireGuard's UDP port, open to the admin sources.
	Port int
	line int
}

// Known is what a policy's names are checked against.
type Known struct {
	// Tiers are the tier names that exist, with or without machines today
	// (tiers scale to 0 and back).
	Tiers []string
	// Machines is the inventory today: tag keys are known when a machine
	// carries them, and a selector matching none of them is a warning.
	Machines []*inventory.Machine
	// MeshAdmins counts the admins in the mesh (a policy with a mesh
	// section and none cuts every admin off).
	MeshAdmins int
}

// Load reads and parses a policy file and checks it against known.
func Load(path string, known Known) (*Policy, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(path, b)
	if err != nil {
		return nil, nil, err
	}
	warn, err := p.Check(known)
	return p, warn, err
}

// lineErr is an error at FILE:LINE.
func lineErr(file string, line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...))
}

// Parse parses a policy file's contents. Errors name FILE:LINE and what is
// wrong; unknown keys are refused.
func Parse(file string, data []byte) (*Policy, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s:1: empty policy (want admins, rules, ...)", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, lineErr(file, root.Line, "want a mapping of admins, admin_ports, drainers, consul_servers, boot_servers, rules")
	}
	p := &Policy{File: file}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, lineErr(file, k.Line, "%s given twice", k.Value)
		}
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "admins":
			p.Admins, err = parseSources(file, v, "admins")
		case "admin_ports":
			p.AdminPorts, err = parsePorts(file, v)
		case "drainers":
			p.Drainers, err = parseSources(file, v, "drainers")
		case "consul_servers":
			p.ConsulServers, err = parseSources(file, v, "consul_servers")
		case "boot_servers":
			p.BootServers, err = parseSources(file, v, "boot_servers")
		case "rules":
			p.Rules, err = parseRules(file, v)
		case "mesh":
			p.Mesh, err = parseMesh(file, v)
		default:
			err = lineErr(file, k.Line, "unknown key %q (want admins, admin_ports, drainers, consul_servers, boot_servers, rules, mesh)", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	if !seen["admins"] {
		return nil, lineErr(file, root.Line, "no admins: a policy without admin sources cuts every admin off")
	}
	if !slices.Contains(p.AdminPorts, Port{PortSSH, "tcp"}) {
		p.AdminPorts = append([]Port{{PortSSH, "tcp"}}, p.AdminPorts...)
	}
	return p, nil
}

// parseSources reads a list whose items are CIDR strings or selector
// mappings.
func parseSources(file string, n *yaml.Node, what string) ([]Selector, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, lineErr(file, n.Line, "%s: want a list of CIDRs or selectors ({tier: NAME}, {tag: KEY=VALUE}, {where: EXPR})", what)
	}
	var out []Selector
	for _, item := range n.Content {
		if item.Kind == yaml.ScalarNode {
			pfx, err := parseCIDR(item.Value)
			if err != nil {
				return nil, lineErr(file, item.Line, "%s: %v", what, err)
			}
			out = append(out, Selector{CIDRs: []netip.Prefix{pfx}, line: item.Line})
			continue
		}
		s, err := parseSelector(file, item, false)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// parseCIDR takes an address or a prefix.
func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseSelector(file string, n *yaml.Node, dest bool) (Selector, error) {
	s := Selector{line: n.Line}
	if n.Kind == yaml.ScalarNode && n.Value == "any" && dest {
		s.Any = true
		return s, nil
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		want := "{tier: NAME}, {tag: KEY=VALUE}, {where: EXPR} or {cidrs: [...]}"
		if dest {
			want = "{tier: NAME}, {tag: KEY=VALUE}, {where: EXPR} or any"
		}
		return s, lineErr(file, n.Line, "want one selector: %s", want)
	}
	k, v := n.Content[0], n.Content[1]
	switch k.Value {
	case "tier", "tag", "where":
		if v.Kind != yaml.ScalarNode || strings.TrimSpace(v.Value) == "" {
			return s, lineErr(file, v.Line, "%s: want a non-empty string", k.Value)
		}
	}
	switch k.Value {
	case "tier":
		s.Tier = v.Value
	case "tag":
		key, val, ok := strings.Cut(v.Value, "=")
		if !ok || key == "" {
			return s, lineErr(file, v.Line, "tag %q: want KEY=VALUE", v.Value)
		}
		s.Tag = key + "=" + val
	case "where":
		w, err := inventory.ParseWhere(v.Value)
		if err != nil {
			return s, lineErr(file, v.Line, "%v", err)
		}
		s.Where, s.where = v.Value, w
	case "cidrs":
		if dest {
			return s, lineErr(file, k.Line, "cidrs select sources only; choose destinations by tier, tag or where")
		}
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			return s, lineErr(file, v.Line, "cidrs: want a non-empty list")
		}
		for _, c := range v.Content {
			pfx, err := parseCIDR(c.Value)
			if err != nil {
				return s, lineErr(file, c.Line, "cidrs: %v", err)
			}
			s.CIDRs = append(s.CIDRs, pfx)
		}
	default:
		return s, lineErr(file, k.Line, "unknown selector %q (want tier, tag, where or cidrs)", k.Value)
	}
	return s, nil
}

func parseMesh(file string, n *yaml.Node) (*Mesh, error) {
	if n.Kind != yaml.MappingNode {
		return nil, lineErr(file, n.Line, "mesh: want a mapping with interface, admin_range, port")
	}
	m := &Mesh{Interface: "wg0", AdminRange: netip.MustParsePrefix("10.99.0.0/24"), Port: 51820, line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "interface":
			if !validIdent(strings.ReplaceAll(v.Value, "-", "_")) || len(v.Value) > 15 {
				return nil, lineErr(file, v.Line, "mesh interface %q: want an interface name", v.Value)
			}
			m.Interface = v.Value
		case "admin_range":
			pfx, err := netip.ParsePrefix(v.Value)
			if err != nil {
				return nil, lineErr(file, v.Line, "mesh admin_range %q: want a CIDR", v.Value)
			}
			m.AdminRange = pfx.Masked()
		case "port":
			p, err := strconv.Atoi(v.Value)
			if err != nil || p < 1 || p > 65535 {
				return nil, lineErr(file, v.Line, "mesh port %q: want 1-65535", v.Value)
			}
			m.Port = p
		default:
			return nil, lineErr(file, k.Line, "unknown mesh key %q (want interface, admin_range, port)", k.Value)
		}
	}
	return m, nil
}

func parsePorts(file string, n *yaml.Node) ([]Port, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, lineErr(file, n.Line, "ports: want a non-empty list such as [9000/tcp, 53/udp]")
	}
	var out []Port
	for _, item := range n.Content {
		num, proto, ok := strings.Cut(item.Value, "/")
		if !ok {
			proto = "tcp"
		}
		v, err := strconv.Atoi(num)
		if err != nil || v < 1 || v > 65535 || (proto != "tcp" && proto != "udp") {
			return nil, lineErr(file, item.Line, "port %q: want PORT/tcp or PORT/udp, PORT 1-65535", item.Value)
		}
		if p := (Port{v, proto}); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func parseRules(file string, n *yaml.Node) ([]Rule, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, lineErr(file, n.Line, "rules: want a list of {from, to, ports}")
	}
	var out []Rule
	for _, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			return nil, lineErr(file, item.Line, "rule: want a mapping with from, to and ports")
		}
		r := Rule{Line: item.Line}
		have := map[string]bool{}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], item.Content[i+1]
			have[k.Value] = true
			var err error
			switch k.Value {
			case "from":
				r.From, err = parseSelector(file, v, false)
			case "to":
				r.To, err = parseSelector(file, v, true)
			case "ports":
				r.Ports, err = parsePorts(file, v)
			default:
				err = lineErr(file, k.Line, "unknown rule key %q (want from, to, ports)", k.Value)
			}
			if err != nil {
				return nil, err
			}
		}
		for _, need := range []string{"from", "to", "ports"} {
			if !have[need] {
				return nil, lineErr(file, item.Line, "rule has no %s", need)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// ErrNoAdmin is returned by Check for a policy that would cut every admin
// off.
var ErrNoAdmin = errors.New("the policy cuts every admin off")

// Check checks the policy's names against known: an unknown tier or tag
// key is an error with its line; a valid selector that matches no machine
// today is a warning. A policy whose admin sources resolve to no address
// at all is refused (ErrNoAdmin).
func (p *Policy) Check(known Known) (warnings []string, err error) {
	tiers := map[string]bool{}
	for _, t := range known.Tiers {
		tiers[t] = true
	}
	tagKeys := map[string]bool{}
	for _, m := range known.Machines {
		tiers[m.Tier] = tiers[m.Tier] || m.Tier != "" // a tier with machines exists
		for k := range m.Tags {
			tagKeys[k] = true
		}
	}
	check := func(what string, s Selector) error {
		switch {
		case s.Tier != "" && !tiers[s.Tier]:
			return lineErr(p.File, s.line, "%s: unknown tier %q (tiers: %s)", what, s.Tier, strings.Join(sortedKeys(tiers), ", "))
		case s.Tag != "":
			k, _, _ := strings.Cut(s.Tag, "=")
			if !tagKeys[k] {
				return lineErr(p.File, s.line, "%s: unknown tag %q: no machine carries it (tags: %s)", what, k, strings.Join(sortedKeys(tagKeys), ", "))
			}
		}
		if len(s.CIDRs) > 0 || s.Any {
			return nil
		}
		for _, m := range known.Machines {
			if s.Matches(m) {
				return nil
			}
		}
		warnings = append(warnings, fmt.Sprintf("%s:%d: %s: %s matches no machine today", p.File, s.line, what, s))
		return nil
	}
	groups := []struct {
		what string
		sel  []Selector
	}{{"admins", p.Admins}, {"drainers", p.Drainers}, {"consul_servers", p.ConsulServers}, {"boot_servers", p.BootServers}}
	for _, g := range groups {
		for _, s := range g.sel {
			if err := check(g.what, s); err != nil {
				return warnings, err
			}
		}
	}
	for _, r := range p.Rules {
		if err := check("rule from", r.From); err != nil {
			return warnings, err
		}
		if err := check("rule to", r.To); err != nil {
			return warnings, err
		}
	}
	if p.Mesh != nil && known.MeshAdmins == 0 {
		return warnings, fmt.Errorf("%s:%d: %w: admin ports answer only over the mesh, and the mesh has no admin (`ironrack vpn add-admin` first: mesh before firewall)", p.File, p.Mesh.line, ErrNoAdmin)
	}
	if len(addrsOf(p.Admins, known.Machines)) == 0 {
		return warnings, fmt.Errorf("%s: %w: its admin sources match no address today (give a CIDR, or a selector that matches a machine with an address)", p.File, ErrNoAdmin)
	}
	return warnings, nil
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k, ok := range m {
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
