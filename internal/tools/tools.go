// Package tools finds the pinned tools that scripts/setup builds from the Go
// module proxy: the tools cache ($IRONRACK_TOOLS, default
// ~/.cache/ironrack/tools) holds consul-<ConsulVersion>/consul and
// pulumi-<PulumiVersion>/bin/{pulumi,pulumi-language-yaml}.
//
// It owns the cache's layout and the pinned versions (scripts/setup repeats
// them; TestSetupPins keeps the two equal). It is not test code: the CLI
// uses it for its defaults, and the test harness for its peers.
package tools

import (
	"fmt"
	"os"
	"path/filepath"
)

const (
	// ConsulVersion is the Consul release scripts/setup builds.
	ConsulVersion = "v1.22.0"
	// PulumiVersion is the Pulumi engine release scripts/setup builds.
	PulumiVersion = "v3.256.0"
)

// Dir returns the tools cache: $IRONRACK_TOOLS, or ~/.cache/ironrack/tools.
// It need not exist.
func Dir() (string, error) {
	if d := os.Getenv("IRONRACK_TOOLS"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the tools cache: %w (set IRONRACK_TOOLS)", err)
	}
	return filepath.Join(home, ".cache", "ironrack", "tools"), nil
}

// Consul returns the pinned consul binary in the tools cache. The file must
// exist and be executable; the error names it and how to build it.
func Consul() (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "consul-"+ConsulVersion, "consul")
	if err := Executable(p); err != nil {
		return p, fmt.Errorf("%w (scripts/setup builds it)", err)
	}
	return p, nil
}

// PulumiDir returns the pinned Pulumi engine's root in the tools cache (the
// directory holding bin/pulumi). It need not exist.
func PulumiDir() (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "pulumi-"+PulumiVersion), nil
}

// Executable checks that p is a file with an execute bit: the stat error
// as it is (it names p), or one saying p is not executable.
func Executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
