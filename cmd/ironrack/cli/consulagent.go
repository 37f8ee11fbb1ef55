package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/inventory"
)

// consulAgentCommand sets what every deployed machine's Consul agent is
// given to join a cluster that encrypts its gossip and enforces ACLs. The
// values come from files (or stdin), never from arguments, and are sealed
// with the key file; the boot server opens them with the same key file.
func consulAgentCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "consul-agent",
		Usage: "how deployed machines' Consul agents join a secured cluster: gossip key, ACL token, CA certificate, datacenter",
		Subcommands: []*cli.Command{{
			Name: "set",
			Usage: "seal and store the gossip key, the agent ACL token and/or the servers' CA (each read from a file, - for stdin), or the datacenter; " +
				"what is not given is kept. Machines deployed from then on get them",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "gossip-key-file", Usage: "file holding the cluster's gossip key (consul keygen)"},
				&cli.StringFlag{Name: "token-file", Usage: "file holding the ACL token (SecretID) agents use for their node and services"},
				&cli.StringFlag{Name: "ca-file", Usage: "PEM file of the CA the servers' TLS certificates chain to (agents then verify the servers and get their own certificate: auto_encrypt)"},
				&cli.StringFlag{Name: "datacenter", Usage: "the joined cluster's datacenter (default: the inventory Consul's)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("consul-agent set: unexpected argument %q (secrets come from files)", c.Args().First())
				}
				kf, tf, cf := c.String("gossip-key-file"), c.String("token-file"), c.String("ca-file")
				if kf == "" && tf == "" && cf == "" && !c.IsSet("datacenter") {
					return errors.New("consul-agent set: give --gossip-key-file, --token-file, --ca-file, --datacenter, or several")
				}
				stdin := 0
				for _, f := range []string{kf, tf, cf} {
					if f == "-" {
						stdin++
					}
				}
				if stdin > 1 {
					return errors.New("consul-agent set: only one file can be read from stdin (-)")
				}
				s, cur, err := e.agentSecrets(c)
				if err != nil {
					return err
				}
				if kf != "" {
					if cur.GossipKey, err = e.readSecret("--gossip-key-file", kf); err != nil {
						return err
					}
				}
				if tf != "" {
					if cur.Token, err = e.readSecret("--token-file", tf); err != nil {
						return err
					}
				}
				if cf != "" {
					// One byte over the bound, so that validation says how big.
					b, err := e.readInput("--ca-file", cf, inventory.MaxCACert+1)
					if err != nil {
						return err
					}
					cur.CACert = string(b)
				}
				if c.IsSet("datacenter") {
					cur.Datacenter = c.String("datacenter")
				}
				if err := s.SetAgentSecrets(c.Context, cur); err != nil {
					return fmt.Errorf("consul-agent set: %w", err)
				}
				fmt.Fprintf(e.stdout, "consul agent secrets stored: %s\n", cur)
				return nil
			},
		}, {
			Name:  "show",
			Usage: "say which secrets are set (never their values)",
			Action: func(c *cli.Context) error {
				_, cur, err := e.agentSecrets(c)
				if err != nil {
					return err
				}
				if e.format == "json" {
					return writeJSON(e.stdout, map[string]any{"gossip_key": cur.GossipKey != "", "token": cur.Token != "", "ca_cert": cur.CACert != "",
						"datacenter": cur.Datacenter})
				}
				fmt.Fprintln(e.stdout, cur)
				return nil
			},
		}, {
			Name:  "clear",
			Usage: "delete them all (machines deployed from then on get none)",
			Action: func(c *cli.Context) error {
				s, err := e.store(c, false)
				if err != nil {
					return err
				}
				if err := s.SetAgentSecrets(c.Context, inventory.AgentSecrets{}); err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, "consul agent secrets cleared")
				return nil
			},
		}},
	}
}

// agentSecrets opens the inventory with the key file and reads the
// agent secrets set so far.
func (e *env) agentSecrets(c *cli.Context) (*inventory.Store, inventory.AgentSecrets, error) {
	s, err := e.store(c, true)
	if err != nil {
		return nil, inventory.AgentSecrets{}, err
	}
	cur, err := s.AgentSecrets(c.Context)
	return s, cur, err
}

// readSecret reads one secret from path ("-": stdin): the first line,
// trimmed; empty is an error naming the flag. Errors never hold the value.
func (e *env) readSecret(flag, path string) (string, error) {
	b, err := e.readInput(flag, path, 4096)
	if err != nil {
		return "", err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return "", fmt.Errorf("%s %s: empty", flag, path)
	}
	return string(line), nil
}

// readInput reads at most max bytes of path ("-": stdin); empty is an
// error naming the flag.
func (e *env) readInput(flag, path string, max int64) ([]byte, error) {
	r := e.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%s %s: empty", flag, path)
	}
	return b, nil
}
