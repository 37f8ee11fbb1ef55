// Package hostkeys owns ironrack's SSH host-key trust: never trust on first
// use. Trust builds a strict ssh.HostKeyCallback for a set of machines from
// what the inventory recorded — each machine's host keys (reported by its
// first boot with a single-use token, or imported by an operator) and
// ironrack's SSH CA as @cert-authority for the machines' addresses — by
// writing that known_hosts text and parsing it with
// golang.org/x/crypto/ssh/knownhosts. CA signs host certificates
// (principals: machine ID, host name, IP); ParseKnownHosts and Match read
// known_hosts or ssh-keyscan output for `ironrack ssh-keys import`.
package hostkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ironrack/ironrack/inventory"
)

// ImportHint is what an operator does for a host whose keys ironrack does
// not know.
const ImportHint = "ironrack deployed machines report their keys on first boot; for others, check the keys out of band and run `ironrack ssh-keys import FILE` (known_hosts or ssh-keyscan output)"

// Host is one machine as SSH reaches it.
type Host struct {
	// ID is the machine ID; errors name it.
	ID string
	// Addrs are the addresses it is dialed at: "IP", "IP:PORT" or
	// "[IP]:PORT" (a port other than 22 must be given). At least one.
	Addrs []string
	// Keys are its host keys (authorized_keys lines). A host without keys
	// is known only through the CA, if any.
	Keys []string
}

// Hosts are the machines as SSH reaches them at their inventory IP on
// port (if 0, 22). Machines without an IP are left out.
func Hosts(ms []*inventory.Machine, port int) []Host {
	var out []Host
	for _, m := range ms {
		if m.IP == "" {
			continue
		}
		addr := m.IP
		if port != 0 && port != 22 {
			addr = net.JoinHostPort(m.IP, strconv.Itoa(port))
		}
		out = append(out, Host{ID: m.ID, Addrs: []string{addr}, Keys: m.HostKeys})
	}
	return out
}

// Trust is the host-key trust of a set of machines: their recorded keys,
// and the CA keys trusted to sign host certificates for their addresses.
// Its callback refuses every host not in the set.
type Trust struct {
	text   []byte
	byAddr map[string]*Host // by knownhosts.Normalize(addr)
	cas    []ssh.PublicKey
	kh     ssh.HostKeyCallback
}

// New builds the trust of hosts, with cas (may be empty) trusted to sign
// host certificates for their addresses. Two machines at one address, a
// malformed key or an address with spaces or commas is an error naming
// the machine.
func New(hosts []Host, cas []ssh.PublicKey) (*Trust, error) {
	t := &Trust{byAddr: map[string]*Host{}, cas: cas}
	var b bytes.Buffer
	b.WriteString("# ironrack: host keys recorded in the inventory (playbooks/hostkeys)\n")
	hosts = slices.Clone(hosts)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].ID < hosts[j].ID })
	for i := range hosts {
		h := &hosts[i]
		if len(h.Addrs) == 0 {
			return nil, fmt.Errorf("machine %s: no address to reach it at", h.ID)
		}
		var pats []string
		for _, a := range h.Addrs {
			if a == "" || strings.ContainsAny(a, " \t,\r\n*?!|#@") {
				return nil, fmt.Errorf("machine %s: address %q is not a host name or IP[:port]", h.ID, a)
			}
			n := knownhosts.Normalize(a)
			if o, dup := t.byAddr[n]; dup && o.ID != h.ID {
				return nil, fmt.Errorf("machines %s and %s both have address %s", o.ID, h.ID, n)
			}
			t.byAddr[n] = h
			pats = append(pats, n)
		}
		fmt.Fprintf(&b, "# %s\n", h.ID)
		for j, l := range h.Keys {
			k, _, err := inventory.ParseHostKey(l)
			if err != nil {
				return nil, fmt.Errorf("machine %s: host key %d: %w", h.ID, j+1, err)
			}
			fmt.Fprintf(&b, "%s %s\n", strings.Join(pats, ","), inventory.CanonicalKey(k))
		}
		for _, ca := range cas {
			fmt.Fprintf(&b, "@cert-authority %s %s\n", strings.Join(pats, ","), inventory.CanonicalKey(ca))
		}
	}
	t.text = b.Bytes()
	kh, err := parseKnownHosts(t.text)
	if err != nil {
		return nil, err
	}
	t.kh = kh
	return t, nil
}

// parseKnownHosts parses known_hosts text with knownhosts.New, which reads
// only files: the text goes through a private temporary file.
func parseKnownHosts(text []byte) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "ironrack-known-hosts-*")
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(text)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("known_hosts: %w", werr)
	}
	kh, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, fmt.Errorf("known_hosts built from the inventory: %w", err)
	}
	return kh, nil
}

// KnownHosts is the trust as known_hosts text, for plain ssh
// (`ironrack ssh-keys known-hosts`): a comment naming each machine, its
// keys, and the CA lines scoped to its addresses.
func (t *Trust) KnownHosts() []byte { return bytes.Clone(t.text) }

// HostKeyCallback returns the strict callback: the key a host presents
// must be one recorded for the machine dialed at that address, or a host
// certificate signed by a trusted CA, of type host, naming the dialed host
// among its principals and valid now (a certificate that fails is judged
// as the key it certifies, as OpenSSH does). Everything else is refused
// with an error naming the machine and the fingerprints presented and
// expected (or, for an unknown host, what to do).
func (t *Trust) HostKeyCallback() ssh.HostKeyCallback { return t.check }

func (t *Trust) check(addr string, remote net.Addr, key ssh.PublicKey) error {
	h := t.byAddr[knownhosts.Normalize(addr)]
	if h == nil {
		return fmt.Errorf("host %s presented %s %s: no machine of this selection is recorded at that address; %s",
			addr, key.Type(), ssh.FingerprintSHA256(key), ImportHint)
	}
	err := t.kh(addr, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	// recorded: knownhosts reports a key mismatch with the host's lines,
	// its @cert-authority lines among them; only its own keys count.
	recorded := func(err error) []ssh.PublicKey {
		var out []ssh.PublicKey
		if errors.As(err, &ke) {
			for _, w := range ke.Want {
				if !t.isCA(w.Key) {
					out = append(out, w.Key)
				}
			}
		}
		return out
	}
	if cert, isCert := key.(*ssh.Certificate); isCert {
		// As OpenSSH does, a certificate that does not pass (no trusted
		// CA, expired, another host's) is judged as the key it
		// certifies: a recorded key is trusted either way, and a machine
		// whose certificate lapsed stays reachable to renew it.
		kerr := t.kh(addr, remote, cert.Key)
		switch {
		case kerr == nil:
			return nil
		case len(recorded(kerr)) > 0:
			return mismatch(h.ID, addr, cert.Key, recorded(kerr))
		case len(t.cas) == 0:
			return fmt.Errorf("machine %s (%s) presented a certificate of %s %s, no SSH CA is trusted and no host key of its is recorded: refused; %s",
				h.ID, addr, cert.Key.Type(), ssh.FingerprintSHA256(cert.Key), ImportHint)
		}
		return fmt.Errorf("machine %s (%s): host certificate %q for %s %s refused, and its key is not recorded: %w",
			h.ID, addr, cert.KeyId, cert.Key.Type(), ssh.FingerprintSHA256(cert.Key), err)
	}
	switch {
	case len(recorded(err)) > 0:
		return mismatch(h.ID, addr, key, recorded(err))
	case errors.As(err, &ke):
		return fmt.Errorf("machine %s (%s) presented %s %s, and no host key of its is recorded: refused; %s",
			h.ID, addr, key.Type(), ssh.FingerprintSHA256(key), ImportHint)
	}
	return fmt.Errorf("machine %s (%s): host key %s refused: %w", h.ID, addr, ssh.FingerprintSHA256(key), err)
}

func (t *Trust) isCA(k ssh.PublicKey) bool {
	for _, ca := range t.cas {
		if bytes.Equal(ca.Marshal(), k.Marshal()) {
			return true
		}
	}
	return false
}

func mismatch(id, addr string, key ssh.PublicKey, recorded []ssh.PublicKey) error {
	var want []string
	for _, k := range recorded {
		want = append(want, k.Type()+" "+ssh.FingerprintSHA256(k))
	}
	return &MismatchError{Machine: id, Addr: addr, Presented: key.Type() + " " + ssh.FingerprintSHA256(key), Expected: want}
}

// MismatchError is a host that presented a key other than the recorded
// ones: a reinstalled machine, or someone in the middle.
type MismatchError struct {
	Machine, Addr string
	// Presented is "TYPE SHA256:…"; Expected lists the recorded keys the
	// same way.
	Presented string
	Expected  []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("HOST KEY MISMATCH for machine %s (%s): it presented %s, expected %s; refused (a reinstalled machine reports new keys on its first boot; otherwise someone may be in the middle)",
		e.Machine, e.Addr, e.Presented, strings.Join(e.Expected, " or "))
}

// HostKeyAlgorithms are the host key algorithms to ask addr for (for
// ssh.ClientConfig.HostKeyAlgorithms): certificate algorithms first when a
// CA is trusted, then those of the recorded keys, so a host is never asked
// for a key type nobody recorded (with none recorded, every plain type, to
// be refused by name). nil for an unknown address.
func (t *Trust) HostKeyAlgorithms(addr string) []string {
	h := t.byAddr[knownhosts.Normalize(addr)]
	if h == nil {
		return nil
	}
	var out []string
	if len(t.cas) > 0 {
		out = append(out, ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
			ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
	}
	if len(h.Keys) == 0 {
		// Nothing recorded: let the host present a plain key anyway, so
		// the refusal names the machine and the key, not "no common
		// algorithm".
		return append(out, ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
			ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
	}
	for _, l := range h.Keys {
		k, _, err := inventory.ParseHostKey(l)
		if err != nil {
			continue
		}
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			out = append(out, k.Type())
		}
	}
	return out
}

// Machine returns the ID of the machine at addr, or "".
func (t *Trust) Machine(addr string) string {
	if h := t.byAddr[knownhosts.Normalize(addr)]; h != nil {
		return h.ID
	}
	return ""
}

// CAStore reads the SSH CA's public key (*inventory.Store does).
type CAStore interface {
	// SSHCAPublicKey returns the CA's authorized_keys line, or an error
	// wrapping inventory.ErrNotFound when there is no CA.
	SSHCAPublicKey(ctx context.Context) (string, error)
}

// CAKey returns the SSH CA's public key, or nil when there is none.
func CAKey(ctx context.Context, s CAStore) (ssh.PublicKey, error) {
	line, err := s.SSHCAPublicKey(ctx)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("ssh CA public key in the inventory: %w", err)
	}
	return k, nil
}

// Load builds the trust of machines reached at their IP on port (if 0,
// 22): their recorded keys and, when the inventory has one, the SSH CA.
// It is what `ironrack run` and `ssh-keys known-hosts` use.
func Load(ctx context.Context, s CAStore, ms []*inventory.Machine, port int) (*Trust, error) {
	ca, err := CAKey(ctx, s)
	if err != nil {
		return nil, err
	}
	var cas []ssh.PublicKey
	if ca != nil {
		cas = append(cas, ca)
	}
	return New(Hosts(ms, port), cas)
}
