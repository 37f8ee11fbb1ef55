package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// This file builds a mirrored root (--root-layout mirror) with Debian's
// mdadm, which the discovery initramfs carries (images.DiscoveryTools).

// MirrorDevice is the RAID 1 array the agent writes a mirrored root's image
// to.
const MirrorDevice = "/dev/md0"

// mdadmPath is where the discovery initramfs holds mdadm.
const mdadmPath = "/sbin/mdadm"

// MirrorArgs are mdadm's arguments to create the root array over the
// disks: RAID 1 with metadata 1.0, whose superblock sits at the end of
// each member, so a member starts with the image's file system as a plain
// disk would (the OS initramfs assembles it by that superblock; a firmware
// or bootloader reading one member sees the file system). --run skips
// mdadm's question about disks that hold a file system; the array resyncs
// in the background, while the image is written and in the OS.
func MirrorArgs(dev string, disks []string) []string {
	args := []string{"--create", dev, "--run", "--metadata=1.0", "--level=1", "--raid-devices=" + fmt.Sprint(len(disks)), "--name=ironrack-root"}
	for _, d := range disks {
		args = append(args, filepath.Join("/dev", filepath.Base(d)))
	}
	return args
}

// mdadm runs mdadm without udev (the discovery environment has none: mdadm
// makes the device node itself), bounded by a minute.
func mdadm(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mdadmPath, args...)
	cmd.Env = append(os.Environ(), "MDADM_NO_UDEV=1", "PATH=/sbin:/bin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mdadm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BuildMirror creates MirrorDevice over the disks (kernel names).
func BuildMirror(ctx context.Context, disks []string) error {
	if len(disks) != 2 {
		return fmt.Errorf("a mirror needs 2 disks, got %d (%s)", len(disks), strings.Join(disks, ", "))
	}
	return mdadm(ctx, MirrorArgs(MirrorDevice, disks)...)
}

// StopMirror stops MirrorDevice, which writes its superblocks clean (with
// the resync position, where a resync is running) before the reboot.
func StopMirror(ctx context.Context) error {
	return mdadm(ctx, "--stop", MirrorDevice)
}
