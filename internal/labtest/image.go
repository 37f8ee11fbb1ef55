package labtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
)

var discovery struct {
	once sync.Once
	dir  string
	err  error
}

// DiscoveryImage builds the real discovery environment once per test
// binary, as `ironrack images build discovery` does (images.BuildAgent,
// images.KernelCache, images.Discovery), into a cache outside the clone
// (IRONRACK_LAB_CACHE, default ~/.cache/ironrack/lab) and returns the
// version's directory (vmlinuz, initrd.img, manifest.json). Versions are
// content hashes, so an unchanged agent reuses the cached version; the build
// holds a file lock, so test binaries running at once do not race.
func DiscoveryImage(t testing.TB) string {
	t.Helper()
	discovery.once.Do(func() { discovery.dir, discovery.err = buildDiscovery() })
	if discovery.err != nil {
		t.Fatalf("lab: discovery image: %v", discovery.err)
	}
	return discovery.dir
}

func buildDiscovery() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("IRONRACK_LAB_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "ironrack", "lab")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", cache, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	kdir, err := images.KernelCache(ctx, filepath.Join(root, "scripts", "boot-artifacts"))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "ironrack-agent")
	if err := images.BuildAgent(ctx, root, bin); err != nil {
		return "", err
	}
	m, err := images.Discovery{DataDir: cache, KernelDir: kdir, Agent: bin}.Build(ctx)
	if err != nil {
		return "", err
	}
	return images.Dir(cache, images.AgentImage, m.Version), nil
}

// ModuleRoot is the ironrack source tree: the first directory holding
// go.mod, from the working directory (a test's package directory) up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lab: no go.mod above the working directory")
		}
		dir = parent
	}
}

// DebianImage builds the Debian OS image (images.Debian: the debootstrap
// tree from its cache, the boot-artifacts kernel, the pinned consul) into
// the lab's data dir and registers it in the lab's catalog. The tree is
// cached outside the clone, so only the first build is slow.
func (l *Lab) DebianImage() images.Manifest {
	t := l.T
	t.Helper()
	ctx := context.Background()
	mirror, err := images.AptMirror("/")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := images.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	kdir, err := images.KernelCache(ctx, filepath.Join(root, "scripts", "boot-artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	consul, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := images.Debian{DataDir: l.Data, CacheDir: cache, Mirror: mirror, KernelDir: kdir, Consul: consul}.Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("debian/%s built in %v (tree cached: %v)", b.Manifest.Version, time.Since(start).Round(100*time.Millisecond), b.TreeCached)
	if err := (&images.Catalog{KV: l.Consul.KV()}).Register(ctx, b.Manifest); err != nil {
		t.Fatal(err)
	}
	return b.Manifest
}
