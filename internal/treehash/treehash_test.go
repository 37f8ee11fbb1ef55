package treehash

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOfSeesContentModeAndLinks(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("one"), 0o644)
	os.Symlink("a", filepath.Join(dir, "l"))
	base := Of(t, dir)
	if Of(t, dir) != base {
		t.Fatal("two walks of an unchanged tree differ")
	}
	for name, change := range map[string]func(){
		"content": func() { os.WriteFile(filepath.Join(dir, "a"), []byte("two"), 0o644) },
		"mode":    func() { os.Chmod(filepath.Join(dir, "a"), 0o600) },
		"link":    func() { os.Remove(filepath.Join(dir, "l")); os.Symlink("b", filepath.Join(dir, "l")) },
		"new":     func() { os.Mkdir(filepath.Join(dir, "d"), 0o755) },
	} {
		before := Of(t, dir)
		change()
		if Of(t, dir) == before {
			t.Errorf("%s change not seen", name)
		}
	}
}
