package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/ready"
)

// readyCommand is `ironrack wait-ready`: wait until deployed machines take
// SSH logins in a row and their own Consul agents report healthy.
func readyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "wait-ready",
		Usage:     "wait until deployed machines are ready: SSH logins that run a command, twice in a row, and their OS agent's checks passing",
		ArgsUsage: "[ID|SERIAL|MAC...]",
		Description: "A deploy ends when the image is written; the machine then boots it, and cloud-init may still\n" +
			"restart sshd. This waits for what comes next: --logins logins in a row as --user with --identity\n" +
			"(or the ssh-agent) to the machine's inventory address, each running --command, then every check\n" +
			"of the node the deployed OS's own Consul agent registered passing (--no-health skips that).\n" +
			"Exits non-zero if any machine is not ready within --timeout.",
		Flags: append(selectionFlags(),
			&cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"},
			&cli.StringFlag{Name: "identity", Aliases: []string{"i"}, Usage: "SSH private key file (default: the ssh-agent at SSH_AUTH_SOCK)"},
			&cli.StringFlag{Name: "user", Value: "root", Usage: "login name"},
			&cli.StringFlag{Name: "known-hosts", Usage: "known_hosts file to check host keys against (default: host keys are not checked)"},
			&cli.StringFlag{Name: "command", Value: "true", Usage: "command each login runs; it must exit 0"},
			&cli.IntFlag{Name: "logins", Value: 2, Usage: "logins in a row that must succeed"},
			&cli.IntFlag{Name: "port", Value: 22, Usage: "SSH port"},
			&cli.BoolFlag{Name: "no-health", Usage: "do not wait for the OS agent's Consul checks"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "how long to wait for every machine"},
		),
		Action: func(c *cli.Context) error {
			if c.Int("logins") < 1 {
				return fmt.Errorf("wait-ready: --logins %d: want 1 or more", c.Int("logins"))
			}
			if p := c.Int("port"); p < 1 || p > 65535 {
				return fmt.Errorf("wait-ready: --port %d: want 1-65535", p)
			}
			sc, err := sshClientConfig(c)
			if err != nil {
				return fmt.Errorf("wait-ready: %w", err)
			}
			sel, _, err := e.selectMachines(c)
			if err != nil {
				return err
			}
			cfg := ready.Config{SSH: sc, Command: c.String("command"), Logins: c.Int("logins"), Logger: e.log}
			if !c.Bool("no-health") {
				client, err := consulClient(c)
				if err != nil {
					return err
				}
				cfg.Health = ready.ConsulAgent{Client: client}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			type row struct {
				m    *inventory.Machine
				took time.Duration
				err  error
			}
			rows := make([]row, len(sel))
			var mu sync.Mutex
			g := new(errgroup.Group)
			g.SetLimit(32)
			start := time.Now()
			for i, s := range sel {
				rows[i].m = s.Machine
				g.Go(func() error {
					var err error
					if s.Machine.IP == "" {
						err = fmt.Errorf("%s has no address in the inventory (deployed? ironrack inventory show %s)", s.Machine.ID, s.Machine.ID)
					} else {
						err = cfg.Wait(ctx, ready.Target{ID: s.Machine.ID, Addr: net.JoinHostPort(s.Machine.IP, fmt.Sprint(c.Int("port")))})
					}
					mu.Lock()
					rows[i].took, rows[i].err = time.Since(start), err
					mu.Unlock()
					return nil
				})
			}
			g.Wait()
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tADDRESS\tREADY\tAFTER\tDETAIL")
			failed := 0
			for _, r := range rows {
				res, detail := "yes", ""
				if r.err != nil {
					res, detail, failed = "no", r.err.Error(), failed+1
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.m.ID, r.m.IP, res, r.took.Round(100*time.Millisecond), detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("wait-ready: %d of %d machines not ready", failed, len(rows))
			}
			return nil
		},
	}
}

// sshClientConfig is the login --identity (or the ssh-agent) and --user
// give, checking host keys against --known-hosts when given.
func sshClientConfig(c *cli.Context) (*ssh.ClientConfig, error) {
	var auth []ssh.AuthMethod
	if f := c.String("identity"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--identity: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(b)
		if err != nil {
			var pp *ssh.PassphraseMissingError
			if errors.As(err, &pp) {
				return nil, fmt.Errorf("--identity %s is encrypted: load it into ssh-agent and leave --identity out", f)
			}
			return nil, fmt.Errorf("--identity %s: %w", f, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	} else if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		auth = append(auth, ssh.PublicKeysCallback(agentSigners(sock)))
	} else {
		return nil, errors.New("no SSH key: give --identity FILE, or run an ssh-agent (SSH_AUTH_SOCK)")
	}
	hk := ssh.InsecureIgnoreHostKey()
	if f := c.String("known-hosts"); f != "" {
		var err error
		if hk, err = knownhosts.New(f); err != nil {
			return nil, fmt.Errorf("--known-hosts: %w", err)
		}
	}
	user := strings.TrimSpace(c.String("user"))
	if user == "" {
		return nil, errors.New("--user is empty")
	}
	return &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: hk, Timeout: 10 * time.Second}, nil
}

// agentSigners returns the ssh-agent's keys, asked per login.
func agentSigners(sock string) func() ([]ssh.Signer, error) {
	return func() ([]ssh.Signer, error) {
		conn, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("ssh-agent at SSH_AUTH_SOCK %s: %w", sock, err)
		}
		defer conn.Close()
		return agent.NewClient(conn).Signers()
	}
}
