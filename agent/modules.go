package agent

import (
	"io/fs"
	"path"
	"strings"

	"github.com/ironrack/ironrack/agent/wire"
)

// SelectModules picks the modules of order (files, in load order) that
// this machine needs, from the initramfs's module index (wire.ModuleIndex):
// each PCI driver (a module with pci: aliases) with an alias that matches a
// device in sys/bus/pci/devices/*/modalias; every other module with aliases
// (virtio and scsi drivers, whose devices appear only once a controller's
// driver runs; crypto implementations); and the dependencies of both, in
// order. fsys is rooted at / (sys/...). A module the index does not know is
// loaded.
func SelectModules(fsys fs.FS, order []string, index []byte) ([]string, error) {
	idx, err := wire.ParseModuleIndex(index)
	if err != nil {
		return nil, err
	}
	var aliases []string
	devs, _ := fs.ReadDir(fsys, "sys/bus/pci/devices")
	for _, d := range devs {
		if b, err := fs.ReadFile(fsys, "sys/bus/pci/devices/"+d.Name()+"/modalias"); err == nil {
			aliases = append(aliases, strings.TrimSpace(string(b)))
		}
	}
	want := map[string]bool{}
	var add func(file string)
	add = func(file string) {
		if want[file] {
			return
		}
		want[file] = true
		for _, d := range idx.Modules[file].Depends {
			add(d)
		}
	}
	for _, file := range order {
		info, known := idx.Modules[file]
		switch {
		case !known:
			add(file)
		case len(info.PCI) > 0:
			// A PCI driver's other aliases (mlx5_core's auxiliary
			// devices, mpt3sas's old name) are its own children.
			if matchesAny(info.PCI, aliases) {
				add(file)
			}
		case info.OtherAliases > 0:
			add(file)
		}
	}
	var out []string
	for _, file := range order {
		if want[file] {
			out = append(out, file)
		}
	}
	return out, nil
}

func matchesAny(patterns, aliases []string) bool {
	for _, p := range patterns {
		for _, a := range aliases {
			if ok, _ := path.Match(p, a); ok {
				return true
			}
		}
	}
	return false
}
