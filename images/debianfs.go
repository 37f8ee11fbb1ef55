package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// ConsulConfigFile is the Consul agent config NoCloud writes; the OS
// image's consul.service starts only when it exists.
const ConsulConfigFile = "/etc/consul.d/consul.json"

// ConsulBinary is where the OS image carries the pinned consul binary.
const ConsulBinary = "/usr/local/bin/consul"

// debianRecipe changes whenever configureTree changes in a way osFiles does
// not show, so the image version changes with it.
const debianRecipe = "2"

type osFile struct {
	path string
	mode os.FileMode
	body string // a symlink's target when mode has os.ModeSymlink
}

// osFiles is the configuration the OS image adds to the debootstrap tree.
func osFiles() []osFile {
	return []osFile{
		{"/etc/fstab", 0o644, "# ironrack: the whole disk is the root file system (images.Debian)\n" +
			"LABEL=" + RootLabel + " / ext4 defaults,errors=remount-ro 0 1\n"},
		{"/etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"},
		{"/etc/resolv.conf", 0o644, ""},
		{"/etc/machine-id", 0o444, ""}, // empty: systemd makes one per machine on first boot
		{"/etc/cloud/cloud.cfg.d/99_ironrack.cfg", 0o644, `# ironrack: the OS image's cloud-init defaults (images.Debian).
# Only NoCloud (ds=nocloud-net;s=URL on the kernel command line, or a seed
# disk): no probing of cloud metadata services.
datasource_list: [NoCloud, None]
# The image has no locales package.
locale: false
# The SSH keys are root's (key only: sshd refuses passwords, by
# sshd_config.d/50-ironrack.conf); no default user. No ssh_pwauth: with it,
# set-passwords writes it into sshd_config and restarts sshd in the middle
# of the first boot, refusing the operator's next login.
disable_root: false
users: []
`},
		{"/etc/ssh/sshd_config.d/50-ironrack.conf", 0o644, "# ironrack: key-only logins (images.Debian)\n" +
			"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"},
		{"/etc/systemd/system/consul.service", 0o644, `[Unit]
Description=Consul client agent (ironrack)
Wants=network-online.target
After=network-online.target cloud-config.service
ConditionPathExists=` + ConsulConfigFile + `

[Service]
User=consul
Group=consul
ExecStart=` + ConsulBinary + ` agent -config-dir=/etc/consul.d
ExecReload=` + ConsulBinary + ` reload
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`},
		{"/etc/systemd/system/multi-user.target.wants/consul.service", os.ModeSymlink, "/etc/systemd/system/consul.service"},
		// Host keys are per machine: cloud-init makes them; this unit makes
		// them when cloud-init did not run, so sshd always starts.
		{"/etc/systemd/system/ironrack-ssh-keygen.service", 0o644, `[Unit]
Description=Generate SSH host keys when cloud-init did not (ironrack)
After=cloud-init.service
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
`},
		{"/etc/systemd/system/multi-user.target.wants/ironrack-ssh-keygen.service", os.ModeSymlink, "/etc/systemd/system/ironrack-ssh-keygen.service"},
		{"/etc/consul.d", os.ModeDir | 0o755, ""},
	}
}

// configureTree applies the OS image's configuration to a copy of the
// debootstrap tree: osFiles, the consul binary and its system user, and no
// per-machine identity (host keys, hostname, machine-id) or root password.
func configureTree(root string, consul []byte) error {
	for _, f := range osFiles() {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch {
		case f.mode&os.ModeDir != 0:
			if err := os.MkdirAll(p, f.mode.Perm()); err != nil {
				return err
			}
		case f.mode&os.ModeSymlink != 0:
			os.Remove(p)
			if err := os.Symlink(f.body, p); err != nil {
				return err
			}
		default:
			os.Remove(p) // resolv.conf may be a symlink
			if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
				return err
			}
			if err := os.Chmod(p, f.mode); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, ConsulBinary), consul, 0o755); err != nil {
		return err
	}
	uid, err := addSystemUser(root, "consul", "/var/lib/consul")
	if err != nil {
		return fmt.Errorf("consul user: %w", err)
	}
	data := filepath.Join(root, "var/lib/consul")
	if err := os.MkdirAll(data, 0o750); err != nil {
		return err
	}
	if err := os.Chown(data, uid, uid); err != nil {
		return err
	}
	// No identity of the build host or of any one machine, and no apt
	// caches (debootstrap's .debs and package lists: about 110 MB).
	drop, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_*"))
	drop = append(append(drop, debs...), lists...)
	for _, p := range append(drop, filepath.Join(root, "etc/hostname"), filepath.Join(root, "var/lib/dbus/machine-id")) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return lockRoot(root)
}

// addSystemUser adds a system user and its group (same id: the lowest id
// from 100 free in both passwd and group) to the tree's passwd, group,
// shadow and gshadow, unless it is there already.
func addSystemUser(root, name, home string) (int, error) {
	read := func(f string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, "etc", f))
		return string(b), err
	}
	passwd, err := read("passwd")
	if err != nil {
		return 0, err
	}
	group, err := read("group")
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, db := range []string{passwd, group} {
		for _, line := range strings.Split(db, "\n") {
			f := strings.Split(line, ":")
			if len(f) > 2 {
				if f[0] == name {
					id, _ := strconv.Atoi(f[2])
					return id, nil
				}
				if id, err := strconv.Atoi(f[2]); err == nil {
					used[id] = true
				}
			}
		}
	}
	id := 100
	for used[id] {
		id++
	}
	if id >= 1000 {
		return 0, fmt.Errorf("no free system id below 1000")
	}
	add := map[string]string{
		"passwd":  fmt.Sprintf("%s:x:%d:%d:Consul agent:%s:/usr/sbin/nologin\n", name, id, id, home),
		"group":   fmt.Sprintf("%s:x:%d:\n", name, id),
		"shadow":  name + ":!*:19000::::::\n",
		"gshadow": name + ":!::\n",
	}
	for f, line := range add {
		p := filepath.Join(root, "etc", f)
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, err
		}
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			b = append(b, '\n')
		}
		fi, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(p, append(b, line...), fi.Mode().Perm()); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// lockRoot makes sure root has no usable password ("*" unless already
// locked with "!").
func lockRoot(root string) error {
	p := filepath.Join(root, "etc/shadow")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		f := strings.Split(line, ":")
		if len(f) > 1 && f[0] == "root" && !strings.HasPrefix(f[1], "!") && f[1] != "*" {
			f[1] = "*"
			lines[i] = strings.Join(f, ":")
		}
	}
	return os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o640)
}

// rootInit is the OS initramfs's /init.
const rootInit = `#!/bin/busybox sh
# ironrack OS initramfs (images.RootInitramfs): load the disk, NIC and ext4
# modules, find root= (LABEL=, UUID= or a device), mount it and
# switch_root into it. Modules loaded here stay loaded in the OS.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
say() { echo "ironrack-initrd: $*"; }
fail() {
  say "$*; dropping to a shell"
  exec sh </dev/console >/dev/console 2>&1
}
for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m" 2>/dev/null || say "insmod $m failed"
done
root=""; mode=ro; init=/sbin/init; fstype=ext4; flags=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    root=*) root=${w#root=} ;;
    rootfstype=*) fstype=${w#rootfstype=} ;;
    rootflags=*) flags=",${w#rootflags=}" ;;
    init=*) init=${w#init=} ;;
    rw) mode=rw ;;
    ro) mode=ro ;;
  esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"
# A mirrored root (the agent's mdadm --metadata=1.0 over whole disks): a
# member has the md superblock 8 KiB from its end (4 KiB aligned), and
# the file system at its start. Members
# of one array share its uuid; it is assembled through md's sysfs once all
# its raid_disks are seen, or degraded after mdwait polls (10 s) with fewer.
# A degraded array that was not shut down cleanly starts anyway
# (start_dirty_degraded): a mirror runs on one disk.
[ -w /sys/module/md_mod/parameters/start_dirty_degraded ] && echo 1 >/sys/module/md_mod/parameters/start_dirty_degraded
mdwait=50; mdseen=0
# md_member DISK prints "UUID RAID_DISKS MAJ:MIN DISK" for a disk that is
# a member (superblock magic a92b4efc, major version 1, little-endian) not
# yet in a running array.
md_member() {
  s=/sys/block/$1
  [ -n "$(ls "$s/holders" 2>/dev/null)" ] && return 0
  n=$(cat "$s/size" 2>/dev/null); [ "${n:-0}" -gt 64 ] || return 0
  sb=$(dd if="/dev/$1" bs=512 skip=$(( (n - 16) / 8 * 8 )) count=1 2>/dev/null | hexdump -v -n 96 -e '96/1 "%02x"')
  case "$sb" in fc4e2ba901000000*) ;; *) return 0 ;; esac
  echo "$(echo "$sb" | cut -c33-64) $((0x$(echo "$sb" | cut -c185-186))) $(cat "$s/dev") $1"
}
md_scan() {
  for s in /sys/block/*; do
    d=${s##*/}
    case "$d" in md*|loop*|ram*|sr*) continue ;; esac
    md_member "$d"
  done
}
md_assemble() {
  [ -d /sys/module/md_mod ] || return 0
  found=$(md_scan); [ -n "$found" ] || return 0
  mdseen=$((mdseen+1))
  for u in $(echo "$found" | cut -d' ' -f1 | sort -u); do
    want=$(echo "$found" | grep "^$u " | head -1 | cut -d' ' -f2)
    have=$(echo "$found" | grep -c "^$u ")
    [ "$have" -lt "$want" ] && [ "$mdseen" -lt "$mdwait" ] && continue
    k=0; while [ -e /sys/block/md$k ]; do k=$((k+1)); done
    echo md$k >/sys/module/md_mod/parameters/new_array || { say "md$k: new_array failed"; continue; }
    echo 1.0 >/sys/block/md$k/md/metadata_version
    for mm in $(echo "$found" | grep "^$u " | cut -d' ' -f3); do echo "$mm" >/sys/block/md$k/md/new_dev; done
    if echo active >/sys/block/md$k/md/array_state; then
      say "md$k: mirror $u from $(echo "$found" | grep "^$u " | cut -d' ' -f4 | tr '\n' ' ')($have of $want disks)"
    else
      say "md$k: mirror $u did not start"
    fi
  done
}
dev=""; i=0
while [ $i -lt 300 ]; do
  md_assemble
  case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    *) [ -b "$root" ] && dev=$root ;;
  esac
  # A mirror member holds the file system too (metadata 1.0 is at the
  # end): the root is the array that holds it.
  # A member not yet in an array is not the root: wait for its array.
  if [ -n "$dev" ]; then
    h=$(ls "/sys/class/block/${dev#/dev/}/holders" 2>/dev/null | head -1)
    [ -n "$h" ] && dev=/dev/$h
    [ -z "$(md_member "${dev#/dev/}")" ] && break
    dev=""
  fi
  sleep 0.2; i=$((i+1))
done
[ -n "$dev" ] || fail "no disk with $root after 60 s"
mount -t "$fstype" -o "$mode$flags" "$dev" /newroot || fail "mount $dev ($root) on /newroot"
[ -e "/newroot$init" ] || [ -L "/newroot$init" ] || fail "$dev has no $init"
say "root $root is $dev; switching to $init"
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot "$init" "$@"
`

// RootInitrd packs the OS image's initramfs (RootInitramfs) for another
// image: kernelDir is a scripts/boot-artifacts cache entry (KernelCache),
// busybox a static busybox ("" is /bin/busybox), modules the modules to load
// with their dependencies (nil is DebianModules).
func RootInitrd(ctx context.Context, kernelDir, busybox string, modules []string) ([]byte, error) {
	d := Debian{KernelDir: kernelDir, Busybox: busybox, Modules: modules}.defaults()
	rd, err := d.initramfs(ctx)
	if err != nil {
		return nil, err
	}
	return RootInitramfs(rd.busybox, rd.mods, rd.order)
}

// RootInitramfs is the OS image's initramfs, a gzip'd newc cpio: a static
// busybox as /bin/busybox, the modules (base name → contents) in
// lib/modules with their load order in lib/modules/order, and an /init
// that loads them and switch_roots into root= (see DebianCmdline). It is
// reproducible: the same inputs give the same bytes.
func RootInitramfs(busybox []byte, modules map[string][]byte, order []string) ([]byte, error) {
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("run", 0o755),
		cpio.Directory("newroot", 0o755),
		cpio.Directory("lib", 0o755),
		cpio.Directory(moduleDir, 0o755),
		cpio.StaticRecord(busybox, cpio.Info{Name: "bin/busybox", Mode: cpio.S_IFREG | 0o755}),
		cpio.StaticFile("init", rootInit, 0o755),
	}
	return packInitramfs(recs, modules, order)
}
