package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The tier programs' Pulumi project and its stack config keys: the planner
// writes them, `scale preview|apply` read them.
const tiersProject = "ironrack-tiers"

// sizeKey and selectorKey are a tier's stack config keys.
func sizeKey(tier string) string     { return tiersProject + ":" + tier + "Size" }
func selectorKey(tier string) string { return tiersProject + ":" + tier + "Selector" }
func rootDiskKey(tier string) string { return tiersProject + ":" + tier + "RootDisk" }
func rootLayoutKey(tier string) string {
	return tiersProject + ":" + tier + "RootLayout"
}

var stackNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// stackPath is Pulumi.<stack>.yaml in the project dir.
func stackPath(dir, stack string) string { return filepath.Join(dir, "Pulumi."+stack+".yaml") }

// stackFile is a Pulumi stack settings file kept as a YAML node tree, so
// that rewriting it keeps every other key, its order and its comments.
type stackFile struct {
	path string
	doc  *yaml.Node // a DocumentNode; its content[0] is the top mapping
}

// readStackFile reads path; a missing file is an empty stack.
func readStackFile(path string) (*stackFile, error) {
	sf := &stackFile{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		sf.doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
		return sf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stack file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("stack file %s: %w", path, err)
	}
	switch {
	case doc.Kind == 0: // empty file
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	case doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode:
		return nil, fmt.Errorf("stack file %s: not a YAML mapping", path)
	}
	sf.doc = &doc
	if cfg := lookup(doc.Content[0], "config"); cfg != nil && cfg.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("stack file %s:%d: config is not a mapping", path, cfg.Line)
	}
	return sf, nil
}

// lookup returns the value node of key in a mapping, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func (sf *stackFile) config() *yaml.Node {
	top := sf.doc.Content[0]
	if cfg := lookup(top, "config"); cfg != nil {
		return cfg
	}
	cfg := &yaml.Node{Kind: yaml.MappingNode}
	top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "config"}, cfg)
	return cfg
}

// String returns a config value and whether it is set; a non-scalar (a
// secure value, an object) is an error naming the key.
func (sf *stackFile) String(key string) (string, bool, error) {
	cfg := lookup(sf.doc.Content[0], "config")
	if cfg == nil {
		return "", false, nil
	}
	v := lookup(cfg, key)
	if v == nil {
		return "", false, nil
	}
	if v.Kind != yaml.ScalarNode {
		return "", false, fmt.Errorf("stack file %s:%d: %s is not a plain value", sf.path, v.Line, key)
	}
	return v.Value, true, nil
}

// Int returns an integer config value (0 when unset).
func (sf *stackFile) Int(key string) (int, error) {
	s, ok, err := sf.String(key)
	if err != nil || !ok {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("stack file %s: %s is %q, not a size (a whole number >= 0)", sf.path, key, s)
	}
	return n, nil
}

// Set sets a config value (an int or a string), keeping its place when the
// key exists.
func (sf *stackFile) Set(key string, value any) {
	var v *yaml.Node
	switch x := value.(type) {
	case int:
		v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
	default:
		v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(x)}
	}
	cfg := sf.config()
	for i := 0; i+1 < len(cfg.Content); i += 2 {
		if cfg.Content[i].Value == key {
			v.LineComment = cfg.Content[i+1].LineComment
			cfg.Content[i+1] = v
			return
		}
	}
	cfg.Content = append(cfg.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// Write replaces the file atomically (a temporary file in the same
// directory, renamed over it), keeping an existing file's mode.
func (sf *stackFile) Write() error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(sf.doc); err != nil {
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	enc.Close()
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(sf.path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(sf.path), ".Pulumi-*.yaml")
	if err != nil {
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	if err := os.Rename(tmp.Name(), sf.path); err != nil {
		return fmt.Errorf("stack file %s: %w", sf.path, err)
	}
	return nil
}
