package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The boot server's data dir, as images lays it out and alone builds its
// paths (the boot server, the CLI and the tests ask these functions):
//
//	DATA/images/                      Root: served under /images/
//	DATA/images/<name>/<version>/     Dir: one version's files, SHA256SUMS, manifest.json
//	DATA/images/agent/current         AgentDir: a symlink to the discovery version booted
//
// A version appears complete or not at all: every builder stages its files
// in a temporary directory beside the versions and installs it with one
// rename (installVersion).

// Root is DATA/images, the tree the boot server serves under /images/.
func Root(dataDir string) string { return filepath.Join(dataDir, "images") }

// Dir is DATA/images/<name>/<version>, one image version's files. It only
// joins: the caller checks that name and version are single path segments.
func Dir(dataDir, name, version string) string { return filepath.Join(Root(dataDir), name, version) }

// Current is the version name that Discovery.Build points at the version
// it built (a symlink); no other version may take it.
const Current = "current"

// AgentDir is DATA/images/agent/current, the discovery environment the boot
// server boots.
func AgentDir(dataDir string) string { return Dir(dataDir, AgentImage, Current) }

// Files of an image version. The deployed OS's network boot reads
// KernelFile (absent: the machine boots its local disk), InitrdFile
// (optional) and CmdlineFile (optional; if absent, DefaultCmdline); the
// agent streams RootFile onto the machine's disk.
const (
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
	RootFile     = "root.img"      // raw ext4, the whole disk (no partition table)
	CmdlineFile  = "cmdline"       // one line: the deployed kernel's command line
	SumsFile     = "SHA256SUMS"    // sha256sum -c format
	ManifestFile = "manifest.json" // Manifest
)

// RootLabel is the label of the OS image's root file system; the deployed
// initramfs finds the disk by it (root=LABEL=ironrack-root).
const RootLabel = "ironrack-root"

// DefaultCmdline is the deployed kernel's command line when its image has
// no cmdline file: root on the local disk by label, mounted read-only first
// (systemd checks it, then remounts it read-write from /etc/fstab),
// consoles on VGA and the first serial port. The boot server appends the
// machine's NoCloud seed (NoCloudCmdline).
const DefaultCmdline = "root=LABEL=" + RootLabel + " ro console=tty0 console=ttyS0,115200n8"

// ReadManifest reads the manifest.json of a version dir (Dir).
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	p := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// newStage makes a temporary directory beside DATA/images/<name>'s versions,
// where a builder writes a version's files before installVersion. The
// caller removes it (after an install, it is gone already).
func newStage(dataDir, name, prefix string) (string, error) {
	base := filepath.Join(Root(dataDir), name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, prefix)
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
// replaced; one with a manifest is an error: an installed version is never
// replaced under a boot server that may be serving it.
func installVersion(stage, dst string, m Manifest) error {
	var sums strings.Builder
	for _, f := range m.Files {
		fmt.Fprintf(&sums, "%s  %s\n", f.SHA256, f.Name)
	}
	man, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, SumsFile), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, ManifestFile), append(man, '\n'), 0o644); err != nil {
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

// installBuilt is installVersion for a version named by a hash of its
// inputs: when dst already holds that version (another build of the same
// inputs finished first), it is the same image, and reused says so.
func installBuilt(stage, dst string, m Manifest) (done Manifest, reused bool, err error) {
	if err := installVersion(stage, dst, m); err != nil {
		if prev, rerr := ReadManifest(dst); rerr == nil && prev.Version == m.Version {
			return prev, true, nil
		}
		return Manifest{}, false, err
	}
	return m, false, nil
}
