package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
	"github.com/ironrack/ironrack/playbooks/remote"
)

// loginFlags are the SSH login flags of every command that logs in to
// machines (run, playbook run, fw, vpn, ssh-keys --install, wait-ready):
// defined here only. prefix starts each usage (e.g. "with --install: ").
func loginFlags(prefix string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "identity", Aliases: []string{"i"}, Usage: prefix + "SSH private key file (default: the ssh-agent at SSH_AUTH_SOCK)"},
		&cli.StringFlag{Name: "user", Value: "root", Usage: prefix + "login name on the machines"},
		&cli.IntFlag{Name: "port", Value: 22, Usage: prefix + "SSH port of the machines"},
		&cli.StringFlag{Name: "known-hosts", Usage: prefix + "check host keys against this known_hosts file instead of the keys recorded in the inventory (for hosts outside it)"},
		&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: prefix + "deadline of each connection and login"},
	}
}

// sshLogin is how the CLI logs in to machines: one login name, port and
// authentication, and a strict host-key trust — by default the keys the
// inventory recorded for each machine and its SSH CA (playbooks/hostkeys),
// with --known-hosts that file. No path trusts an unchecked key.
type sshLogin struct {
	User    string
	Port    int
	Auth    []ssh.AuthMethod
	Timeout time.Duration
	// knownHosts is --known-hosts' check; nil: the inventory's.
	knownHosts ssh.HostKeyCallback
	store      *inventory.Store
	close      func()
}

// newLogin reads the login flags. store is where the inventory's host keys
// and SSH CA are read from (not read when --known-hosts is given; may then
// be nil). outside, when not nil, is the check used without --known-hosts
// instead of the inventory's, for hosts outside it (`run --hosts-file`).
// Call Close when done.
func newLogin(c *cli.Context, store *inventory.Store, outside ssh.HostKeyCallback) (*sshLogin, error) {
	l := &sshLogin{User: strings.TrimSpace(c.String("user")), Port: c.Int("port"), Timeout: c.Duration("connect-timeout"), store: store, close: func() {}}
	if l.User == "" {
		return nil, errors.New("--user is empty")
	}
	if l.Port < 1 || l.Port > 65535 {
		return nil, fmt.Errorf("--port %d: want 1-65535", l.Port)
	}
	if l.Timeout <= 0 {
		return nil, fmt.Errorf("--connect-timeout %s: want a positive duration", l.Timeout)
	}
	if f := c.String("known-hosts"); f != "" {
		cb, err := knownhosts.New(f)
		if err != nil {
			return nil, fmt.Errorf("--known-hosts %s: %w", f, err)
		}
		l.knownHosts = cb
	} else if outside != nil {
		l.knownHosts = outside
	} else if store == nil {
		return nil, errors.New("no host keys to check against: give --known-hosts FILE")
	}
	if f := c.String("identity"); f != "" {
		a, err := remote.KeyFileAuth(f)
		if err != nil {
			return nil, fmt.Errorf("--identity: %w", err)
		}
		l.Auth = []ssh.AuthMethod{a}
	} else {
		a, cl, err := remote.AgentAuth(os.Getenv("SSH_AUTH_SOCK"))
		if err != nil {
			return nil, err
		}
		l.Auth, l.close = []ssh.AuthMethod{a}, func() { cl.Close() }
	}
	return l, nil
}

// defaultKnownHosts is ~/.ssh/known_hosts, for `run --hosts-file` without
// --known-hosts: those hosts are outside the inventory.
func defaultKnownHosts() (ssh.HostKeyCallback, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("--hosts-file without --known-hosts: no home directory for ~/.ssh/known_hosts: %w", err)
	}
	f := filepath.Join(home, ".ssh", "known_hosts")
	cb, err := knownhosts.New(f)
	if err != nil {
		return nil, fmt.Errorf("--hosts-file without --known-hosts: %s: %w (hosts outside the inventory are checked against a known_hosts file: give --known-hosts FILE)", f, err)
	}
	return cb, nil
}

// Close releases the ssh-agent connection, if any.
func (l *sshLogin) Close() { l.close() }

// Addr is m's SSH address: its inventory IP at --port.
func (l *sshLogin) Addr(m *inventory.Machine) string {
	return net.JoinHostPort(m.IP, strconv.Itoa(l.Port))
}

// Options are the remote options for logging in to machines ms: their
// host keys as the inventory recorded them, each host asked only for the
// recorded key types (or --known-hosts' check).
func (l *sshLogin) Options(ctx context.Context, ms []*inventory.Machine) (remote.Options, error) {
	o := remote.Options{Auth: l.Auth, ConnectTimeout: l.Timeout, HostKeyCallback: l.knownHosts}
	if l.knownHosts != nil {
		return o, nil
	}
	tr, err := hostkeys.Load(ctx, l.store, ms, l.Port)
	if err != nil {
		return o, fmt.Errorf("host keys recorded in the inventory: %w", err)
	}
	o.HostKeyCallback, o.HostKeyAlgorithms = tr.HostKeyCallback(), tr.HostKeyAlgorithms
	return o, nil
}

// ClientConfig is the login to machine m as an ssh.ClientConfig (for
// provision/ready).
func (l *sshLogin) ClientConfig(ctx context.Context, m *inventory.Machine) (*ssh.ClientConfig, error) {
	o, err := l.Options(ctx, []*inventory.Machine{m})
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: l.User, Auth: o.Auth, HostKeyCallback: o.HostKeyCallback, Timeout: l.Timeout}
	if o.HostKeyAlgorithms != nil {
		cfg.HostKeyAlgorithms = o.HostKeyAlgorithms(l.Addr(m))
	}
	return cfg, nil
}

// Dial logs in to machine m at its inventory IP. Its host keys are read
// from the inventory at each dial (by ID when m carries none, as a mesh
// peer does), so a long-running command sees keys recorded since it began.
func (l *sshLogin) Dial(ctx context.Context, m *inventory.Machine) (*remote.Client, error) {
	if m.IP == "" {
		return nil, fmt.Errorf("machine %s has no IP address in the inventory", m.ID)
	}
	rec := m
	if l.knownHosts == nil && len(m.HostKeys) == 0 {
		got, err := l.store.Get(ctx, m.ID)
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return nil, fmt.Errorf("machine %s: %w", m.ID, err)
		}
		if got != nil {
			cp := *got
			cp.IP = m.IP
			rec = &cp
		}
	}
	o, err := l.Options(ctx, []*inventory.Machine{rec})
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.ID, err)
	}
	return remote.Dial(ctx, remote.Target{ID: m.ID, Addr: l.Addr(m), User: l.User}, o)
}
