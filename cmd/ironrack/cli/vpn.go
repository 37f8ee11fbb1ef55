package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/mesh"
)

// vpnCommand is `ironrack vpn`: the WireGuard admin mesh (see
// docs/network-policy.md). Private keys never leave their host.
func vpnCommand(e *env) *cli.Command {
	sshFlags := func() []cli.Flag { return loginFlags("") }
	return &cli.Command{
		Name:  "vpn",
		Usage: "the WireGuard admin mesh: enroll machines, add and revoke admins, render configs",
		Subcommands: []*cli.Command{
			{
				Name:      "enroll",
				Usage:     "have each machine make its own key (once), record its public key and mesh address, and bring its mesh up",
				ArgsUsage: "[ID|SERIAL|MAC...]",
				Flags:     append(append(selectionFlags(), &cli.BoolFlag{Name: "all", Usage: "every machine in the inventory"}), sshFlags()...),
				Action: func(c *cli.Context) error {
					sel, _, err := e.selectMachines(c)
					if err != nil {
						return err
					}
					st, dial, err := e.vpnSetup(c)
					if err != nil {
						return err
					}
					var ms []*inventory.Machine
					for _, s := range sel {
						ms = append(ms, s.Machine)
					}
					return e.vpnEach(c, ms, func(ctx context.Context, m *inventory.Machine) (string, error) {
						if m.IP == "" {
							return "", errors.New("no address in the inventory")
						}
						r, err := dial(ctx, mesh.Peer{Name: m.ID, Endpoint: net.JoinHostPort(m.IP, fmt.Sprint(mesh.DefaultPort))})
						if err != nil {
							return "", err
						}
						defer closeRunner(r)
						pub, err := mesh.Enroll(ctx, r)
						if err != nil {
							return "", err
						}
						p, err := st.Add(ctx, mesh.Peer{Name: m.ID, Kind: mesh.Machine, PublicKey: pub, Endpoint: net.JoinHostPort(m.IP, fmt.Sprint(mesh.DefaultPort))})
						if err != nil {
							return "", err
						}
						peers, err := st.List(ctx)
						if err != nil {
							return "", err
						}
						if err := mesh.Sync(ctx, r, p, mesh.DefaultMesh, mesh.MachineConfig(mesh.DefaultPort, peers)); err != nil {
							return "", err
						}
						return fmt.Sprintf("enrolled at %s, key %s", p.Address, pub), nil
					})
				},
			},
			{
				Name:      "add-admin",
				Usage:     "add an admin by public key, and give every enrolled machine the new peer",
				ArgsUsage: "NAME",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "public-key", Required: true, Usage: "the admin's WireGuard public key (`wg pubkey`); the private key stays with the admin"},
					&cli.BoolFlag{Name: "no-push", Usage: "only record it; push with `ironrack vpn sync --all`"},
				}, sshFlags()...),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("vpn add-admin: want one NAME")
					}
					st, dial, err := e.vpnSetup(c)
					if err != nil && !c.Bool("no-push") {
						return err
					}
					if st == nil {
						st = &mesh.Store{}
						if st.Client, err = consulClient(c); err != nil {
							return err
						}
						st.Prefix = c.String("prefix")
					}
					p, err := st.Add(c.Context, mesh.Peer{Name: c.Args().First(), Kind: mesh.Admin, PublicKey: c.String("public-key")})
					if err != nil {
						return fmt.Errorf("vpn add-admin: %w", err)
					}
					fmt.Fprintf(e.stdout, "admin %s at %s (its config: ironrack vpn config %s)\n", p.Name, p.Address, p.Name)
					if c.Bool("no-push") {
						return nil
					}
					return e.vpnSyncAll(c, st, dial)
				},
			},
			{
				Name:      "revoke",
				Usage:     "remove a peer from the mesh: from Consul, then from every machine at once",
				ArgsUsage: "NAME",
				Flags:     sshFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("vpn revoke: want one NAME")
					}
					st, dial, err := e.vpnSetup(c)
					if err != nil {
						return err
					}
					start := time.Now()
					p, failed, err := mesh.Revoke(c.Context, st, c.Args().First(), dial, 64)
					if err != nil {
						return fmt.Errorf("vpn revoke: %w", err)
					}
					fmt.Fprintf(e.stdout, "revoked %s %s (%s) in %v\n", p.Kind, p.Name, p.PublicKey, time.Since(start).Round(time.Millisecond))
					if len(failed) > 0 {
						names := make([]string, 0, len(failed))
						for n, err := range failed {
							names = append(names, n+": "+err.Error())
						}
						sort.Strings(names)
						return fmt.Errorf("vpn revoke: %d machines not reached (they keep the peer until `ironrack vpn sync`):\n  %s", len(failed), strings.Join(names, "\n  "))
					}
					return nil
				},
			},
			{
				Name:  "sync",
				Usage: "set every enrolled machine's peers to exactly the admins in Consul",
				Flags: append(sshFlags(), &cli.BoolFlag{Name: "all", Usage: "every enrolled machine (required)"}),
				Action: func(c *cli.Context) error {
					if !c.Bool("all") {
						return errors.New("vpn sync: give --all")
					}
					st, dial, err := e.vpnSetup(c)
					if err != nil {
						return err
					}
					return e.vpnSyncAll(c, st, dial)
				},
			},
			{
				Name:      "config",
				Usage:     "print an admin's wg-quick config (every machine as a peer; the private key is the admin's own)",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					st, err := vpnStore(c)
					if err != nil {
						return err
					}
					peers, err := st.List(c.Context)
					if err != nil {
						return err
					}
					conf, err := mesh.AdminConfig(c.Args().First(), peers)
					if err != nil {
						return fmt.Errorf("vpn config: %w", err)
					}
					fmt.Fprint(e.stdout, conf)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "the mesh's peers: name, kind, address, endpoint, public key",
				Action: func(c *cli.Context) error {
					st, err := vpnStore(c)
					if err != nil {
						return err
					}
					peers, err := st.List(c.Context)
					if err != nil {
						return err
					}
					if e.format == "json" {
						if peers == nil {
							peers = []mesh.Peer{}
						}
						return writeJSON(e.stdout, peers)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tKIND\tADDRESS\tENDPOINT\tPUBLIC KEY")
					for _, p := range peers {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.Address, p.Endpoint, p.PublicKey)
					}
					return tw.Flush()
				},
			},
		},
	}
}

func vpnStore(c *cli.Context) (*mesh.Store, error) {
	client, err := consulClient(c)
	if err != nil {
		return nil, err
	}
	return &mesh.Store{Client: client, Prefix: c.String("prefix")}, nil
}

// vpnSetup is the mesh store and an SSH dialer to machine peers (at the
// address of their endpoint; host keys as the inventory recorded them for
// the machine the peer is named after, or --known-hosts).
func (e *env) vpnSetup(c *cli.Context) (*mesh.Store, mesh.Dialer, error) {
	st, err := vpnStore(c)
	if err != nil {
		return nil, nil, err
	}
	var inv *inventory.Store
	if c.String("known-hosts") == "" {
		if inv, err = e.store(c, false); err != nil {
			return st, nil, err
		}
	}
	d, err := fwDialer(c, inv)
	if err != nil {
		return st, nil, fmt.Errorf("%s: %w", commandPath(c), err)
	}
	return st, func(ctx context.Context, p mesh.Peer) (mesh.Runner, error) {
		host, _, err := net.SplitHostPort(p.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("peer %s: endpoint %q: %w", p.Name, p.Endpoint, err)
		}
		return d(ctx, &inventory.Machine{ID: p.Name, IP: host})
	}, nil
}

func closeRunner(r any) {
	if c, ok := r.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// vpnSyncAll syncs every enrolled machine.
func (e *env) vpnSyncAll(c *cli.Context, st *mesh.Store, dial mesh.Dialer) error {
	peers, err := st.List(c.Context)
	if err != nil {
		return err
	}
	conf := mesh.MachineConfig(mesh.DefaultPort, peers)
	var ms []*inventory.Machine
	byName := map[string]mesh.Peer{}
	for _, p := range peers {
		if p.Kind == mesh.Machine {
			ms = append(ms, &inventory.Machine{ID: p.Name})
			byName[p.Name] = p
		}
	}
	return e.vpnEach(c, ms, func(ctx context.Context, m *inventory.Machine) (string, error) {
		p := byName[m.ID]
		r, err := dial(ctx, p)
		if err != nil {
			return "", err
		}
		defer closeRunner(r)
		if err := mesh.Sync(ctx, r, p, mesh.DefaultMesh, conf); err != nil {
			return "", err
		}
		return "synced", nil
	})
}

// vpnEach runs fn on machines, 32 at once, printing a line each.
func (e *env) vpnEach(c *cli.Context, ms []*inventory.Machine, fn func(context.Context, *inventory.Machine) (string, error)) error {
	out := make([]string, len(ms))
	failed := 0
	var mu sync.Mutex
	g := new(errgroup.Group)
	g.SetLimit(32)
	for i, m := range ms {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			res, err := fn(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res = "FAILED: " + err.Error()
				failed++
			}
			out[i] = m.ID + "\t" + res
			return nil
		})
	}
	_ = g.Wait()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, l := range out {
		fmt.Fprintln(tw, l)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d machines failed", commandPath(c), failed, len(ms))
	}
	return nil
}
