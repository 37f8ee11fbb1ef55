package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
)

func sshKeysCommand(e *env) *cli.Command {
	lifetime := &cli.StringFlag{Name: "cert-lifetime", Value: "365d", Usage: "host certificate lifetime (Nd or a Go duration such as 8760h)"}
	install := append([]cli.Flag{
		&cli.BoolFlag{Name: "install", Usage: "install the certificates on the hosts over SSH (host keys checked strictly) and reload sshd"},
	}, loginFlags("with --install: ")...)
	return &cli.Command{
		Name:  "ssh-keys",
		Usage: "SSH host keys: what `ironrack run` trusts (never on first use), and ironrack's SSH CA",
		Description: "A deployed machine reports its host public keys on first boot, with a single-use token only its\n" +
			"deploy's seed carries; the boot server records them and, with an SSH CA, answers host certificates.\n" +
			"Keys of machines ironrack did not deploy are imported after the operator checks them.",
		Subcommands: []*cli.Command{
			{
				Name:  "ca",
				Usage: "ironrack's SSH certificate authority (its private key sealed with the key file)",
				Subcommands: []*cli.Command{
					{
						Name:  "init",
						Usage: "create the SSH CA (ed25519); an existing one is never replaced",
						Action: func(c *cli.Context) error {
							if c.NArg() > 0 {
								return fmt.Errorf("ssh-keys ca init: unexpected argument %q", c.Args().First())
							}
							s, err := e.store(c, true)
							if err != nil {
								return err
							}
							pub, priv, err := hostkeys.NewCA()
							if err != nil {
								return err
							}
							if err := s.InitSSHCA(c.Context, pub, priv); err != nil {
								return fmt.Errorf("ssh-keys ca init: %w", err)
							}
							fmt.Fprintf(e.stdout, "SSH CA created; its private key is sealed with %s\n%s\n", c.String("key-file"), pub)
							return nil
						},
					},
					{
						Name:  "show",
						Usage: "print the CA as a @cert-authority known_hosts line",
						Flags: []cli.Flag{&cli.StringFlag{Name: "hosts", Value: "*", Usage: "known_hosts host patterns the CA is trusted for, comma-separated"}},
						Action: func(c *cli.Context) error {
							if c.NArg() > 0 {
								return fmt.Errorf("ssh-keys ca show: unexpected argument %q", c.Args().First())
							}
							pats := c.String("hosts")
							if pats == "" || strings.ContainsAny(pats, " \t\r\n") {
								return fmt.Errorf("--hosts %q: want comma-separated patterns without spaces", pats)
							}
							s, err := e.store(c, false)
							if err != nil {
								return err
							}
							pub, err := hostkeys.CAKey(c.Context, s)
							if err != nil {
								return err
							}
							if pub == nil {
								return errors.New("ssh-keys ca show: no SSH CA; create one with `ironrack ssh-keys ca init`")
							}
							fmt.Fprintln(e.stdout, hostkeys.CALine(pub, pats))
							return nil
						},
					},
				},
			},
			{
				Name:      "list",
				Usage:     "show the recorded host keys' fingerprints (all machines with an IP or keys, or those named or selected)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     selectionFlags(),
				Action: func(c *cli.Context) error {
					ms, _, err := e.sshMachines(c)
					if err != nil {
						return err
					}
					return e.printHostKeys(ms)
				},
			},
			{
				Name:      "known-hosts",
				Usage:     "print the known_hosts text `ironrack run` trusts, for plain ssh (-o UserKnownHostsFile=FILE)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     append(selectionFlags(), &cli.IntFlag{Name: "port", Value: 22, Usage: "the machines' SSH port"}),
				Action: func(c *cli.Context) error {
					if p := c.Int("port"); p < 1 || p > 65535 {
						return fmt.Errorf("--port %d: want 1-65535", p)
					}
					ms, s, err := e.sshMachines(c)
					if err != nil {
						return err
					}
					tr, err := hostkeys.Load(c.Context, s, ms, c.Int("port"))
					if err != nil {
						return err
					}
					_, err = e.stdout.Write(tr.KnownHosts())
					return err
				},
			},
			{
				Name:      "import",
				Usage:     "record host keys from known_hosts or ssh-keyscan output, after you confirm each fingerprint",
				ArgsUsage: "FILE",
				Description: "Hosts are matched to machines by IP or machine ID; a host that is no machine, a hashed name or a\n" +
					"bad line refuses the whole file (FILE:LINE). A machine's recorded keys are replaced by the file's\n" +
					"(its certificates are dropped: sign again). Check the fingerprints out of band before you confirm.",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask (scripts that checked the keys themselves)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("ssh-keys import: give exactly one FILE (known_hosts or ssh-keyscan output; - for stdin)")
					}
					return e.importHostKeys(c, c.Args().First())
				},
			},
			{
				Name:      "sign",
				Usage:     "sign host certificates for machines' recorded keys with the SSH CA (needs the key file)",
				ArgsUsage: "ID|SERIAL|MAC...",
				Flags: append([]cli.Flag{lifetime,
					&cli.StringFlag{Name: "out", Usage: "also write each machine's certificates to DIR/<id>/ (ssh_host_TYPE_key-cert.pub and the sshd drop-in) to copy onto the hosts"}}, install...),
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("ssh-keys sign: name the machines (ID, serial or MAC)")
					}
					return e.signHostKeys(c, 0)
				},
			},
			{
				Name:      "renew",
				Usage:     "re-sign the host certificates that expire soon, from the recorded keys (needs the key file)",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags: append(append(selectionFlags(), lifetime,
					&cli.StringFlag{Name: "within", Value: "30d", Usage: "renew certificates that expire within this (Nd or a Go duration)"},
					&cli.StringFlag{Name: "out", Usage: "also write each machine's certificates to DIR/<id>/ to copy onto the hosts"}), install...),
				Action: func(c *cli.Context) error {
					within, err := parseDays(c.String("within"))
					if err != nil || within < 0 {
						return fmt.Errorf("--within %q: want Nd (days) or a Go duration such as 720h", c.String("within"))
					}
					return e.signHostKeys(c, within)
				},
			},
		},
	}
}

// parseDays is time.ParseDuration that also takes whole days ("30d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad day count %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// sshMachines are the named machines, or those the selection flags select,
// or every machine with an IP or keys.
func (e *env) sshMachines(c *cli.Context) ([]*inventory.Machine, *inventory.Store, error) {
	byFlags := false
	for _, f := range []string{"where", "state", "rack", "tier"} {
		byFlags = byFlags || c.String(f) != ""
	}
	if byFlags && c.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: name machines or select them with --where/--rack/--state/--tier, not both", commandPath(c))
	}
	s, err := e.store(c, false)
	if err != nil {
		return nil, nil, err
	}
	if byFlags {
		q, err := queryFrom(c)
		if err != nil {
			return nil, nil, err
		}
		ms, err := s.List(c.Context, q)
		return ms, s, err
	}
	if c.NArg() > 0 {
		var ms []*inventory.Machine
		for _, a := range c.Args().Slice() {
			m, err := s.Find(c.Context, a)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", a, err)
			}
			ms = append(ms, m)
		}
		return ms, s, nil
	}
	all, err := s.List(c.Context, inventory.Query{})
	if err != nil {
		return nil, nil, err
	}
	var ms []*inventory.Machine
	for _, m := range all {
		if m.IP != "" || len(m.HostKeys) > 0 {
			ms = append(ms, m)
		}
	}
	return ms, s, nil
}

// hostKeyView is one machine's keys as `ssh-keys list -o json` prints them.
type hostKeyView struct {
	ID          string     `json:"id"`
	IP          string     `json:"ip"`
	State       string     `json:"state"`
	Keys        []keyView  `json:"host_keys"`
	Certs       int        `json:"host_certs"`
	CertExpires *time.Time `json:"cert_expires"`
}

type keyView struct {
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	Key         string `json:"key"`
}

func (e *env) printHostKeys(ms []*inventory.Machine) error {
	var views []hostKeyView
	for _, m := range ms {
		v := hostKeyView{ID: m.ID, IP: m.IP, State: string(m.State), Keys: []keyView{}, Certs: len(m.HostCerts)}
		for _, l := range m.HostKeys {
			k, _, err := inventory.ParseHostKey(l)
			if err != nil {
				return fmt.Errorf("machine %s: recorded host key: %w", m.ID, err)
			}
			v.Keys = append(v.Keys, keyView{Type: k.Type(), Fingerprint: ssh.FingerprintSHA256(k), Key: l})
		}
		if exp, err := hostkeys.CertExpiry(m.HostCerts); err == nil && !exp.IsZero() {
			v.CertExpires = &exp
		}
		views = append(views, v)
	}
	if e.format == "json" {
		if views == nil {
			views = []hostKeyView{}
		}
		return writeJSON(e.stdout, views)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tIP\tSTATE\tTYPE\tFINGERPRINT\tCERT EXPIRES")
	for _, v := range views {
		exp := "-"
		if v.CertExpires != nil {
			exp = v.CertExpires.Format("2006-01-02")
		}
		if len(v.Keys) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\tno host keys recorded\t-\n", v.ID, dash(v.IP), v.State)
		}
		for _, k := range v.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, dash(v.IP), v.State, k.Type, k.Fingerprint, exp)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e *env) importHostKeys(c *cli.Context, file string) error {
	var f *os.File
	if file == "-" {
		in, ok := e.stdin.(*os.File)
		if !ok || isTerminal(e.stdin) && !c.Bool("yes") {
			return errors.New("ssh-keys import: read the keys from a FILE so you can confirm on the terminal (or give --yes)")
		}
		f = in
	} else {
		var err error
		if f, err = os.Open(file); err != nil {
			return fmt.Errorf("ssh-keys import: %w", err)
		}
		defer f.Close()
	}
	entries, err := hostkeys.ParseKnownHosts(file, f)
	if err != nil {
		return fmt.Errorf("ssh-keys import refused, nothing recorded: %w", err)
	}
	s, err := e.store(c, false)
	if err != nil {
		return err
	}
	all, err := s.List(c.Context, inventory.Query{})
	if err != nil {
		return err
	}
	found, err := hostkeys.Match(file, entries, all)
	if err != nil {
		return fmt.Errorf("ssh-keys import refused, nothing recorded: %w", err)
	}
	var todo []hostkeys.Imported
	tw := tabwriter.NewWriter(e.stderr, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tIP\tTYPE\tFINGERPRINT\tLINE\tNOW")
	for _, im := range found {
		same := strings.Join(im.Keys, "\n") == strings.Join(im.Machine.HostKeys, "\n")
		now := "new"
		switch {
		case same:
			now = "recorded already"
		case len(im.Machine.HostKeys) > 0:
			now = fmt.Sprintf("REPLACES %d recorded keys", len(im.Machine.HostKeys))
		}
		for i, l := range im.Keys {
			k, _, _ := inventory.ParseHostKey(l)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s:%d\t%s\n", im.Machine.ID, dash(im.Machine.IP), k.Type(), ssh.FingerprintSHA256(k), file, im.Lines[i], now)
		}
		if !same {
			todo = append(todo, im)
		}
	}
	tw.Flush()
	if len(todo) == 0 {
		fmt.Fprintln(e.stdout, "nothing to import: every key is recorded already")
		return nil
	}
	if !c.Bool("yes") {
		if err := e.confirm(fmt.Sprintf("Record these keys for %d machines? Check each fingerprint out of band first. [y/N] ", len(todo))); err != nil {
			return fmt.Errorf("ssh-keys import: %w", err)
		}
	}
	for _, im := range todo {
		if _, err := s.SetHostKeys(c.Context, im.Machine.ID, im.Keys, nil, inventory.Operator,
			inventory.Change{What: "host keys", Why: fmt.Sprintf("imported from %s after confirmation: %s", file, strings.Join(inventory.Fingerprints(im.Keys), ", "))}); err != nil {
			return fmt.Errorf("ssh-keys import: %w", err)
		}
		fmt.Fprintf(e.stdout, "%s: recorded %d host keys\n", im.Machine.ID, len(im.Keys))
	}
	return nil
}

// signHostKeys signs (within == 0: every named machine) or renews (the
// machines whose certificates expire within) host certificates.
func (e *env) signHostKeys(c *cli.Context, within time.Duration) error {
	renew := c.Command.Name == "renew"
	life, err := parseDays(c.String("cert-lifetime"))
	if err != nil || life <= 0 {
		return fmt.Errorf("--cert-lifetime %q: want Nd (days) or a Go duration such as 8760h", c.String("cert-lifetime"))
	}
	s, err := e.store(c, true)
	if err != nil {
		return err
	}
	pem, err := s.SSHCAPrivateKey(c.Context)
	if err != nil {
		return fmt.Errorf("ssh-keys %s: %w", c.Command.Name, err)
	}
	ca, err := hostkeys.ParseCA(pem)
	if err != nil {
		return err
	}
	ms, _, err := e.sshMachines(c)
	if err != nil {
		return err
	}
	var login *sshLogin
	if c.Bool("install") {
		if login, err = newLogin(c, s, nil); err != nil {
			return fmt.Errorf("ssh-keys %s --install: %w", c.Command.Name, err)
		}
		defer login.Close()
	}
	now := time.Now()
	signed := 0
	var failed []string
	for _, m := range ms {
		if len(m.HostKeys) == 0 {
			if !renew || c.NArg() > 0 {
				return fmt.Errorf("ssh-keys %s: machine %s has no recorded host keys (deploy it, or `ironrack ssh-keys import`)", c.Command.Name, m.ID)
			}
			continue
		}
		if renew {
			exp, err := hostkeys.CertExpiry(m.HostCerts)
			if err != nil {
				return fmt.Errorf("machine %s: %w", m.ID, err)
			}
			if len(m.HostCerts) == 0 || exp.IsZero() || exp.After(now.Add(within)) {
				continue
			}
		}
		hostname := ""
		if spec, err := s.Deploy(c.Context, m.ID); err == nil {
			hostname = spec.Hostname
		} else if !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		certs, err := ca.SignMachine(m.ID, hostname, m.IP, m.HostKeys, life, now)
		if err != nil {
			return err
		}
		if _, err := s.SetHostCerts(c.Context, m.ID, m.HostKeys, certs, inventory.Operator,
			inventory.Change{Why: fmt.Sprintf("%d host certificates signed by the SSH CA, valid %s", len(certs), life)}); err != nil {
			return err
		}
		if dir := c.String("out"); dir != "" {
			if err := writeCerts(dir, m, certs); err != nil {
				return err
			}
		}
		fmt.Fprintf(e.stdout, "%s: signed %d host certificates for %s, valid until %s\n", m.ID, len(certs),
			strings.Join(hostkeys.Principals(m.ID, hostname, m.IP), ","), now.Add(life).UTC().Format("2006-01-02"))
		signed++
		if login != nil {
			if err := e.installCerts(c, login, m, certs); err != nil {
				fmt.Fprintf(e.stderr, "%s: not installed: %v\n", m.ID, err)
				failed = append(failed, m.ID)
				continue
			}
			fmt.Fprintf(e.stdout, "%s: installed on %s, sshd reloaded\n", m.ID, m.IP)
		}
	}
	if signed == 0 && renew {
		fmt.Fprintf(e.stdout, "no host certificate expires within %s\n", within)
	}
	if len(failed) > 0 {
		return fmt.Errorf("ssh-keys %s: signed and recorded, but not installed on %d machines (%s): install them later with --install or --out", c.Command.Name, len(failed), strings.Join(failed, " "))
	}
	return nil
}

// installCerts installs a machine's new certificates over SSH with the
// CLI's login (its host key checked against the inventory's, or
// --known-hosts), and reloads sshd.
func (e *env) installCerts(c *cli.Context, login *sshLogin, m *inventory.Machine, certs []string) error {
	if m.IP == "" {
		return errors.New("no IP in the inventory")
	}
	script, err := hostkeys.InstallScript(images.HostKeysDir, hostkeys.DefaultReload, m.HostKeys, certs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	client, err := login.Dial(ctx, m)
	if err != nil {
		return err
	}
	defer client.Close()
	return hostkeys.Install(ctx, client, script)
}

// writeCerts writes a machine's certificates as the host keeps them in
// /etc/ssh, under DIR/<id>/: ssh_host_TYPE_key-cert.pub and the sshd
// drop-in naming them.
func writeCerts(dir string, m *inventory.Machine, certs []string) error {
	files, err := hostkeys.CertFiles(images.HostKeysDir, m.HostKeys, certs)
	if err != nil {
		return fmt.Errorf("machine %s: %w", m.ID, err)
	}
	for name, body := range files {
		p := filepath.Join(dir, m.ID, filepath.Base(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
