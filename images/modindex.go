package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"
	"strings"

	"github.com/ironrack/ironrack/agent/wire"
)

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

// BuildModuleIndex reads the .modinfo of every module in order into the
// index the agent selects modules by (wire.ModuleIndex). It fails
// when a module is not an ELF file with a .modinfo section; the caller then
// leaves the index out and the agent loads every module.
func BuildModuleIndex(modules map[string][]byte, order []string) (wire.ModuleIndex, error) {
	byName := map[string]string{}
	infos := map[string]map[string][]string{}
	for _, file := range order {
		mi, err := modinfo(modules[file])
		if err != nil {
			return wire.ModuleIndex{}, fmt.Errorf("module %s: %w", file, err)
		}
		infos[file] = mi
		byName[modName(file)] = file
		for _, n := range mi["name"] {
			byName[modName(n)] = file
		}
	}
	idx := wire.ModuleIndex{Modules: map[string]wire.ModuleInfo{}}
	for _, file := range order {
		mi := infos[file]
		var info wire.ModuleInfo
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
