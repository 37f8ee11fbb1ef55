package cli

import (
	"errors"
	"fmt"

	"github.com/ironrack/ironrack/ui"
	"github.com/urfave/cli/v2"
)

// uiCommand is `ironrack ui`: the web dashboard, and its tokens.
func uiCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ui",
		Usage:     "serve the web dashboard: racks, machines, tiers, boot server; live, with token auth",
		UsageText: "ironrack ui [--listen 127.0.0.1:8081] [--tls-cert FILE --tls-key FILE]\n   ironrack ui token create --role viewer|admin NAME",
		Description: "Serves on loopback by default; another address is refused without --tls-cert and --tls-key.\n" +
			"Log in with a token from `ironrack ui token create`. Viewers read; admins power machines on, off or\n" +
			"cycle them, set PXE boot and change state, through the same workflows and safety rules as the CLI.\n" +
			"See docs/ui.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8081", Usage: "HOST:PORT to serve on"},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate: serve HTTPS (needed beyond loopback)"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key of --tls-cert"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("ui: unexpected argument %q (settings are flags; tokens: ironrack ui token create)", c.Args().First())
			}
			s, err := e.store(c, true) // actions read BMC credentials
			if err != nil {
				return err
			}
			client, err := consulClient(c)
			if err != nil {
				return err
			}
			srv, err := ui.New(ui.Config{Store: s, Consul: client, Prefix: c.String("prefix"), Listen: c.String("listen"),
				TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), Logger: e.log})
			if err != nil {
				return err
			}
			scheme := "http"
			if c.String("tls-cert") != "" {
				scheme = "https"
			}
			fmt.Fprintf(e.stderr, "ironrack ui: %s://%s/\n", scheme, c.String("listen"))
			return srv.Serve(c.Context)
		},
		Subcommands: []*cli.Command{{
			Name:  "token",
			Usage: "the dashboard's login tokens (stored hashed in Consul)",
			Subcommands: []*cli.Command{
				{
					Name:      "create",
					Usage:     "create a token and print it once",
					ArgsUsage: "NAME",
					Flags: []cli.Flag{&cli.StringFlag{Name: "role", Value: ui.RoleViewer,
						Usage: "viewer (reads) or admin (also acts)"}},
					Action: func(c *cli.Context) error {
						if c.NArg() != 1 {
							return errors.New("ui token create: want exactly one token NAME")
						}
						client, err := consulClient(c)
						if err != nil {
							return err
						}
						t := &ui.Tokens{Client: client, Prefix: c.String("prefix")}
						secret, err := t.Create(c.Context, c.Args().First(), c.String("role"))
						if err != nil {
							return fmt.Errorf("ui token create: %w", err)
						}
						fmt.Fprintln(e.stdout, secret)
						return nil
					},
				},
				{
					Name:      "delete",
					Usage:     "delete a token; its sessions end at their next action",
					ArgsUsage: "NAME",
					Action: func(c *cli.Context) error {
						if c.NArg() != 1 {
							return errors.New("ui token delete: want exactly one token NAME")
						}
						client, err := consulClient(c)
						if err != nil {
							return err
						}
						return (&ui.Tokens{Client: client, Prefix: c.String("prefix")}).Delete(c.Context, c.Args().First())
					},
				},
			},
		}},
	}
}
