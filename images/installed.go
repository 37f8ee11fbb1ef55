package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Installed returns the manifest of a version already built into dataDir
// (DATA/images/NAME/VERSION/manifest.json), checking that each of its files
// is there at its recorded size. An empty version means the one "current"
// points at, else the only one. It reads only local files: a lab registers
// images built before its network namespace existed.
func Installed(dataDir, name, version string) (Manifest, error) {
	base := filepath.Join(Root(dataDir), name)
	if version == "" {
		if v, err := os.Readlink(filepath.Join(base, Current)); err == nil {
			version = filepath.Base(v)
		} else {
			ents, err := os.ReadDir(base)
			if errors.Is(err, fs.ErrNotExist) {
				return Manifest{}, fmt.Errorf("no %s image in %s (build it first: ironrack images build %s --data-dir %s)", name, dataDir, buildName(name), dataDir)
			}
			if err != nil {
				return Manifest{}, err
			}
			var vs []string
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") { // not a build's stage
					vs = append(vs, e.Name())
				}
			}
			sort.Strings(vs)
			switch len(vs) {
			case 0:
				return Manifest{}, fmt.Errorf("no %s image in %s (build it first: ironrack images build %s --data-dir %s)", name, dataDir, buildName(name), dataDir)
			case 1:
				version = vs[0]
			default:
				return Manifest{}, fmt.Errorf("%s has versions %s: name one", base, strings.Join(vs, ", "))
			}
		}
	}
	dir := Dir(dataDir, name, version)
	m, err := ReadManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("no built %s/%s in %s (no %s; build it first: ironrack images build %s --data-dir %s)", name, version, dataDir, ManifestFile, buildName(name), dataDir)
	}
	if err != nil {
		return Manifest{}, err
	}
	if m.Name != name || m.Version != version {
		return Manifest{}, fmt.Errorf("%s: manifest says %s/%s, not %s/%s", dir, m.Name, m.Version, name, version)
	}
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			return Manifest{}, fmt.Errorf("%s/%s: %w", name, version, err)
		}
		if fi.Size() != f.Size {
			return Manifest{}, fmt.Errorf("%s/%s: %s is %d bytes, the manifest says %d", name, version, f.Name, fi.Size(), f.Size)
		}
	}
	return m, nil
}

// buildName is the `images build` subcommand that builds image name.
func buildName(name string) string {
	if name == AgentImage {
		return "discovery"
	}
	return name
}
