package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// This file packs the configured tree into the OS image's root.img with
// mkfs.ext4 -d.

// pack copies the cached tree to a staging dir next to out, applies the
// image's configuration (osFiles, the consul binary and user, no host keys
// or machine-id) and packs it with mkfs.ext4 -d into out, sized to the
// content plus MarginMiB.
func (d Debian) pack(ctx context.Context, tree string, consul []byte, out string) error {
	stage := out + ".tree"
	defer os.RemoveAll(stage)
	start := time.Now()
	if b, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", tree, stage).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", tree, err, strings.TrimSpace(string(b)))
	}
	if err := configureTree(stage, consul); err != nil {
		return fmt.Errorf("configure the image: %w", err)
	}
	used, err := treeSize(stage)
	if err != nil {
		return err
	}
	// ext4 needs room for its metadata: inode tables (about 1.6% at one
	// 256-byte inode per 16 KiB), the 1% reserve, the journal (16 MiB
	// below 1 GiB) and directory blocks; a twentieth plus 64 MiB covers
	// them, and MarginMiB is the free space left.
	size := used + used/20 + 64<<20 + int64(d.MarginMiB)<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Truncate(out, size); err != nil {
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-L", RootLabel, "-m", "1", "-d", stage, out}
	if b, err := exec.CommandContext(ctx, "mkfs.ext4", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	d.log().Info("debian build: packed", "root", out, "content_mib", used>>20, "size_mib", size>>20, "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// treeSize is the space the tree's files take, in bytes (du's view:
// allocated blocks, each inode at least one 4 KiB block).
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		sz := (fi.Size() + 4095) &^ 4095
		if sz == 0 {
			sz = 4096
		}
		total += sz
		return nil
	})
	return total, err
}
