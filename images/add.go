package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// External registers an image built elsewhere: its files are copied into
// Dir(DataDir, Name, Version) (sha256 computed while copying) with
// SHA256SUMS and manifest.json, as a build writes them.
//
// With Kernel, deployed machines boot it from the network with its root on
// the local disk (Initrd and Cmdline optional; without Cmdline the boot
// server uses DefaultCmdline, root=LABEL=ironrack-root). Without it, Root is
// a whole disk with its own boot loader and machines boot their local disk.
type External struct {
	// DataDir is the boot server's data dir. Required.
	DataDir string
	// Name and Version name the image; letters, digits and _.+- . Required.
	Name, Version string
	// Root is the disk image file the agent writes. Required.
	Root string
	// Kernel, Initrd: files. Optional; Initrd needs Kernel.
	Kernel, Initrd string
	// Cmdline is the kernel command line (one line). Optional; needs Kernel.
	Cmdline string
}

var segmentRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$`)

// Add copies and registers nothing on error: the version appears complete
// or not at all. Errors name the field (as its flag: --root, --kernel, …).
func (x External) Add(ctx context.Context) (Manifest, error) {
	switch {
	case x.DataDir == "":
		return Manifest{}, errors.New("images add: no data dir (--data-dir)")
	case !segmentRE.MatchString(x.Name):
		return Manifest{}, fmt.Errorf("images add: name %q: want letters, digits and _.+- (up to 64)", x.Name)
	case x.Name == AgentImage:
		return Manifest{}, fmt.Errorf("images add: %q is the discovery environment: ironrack images build discovery makes it", x.Name)
	case !segmentRE.MatchString(x.Version):
		return Manifest{}, fmt.Errorf("images add: --version %q: want letters, digits and _.+- (up to 64)", x.Version)
	case x.Version == "current":
		return Manifest{}, errors.New(`images add: --version "current" is reserved`)
	case x.Root == "":
		return Manifest{}, errors.New("images add: --root FILE is required (the disk image the agent writes)")
	case x.Initrd != "" && x.Kernel == "":
		return Manifest{}, errors.New("images add: --initrd needs --kernel")
	case x.Cmdline != "" && x.Kernel == "":
		return Manifest{}, errors.New("images add: --cmdline needs --kernel")
	case len(x.Cmdline) > 2048 || strings.ContainsFunc(x.Cmdline, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return Manifest{}, errors.New("images add: --cmdline must be one line of printable text, at most 2048 bytes")
	}
	inputs := []struct{ flag, path, name string }{{"--root", x.Root, RootFile}}
	if x.Kernel != "" {
		inputs = append(inputs, struct{ flag, path, name string }{"--kernel", x.Kernel, KernelFile})
	}
	if x.Initrd != "" {
		inputs = append(inputs, struct{ flag, path, name string }{"--initrd", x.Initrd, InitrdFile})
	}
	for _, in := range inputs {
		fi, err := os.Stat(in.path)
		switch {
		case err != nil:
			return Manifest{}, fmt.Errorf("images add: %s: %w", in.flag, err)
		case !fi.Mode().IsRegular():
			return Manifest{}, fmt.Errorf("images add: %s %s is not a regular file", in.flag, in.path)
		case fi.Size() == 0:
			return Manifest{}, fmt.Errorf("images add: %s %s is empty", in.flag, in.path)
		}
	}
	if x.Kernel != "" {
		if err := checkKernel(x.Kernel); err != nil {
			return Manifest{}, fmt.Errorf("images add: --kernel %s: %w", x.Kernel, err)
		}
	}

	dst := Dir(x.DataDir, x.Name, x.Version)
	if _, err := os.Stat(filepath.Join(dst, ManifestFile)); err == nil {
		return Manifest{}, fmt.Errorf("images add: %s/%s already exists in %s: pick another --version", x.Name, x.Version, x.DataDir)
	}
	stage, err := newStage(x.DataDir, x.Name, ".add-")
	if err != nil {
		return Manifest{}, fmt.Errorf("images add: %w", err)
	}
	defer os.RemoveAll(stage)
	m := Manifest{Name: x.Name, Version: x.Version, Root: RootFile, Cmdline: x.Cmdline}
	for _, in := range inputs {
		f, err := copyHashing(ctx, in.path, filepath.Join(stage, in.name))
		if err != nil {
			return Manifest{}, fmt.Errorf("images add: %s %s: %w", in.flag, in.path, err)
		}
		m.Files = append(m.Files, f)
		switch in.name {
		case KernelFile:
			m.Kernel = KernelFile
		case InitrdFile:
			m.Initrd = InitrdFile
		}
	}
	if x.Cmdline != "" {
		if err := os.WriteFile(filepath.Join(stage, CmdlineFile), []byte(x.Cmdline+"\n"), 0o644); err != nil {
			return Manifest{}, fmt.Errorf("images add: %w", err)
		}
		fs, err := hashFiles(stage, []string{CmdlineFile})
		if err != nil {
			return Manifest{}, fmt.Errorf("images add: %w", err)
		}
		m.Files = append(m.Files, fs...)
	}
	if err := installVersion(stage, dst, m); err != nil {
		return Manifest{}, fmt.Errorf("images add: %w", err)
	}
	return m, nil
}

// copyHashing copies src to dst, hashing what it writes, checking ctx
// between chunks.
func copyHashing(ctx context.Context, src, dst string) (File, error) {
	in, err := os.Open(src)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return File{}, err
	}
	defer out.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return File{}, err
		}
		k, rerr := in.Read(buf)
		if k > 0 {
			if _, err := out.Write(buf[:k]); err != nil {
				return File{}, err
			}
			h.Write(buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return File{}, rerr
		}
	}
	if err := out.Close(); err != nil {
		return File{}, err
	}
	return File{Name: filepath.Base(dst), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// checkKernel wants an x86 bzImage (the "HdrS" boot protocol magic at
// 0x202), an arm64 Image ("ARM\x64" at 0x38) or an ELF vmlinux.
func checkKernel(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 0x206)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return errors.New("too short to be a kernel")
	}
	if string(hdr[0x202:0x206]) == "HdrS" || string(hdr[0x38:0x3c]) == "ARM\x64" || string(hdr[:4]) == "\x7fELF" {
		return nil
	}
	return errors.New("not a Linux kernel (no bzImage header, not ELF)")
}
