// Package cli is ironrack's command line: flags, config, wiring and output
// formats. It holds no business logic; every command is a thin shell over
// the inventory, ipmi and provision packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
	"github.com/urfave/cli/v2"
)

// env is what every command gets: streams, the logger and lazily built
// clients.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	format         string
	// args is the command line after the program name, as given: `run`
	// reads its command after "--" from it.
	args []string
}

// Run runs the CLI with args (args[0] is the program name).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) > 1 {
		e.args = args[1:]
	}
	app := &cli.App{
		Name:                 "ironrack",
		Usage:                "take racked servers from cabled to serving, and keep them accounted for",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "consul", EnvVars: []string{"IRONRACK_CONSUL"}, Value: "127.0.0.1:8500",
				Usage: "Consul HTTP address (CONSUL_HTTP_ADDR is used when this flag and IRONRACK_CONSUL are unset)"},
			&cli.StringFlag{Name: "consul-token", EnvVars: []string{"IRONRACK_CONSUL_TOKEN"},
				Usage: "Consul ACL token (default: CONSUL_HTTP_TOKEN)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or csv"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error (logs go to stderr)"},
			&cli.StringFlag{Name: "key-file", EnvVars: []string{"IRONRACK_KEY_FILE"}, Value: defaultKeyFile(),
				Usage: "key that encrypts BMC credentials at rest (created on first use, mode 0600)"},
			&cli.StringFlag{Name: "prefix", EnvVars: []string{"IRONRACK_PREFIX"}, Value: "ironrack", Usage: "Consul KV prefix"},
			&cli.StringFlag{Name: "bmc-ca-file", EnvVars: []string{"IRONRACK_BMC_CA_FILE"},
				Usage: "the site's CA certificates (PEM) that Redfish BMC certificates must chain to, unless a BMC's bmc_tls pins one or says insecure (default: the system's roots)"},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
			}
			e.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
			switch f := c.String("output"); f {
			case "table", "json", "csv":
				e.format = f
			default:
				return fmt.Errorf("--output %q: want table, json or csv", f)
			}
			return nil
		},
		Commands: []*cli.Command{
			inventoryCommand(e),
			bmcCommand(e),
			consulAgentCommand(e),
			powerCommand(e),
			bootCommand(e),
			keyCommand(e),
			serveCommand(e),
			efiCACertsCommand(e),
			imagesCommand(e),
			scaleCommand(e),
			commissionCommand(e),
			deployCommand(e),
			releaseCommand(e),
			readyCommand(e),
			runCommand(e),
			playbookCommand(e),
			fwCommand(e),
			vpnCommand(e),
			sshKeysCommand(e),
			labCommand(e),
			uiCommand(e),
			versionCommand(e),
			completionCommand(e),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
	flagsFirstEverywhere(app.Commands)
	err := app.RunContext(ctx, args)
	var u *consulUnreachable
	if errors.As(err, &u) {
		return u
	}
	// A leaderless cluster: one line without the HTTP client's
	// `Get "http://…/v1/…":` in the middle of it.
	var nl *inventory.NoLeaderError
	var ue *url.Error
	if errors.As(err, &nl) && errors.As(err, &ue) {
		return &reworded{msg: strings.Replace(err.Error(), ue.Error(), ue.Err.Error(), 1), err: err}
	}
	return err
}

// reworded is err with a clearer message.
type reworded struct {
	msg string
	err error
}

func (r *reworded) Error() string { return r.msg }
func (r *reworded) Unwrap() error { return r.err }

// flagsFirstEverywhere makes every command refuse flags given after its
// positional arguments (flagsFirst): one rule for the whole CLI, as the
// README says. urfave/cli stops parsing flags at the first argument, and a
// silently ignored --reason or --where is worse than an error. A command
// whose arguments end in "-- CMD" (runArgsUsage) checks only what comes
// before the "--" itself: the command after it is not ironrack's.
func flagsFirstEverywhere(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if a := cmd.Action; a != nil && !strings.HasSuffix(cmd.ArgsUsage, "-- CMD") {
			cmd.Action = func(c *cli.Context) error {
				if err := flagsFirst(c); err != nil {
					return err
				}
				return a(c)
			}
		}
		flagsFirstEverywhere(cmd.Subcommands)
	}
}

func defaultKeyFile() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".ironrack/key"
	}
	return filepath.Join(home, ".ironrack", "key")
}

// maxIdleConsulConns is the least number of idle connections to the Consul
// agent the CLI's client keeps for reuse.
const maxIdleConsulConns = 32

// consulClient builds a Consul client with consul/api's conventions
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT, ...), overridden by
// --consul and --consul-token when given.
func consulClient(c *cli.Context) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if c.IsSet("consul") || os.Getenv("CONSUL_HTTP_ADDR") == "" {
		addr := c.String("consul")
		if s, ok := strings.CutPrefix(addr, "https://"); ok {
			cfg.Scheme, addr = "https", s
		} else {
			addr = strings.TrimPrefix(addr, "http://")
		}
		cfg.Address = addr
	}
	if t := c.String("consul-token"); t != "" {
		cfg.Token = t
	}
	// Consul gzips responses unless told not to; over loopback or a LAN the
	// compression costs more CPU than it saves (10-20% of a DHCP exchange).
	if cfg.Transport != nil {
		cfg.Transport.DisableCompression = true
		// consul/api keeps GOMAXPROCS+1 idle connections per host: 2 for a
		// boot server pinned to one core, whose group commits, blocking
		// queries and HTTP handlers have more requests than that in
		// flight. Every request past the second then dialed a new
		// connection and closed it after (4% of the boot server's CPU at
		// 1,000 DHCPv6 SARR/s, more in Consul's).
		cfg.Transport.MaxIdleConnsPerHost = max(cfg.Transport.MaxIdleConnsPerHost, maxIdleConsulConns)
	}
	if cfg.Transport != nil && !strings.HasPrefix(cfg.Address, "unix://") {
		u := &consulUnreachable{addr: cfg.Address, from: consulAddrSource(c)}
		dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		cfg.Transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil && ctx.Err() == nil {
				return nil, &consulUnreachable{addr: u.addr, from: u.from, err: err}
			}
			return conn, err
		}
	}
	// ironrack's retry policy for a leaderless cluster (inventory/retry.go).
	client, err := inventory.NewConsulClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("--consul %s: %w", cfg.Address, err)
	}
	return client, nil
}

// consulUnreachable is a failed connection to the Consul agent. Run prints
// it as the whole error: where ironrack looked and how to point it
// elsewhere, not a Go dial error under three wrappings.
type consulUnreachable struct {
	addr, from string
	err        error
}

func (u *consulUnreachable) Error() string {
	cause := u.err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err
	}
	return fmt.Sprintf("cannot reach Consul at %s (%s): %v; point ironrack at your Consul with --consul ADDR, IRONRACK_CONSUL or CONSUL_HTTP_ADDR",
		u.addr, u.from, cause)
}

func (u *consulUnreachable) Unwrap() error { return u.err }

// consulAddrSource says where the Consul address came from, as the flag
// precedence in consulClient reads it.
func consulAddrSource(c *cli.Context) string {
	switch {
	case c.IsSet("consul") && os.Getenv("IRONRACK_CONSUL") != "" && os.Getenv("IRONRACK_CONSUL") == c.String("consul"):
		return "from IRONRACK_CONSUL"
	case c.IsSet("consul"):
		return "from --consul"
	case os.Getenv("CONSUL_HTTP_ADDR") != "":
		return "from CONSUL_HTTP_ADDR"
	default:
		return "the default"
	}
}

// store opens the inventory. The key file is loaded (or created) only when
// withKey is set, since most commands never touch a password.
func (e *env) store(c *cli.Context, withKey bool) (*inventory.Store, error) {
	var sl *inventory.Sealer
	if withKey {
		var err error
		if sl, err = inventory.LoadKeyFile(c.String("key-file"), true); err != nil {
			return nil, err
		}
	}
	return e.sealedStore(c, sl)
}

// sealedStore opens the inventory with sl (nil: no key file).
func (e *env) sealedStore(c *cli.Context, sl *inventory.Sealer) (*inventory.Store, error) {
	client, err := consulClient(c)
	if err != nil {
		return nil, err
	}
	return inventory.New(client, inventory.Config{Prefix: c.String("prefix"), Logger: e.log, Sealer: sl}), nil
}
