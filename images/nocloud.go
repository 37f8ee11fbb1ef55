package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// MaxUserData bounds an operator's --user-data file.
const MaxUserData = 64 << 10

// ConsulCAFile is where NoCloud writes the CA certificate the agent
// verifies the Consul servers with (Seed.ConsulCACert): in a directory of
// its own, since Consul reads every file of /etc/consul.d as config.
const ConsulCAFile = "/etc/consul.d/tls/ca.pem"

// ConsulServicesFile is where NoCloud writes the machine's service
// definitions (when it has any).
const ConsulServicesFile = "/etc/consul.d/services.json"

// Node meta keys the OS's Consul agent sets on its own node. The agent's
// node is not the inventory's node: see Seed.
const (
	MetaMachine = "ironrack_machine"
	MetaRole    = "ironrack_role"
)

// OSNodeSuffix is added to the deployed OS agent's node name when its host
// name is the machine ID (the deploy default), so the two nodes stay apart.
const OSNodeSuffix = "-os"

// DefaultConsulBind is the agent's bind_addr when Seed.ConsulBind is
// empty: a go-sockaddr template Consul expands to the first IPv4 address
// of an interface that is up and not loopback. It does not ask for the
// default route's interface: a boot LAN without a router (the DHCP server
// offers none unless --router is given) has no default route, and Consul
// then refuses to start (seen in scripts/virtual-rack).
const DefaultConsulBind = `{{ GetAllInterfaces | include "flags" "up" | exclude "flags" "loopback" | include "type" "IPv4" | limit 1 | attr "address" }}`

// Seed is one machine's cloud-init NoCloud data.
//
// The Consul agent it configures is a client agent whose node is the OS's
// own, named by the hostname, with node meta ironrack_machine=<MachineID>
// and ironrack_role=<Role>. It is deliberately not the inventory's node
// (an external node named by the machine ID): Consul's anti-entropy
// rewrites an agent node's meta from the agent's config, so an agent
// sharing that node would erase the inventory's state, tier and rack meta
// on every sync. Services and their checks register on the agent's node;
// a query joins the two through ironrack_machine.
type Seed struct {
	// InstanceID is cloud-init's instance-id: a new one makes cloud-init
	// run its once-per-instance steps again. Required.
	InstanceID string
	// Hostname is the machine's hostname (a DNS name; its first label is
	// the Consul node name). Required.
	Hostname string
	// SSHAuthorizedKeys are root's keys (authorized_keys lines). At least
	// one is required: the image has no password login.
	SSHAuthorizedKeys []string
	// MachineID is the inventory machine ID. Required.
	MachineID string
	// Role is the machine's tier. Optional.
	Role string
	// ConsulJoin are the addresses (host or host:port) of the inventory's
	// Consul servers. If empty, no Consul agent is configured.
	ConsulJoin []string
	// ConsulDatacenter is the agent's datacenter. If empty, Consul's
	// default (dc1).
	ConsulDatacenter string
	// ConsulBind is the agent's bind_addr. If empty, DefaultConsulBind.
	ConsulBind string
	// ConsulGossipKey is the cluster's gossip encryption key (base64, as
	// consul keygen prints it). If empty, the agent gossips in the clear.
	ConsulGossipKey string
	// ConsulToken is the agent's ACL token, used for its node and for the
	// services. If set, the agent enforces ACLs (default deny) like the
	// servers it joins. These values are validated where they are stored
	// (inventory.AgentSecrets); the files that carry them are written
	// root:consul, mode 0640.
	ConsulToken string
	// ConsulCACert is the PEM of the CA that signed the servers' TLS
	// certificates. If set, it is written to ConsulCAFile and the agent
	// verifies the servers (verify_outgoing, verify_server_hostname) and
	// gets its own certificate from them (auto_encrypt).
	ConsulCACert string
	// Services are registered with the agent, with their checks.
	Services []Service
	// HostKeysURL and HostKeysToken, both or neither, make the first boot
	// report the machine's SSH host public keys to the boot server
	// (HostKeysScript): the URL of wire.HostKeysPath and the deploy's
	// single-use token. If empty, cloud-init makes the keys and nobody
	// records them.
	HostKeysURL   string
	HostKeysToken string
	// ExtraUserData is the operator's user-data (#cloud-config or a #!
	// script), merged after ironrack's with MIME multipart. Optional.
	ExtraUserData []byte
	// ExtraUserDataName names ExtraUserData in errors (the --user-data
	// file). If empty, "user-data".
	ExtraUserDataName string
}

// Service is one service the machine's Consul agent registers, as the
// agent's service definition holds it: tags, and a check whose target is
// resolved. It is the rendering, not the definition: a machine's service is
// an inventory.DeployService (name, port, "tcp" or "http:/PATH"), which
// the boot server turns into a Service checked on 127.0.0.1; images does
// not import inventory.
type Service struct {
	Name  string
	Port  int
	Tags  []string
	Check *Check
}

// Check is a service's health check: exactly one of TCP (host:port) or
// HTTP (an http:// or https:// URL).
type Check struct {
	TCP  string
	HTTP string
	// Interval is how often the check runs. If 0, 10s.
	Interval time.Duration
	// Timeout bounds one run. If 0, Consul's default.
	Timeout time.Duration
}

var (
	idRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	labelRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	tagRE     = regexp.MustCompile(`^[A-Za-z0-9_.:=/-]{1,128}$`)
	dcRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate checks every field; errors name the field.
func (s Seed) Validate() error {
	if !idRE.MatchString(s.InstanceID) {
		return fmt.Errorf("nocloud: instance id %q: want letters, digits and _.:- (up to 128)", s.InstanceID)
	}
	if !idRE.MatchString(s.MachineID) {
		return fmt.Errorf("nocloud: machine id %q: want letters, digits and _.:- (up to 128)", s.MachineID)
	}
	if s.Role != "" && !idRE.MatchString(s.Role) {
		return fmt.Errorf("nocloud: role %q: want letters, digits and _.:- (up to 128)", s.Role)
	}
	if len(s.Hostname) > 253 || s.Hostname == "" {
		return fmt.Errorf("nocloud: hostname %q: want a DNS name of up to 253 characters", s.Hostname)
	}
	for _, l := range strings.Split(s.Hostname, ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("nocloud: hostname %q: label %q is not a DNS label", s.Hostname, l)
		}
	}
	if len(s.SSHAuthorizedKeys) == 0 {
		return errors.New("nocloud: no SSH authorized keys: the image allows key logins only")
	}
	for i, k := range s.SSHAuthorizedKeys {
		if strings.ContainsAny(k, "\r\n") {
			return fmt.Errorf("nocloud: SSH key %d holds a line break: give one key per entry", i+1)
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			return fmt.Errorf("nocloud: SSH key %d (%.30q…): %w", i+1, k, err)
		}
	}
	for _, j := range s.ConsulJoin {
		if err := hostPort(j); err != nil {
			return fmt.Errorf("nocloud: consul join address %q: %w", j, err)
		}
	}
	if s.ConsulDatacenter != "" && !dcRE.MatchString(s.ConsulDatacenter) {
		return fmt.Errorf("nocloud: consul datacenter %q: want letters, digits, _ and -", s.ConsulDatacenter)
	}
	if strings.ContainsAny(s.ConsulBind, "\r\n") {
		return fmt.Errorf("nocloud: consul bind %q holds a line break", s.ConsulBind)
	}
	if len(s.Services) > 0 && len(s.ConsulJoin) == 0 {
		return errors.New("nocloud: services need a Consul agent: give the Consul join addresses")
	}
	seen := map[string]bool{}
	for _, svc := range s.Services {
		if err := svc.validate(); err != nil {
			return err
		}
		if seen[svc.Name] {
			return fmt.Errorf("nocloud: service %q is given twice", svc.Name)
		}
		seen[svc.Name] = true
	}
	if err := s.validateHostKeys(); err != nil {
		return err
	}
	if s.ExtraUserData != nil {
		if err := ValidateUserData(s.userDataName(), s.ExtraUserData); err != nil {
			return err
		}
	}
	return nil
}

func (s Seed) userDataName() string {
	if s.ExtraUserDataName == "" {
		return "user-data"
	}
	return s.ExtraUserDataName
}

func (svc Service) validate() error {
	if !serviceRE.MatchString(svc.Name) {
		return fmt.Errorf("nocloud: service name %q: want letters, digits, _ and - (up to 63)", svc.Name)
	}
	if svc.Port < 0 || svc.Port > 65535 {
		return fmt.Errorf("nocloud: service %s: port %d is not 0-65535", svc.Name, svc.Port)
	}
	for _, t := range svc.Tags {
		if !tagRE.MatchString(t) {
			return fmt.Errorf("nocloud: service %s: tag %q: want letters, digits and _.:=/-", svc.Name, t)
		}
	}
	c := svc.Check
	if c == nil {
		return nil
	}
	switch {
	case (c.TCP == "") == (c.HTTP == ""):
		return fmt.Errorf("nocloud: service %s: a check needs exactly one of TCP and HTTP", svc.Name)
	case c.TCP != "":
		if _, _, err := net.SplitHostPort(c.TCP); err != nil || hostPort(c.TCP) != nil {
			return fmt.Errorf("nocloud: service %s: TCP check %q: want host:port", svc.Name, c.TCP)
		}
	default:
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(c.HTTP, " \r\n") {
			return fmt.Errorf("nocloud: service %s: HTTP check %q: want an http:// or https:// URL", svc.Name, c.HTTP)
		}
	}
	if c.Interval < 0 || c.Timeout < 0 {
		return fmt.Errorf("nocloud: service %s: negative check interval or timeout", svc.Name)
	}
	return nil
}

// hostPort accepts host or host:port, host an IP or a DNS name.
func hostPort(s string) error {
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		host = h
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not 1-65535", p)
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if host == "" || len(host) > 253 {
		return errors.New("want an IP address or a DNS name")
	}
	for _, l := range strings.Split(host, ".") {
		if !labelRE.MatchString(l) {
			return errors.New("want an IP address or a DNS name")
		}
	}
	return nil
}

// ValidateUserData checks an operator's user-data: at most MaxUserData
// bytes of UTF-8 starting with "#cloud-config" (then a YAML mapping) or
// "#!" (a script cloud-init runs once, last). name (the file) leads every
// error.
func ValidateUserData(name string, b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("%s: user-data is empty", name)
	case len(b) > MaxUserData:
		return fmt.Errorf("%s: user-data is %d bytes, more than the %d allowed", name, len(b), MaxUserData)
	case !utf8.Valid(b):
		return fmt.Errorf("%s: user-data is not UTF-8 text", name)
	case bytes.HasPrefix(b, []byte("#!")):
		return nil
	case cloudConfig(b):
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s: #cloud-config is not valid YAML: %w", name, err)
		}
		if _, ok := v.(map[string]any); !ok && v != nil {
			return fmt.Errorf("%s: #cloud-config must be a YAML mapping (key: value lines)", name)
		}
		return nil
	default:
		first, _, _ := strings.Cut(string(b), "\n")
		if len(first) > 40 {
			first = first[:40] + "…"
		}
		return fmt.Errorf("%s: user-data must start with #cloud-config or #! (a script); its first line is %q", name, first)
	}
}

func cloudConfig(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("#cloud-config"))
	return ok && (len(rest) == 0 || rest[0] == '\n' || rest[0] == '\r' || rest[0] == ' ' || rest[0] == '\t')
}

// NoCloud renders the machine's NoCloud meta-data and user-data. The
// user-data is ironrack's #cloud-config (hostname, root's SSH keys, the
// first boot's host-key report, the Consul agent's config files); with ExtraUserData it is a MIME multipart
// whose second part is the operator's, merged with
// list(append)+dict(no_replace,recurse_list)+str(): the operator adds to
// lists (write_files, runcmd, packages, keys) and new keys, but cannot
// replace what ironrack set. The output is deterministic.
func NoCloud(s Seed) (metaData, userData []byte, err error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "instance-id: %s\nlocal-hostname: %s\n", q(s.InstanceID), q(s.Hostname))

	var cc bytes.Buffer
	cc.WriteString("#cloud-config\n")
	fmt.Fprintf(&cc, "# ironrack: machine %s, rendered by images.NoCloud\n", s.MachineID)
	label, _, dotted := strings.Cut(s.Hostname, ".")
	fmt.Fprintf(&cc, "hostname: %s\n", q(label))
	if dotted {
		fmt.Fprintf(&cc, "fqdn: %s\n", q(s.Hostname))
	}
	cc.WriteString("preserve_hostname: false\nmanage_etc_hosts: true\n")
	// locale: false and users: [] (no default user) are the image's own
	// defaults (99_ironrack.cfg): cloud-init's schema rejects both in
	// user-data, though it obeys them.
	// No ssh_pwauth: the image's sshd already refuses passwords, and with
	// it cloud-init's set-passwords rewrites sshd_config and restarts sshd
	// mid-boot, refusing the login right after the first one.
	cc.WriteString("# root logs in with these keys only (the image's sshd takes no passwords).\n")
	cc.WriteString("disable_root: false\nssh_authorized_keys:\n")
	for _, k := range s.SSHAuthorizedKeys {
		fmt.Fprintf(&cc, "  - %s\n", q(strings.TrimSpace(k)))
	}
	cc.WriteString(s.hostKeysCloudConfig())
	files, err := s.ConsulFiles()
	if err != nil {
		return nil, nil, err
	}
	if len(files) > 0 {
		cc.WriteString("write_files:\n")
		for _, path := range []string{ConsulConfigFile, ConsulServicesFile, ConsulCAFile} {
			b, ok := files[path]
			if !ok {
				continue
			}
			// The agent (user consul) reads them; nobody else may, since
			// they may hold the gossip key and the ACL token.
			fmt.Fprintf(&cc, "  - path: %s\n    owner: \"root:consul\"\n    permissions: \"0640\"\n    content: |\n", q(path))
			for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
				fmt.Fprintf(&cc, "      %s\n", line)
			}
		}
	}
	if s.ExtraUserData == nil {
		return md.Bytes(), cc.Bytes(), nil
	}

	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	sum := sha256.Sum256(append(cc.Bytes(), s.ExtraUserData...))
	if err := mw.SetBoundary("ironrack-" + hex.EncodeToString(sum[:12])); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(&out, "Content-Type: multipart/mixed; boundary=%q\r\nMIME-Version: 1.0\r\n\r\n", mw.Boundary())
	extraType := "text/x-shellscript"
	if cloudConfig(s.ExtraUserData) {
		extraType = "text/cloud-config"
	}
	parts := []struct {
		typ, name string
		body      []byte
		merge     string
	}{
		{"text/cloud-config", "ironrack.cfg", cc.Bytes(), ""},
		{extraType, "operator", s.ExtraUserData, "list(append)+dict(no_replace,recurse_list)+str()"},
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.typ+`; charset="utf-8"`)
		h.Set("MIME-Version", "1.0")
		h.Set("Content-Transfer-Encoding", "base64")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", p.name))
		if p.merge != "" && p.typ == "text/cloud-config" {
			h.Set("Merge-Type", p.merge)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, nil, err
		}
		enc := base64.StdEncoding.EncodeToString(p.body)
		for len(enc) > 76 {
			fmt.Fprintf(w, "%s\r\n", enc[:76])
			enc = enc[76:]
		}
		fmt.Fprintf(w, "%s\r\n", enc)
	}
	if err := mw.Close(); err != nil {
		return nil, nil, err
	}
	return md.Bytes(), out.Bytes(), nil
}

// ConsulClientAddr is the agent's client_addr for a bind_addr: loopback and
// the bind address, so the inventory side can reach the agent's HTTP API on
// the machine's LAN address — a tier's drain puts the machine's services in
// maintenance there, which only the agent that registered them can do.
func ConsulClientAddr(bind string) string {
	if bind == "127.0.0.1" {
		return bind
	}
	return "127.0.0.1 " + bind
}

// ConsulFiles returns the Consul agent's config files by path
// (ConsulConfigFile, ConsulServicesFile when there are services, and
// ConsulCAFile with a CA certificate), as NoCloud writes them; none when
// ConsulJoin is empty. The config files are JSON, which Consul reads from
// its -config-dir like HCL.
func (s Seed) ConsulFiles() (map[string][]byte, error) {
	if len(s.ConsulJoin) == 0 {
		return nil, nil
	}
	label, _, _ := strings.Cut(s.Hostname, ".")
	if label == s.MachineID {
		// The inventory's node is named by the machine ID; an agent of the
		// same name would have anti-entropy rewrite its meta and address.
		label += OSNodeSuffix
	}
	meta := map[string]string{MetaMachine: s.MachineID}
	if s.Role != "" {
		meta[MetaRole] = s.Role
	}
	bind := s.ConsulBind
	if bind == "" {
		bind = DefaultConsulBind
	}
	type tokens struct {
		Agent string `json:"agent"`
	}
	type acl struct {
		Enabled       bool   `json:"enabled"`
		DefaultPolicy string `json:"default_policy"`
		Tokens        tokens `json:"tokens"`
	}
	agent := struct {
		Datacenter         string            `json:"datacenter,omitempty"`
		NodeName           string            `json:"node_name"`
		NodeMeta           map[string]string `json:"node_meta"`
		DataDir            string            `json:"data_dir"`
		Server             bool              `json:"server"`
		BindAddr           string            `json:"bind_addr"`
		ClientAddr         string            `json:"client_addr"`
		RetryJoin          []string          `json:"retry_join"`
		LeaveOnTerminate   bool              `json:"leave_on_terminate"`
		DisableUpdateCheck bool              `json:"disable_update_check"`
		Encrypt            string            `json:"encrypt,omitempty"`
		ACL                *acl              `json:"acl,omitempty"`
		TLS                map[string]any    `json:"tls,omitempty"`
		AutoEncrypt        map[string]bool   `json:"auto_encrypt,omitempty"`
	}{s.ConsulDatacenter, label, meta, "/var/lib/consul", false, bind, ConsulClientAddr(bind), s.ConsulJoin, true, true,
		s.ConsulGossipKey, nil, nil, nil}
	if s.ConsulCACert != "" {
		agent.TLS = map[string]any{
			"defaults":     map[string]any{"ca_file": ConsulCAFile, "verify_outgoing": true},
			"internal_rpc": map[string]any{"verify_server_hostname": true},
		}
		agent.AutoEncrypt = map[string]bool{"tls": true}
	}
	if s.ConsulToken != "" {
		// The agent token registers the node; each service carries the
		// same token below. No default token: the agent's HTTP API, which
		// listens on the LAN address too, grants nothing without a token.
		agent.ACL = &acl{Enabled: true, DefaultPolicy: "deny", Tokens: tokens{Agent: s.ConsulToken}}
	}
	out := map[string][]byte{}
	b, err := json.MarshalIndent(agent, "", "  ")
	if err != nil {
		return nil, err
	}
	out[ConsulConfigFile] = append(b, '\n')
	if s.ConsulCACert != "" {
		out[ConsulCAFile] = []byte(strings.TrimRight(s.ConsulCACert, "\n") + "\n")
	}
	if len(s.Services) == 0 {
		return out, nil
	}
	type check struct {
		TCP      string `json:"tcp,omitempty"`
		HTTP     string `json:"http,omitempty"`
		Interval string `json:"interval"`
		Timeout  string `json:"timeout,omitempty"`
	}
	type service struct {
		Name   string   `json:"name"`
		Port   int      `json:"port,omitempty"`
		Tags   []string `json:"tags,omitempty"`
		Checks []check  `json:"checks,omitempty"`
		Token  string   `json:"token,omitempty"`
	}
	var svcs []service
	for _, svc := range s.Services {
		o := service{Name: svc.Name, Port: svc.Port, Tags: svc.Tags, Token: s.ConsulToken}
		if c := svc.Check; c != nil {
			iv := c.Interval
			if iv == 0 {
				iv = 10 * time.Second
			}
			ck := check{TCP: c.TCP, HTTP: c.HTTP, Interval: iv.String()}
			if c.Timeout > 0 {
				ck.Timeout = c.Timeout.String()
			}
			o.Checks = []check{ck}
		}
		svcs = append(svcs, o)
	}
	b, err = json.MarshalIndent(struct {
		Services []service `json:"services"`
	}{svcs}, "", "  ")
	if err != nil {
		return nil, err
	}
	out[ConsulServicesFile] = append(b, '\n')
	return out, nil
}

// q quotes s for YAML: a JSON string is a YAML double-quoted scalar.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// NoCloudCmdline is the kernel command line fragment that points
// cloud-init at a NoCloud seed served over HTTP: seedURL/meta-data,
// seedURL/user-data and seedURL/vendor-data (a trailing slash is added
// when missing). It is "ds=nocloud-net;s=URL": bookworm's cloud-init
// (22.4) reads "ds=nocloud;s=http://..." as a local-mode seed it cannot
// fetch before the network is up, and then skips every init module in the
// network stage; TestDebianBootQEMU boots with this fragment. The ';'
// may need quoting in a boot loader's script language.
func NoCloudCmdline(seedURL string) (string, error) {
	u, err := url.Parse(seedURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("nocloud seed URL %q: want an http:// or https:// URL", seedURL)
	}
	if strings.ContainsAny(seedURL, " \t\r\n;\"'") {
		return "", fmt.Errorf("nocloud seed URL %q: no spaces, quotes or ';'", seedURL)
	}
	if !strings.HasSuffix(seedURL, "/") {
		seedURL += "/"
	}
	return "ds=nocloud-net;s=" + seedURL, nil
}

// BootNIC is the name NetworkConfig6Cmdline gives the boot NIC in the
// deployed OS (cloud-init renames the NIC with the boot MAC to it).
const BootNIC = "boot0"

// NetworkConfig6Cmdline is the kernel command line fragment that gives an
// IPv6-only machine's deployed OS its network: cloud-init's
// "network-config=" (base64 of a version 2 config), read in its local
// stage before any network is up, before the NoCloud seed is fetched. The
// NIC with mac is named BootNIC and configured by DHCPv6 (IA_NA: the
// address the boot server leased and recorded as the machine's ip) with
// router advertisements accepted (the on-link prefix); no DHCPv4, so the
// machine has no IPv4 address. Without it, cloud-init's fallback is
// DHCPv4 only, and the seed is never fetched on a boot LAN without
// DHCPv4. The image renders it for ifupdown: "iface boot0 inet6 dhcp"
// with accept_ra 1 (dhclient -6).
func NetworkConfig6Cmdline(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("network config: boot MAC %q: want an Ethernet MAC address", mac)
	}
	cfg := fmt.Sprintf("version: 2\nethernets:\n  %s:\n    match:\n      macaddress: %s\n    set-name: %s\n"+
		"    dhcp4: false\n    dhcp6: true\n    accept-ra: true\n", BootNIC, q(hw.String()), BootNIC)
	return "network-config=" + base64.StdEncoding.EncodeToString([]byte(cfg)), nil
}
