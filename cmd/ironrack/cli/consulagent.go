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
		Usage: "the gossip key and ACL token deployed machines' Consul agents join with",
		Subcommands: []*cli.Command{{
			Name: "set",
			Usage: "seal and store the gossip key and/or the agent ACL token (each read from a file, - for stdin); " +
				"what is not given is kept. Machines deployed from then on get them",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "gossip-key-file", Usage: "file holding the cluster's gossip key (consul keygen)"},
				&cli.StringFlag{Name: "token-file", Usage: "file holding the ACL token (SecretID) agents use for their node and services"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("consul-agent set: unexpected argument %q (secrets come from files)", c.Args().First())
				}
				kf, tf := c.String("gossip-key-file"), c.String("token-file")
				if kf == "" && tf == "" {
					return errors.New("consul-agent set: give --gossip-key-file, --token-file or both")
				}
				if kf == "-" && tf == "-" {
					return errors.New("consul-agent set: only one of the two can be read from stdin")
				}
				s, err := e.store(c, true)
				if err != nil {
					return err
				}
				cur, err := s.AgentSecrets(c.Context)
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
				s, err := e.store(c, true)
				if err != nil {
					return err
				}
				cur, err := s.AgentSecrets(c.Context)
				if err != nil {
					return err
				}
				if e.format == "json" {
					return writeJSON(e.stdout, map[string]bool{"gossip_key": cur.GossipKey != "", "token": cur.Token != ""})
				}
				fmt.Fprintln(e.stdout, cur)
				return nil
			},
		}, {
			Name:  "clear",
			Usage: "delete both secrets (machines deployed from then on get neither)",
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

// readSecret reads one secret from path ("-": stdin): the first line,
// trimmed; empty is an error naming the flag. Errors never hold the value.
func (e *env) readSecret(flag, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(e.stdin, 4096))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, path, err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return "", fmt.Errorf("%s %s: empty", flag, path)
	}
	return string(line), nil
}
