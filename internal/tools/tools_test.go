package tools

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestSetupPins keeps scripts/setup's pinned versions equal to this
// package's: a bump in one place only would have the CLI and the tests look
// for a tool setup never builds.
func TestSetupPins(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "setup"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"CONSUL_VERSION": ConsulVersion, "PULUMI_VERSION": PulumiVersion} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Errorf("scripts/setup sets no %s", name)
			continue
		}
		if string(m[1]) != want {
			t.Errorf("scripts/setup pins %s=%s, package tools %s", name, m[1], want)
		}
	}
}

func TestDir(t *testing.T) {
	t.Setenv("IRONRACK_TOOLS", "/x/tools")
	if d, _ := Dir(); d != "/x/tools" {
		t.Errorf("Dir with IRONRACK_TOOLS = %q", d)
	}
	if d, _ := PulumiDir(); d != "/x/tools/pulumi-"+PulumiVersion {
		t.Errorf("PulumiDir = %q", d)
	}
	if _, err := Consul(); err == nil {
		t.Error("Consul found a binary under /x/tools")
	}
	t.Setenv("IRONRACK_TOOLS", "")
	t.Setenv("HOME", "/home/someone")
	if d, _ := Dir(); d != "/home/someone/.cache/ironrack/tools" {
		t.Errorf("Dir with HOME = %q", d)
	}
	dir := t.TempDir()
	t.Setenv("IRONRACK_TOOLS", dir)
	p := filepath.Join(dir, "consul-"+ConsulVersion, "consul")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644)
	if _, err := Consul(); err == nil {
		t.Error("Consul accepted a file that is not executable")
	}
	os.Chmod(p, 0o755)
	if got, err := Consul(); err != nil || got != p {
		t.Errorf("Consul = %q, %v", got, err)
	}
}
