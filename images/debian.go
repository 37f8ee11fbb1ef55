package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DebianImage is the OS image's catalog name.
const DebianImage = "debian"

// Files of an OS image version, besides KernelFile, InitrdFile, SumsFile and
// ManifestFile. provision reads DATA/images/<name>/<version>/{vmlinuz,
// initrd.img,cmdline} to boot a deployed machine; the agent streams
// RootFile onto the machine's disk.
const (
	RootFile    = "root.img" // raw ext4, the whole disk (no partition table)
	CmdlineFile = "cmdline"  // one line: the deployed kernel's command line
)

// RootLabel is the label of the OS image's root file system; the deployed
// initramfs finds the disk by it (root=LABEL=ironrack-root).
const RootLabel = "ironrack-root"

// DebianCmdline is the command line written to an OS image's cmdline file:
// root on the local disk by label, mounted read-only first (systemd
// checks it, then remounts it read-write from /etc/fstab), consoles on VGA
// and the first serial port. The boot server appends the machine's NoCloud
// seed (NoCloudCmdline).
const DebianCmdline = "root=LABEL=" + RootLabel + " ro console=tty0 console=ttyS0,115200n8"

// DebianPackages are the packages the OS image adds to debootstrap's
// minbase variant, without recommends. python3-cffi-backend is named
// because debootstrap does not resolve virtual packages, and
// python3-cryptography (for cloud-init) depends on one it provides.
func DebianPackages() []string {
	return []string{"systemd-sysv", "openssh-server", "cloud-init", "iproute2", "ifupdown", "isc-dhcp-client",
		"ca-certificates", "udev", "dbus", "python3-cffi-backend"}
}

// DebianModules are the kernel modules (with their dependencies) the OS
// image's initramfs loads before it mounts the root: the discovery
// environment's NIC and storage drivers (DiscoveryModules), so a machine
// that was discovered can also run its OS, and ext4. Modules loaded there
// stay loaded in the OS, which carries no modules of its own.
func DebianModules() []string {
	return append(append([]string(nil), DiscoveryModules...), "ext4")
}

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

// DefaultCacheDir is ~/.cache/ironrack/images.
func DefaultCacheDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the image cache: %w", err)
	}
	return filepath.Join(home, ".cache", "ironrack", "images"), nil
}

// AptMirror returns the first Debian archive URL among the machine's apt
// sources under root ("/" in production): deb822 *.sources files in
// etc/apt/sources.list.d (URIs:) and one-line etc/apt/sources.list and
// *.list entries (deb URL suite ...). Security and update archives
// (URLs ending in -security, suites ending in -security or -updates) are
// skipped: debootstrap wants the main archive.
func AptMirror(root string) (string, error) {
	var files []string
	files = append(files, filepath.Join(root, "etc/apt/sources.list"))
	more, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*"))
	sort.Strings(more)
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var u string
		switch {
		case strings.HasSuffix(f, ".sources"):
			u = mirrorDeb822(string(b))
		case strings.HasSuffix(f, ".list") || strings.HasSuffix(f, "sources.list"):
			u = mirrorOneLine(string(b))
		}
		if u != "" {
			return u, nil
		}
	}
	return "", fmt.Errorf("no Debian archive in %s or %s (give --mirror)", files[0], filepath.Join(root, "etc/apt/sources.list.d"))
}

func mirrorDeb822(s string) string {
	for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(s, -1) {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if e := fields["enabled"]; e == "no" || !strings.Contains(" "+fields["types"]+" ", " deb ") {
			continue
		}
		suites := strings.Fields(fields["suites"])
		for _, u := range strings.Fields(fields["uris"]) {
			if mainArchive(u, suites) {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

func mirrorOneLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && mainArchive(f[0], f[1:2]) {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

func mainArchive(u string, suites []string) bool {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "file:/") {
		return false
	}
	if strings.HasSuffix(strings.TrimSuffix(u, "/"), "-security") {
		return false
	}
	for _, s := range suites {
		if !strings.HasSuffix(s, "-security") && !strings.HasSuffix(s, "-updates") && !strings.HasSuffix(s, "-backports") {
			return true
		}
	}
	return false
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

// TreeKey is the cache key of a debootstrap tree: the suite and a hash of
// the sorted package list, e.g. debian-bookworm-3f2a9c1d0b7e. The mirror
// is not part of it: every mirror serves the same packages.
func TreeKey(suite string, packages []string) string {
	p := append([]string(nil), packages...)
	sort.Strings(p)
	sum := sha256.Sum256([]byte("minbase\n" + strings.Join(p, "\n")))
	return "debian-" + suite + "-" + hex.EncodeToString(sum[:])[:12]
}

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
	base := filepath.Join(d.DataDir, "images", DebianImage)
	out.Dir = filepath.Join(base, version)
	if m, err := readManifest(out.Dir); err == nil && m.Version == version {
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
	if err := os.MkdirAll(base, 0o755); err != nil {
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	stage, err := os.MkdirTemp(base, ".build-")
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
	if err := installVersion(stage, out.Dir, m); err != nil {
		if done, rerr := readManifest(out.Dir); rerr == nil && done.Version == version {
			// Another build of the same inputs finished first.
			out.Manifest, out.Reused = done, true
			return out, nil
		}
		return Built{}, fmt.Errorf("debian build: %w", err)
	}
	out.Manifest = m
	return out, nil
}

// readManifest reads dir's manifest.json.
func readManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return m, err
	}
	if err := jsonUnmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return m, nil
}

// hashFiles hashes the named files in dir, streaming (root images are
// hundreds of MiB).
func hashFiles(dir string, names []string) ([]File, error) {
	var files []File
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hash %s: %w", name, err)
		}
		files = append(files, File{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	return files, nil
}

// installVersion writes SHA256SUMS (from m.Files) and manifest.json into
// stage and renames stage to dst, so a boot server never sees half a
// version. A dst without a manifest is a broken earlier attempt and is
// replaced; one with a manifest is an error.
func installVersion(stage, dst string, m Manifest) error {
	var sums strings.Builder
	for _, f := range m.Files {
		fmt.Fprintf(&sums, "%s  %s\n", f.SHA256, f.Name)
	}
	man, err := jsonIndent(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, SumsFile), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, ManifestFile), man, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dst, ManifestFile)); err == nil {
		return fmt.Errorf("%s already holds a version", dst)
	}
	os.RemoveAll(dst)
	return os.Rename(stage, dst)
}

// tree returns the cached debootstrap tree for key, running debootstrap
// when it is missing. A lock file serializes builders of the same key
// (tests in parallel); a tree is moved into place only after every
// package in it is configured.
func (d Debian) tree(ctx context.Context, key string) (string, bool, error) {
	dir := filepath.Join(d.CacheDir, key)
	if treeComplete(dir) {
		return dir, true, nil
	}
	if err := os.MkdirAll(d.CacheDir, 0o755); err != nil {
		return "", false, err
	}
	lock, err := os.OpenFile(filepath.Join(d.CacheDir, "."+key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", false, err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return "", false, fmt.Errorf("lock the image cache: %w", err)
	}
	if treeComplete(dir) { // another builder finished while we waited
		return dir, true, nil
	}
	tmp := dir + ".tmp"
	removeTree(tmp)
	start := time.Now()
	d.log().Info("debian build: debootstrap (not cached)", "suite", d.Suite, "tree", dir)
	args := []string{"--variant=minbase", "--include=" + strings.Join(d.Packages, ","), d.Suite, tmp, d.Mirror}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if err == nil {
		err = treeConfigured(tmp)
	}
	if err != nil {
		removeTree(tmp)
		return "", false, fmt.Errorf("debootstrap %s: %w: %s", strings.Join(args, " "), err, tail(outb.String(), 15))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".ironrack-tree"), []byte(key+"\n"), 0o644); err != nil {
		removeTree(tmp)
		return "", false, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		removeTree(tmp)
		return "", false, err
	}
	d.log().Info("debian build: debootstrap done", "took", time.Since(start).Round(time.Second))
	return dir, false, nil
}

func treeComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".ironrack-tree"))
	return err == nil
}

// treeConfigured fails unless every package in the tree's dpkg database is
// "install ok installed" (debootstrap can exit 0 with some left
// unconfigured).
func treeConfigured(tree string) error {
	f, err := os.Open(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return err
	}
	defer f.Close()
	var bad []string
	var pkg string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			pkg = v
		}
		if v, ok := strings.CutPrefix(line, "Status: "); ok && v != "install ok installed" {
			bad = append(bad, pkg+" ("+v+")")
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("packages not configured: %s", strings.Join(bad, ", "))
	}
	return nil
}

// removeTree unmounts whatever a killed debootstrap left mounted under dir
// (proc, sys, dev/pts) before deleting it, so RemoveAll never walks into a
// live /proc or /sys.
func removeTree(dir string) {
	if _, err := os.Lstat(dir); err != nil {
		return
	}
	unmountUnder(dir)
	os.RemoveAll(dir)
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	abs, _ := filepath.Abs(dir)
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == abs || strings.HasPrefix(f[4], abs+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // deepest first
	for _, m := range mounts {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// flock takes an exclusive lock on f, giving up when ctx is done.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pack copies the cached tree to a staging dir next to out, applies the
// image's configuration (osFiles, the consul binary and user, no host keys
// or machine-id) and packs it with mkfs.ext4 -d into out, sized to the
// content plus MarginMiB.
func (d Debian) pack(ctx context.Context, tree string, consul []byte, out string) error {
	stage := out + ".tree"
	defer os.RemoveAll(stage)
	start := time.Now()
	if b, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", tree, stage).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", tree, err, strings.TrimSpace(string(b)))
	}
	if err := configureTree(stage, consul); err != nil {
		return fmt.Errorf("configure the image: %w", err)
	}
	used, err := treeSize(stage)
	if err != nil {
		return err
	}
	// ext4 needs room for its metadata: inode tables (about 1.6% at one
	// 256-byte inode per 16 KiB), the 1% reserve, the journal (16 MiB
	// below 1 GiB) and directory blocks; a twentieth plus 64 MiB covers
	// them, and MarginMiB is the free space left.
	size := used + used/20 + 64<<20 + int64(d.MarginMiB)<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Truncate(out, size); err != nil {
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-L", RootLabel, "-m", "1", "-d", stage, out}
	if b, err := exec.CommandContext(ctx, "mkfs.ext4", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	d.log().Info("debian build: packed", "root", out, "content_mib", used>>20, "size_mib", size>>20, "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// treeSize is the space the tree's files take, in bytes (du's view:
// allocated blocks, each inode at least one 4 KiB block).
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		sz := (fi.Size() + 4095) &^ 4095
		if sz == 0 {
			sz = 4096
		}
		total += sz
		return nil
	})
	return total, err
}

// initrdInputs are what the OS image's initramfs is made of.
type initrdInputs struct {
	busybox []byte
	mods    map[string][]byte
	order   []string
}

// initramfs gathers the OS image's initramfs inputs (RootInitramfs packs
// them): a static busybox and the kernel modules for Modules in
// modprobe's dependency order.
func (d Debian) initramfs(ctx context.Context) (initrdInputs, error) {
	bb, err := os.ReadFile(d.Busybox)
	if err != nil {
		return initrdInputs{}, fmt.Errorf("busybox: %w (scripts/setup installs busybox-static)", err)
	}
	if err := staticELF(d.Busybox); err != nil {
		return initrdInputs{}, err
	}
	mods, order, missing, err := moduleTree(ctx, filepath.Join(d.KernelDir, "modules"), d.Modules)
	if err != nil {
		return initrdInputs{}, err
	}
	if len(missing) > 0 {
		d.log().Warn("debian build: modules not in the kernel package, skipped", "modules", missing)
	}
	for _, need := range []string{"ext4.ko", "virtio_blk.ko"} {
		if _, ok := mods[need]; !ok && slices.Contains(d.Modules, strings.TrimSuffix(need, ".ko")) {
			return initrdInputs{}, fmt.Errorf("the kernel package has no %s (or builds it in): the initramfs cannot mount the root", need)
		}
	}
	return initrdInputs{busybox: bb, mods: mods, order: order}, nil
}

func staticELF(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the initramfs needs a static busybox (busybox-static)", p)
		}
	}
	return nil
}

// moduleTree resolves names with modprobe -d root --show-depends against
// the single kernel version under root/lib/modules and returns the
// modules (base name → contents) in load order, each once, and the names
// the kernel package does not have.
func moduleTree(ctx context.Context, root string, names []string) (map[string][]byte, []string, []string, error) {
	vers, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil || len(vers) != 1 {
		return nil, nil, nil, fmt.Errorf("%s should hold one kernel's lib/modules (scripts/boot-artifacts keeps it): %v", root, err)
	}
	kver := vers[0].Name()
	mods := map[string][]byte{}
	var order, missing []string
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "modprobe", "-d", root, "-S", kver, "--show-depends", name)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil && strings.Contains(stderr.String(), "not found") {
			missing = append(missing, name)
			continue
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("modprobe --show-depends %s for %s: %w: %s", name, kver, err, strings.TrimSpace(stderr.String()))
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" { // "builtin x" needs nothing
				continue
			}
			base := filepath.Base(f[1])
			if _, ok := mods[base]; ok {
				continue
			}
			if !strings.HasSuffix(base, ".ko") {
				return nil, nil, nil, fmt.Errorf("module %s is compressed (%s): busybox insmod needs plain .ko files", name, base)
			}
			b, err := os.ReadFile(f[1])
			if err != nil {
				return nil, nil, nil, err
			}
			mods[base] = b
			order = append(order, base)
		}
	}
	return mods, order, missing, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
