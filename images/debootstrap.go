package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the Debian image's debootstrap cache: one minbase tree per
// suite and package list (TreeKey), built under a lock, moved into place
// only when every package is configured.

// DefaultCacheDir is ~/.cache/ironrack/images.
func DefaultCacheDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the image cache: %w", err)
	}
	return filepath.Join(home, ".cache", "ironrack", "images"), nil
}

// TreeKey is the cache key of a debootstrap tree: the suite and a hash of
// the sorted package list, e.g. debian-bookworm-3f2a9c1d0b7e. The mirror
// is not part of it: every mirror serves the same packages.
func TreeKey(suite string, packages []string) string {
	p := append([]string(nil), packages...)
	sort.Strings(p)
	sum := sha256.Sum256([]byte("minbase\n" + strings.Join(p, "\n")))
	return "debian-" + suite + "-" + hex.EncodeToString(sum[:])[:12]
}

// tree returns the cached debootstrap tree for key, running debootstrap
// when it is missing. A lock file serializes builders of the same key
// (tests in parallel); a tree is moved into place only after every
// package in it is configured.
func (d Debian) tree(ctx context.Context, key string) (string, bool, error) {
	dir := filepath.Join(d.CacheDir, key)
	if treeComplete(dir) {
		return dir, true, nil
	}
	if err := os.MkdirAll(d.CacheDir, 0o755); err != nil {
		return "", false, err
	}
	lock, err := os.OpenFile(filepath.Join(d.CacheDir, "."+key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", false, err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return "", false, fmt.Errorf("lock the image cache: %w", err)
	}
	if treeComplete(dir) { // another builder finished while we waited
		return dir, true, nil
	}
	tmp := dir + ".tmp"
	removeTree(tmp)
	start := time.Now()
	d.log().Info("debian build: debootstrap (not cached)", "suite", d.Suite, "tree", dir)
	args := []string{"--variant=minbase", "--include=" + strings.Join(d.Packages, ","), d.Suite, tmp, d.Mirror}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if err == nil {
		err = treeConfigured(tmp)
	}
	if err != nil {
		removeTree(tmp)
		return "", false, fmt.Errorf("debootstrap %s: %w: %s", strings.Join(args, " "), err, tail(outb.String(), 15))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".ironrack-tree"), []byte(key+"\n"), 0o644); err != nil {
		removeTree(tmp)
		return "", false, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		removeTree(tmp)
		return "", false, err
	}
	d.log().Info("debian build: debootstrap done", "took", time.Since(start).Round(time.Second))
	return dir, false, nil
}

func treeComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".ironrack-tree"))
	return err == nil
}

// treeConfigured fails unless every package in the tree's dpkg database is
// "install ok installed" (debootstrap can exit 0 with some left
// unconfigured).
func treeConfigured(tree string) error {
	f, err := os.Open(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return err
	}
	defer f.Close()
	var bad []string
	var pkg string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			pkg = v
		}
		if v, ok := strings.CutPrefix(line, "Status: "); ok && v != "install ok installed" {
			bad = append(bad, pkg+" ("+v+")")
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("packages not configured: %s", strings.Join(bad, ", "))
	}
	return nil
}

// removeTree unmounts whatever a killed debootstrap left mounted under dir
// (proc, sys, dev/pts) before deleting it, so RemoveAll never walks into a
// live /proc or /sys.
func removeTree(dir string) {
	if _, err := os.Lstat(dir); err != nil {
		return
	}
	unmountUnder(dir)
	os.RemoveAll(dir)
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	abs, _ := filepath.Abs(dir)
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == abs || strings.HasPrefix(f[4], abs+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // deepest first
	for _, m := range mounts {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// flock takes an exclusive lock on f, giving up when ctx is done.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
