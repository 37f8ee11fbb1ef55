package images

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBootArtifactsModules: the script's default module list is
// DiscoveryModules, so `scripts/boot-artifacts` run by hand and
// `images build discovery` build the same entry.
func TestBootArtifactsModules(t *testing.T) {
	b, err := os.ReadFile("../scripts/boot-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^DEFAULT_MODULES="([^"]*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/boot-artifacts has no DEFAULT_MODULES line")
	}
	if diff := cmp.Diff(DiscoveryModules, strings.Fields(string(m[1]))); diff != "" {
		t.Errorf("script default vs images.DiscoveryModules (-images +script):\n%s", diff)
	}
}

// TestKernelCacheModules runs the real scripts/boot-artifacts (cached
// outside the clone; the first run downloads the kernel package): the
// entry for DiscoveryModules holds the server NIC and storage drivers,
// each after the modules it depends on (modinfo on the module files), and
// uncompressed; another module list gets an entry of its own, so an entry
// built for one list is never reused for another; a module the kernel
// lacks is skipped and named in modules.missing.
func TestKernelCacheModules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs scripts/boot-artifacts")
	}
	if _, err := exec.LookPath("modinfo"); err != nil {
		t.Fatalf("needs modinfo (kmod; scripts/setup installs it): %v", err)
	}
	ctx := context.Background()
	dir, err := KernelCache(ctx, "../scripts/boot-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	mods, order, err := modulesFrom(filepath.Join(dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, name := range order {
		pos[strings.TrimSuffix(name, ".ko")] = i
	}
	for _, want := range []string{"e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "mlx5_core", "tg3", "ahci", "nvme", "megaraid_sas", "mpt3sas", "sd_mod", "virtio_net", "virtio_blk"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("%s: no %s.ko in the order %v", dir, want, order)
		}
	}
	tmp := t.TempDir()
	for _, name := range order {
		b := mods[name]
		if !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Errorf("%s is not an uncompressed ELF module", name)
			continue
		}
		f := filepath.Join(tmp, name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("modinfo", "-F", "depends", f).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", name, err)
		}
		for _, dep := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' }) {
			// Names in depends use _ or - as the file does; a dependency
			// missing from the order is built into the kernel.
			i, ok := pos[dep]
			if !ok {
				i, ok = pos[strings.ReplaceAll(dep, "_", "-")]
			}
			if ok && i > pos[strings.TrimSuffix(name, ".ko")] {
				t.Errorf("%s loads before its dependency %s", name, dep)
			}
		}
	}

	// The index the agent selects by: PCI drivers with their aliases, the
	// bus-level modules marked, dependencies by file.
	idx, err := BuildModuleIndex(mods, order)
	if err != nil {
		t.Fatal(err)
	}
	e1000e := idx.Modules["e1000e.ko"]
	if !slices.Contains(e1000e.PCI, "pci:v00008086d000010D3sv*sd*bc*sc*i*") || e1000e.OtherAliases != 0 {
		t.Errorf("e1000e.ko index %+v: want QEMU's e1000e (8086:10d3) among its pci aliases", e1000e)
	}
	if ahci := idx.Modules["ahci.ko"]; !slices.Contains(ahci.PCI, "pci:v*d*sv*sd*bc01sc06i01*") || !slices.Contains(ahci.Depends, "libahci.ko") {
		t.Errorf("ahci.ko index %+v", ahci)
	}
	for _, file := range []string{"sd_mod.ko", "virtio_net.ko", "virtio_blk.ko"} {
		if m := idx.Modules[file]; m.OtherAliases == 0 || len(m.PCI) != 0 {
			t.Errorf("%s index %+v: want aliases on other buses only", file, m)
		}
	}
	if m := idx.Modules["libata.ko"]; m.OtherAliases != 0 || len(m.PCI) != 0 {
		t.Errorf("libata.ko index %+v: a library has no aliases", m)
	}
	if m := idx.Modules["mlx5_core.ko"]; !slices.Contains(m.Depends, "mlxfw.ko") {
		t.Errorf("mlx5_core.ko index %+v: want mlxfw.ko among its dependencies", m)
	}

	// Another list: its own entry, with only its modules.
	cmd := exec.CommandContext(ctx, "../scripts/boot-artifacts")
	cmd.Env = append(os.Environ(), "IRONRACK_MODULES=virtio_net no_such_module_xyz")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("boot-artifacts with another list: %v\n%s", err, stderr.String())
	}
	other := strings.TrimSpace(string(out))
	if other == dir {
		t.Fatalf("another module list reused the entry %s", dir)
	}
	_, otherOrder, err := modulesFrom(filepath.Join(other, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(otherOrder, "virtio_net.ko") || slices.Contains(otherOrder, "e1000e.ko") {
		t.Errorf("entry for virtio_net holds %v", otherOrder)
	}
	missing, _ := os.ReadFile(filepath.Join(other, "modules.missing"))
	if strings.TrimSpace(string(missing)) != "no_such_module_xyz" {
		t.Errorf("modules.missing = %q, want the unknown module", missing)
	}
	// A bad name is refused before anything is built.
	cmd = exec.CommandContext(ctx, "../scripts/boot-artifacts")
	cmd.Env = append(os.Environ(), "IRONRACK_MODULES=virtio_net ../../etc")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `module name "../../etc"`) {
		t.Errorf("bad module name: %v\n%s", err, b)
	}
}
