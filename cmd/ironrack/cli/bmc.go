package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/ironrack/ironrack/inventory"
	"github.com/urfave/cli/v2"
)

func bmcCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "bmc",
		Usage: "BMC credentials",
		Subcommands: []*cli.Command{setPasswordCommand(e), {
			Name:  "credential",
			Usage: "shared credentials that rack sheets name in bmc_credential_ref",
			Subcommands: []*cli.Command{{
				Name:      "set",
				Usage:     "store a password (read from stdin, never from arguments) under REF",
				ArgsUsage: "REF",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("credential set: want exactly one REF")
					}
					line, err := bufio.NewReader(e.stdin).ReadString('\n')
					if err != nil && line == "" {
						return errors.New("credential set: give the password on stdin")
					}
					pw := strings.TrimRight(line, "\r\n")
					if pw == "" {
						return errors.New("credential set: empty password")
					}
					s, err := e.store(c, true)
					if err != nil {
						return err
					}
					if err := s.SetCredential(c.Context, c.Args().First(), pw); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "stored credential %s\n", c.Args().First())
					return nil
				},
			}},
		}},
	}
}

func keyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "the key file that encrypts BMC credentials",
		Subcommands: []*cli.Command{{
			Name:  "init",
			Usage: "create the key file (mode 0600) if it does not exist",
			Action: func(c *cli.Context) error {
				if _, err := inventory.LoadKeyFile(c.String("key-file"), true); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "key file %s ready\n", c.String("key-file"))
				return nil
			},
		}},
	}
}
