package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/tools"
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
				fmt.Fprintf(e.stdout, "%-10s %-26s %-18s %-40s %s\n", "NAME", "VERSION", "ROLES", "KERNEL PACKAGE", "FILES")
				for _, m := range ms {
					var files []string
					for _, f := range m.Files {
						files = append(files, fmt.Sprintf("%s(%d)", f.Name, f.Size))
					}
					fmt.Fprintf(e.stdout, "%-10s %-26s %-18s %-40s %s\n", m.Name, m.Version, roles(m), m.KernelPackage, strings.Join(files, " "))
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
			Name:      "register",
			Usage:     "record an image already built into --data-dir in the catalog (a build with --register=false)",
			ArgsUsage: "NAME [VERSION]",
			Description: "Reads DATA/images/NAME/VERSION/manifest.json and checks the files are there; VERSION defaults to\n" +
				"the one current points at, else the only one. Needs no network: build outside a lab's namespace\n" +
				"(images build ... --register=false), register inside it.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the boot server's data dir (as for serve)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 || c.NArg() > 2 {
					return errors.New("images register: want NAME [VERSION]")
				}
				m, err := images.Installed(c.String("data-dir"), c.Args().Get(0), c.Args().Get(1))
				if err != nil {
					return fmt.Errorf("images register: %w", err)
				}
				return registerAndPrint(c, e, m, images.Dir(c.String("data-dir"), m.Name, m.Version), "registered")
			},
		}, {
			Name:      "add",
			Usage:     "register an externally built image: copy its files into DATA/images/NAME/VERSION/ and record it",
			ArgsUsage: "NAME",
			UsageText: "ironrack images add --version V --root FILE [--kernel FILE [--initrd FILE] [--cmdline S]] [--data-dir DIR] NAME",
			Description: "--root is the disk image the agent streams onto the machine's disk. With --kernel, deployed machines\n" +
				"boot that kernel from the network with their root on the local disk (as images build debian does);\n" +
				"without it, --root carries its own boot loader and machines boot their local disk.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the boot server's data dir (as for serve)"},
				&cli.StringFlag{Name: "version", Usage: "the image version (required)"},
				&cli.StringFlag{Name: "root", Usage: "the disk image file (required)"},
				&cli.StringFlag{Name: "kernel", Usage: "a kernel to boot from the network"},
				&cli.StringFlag{Name: "initrd", Usage: "its initramfs (needs --kernel)"},
				&cli.StringFlag{Name: "cmdline", Usage: "its command line (needs --kernel; default root=LABEL=ironrack-root ro ...)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("images add: want exactly one NAME, got %d arguments %q (flags go before it: ironrack images add --version V --root FILE NAME)", c.NArg(), c.Args().Slice())
				}
				if c.String("version") == "" {
					return errors.New("images add: --version is required")
				}
				m, err := images.External{DataDir: c.String("data-dir"), Name: c.Args().First(), Version: c.String("version"),
					Root: c.String("root"), Kernel: c.String("kernel"), Initrd: c.String("initrd"), Cmdline: c.String("cmdline")}.Add(c.Context)
				if err != nil {
					return err
				}
				return registerAndPrint(c, e, m, images.Dir(c.String("data-dir"), m.Name, m.Version), "added")
			},
		}, {
			Name:  "build",
			Usage: "build an image into the boot server's data dir",
			Subcommands: []*cli.Command{debianCommand(e), {
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
					registerFlag(),
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
					if c.Bool("register") {
						cat, err := catalog(c)
						if err == nil {
							err = cat.Register(c.Context, m)
						}
						if err != nil {
							return fmt.Errorf("images build discovery: built %s/%s into --data-dir, but did not register it (rerun once Consul answers, or: ironrack images register %s %s): %w", m.Name, m.Version, m.Name, m.Version, err)
						}
					}
					if e.format == "json" {
						enc := json.NewEncoder(e.stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(m)
					}
					fmt.Fprintf(e.stdout, "built %s/%s (%s) in %s; current points at it\n", m.Name, m.Version, m.KernelPackage,
						images.Dir(c.String("data-dir"), m.Name, m.Version))
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

// roles names the manifest's files by role, e.g. "kernel,initrd,root".
func roles(m images.Manifest) string {
	var r []string
	for _, x := range []struct{ role, file string }{{"kernel", m.Kernel}, {"initrd", m.Initrd}, {"root", m.Root}} {
		if x.file != "" {
			r = append(r, x.role)
		}
	}
	if len(r) == 0 {
		return "-"
	}
	return strings.Join(r, ",")
}

// registerAndPrint records m in the catalog and prints it (json: the
// manifest; table: a line per file).
func registerAndPrint(c *cli.Context, e *env, m images.Manifest, dir, verb string) error {
	cat, err := catalog(c)
	if err == nil {
		err = cat.Register(c.Context, m)
	}
	if err != nil {
		return fmt.Errorf("images: %s %s/%s into %s, but did not register it (rerun once Consul answers): %w", verb, m.Name, m.Version, dir, err)
	}
	return printManifest(e, m, dir, verb)
}

// printManifest prints m (json: the manifest; table: a line per file).
func printManifest(e *env, m images.Manifest, dir, verb string) error {
	if e.format == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	fmt.Fprintf(e.stdout, "%s %s/%s in %s\n", verb, m.Name, m.Version, dir)
	for _, f := range m.Files {
		fmt.Fprintf(e.stdout, "  %-11s %10d bytes  sha256 %s\n", f.Name, f.Size, f.SHA256)
	}
	return nil
}

// debianCommand is `ironrack images build debian`.
func debianCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "debian",
		Usage:     "build the Debian OS image (debootstrap) into DATA/images/debian/<version>/ and register it",
		UsageText: "ironrack images build debian [--data-dir DIR] [--suite S] [--mirror URL] [--cache-dir DIR] [--kernel-dir DIR] [--consul-binary FILE]",
		Description: "debootstrap --variant=minbase plus openssh-server, cloud-init, udev, dbus and ifupdown, cached in --cache-dir\n" +
			"by suite and package list; the pinned consul binary; packed with mkfs.ext4 -d into root.img (label\n" +
			"ironrack-root). Deployed machines boot Debian's kernel (vmlinuz) and a busybox initrd.img from the network\n" +
			"with the command line in cmdline, their root on the local disk. See docs/images.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), Usage: "the boot server's data dir (as for serve)"},
			&cli.StringFlag{Name: "suite", Value: "bookworm", Usage: "the Debian release"},
			&cli.StringFlag{Name: "mirror", Usage: "the Debian mirror (default: the one this machine's apt uses)"},
			&cli.StringFlag{Name: "cache-dir", Usage: "where debootstrap trees are cached (default ~/.cache/ironrack/images)"},
			&cli.StringFlag{Name: "kernel-dir", Usage: "a scripts/boot-artifacts cache entry (default: run --source's scripts/boot-artifacts)"},
			&cli.StringFlag{Name: "consul-binary", EnvVars: []string{"IRONRACK_CONSUL_BIN"},
				Usage: "the consul binary to carry (default: consul on PATH, else the pinned one scripts/setup built)"},
			&cli.StringFlag{Name: "source", Usage: "the ironrack source tree (default: the one containing the working directory)"},
			registerFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("images build debian: unexpected argument %q (all settings are flags)", c.Args().First())
			}
			mirror := c.String("mirror")
			if mirror == "" {
				var err error
				if mirror, err = images.AptMirror("/"); err != nil {
					return fmt.Errorf("images build debian: %w", err)
				}
			}
			cache := c.String("cache-dir")
			if cache == "" {
				var err error
				if cache, err = images.DefaultCacheDir(); err != nil {
					return fmt.Errorf("images build debian: %w", err)
				}
			}
			kdir := c.String("kernel-dir")
			if kdir == "" {
				src := c.String("source")
				if src == "" {
					var err error
					if src, err = sourceTree(); err != nil {
						return fmt.Errorf("images build debian: %w; run it inside the ironrack source tree, or give --source or --kernel-dir", err)
					}
				}
				var err error
				e.log.Info("images: fetching or reusing the kernel", "script", filepath.Join(src, "scripts", "boot-artifacts"))
				if kdir, err = images.KernelCache(c.Context, filepath.Join(src, "scripts", "boot-artifacts")); err != nil {
					return fmt.Errorf("images build debian: %w", err)
				}
			}
			consul, err := consulBinary(c.String("consul-binary"))
			if err != nil {
				return fmt.Errorf("images build debian: %w", err)
			}
			start := time.Now()
			b, err := images.Debian{DataDir: c.String("data-dir"), CacheDir: cache, Suite: c.String("suite"), Mirror: mirror,
				KernelDir: kdir, Consul: consul, Logger: e.log}.Build(c.Context)
			if err != nil {
				return err
			}
			e.log.Info("images: debian built", "version", b.Manifest.Version, "tree_cached", b.TreeCached, "reused", b.Reused,
				"took", time.Since(start).Round(100*time.Millisecond))
			if !c.Bool("register") {
				return printManifest(e, b.Manifest, b.Dir, "built")
			}
			return registerAndPrint(c, e, b.Manifest, b.Dir, "built")
		},
	}
}

// consulBinary is the consul binary images build debian carries: flag (or
// IRONRACK_CONSUL_BIN), else consul on PATH, else the tools cache's pinned
// one.
func consulBinary(flag string) (string, error) {
	if flag != "" {
		if err := tools.Executable(flag); err != nil {
			return "", fmt.Errorf("--consul-binary: %w", err)
		}
		return flag, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	p, err := tools.Consul()
	if err != nil {
		return "", fmt.Errorf("no consul on PATH, and the pinned one: %w; or give --consul-binary", err)
	}
	return p, nil
}

// registerFlag is the builds' --register: off builds the files only, for
// `images register` later (where Consul is not reachable from the build).
func registerFlag() cli.Flag {
	return &cli.BoolFlag{Name: "register", Value: true,
		Usage: "record the build in the catalog (--register=false: files only; ironrack images register NAME VERSION later)"}
}
