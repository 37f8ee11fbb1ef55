package images

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// This file resolves the OS image's initramfs modules with modprobe
// --show-depends against the kernel package's module tree.

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
