package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/images"
)

// imagesCommand is `ironrack images`: building what machines boot.
func imagesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "images",
		Usage: "the image catalog (in Consul) and the builds the boot server serves",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "list the registered image versions",
			Action: func(c *cli.Context) error {
				cat, err := catalog(c)
				if err != nil {
					return err
				}
				ms, err := cat.List(c.Context)
				if err != nil && ms == nil {
					return err
				}
				if err != nil {
					e.log.Warn("images list: skipped unreadable records", "err", err)
				}
				if e.format == "json" {
					if ms == nil {
						ms = []images.Manifest{}
					}
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(ms)
				}
				fmt.Fprintf(e.stdout, "%-10s %-26s %-40s %s\n", "NAME", "VERSION", "KERNEL PACKAGE", "FILES")
				for _, m := range ms {
					var files []string
					for _, f := range m.Files {
						files = append(files, fmt.Sprintf("%s(%d)", f.Name, f.Size))
					}
					fmt.Fprintf(e.stdout, "%-10s %-26s %-40s %s\n", m.Name, m.Version, m.KernelPackage, strings.Join(files, " "))
				}
				return nil
			},
		}, {
			Name:      "rm",
			Usage:     "remove an image version from the catalog (its files stay on the boot servers)",
			ArgsUsage: "NAME VERSION",
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return errors.New("images rm: want NAME VERSION (see ironrack images list)")
				}
				cat, err := catalog(c)
				if err != nil {
					return err
				}
				if err := cat.Remove(c.Context, c.Args().Get(0), c.Args().Get(1)); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "removed %s/%s from the catalog\n", c.Args().Get(0), c.Args().Get(1))
				return nil
			},
		}, {
			Name:  "build",
			Usage: "build an image into the boot server's data dir",
			Subcommands: []*cli.Command{{
				Name:      "discovery",
				Usage:     "build the agent's kernel and initramfs into DATA/images/agent/<version>/, point current at it, and register it",
				UsageText: "ironrack images build discovery [--data-dir DIR] [--kernel-dir DIR] [--agent FILE] [--source DIR]",
				Description: "The kernel is Debian's, fetched and cached by scripts/boot-artifacts (apt-get download + dpkg -x),\n" +
					"which also derives the load order of the NIC, storage and virtio modules (images.DiscoveryModules).\nThe initramfs holds the Go agent\n" +
					"(cmd/ironrack-agent) as /init. `ironrack serve` boots unknown and new machines into it.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the boot server's data dir (as for serve)"},
					&cli.StringFlag{Name: "kernel-dir", Usage: "a scripts/boot-artifacts cache entry (default: run --source's scripts/boot-artifacts)"},
					&cli.StringFlag{Name: "agent", Usage: "a static ironrack-agent binary (default: go build it from --source)"},
					&cli.StringFlag{Name: "source", Usage: "the ironrack source tree (default: the one containing the working directory)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("images build discovery: unexpected argument %q (all settings are flags)", c.Args().First())
					}
					src := c.String("source")
					needSrc := c.String("kernel-dir") == "" || c.String("agent") == ""
					if src == "" && needSrc {
						var err error
						if src, err = sourceTree(); err != nil {
							return fmt.Errorf("images build discovery: %w; run it inside the ironrack source tree, or give --source, or both --kernel-dir and --agent", err)
						}
					}
					kdir := c.String("kernel-dir")
					if kdir == "" {
						var err error
						e.log.Info("images: fetching or reusing the kernel", "script", filepath.Join(src, "scripts", "boot-artifacts"))
						if kdir, err = images.KernelCache(c.Context, filepath.Join(src, "scripts", "boot-artifacts")); err != nil {
							return fmt.Errorf("images build discovery: %w", err)
						}
					}
					agent := c.String("agent")
					if agent == "" {
						tmp, err := os.MkdirTemp("", "ironrack-agent-")
						if err != nil {
							return err
						}
						defer os.RemoveAll(tmp)
						agent = filepath.Join(tmp, "ironrack-agent")
						e.log.Info("images: building the agent", "source", src)
						if err := images.BuildAgent(c.Context, src, agent); err != nil {
							return fmt.Errorf("images build discovery: %w", err)
						}
					}
					m, err := images.Discovery{DataDir: c.String("data-dir"), KernelDir: kdir, Agent: agent}.Build(c.Context)
					if err != nil {
						return err
					}
					cat, err := catalog(c)
					if err == nil {
						err = cat.Register(c.Context, m)
					}
					if err != nil {
						return fmt.Errorf("images build discovery: built %s/%s into --data-dir, but did not register it (rerun once Consul answers): %w", m.Name, m.Version, err)
					}
					if e.format == "json" {
						enc := json.NewEncoder(e.stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(m)
					}
					fmt.Fprintf(e.stdout, "built %s/%s (%s) in %s; current points at it\n", m.Name, m.Version, m.KernelPackage,
						filepath.Join(c.String("data-dir"), "images", m.Name, m.Version))
					for _, f := range m.Files {
						fmt.Fprintf(e.stdout, "  %-11s %10d bytes  sha256 %s\n", f.Name, f.Size, f.SHA256)
					}
					return nil
				},
			}},
		}},
	}
}

// catalog opens the image catalog in the --consul agent under --prefix.
func catalog(c *cli.Context) (*images.Catalog, error) {
	client, err := consulClient(c)
	if err != nil {
		return nil, err
	}
	return &images.Catalog{KV: client.KV(), Prefix: c.String("prefix")}, nil
}

// sourceTree finds the ironrack module containing the working directory.
func sourceTree() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/ironrack/ironrack\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the ironrack source tree")
		}
		dir = parent
	}
}
