package images

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// This file copies a host binary with the shared libraries it links into
// an initramfs (the discovery image's mdadm).

// ExtraFile is one regular file added to an initramfs at Path.
type ExtraFile struct {
	Path string
	Body []byte
	Mode os.FileMode
}

// libDirs are where the host's (Debian amd64) dynamic loader finds
// libraries without an ld.so.cache.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib"}

// HostTool returns bin (an absolute path on this machine) and what it
// needs to run: its ELF interpreter and the shared libraries it links,
// recursively, each at the path the loader finds it (symlinks resolved to
// their contents). A static binary is itself alone. Sorted by path.
func HostTool(bin string) ([]ExtraFile, error) {
	if !filepath.IsAbs(bin) {
		return nil, fmt.Errorf("host tool %q: want an absolute path", bin)
	}
	seen := map[string]bool{}
	var out []ExtraFile
	add := func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("host tool %s: %w", bin, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		out = append(out, ExtraFile{Path: p, Body: b, Mode: fi.Mode().Perm()})
		return nil
	}
	queue := []string{bin}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if err := add(p); err != nil {
			return nil, err
		}
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("host tool %s: %s: %w", bin, p, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err != nil {
					f.Close()
					return nil, fmt.Errorf("host tool %s: %s's interpreter: %w", bin, p, err)
				}
				if interp := string(b[:len(b)-1]); !seen[interp] {
					if err := add(interp); err != nil {
						f.Close()
						return nil, err
					}
				}
			}
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("host tool %s: %s: %w", bin, p, err)
		}
		for _, lib := range libs {
			found := ""
			for _, dir := range libDirs {
				if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
					found = filepath.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("host tool %s: %s links %s, which is in none of %v", bin, p, lib, libDirs)
			}
			if !seen[found] {
				queue = append(queue, found)
			}
		}
	}
	slices.SortFunc(out, func(a, b ExtraFile) int {
		if a.Path < b.Path {
			return -1
		}
		if a.Path > b.Path {
			return 1
		}
		return 0
	})
	return out, nil
}
