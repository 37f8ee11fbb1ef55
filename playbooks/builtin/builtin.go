// Package builtin embeds the playbooks ironrack ships (deploy.yaml, ...):
// `ironrack playbook run NAME` runs one by name, `ironrack playbook list`
// lists them, `ironrack playbook show NAME` prints one. They are files in this directory, parsed by playbooks/book.
package builtin

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/ironrack/ironrack/playbooks/book"
)

//go:embed *.yaml
var files embed.FS

// dir prefixes the built-ins' names in errors: builtin/deploy.yaml:12.
const dir = "builtin"

// Names lists the built-in playbooks, sorted.
func Names() []string {
	ents, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Source returns the built-in playbook's file, to read or adapt.
func Source(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in playbook %q (built-ins: %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Load parses the built-in playbook name.
func Load(name string) (*book.Playbook, error) {
	b, err := Source(name)
	if err != nil {
		return nil, err
	}
	return book.Parse(path.Join(dir, name+".yaml"), b, func(p string) ([]byte, error) {
		return files.ReadFile(strings.TrimPrefix(p, dir+"/"))
	})
}
