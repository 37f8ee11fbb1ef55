package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DebianImage is the OS image's catalog name.
const DebianImage = "debian"

// DebianCmdline is the command line written to the Debian image's cmdline
// file: DefaultCmdline, the one the boot server uses for an image without.
const DebianCmdline = DefaultCmdline

// DebianPackages are the packages the OS image adds to debootstrap's
// minbase variant, without recommends. python3-cffi-backend is named
// because debootstrap does not resolve virtual packages, and
// python3-cryptography (for cloud-init) depends on one it provides.
func DebianPackages() []string {
	return []string{"systemd-sysv", "openssh-server", "cloud-init", "iproute2", "ifupdown", "isc-dhcp-client",
		"ca-certificates", "udev", "dbus", "python3-cffi-backend",
		// The firewall (playbooks/netpolicy) and the admin mesh (playbooks/mesh):
		// nft, and WireGuard in userspace (wg, wg-quick; wireguard-go where the
		// kernel has no module).
		"nftables", "wireguard-tools", "wireguard-go",
		// A mirrored root (--root-layout mirror): the initramfs assembles
		// it; mdadm inspects and repairs it in the OS.
		"mdadm"}
}

// DebianModules are the kernel modules (with their dependencies) the OS
// image's initramfs loads before it mounts the root: the discovery
// environment's NIC and storage drivers (DiscoveryModules), so a machine
// that was discovered can also run its OS, ext4, and what the OS's own
// network policy needs: nftables (nf_tables, with nfnetlink; nft_ct for
// "ct state", with conntrack) for `ironrack fw`, and tun for the admin
// mesh's wireguard-go. Modules loaded there stay loaded in the OS, which
// carries no modules of its own.
func DebianModules() []string {
	return append(append([]string(nil), DiscoveryModules...), OSModules...)
}

// OSModules are the modules the OS image loads beyond DiscoveryModules.
var OSModules = []string{"ext4", "nf_tables", "nft_ct", "tun"}

// Debian builds the OS image: a debootstrap tree (cached outside the data
// dir, keyed by suite and package list), configured for cloud-init NoCloud
// and Consul, packed with mkfs.ext4 -d into a raw whole-disk file system,
// plus Debian's kernel and a busybox initramfs that mounts that disk by
// label and switch_roots into it.
type Debian struct {
	// DataDir is the boot server's data dir. Required.
	DataDir string
	// CacheDir holds debootstrap trees, one per suite and package list
	// (debian-<suite>-<hash>/). Required; DefaultCacheDir is the usual one.
	CacheDir string
	// Suite is the Debian release. If empty, "bookworm".
	Suite string
	// Mirror is the Debian mirror's URL. Required; AptMirror reads the one
	// the machine's apt uses.
	Mirror string
	// KernelDir is a scripts/boot-artifacts cache entry: vmlinuz, VERSION
	// and modules/ (the kernel package's lib/modules with depmod's output).
	// Required; KernelCache finds it.
	KernelDir string
	// Consul is the consul binary copied into the image
	// (/usr/local/bin/consul). Required; consuldev.Binary finds the pinned one.
	Consul string
	// Busybox is a static busybox for the initramfs. If empty, /bin/busybox
	// (Debian's busybox-static).
	Busybox string
	// Packages are added to minbase. If nil, DebianPackages().
	Packages []string
	// Modules are loaded by the initramfs, with their dependencies. If nil,
	// DebianModules().
	Modules []string
	// MarginMiB is free space left in the root file system beyond its
	// content (cloud-init's resize_rootfs grows it to the disk). If 0, 128.
	MarginMiB int
	// Logger receives progress. If nil, logs are discarded.
	Logger *slog.Logger
}

// Built is what Debian.Build did.
type Built struct {
	Manifest Manifest
	// Dir is DATA/images/<name>/<version>.
	Dir string
	// Tree is the debootstrap tree in the cache; TreeCached says it was
	// there already (no debootstrap ran; a reused version needs no tree).
	Tree       string
	TreeCached bool
	// Reused says the version dir was already complete (nothing was packed).
	Reused bool
}

func (d Debian) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

func (d Debian) defaults() Debian {
	if d.Suite == "" {
		d.Suite = "bookworm"
	}
	if d.Packages == nil {
		d.Packages = DebianPackages()
	}
	if d.Modules == nil {
		d.Modules = DebianModules()
	}
	if d.MarginMiB == 0 {
		d.MarginMiB = 128
	}
	if d.Busybox == "" {
		d.Busybox = "/bin/busybox"
	}
	return d
}

var (
	suiteRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	moduleRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Build builds (or reuses) the debootstrap tree, then writes
// DATA/images/debian/<version>/ with vmlinuz, initrd.img, root.img,
// cmdline, SHA256SUMS and manifest.json. The version is the suite and a
// hash of every input (tree key, kernel, the initramfs's busybox, init and
// modules, consul binary, the image's configuration), so building the
// same inputs again finds the version complete and packs nothing (nor
// needs the tree). The files appear all at once (a temporary dir renamed
// into place).
func (d Debian) Build(ctx context.Context) (Built, error) {
	d = d.defaults()
	if d.DataDir == "" || d.CacheDir == "" || d.Mirror == "" || d.KernelDir == "" || d.Consul == "" {
		return Built{}, errors.New("debian build: DataDir, CacheDir, Mirror, KernelDir and Consul are required")
	}
	if !suiteRE.MatchString(d.Suite) {
		return Built{}, fmt.Errorf("debian build: suite %q is not a Debian suite name", d.Suite)
	}
	for _, p := range d.Packages {
		if !packageRE.MatchString(p) {
			return Built{}, fmt.Errorf("debian build: package %q is not a Debian package name", p)
		}
	}
	for _, m := range d.Modules {
		if !moduleRE.MatchString(m) {
			return Built{}, fmt.Errorf("debian build: module %q is not a kernel module name", m)
		}
	}
	consul, err := os.ReadFile(d.Consul)
	if err != nil {
		return Built{}, fmt.Errorf("debian build: consul binary: %w", err)
	}
	if !bytes.HasPrefix(consul, []byte("\x7fELF")) {
		return Built{}, fmt.Errorf("debian build: consul %s is not an ELF binary", d.Consul)
	}
	kernel, err := os.ReadFile(filepath.Join(d.KernelDir, KernelFile))
	if err != nil {
		return Built{}, fmt.Errorf("debian build: kernel: %w", err)
	}
	pkg, _ := os.ReadFile(filepath.Join(d.KernelDir, "VERSION"))
	rd, err := d.initramfs(ctx)
	if err != nil {
		return Built{}, fmt.Errorf("debian build: initramfs: %w", err)
	}

	out := Built{}
	key := TreeKey(d.Suite, d.Packages)

	// The version hashes every input of the packed image.
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\ntree %s\nmargin %d\n", debianRecipe, key, d.MarginMiB)
	for _, b := range [][]byte{kernel, rd.busybox, consul, []byte(DebianCmdline), []byte(rootInit)} {
		s := sha256.Sum256(b)
		h.Write(s[:])
	}
	for _, m := range rd.order { // the initramfs's inputs: packing it is the slow part
		s := sha256.Sum256(rd.mods[m])
		fmt.Fprintf(h, "%s %x\n", m, s)
	}
	for _, f := range osFiles() {
		fmt.Fprintf(h, "%s %o %q\n", f.path, f.mode, f.body)
	}
	version := d.Suite + "-" + hex.EncodeToString(h.Sum(nil))[:12]
	out.Dir = Dir(d.DataDir, DebianImage, version)
	if m, err := ReadManifest(out.Dir); err == nil && m.Version == version {
		out.Manifest, out.Reused = m, true
		out.Tree = filepath.Join(d.CacheDir, key)
		out.TreeCached = treeComplete(out.Tree)
		d.log().Info("debian build: version already complete", "version", version)
		return out, nil
	}
	out.Tree, out.TreeCached, err = d.tree(ctx, key)
	if err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	stage, err := newStage(d.DataDir, DebianImage, ".build-")
	if err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	defer os.RemoveAll(stage)

	if err := d.pack(ctx, out.Tree, consul, filepath.Join(stage, RootFile)); err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	initrd, err := RootInitramfs(rd.busybox, rd.mods, rd.order)
	if err != nil {
		return Built{}, fmt.Errorf("debian build: initramfs: %w", err)
	}
	for name, b := range map[string][]byte{KernelFile: kernel, InitrdFile: initrd, CmdlineFile: []byte(DebianCmdline + "\n")} {
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o644); err != nil {
			return Built{}, fmt.Errorf("debian build: %w", err)
		}
	}
	m := Manifest{Name: DebianImage, Version: version, KernelPackage: strings.TrimSpace(string(pkg)),
		Kernel: KernelFile, Initrd: InitrdFile, Root: RootFile, Cmdline: DebianCmdline, Modules: rd.order}
	if m.Files, err = hashFiles(stage, []string{KernelFile, InitrdFile, RootFile, CmdlineFile}); err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	// Another build of the same inputs may have finished first.
	if out.Manifest, out.Reused, err = installBuilt(stage, out.Dir, m); err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	return out, nil
}
