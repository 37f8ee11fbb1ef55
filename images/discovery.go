package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ironrack/ironrack/agent/wire"
)

// AgentImage is the discovery environment's image name: the boot server
// boots DATA/images/agent/current/{vmlinuz,initrd.img} (AgentDir, ipxe.Env's
// default), and Discovery.Build points current at the version it builds.
const AgentImage = "agent"

// Where both initramfs images keep their modules: the discovery one as the
// agent reads them (wire), and the OS image's busybox init the same way.
const (
	moduleDir   = wire.ModuleDir
	moduleOrder = wire.ModuleOrderFile
)

// DiscoveryModules are the kernel modules the discovery environment loads,
// leaves only: scripts/boot-artifacts adds their dependencies in load order
// (depmod -b, modprobe --show-depends) and skips one the kernel package
// lacks. The common server NICs (Intel e1000e, igb, ixgbe, i40e, ice;
// Broadcom bnxt_en, tg3; Mellanox mlx5_core) and storage controllers (AHCI,
// NVMe, MegaRAID, SAS3, SCSI disks), virtio for virtual machines, and
// software RAID 1 (md_mod, raid1: the agent builds a mirrored root, the OS
// initramfs assembles it). The script's default list is the same
// (TestBootArtifactsModules).
var DiscoveryModules = []string{
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
	"e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "mlx5_core", "tg3",
	"ahci", "nvme", "megaraid_sas", "mpt3sas", "sd_mod", "md_mod", "raid1",
}

// DiscoveryTools are the host's Debian binaries the discovery initramfs
// carries, each at its own path with the shared libraries it links
// (HostTool): mdadm, which the agent runs to build a mirrored root, and
// hdparm, which sends an ATA drive's security commands for release
// --erase secure (scripts/setup installs both).
var DiscoveryTools = []string{"/sbin/mdadm", "/sbin/hdparm"}

// Discovery builds the discovery environment into a boot server's data dir.
type Discovery struct {
	// DataDir is the boot server's data dir. Required.
	DataDir string
	// KernelDir is a scripts/boot-artifacts cache entry: vmlinuz (Debian's
	// kernel from apt-get download + dpkg -x), VERSION (package and
	// version), initrd.img, the busybox stand-in whose lib/modules (the
	// modules of the entry's list and their load order from depmod/modprobe
	// --show-depends) this build takes over, and modules.missing, the listed
	// modules the kernel lacks. Required; KernelCache finds it for
	// DiscoveryModules.
	KernelDir string
	// Agent is the static agent binary (cmd/ironrack-agent, CGO_ENABLED=0),
	// which becomes /init. Required; BuildAgent builds it.
	Agent string
	// Tools are host binaries added with their libraries (HostTool). If
	// nil, DiscoveryTools.
	Tools []string
}

// Manifest describes one built version; it is what the image catalog will
// record.
type Manifest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// KernelPackage is the Debian package and version, e.g.
	// "linux-image-6.1.0-56-amd64 6.1.192-2".
	KernelPackage string `json:"kernel_package,omitempty"`
	// Kernel, Initrd and Root name the version's files by role; a role
	// the image does not have is empty (the discovery image has no root).
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Root   string `json:"root,omitempty"`
	// Cmdline is the kernel command line of an image that boots a
	// network kernel with its root on the local disk (the cmdline file).
	Cmdline string   `json:"cmdline,omitempty"`
	Modules []string `json:"modules,omitempty"`
	// ModulesMissing are the modules asked for that the kernel package
	// does not have (scripts/boot-artifacts skipped them).
	ModulesMissing []string `json:"modules_missing,omitempty"`
	// Files are every file of the version with its size and sha256.
	Files []File `json:"files"`
}

// File is one file of a version, with its sha256.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Build writes DATA/images/agent/<version>/ and points
// DATA/images/agent/current at it. The version is the kernel package's
// version and a hash of both files, so the same inputs give the same
// version and a rebuild changes nothing. An older current that is a plain
// directory (scripts/boot-artifacts --install) is moved aside to
// unversioned-<unix time>.
func (d Discovery) Build(ctx context.Context) (Manifest, error) {
	if d.DataDir == "" || d.KernelDir == "" || d.Agent == "" {
		return Manifest{}, errors.New("discovery build: DataDir, KernelDir and Agent are required")
	}
	kernel, err := os.ReadFile(filepath.Join(d.KernelDir, KernelFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("discovery build: kernel: %w", err)
	}
	pkg, _ := os.ReadFile(filepath.Join(d.KernelDir, "VERSION"))
	agentBin, err := os.ReadFile(d.Agent)
	if err != nil {
		return Manifest{}, fmt.Errorf("discovery build: agent binary: %w", err)
	}
	if !bytes.HasPrefix(agentBin, []byte("\x7fELF")) {
		return Manifest{}, fmt.Errorf("discovery build: agent %s is not an ELF binary", d.Agent)
	}
	mods, order, err := modulesFrom(filepath.Join(d.KernelDir, InitrdFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("discovery build: modules: %w", err)
	}
	tools := d.Tools
	if tools == nil {
		tools = DiscoveryTools
	}
	var extra []ExtraFile
	have := map[string]bool{} // the tools share the loader and libc
	for _, t := range tools {
		files, err := HostTool(t)
		if err != nil {
			return Manifest{}, fmt.Errorf("discovery build: %w", err)
		}
		for _, f := range files {
			if !have[f.Path] {
				have[f.Path] = true
				extra = append(extra, f)
			}
		}
	}
	initrd, err := Initramfs(agentBin, mods, order, extra...)
	if err != nil {
		return Manifest{}, fmt.Errorf("discovery build: initramfs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Manifest{}, err
	}

	m := Manifest{Name: AgentImage, KernelPackage: strings.TrimSpace(string(pkg)), Kernel: KernelFile, Initrd: InitrdFile, Modules: order}
	if b, err := os.ReadFile(filepath.Join(d.KernelDir, "modules.missing")); err == nil {
		m.ModulesMissing = strings.Fields(string(b))
	}
	all := sha256.New()
	for _, f := range []struct {
		name string
		b    []byte
	}{{KernelFile, kernel}, {InitrdFile, initrd}} {
		sum := sha256.Sum256(f.b)
		m.Files = append(m.Files, File{Name: f.name, Size: int64(len(f.b)), SHA256: hex.EncodeToString(sum[:])})
		all.Write(sum[:])
	}
	m.Version = hex.EncodeToString(all.Sum(nil))[:12]
	if f := strings.Fields(m.KernelPackage); len(f) == 2 {
		m.Version = f[1] + "-" + m.Version
	}
	m.Version = strings.NewReplacer("/", "_", "~", "_", ":", "_").Replace(m.Version)

	dst := Dir(d.DataDir, AgentImage, m.Version)
	if _, err := os.Stat(filepath.Join(dst, ManifestFile)); err != nil {
		if err := install(d.DataDir, dst, m, map[string][]byte{KernelFile: kernel, InitrdFile: initrd}); err != nil {
			return Manifest{}, fmt.Errorf("discovery build: %w", err)
		}
	}
	if err := pointCurrent(filepath.Dir(dst), m.Version); err != nil {
		return Manifest{}, fmt.Errorf("discovery build: %w", err)
	}
	return m, nil
}

// install stages files and installs them as m's version dst.
func install(dataDir, dst string, m Manifest, files map[string][]byte) error {
	tmp, err := newStage(dataDir, m.Name, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	_, _, err = installBuilt(tmp, dst, m)
	return err
}

// pointCurrent makes base/current a symlink to version, atomically.
func pointCurrent(base, version string) error {
	cur := filepath.Join(base, Current)
	if fi, err := os.Lstat(cur); err == nil && fi.IsDir() {
		aside := filepath.Join(base, fmt.Sprintf("unversioned-%d", time.Now().Unix()))
		if err := os.Rename(cur, aside); err != nil {
			return fmt.Errorf("move the old %s aside: %w", cur, err)
		}
	}
	tmp := cur + ".new"
	os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, cur)
}

// Initramfs is the discovery initramfs, a gzip'd newc cpio: agent as
// /init, the modules (base name → contents) in lib/modules with their load
// order in lib/modules/order and, when every module has a .modinfo, their
// ModuleIndex in lib/modules/index.json, /dev/console, and the mount
// points, and the extra files (DiscoveryTools). It is reproducible: the same
// inputs give the same bytes.
func Initramfs(agent []byte, modules map[string][]byte, order []string, extra ...ExtraFile) ([]byte, error) {
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("run", 0o755),
		cpio.Directory("lib", 0o755),
		cpio.Directory(moduleDir, 0o755),
		cpio.StaticRecord(agent, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	for _, f := range extra {
		recs = append(recs, cpio.StaticRecord(f.Body, cpio.Info{Name: strings.TrimPrefix(f.Path, "/"), Mode: cpio.S_IFREG | uint64(f.Mode.Perm())}))
	}
	return packInitramfs(recs, modules, order)
}

// packInitramfs adds the modules (in order) and their order file to recs
// and writes them as a reproducible gzip'd newc cpio archive.
func packInitramfs(recs []cpio.Record, modules map[string][]byte, order []string) ([]byte, error) {
	for _, name := range order {
		b, ok := modules[name]
		if !ok {
			return nil, fmt.Errorf("module %s is in the order but not given", name)
		}
		recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: path.Join(moduleDir, name), Mode: cpio.S_IFREG | 0o644}))
	}
	recs = append(recs, cpio.StaticFile(moduleOrder, strings.Join(order, "\n")+"\n", 0o644))
	if idx, err := BuildModuleIndex(modules, order); err == nil && len(order) > 0 {
		recs = append(recs, cpio.StaticRecord(idx.Marshal(), cpio.Info{Name: wire.ModuleIndexFile, Mode: cpio.S_IFREG | 0o644}))
	}
	cpio.MakeAllReproducible(recs)

	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w := cpio.Newc.Writer(gz)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return nil, err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// modulesFrom reads lib/modules/*.ko and lib/modules/order out of a gzip'd
// (or plain) newc initramfs.
func modulesFrom(initrd string) (map[string][]byte, []string, error) {
	raw, err := os.ReadFile(initrd)
	if err != nil {
		return nil, nil, err
	}
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", initrd, err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", initrd, err)
		}
	}
	mods := map[string][]byte{}
	var order []string
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	err = cpio.ForEachRecord(rr, func(r cpio.Record) error {
		name := cpio.Normalize(r.Name)
		if path.Dir(name) != moduleDir || r.Mode&cpio.S_IFMT != cpio.S_IFREG {
			return nil
		}
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		switch {
		case name == moduleOrder:
			order = strings.Fields(string(b))
		case strings.HasSuffix(name, ".ko"):
			mods[path.Base(name)] = b
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", initrd, err)
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%s has no %s", initrd, moduleOrder)
	}
	for _, m := range order {
		if _, ok := mods[m]; !ok {
			return nil, nil, fmt.Errorf("%s: %s lists %s, which it does not hold", initrd, moduleOrder, m)
		}
	}
	return mods, order, nil
}

// KernelCache runs scripts/boot-artifacts (script) for DiscoveryModules.
// The script fetches Debian's kernel with apt-get download and dpkg -x into
// its cache keyed by the package version and the module list (reusing the
// entry when present), and KernelCache returns the entry for
// Discovery.KernelDir.
func KernelCache(ctx context.Context, script string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "IRONRACK_MODULES="+strings.Join(DiscoveryModules, " "))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, KernelFile)); err != nil {
		return "", fmt.Errorf("%s printed %q, which has no %s", script, dir, KernelFile)
	}
	return dir, nil
}

// BuildAgent compiles cmd/ironrack-agent from the ironrack module at
// moduleDir into out: static (CGO_ENABLED=0), linux/amd64, stripped.
func BuildAgent(ctx context.Context, moduleDir, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/ironrack-agent")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/ironrack-agent in %s: %w: %s", moduleDir, err, strings.TrimSpace(string(b)))
	}
	return nil
}
