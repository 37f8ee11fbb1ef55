package images

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// moduleIndex is where the discovery initramfs keeps ModuleIndex as JSON
// (agent.ModuleIndex reads it).
const moduleIndex = "lib/modules/index.json"

// ModuleIndex tells the agent which modules the machine needs: a PCI
// driver only when a PCI device matches one of its aliases, so a discovery
// boot does not load a dozen NIC and storage drivers for hardware it does
// not have. It is derived from each module's .modinfo section.
type ModuleIndex struct {
	Modules map[string]ModuleInfo `json:"modules"`
}

// ModuleInfo is one module file of the initramfs.
type ModuleInfo struct {
	// Depends are the module files it needs loaded first (those in the
	// initramfs; a dependency built into the kernel is left out).
	Depends []string `json:"depends,omitempty"`
	// PCI are its pci: alias patterns (fnmatch, as in modules.alias).
	PCI []string `json:"pci,omitempty"`
	// OtherAliases counts its other aliases (virtio, scsi, auxiliary,
	// crypto names). A module with no PCI alias but some other is loaded
	// whatever the PCI devices: virtio and scsi devices appear only once
	// their controllers' drivers run. A PCI driver is loaded only for its
	// devices, whatever its other aliases.
	OtherAliases int `json:"other_aliases,omitempty"`
}

// modinfo reads a module's .modinfo section: NUL-separated key=value.
func modinfo(ko []byte) (map[string][]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	b, err := sec.Data()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out, nil
}

// modName is a module's name as the kernel compares them: - and _ are one.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// BuildModuleIndex reads the .modinfo of every module in order. It fails
// when a module is not an ELF file with a .modinfo section; the caller then
// leaves the index out and the agent loads every module.
func BuildModuleIndex(modules map[string][]byte, order []string) (ModuleIndex, error) {
	byName := map[string]string{}
	infos := map[string]map[string][]string{}
	for _, file := range order {
		mi, err := modinfo(modules[file])
		if err != nil {
			return ModuleIndex{}, fmt.Errorf("module %s: %w", file, err)
		}
		infos[file] = mi
		byName[modName(file)] = file
		for _, n := range mi["name"] {
			byName[modName(n)] = file
		}
	}
	idx := ModuleIndex{Modules: map[string]ModuleInfo{}}
	for _, file := range order {
		mi := infos[file]
		var info ModuleInfo
		for _, deps := range mi["depends"] {
			for _, d := range strings.Split(deps, ",") {
				if f, ok := byName[modName(d)]; ok && d != "" {
					info.Depends = append(info.Depends, f)
				}
			}
		}
		for _, a := range mi["alias"] {
			if strings.HasPrefix(a, "pci:") {
				info.PCI = append(info.PCI, a)
			} else {
				info.OtherAliases++
			}
		}
		sort.Strings(info.Depends)
		idx.Modules[file] = info
	}
	return idx, nil
}

func (x ModuleIndex) marshal() []byte {
	b, _ := json.Marshal(x) // map keys are sorted: reproducible
	return append(b, '\n')
}
