package wire

import (
	"encoding/json"
	"fmt"
)

// Where the discovery initramfs keeps its kernel modules, relative to its
// root: the module files in ModuleDir, their load order (base names, one a
// line) in ModuleOrderFile and their ModuleIndex in ModuleIndexFile.
const (
	ModuleDir       = "lib/modules"
	ModuleOrderFile = ModuleDir + "/order"
	ModuleIndexFile = ModuleDir + "/index.json"
)

// ModuleIndex tells the agent which modules the machine needs: a PCI
// driver only when a PCI device matches one of its aliases, so a discovery
// boot does not load a dozen NIC and storage drivers for hardware it does
// not have. images derives it from each module's .modinfo section; the
// agent selects from it.
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

// ParseModuleIndex decodes an index as Marshal writes it.
func ParseModuleIndex(b []byte) (ModuleIndex, error) {
	var idx ModuleIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return ModuleIndex{}, fmt.Errorf("module index: %w", err)
	}
	return idx, nil
}

// Marshal is the index as the initramfs holds it: JSON with sorted keys
// and a final newline, so the same index gives the same bytes.
func (x ModuleIndex) Marshal() []byte {
	b, _ := json.Marshal(x) // maps of strings and ints always encode
	return append(b, '\n')
}
