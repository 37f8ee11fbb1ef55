package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nvmePassthru is the kernel's struct nvme_passthru_cmd (linux/nvme_ioctl.h).
type nvmePassthru struct {
	Opcode      uint8
	Flags       uint8
	Rsvd1       uint16
	NSID        uint32
	CDW2, CDW3  uint32
	Metadata    uint64
	Addr        uint64
	MetadataLen uint32
	DataLen     uint32
	CDW10       uint32
	CDW11       uint32
	CDW12       uint32
	CDW13       uint32
	CDW14       uint32
	CDW15       uint32
	TimeoutMS   uint32
	Result      uint32
}

const (
	nvmeIoctlID       = 0x4e40     // _IO('N', 0x40)
	nvmeIoctlAdminCmd = 0xc0484e41 // _IOWR('N', 0x41, struct nvme_admin_cmd)
	nvmeIdentify      = 0x06
	nvmeFormat        = 0x80
)

// SecureErase erases /dev/name with the drive's own erase and returns
// what it did:
//   - an NVMe namespace is formatted with user data erase (SES 1) in its
//     current LBA format, when its controller implements Format NVM;
//   - an ATA disk (SATA, directly or behind a SAS HBA) gets ATA security
//     erase through hdparm (ATAErase: a temporary user password, recorded
//     with note before it is set, then the enhanced erase when supported,
//     with the drive's time estimate as the deadline);
//   - anything else (virtio, a SCSI/SAS disk, a disk behind a USB
//     bridge), an NVMe controller without Format NVM, or an ATA drive that
//     does not support the security feature set, is locked, frozen or
//     already has a password, is ErrNoSecureErase naming the disk and why;
//     nothing is written then.
func SecureErase(ctx context.Context, name string, sizeBytes int64, note func(string) error) (string, error) {
	if strings.HasPrefix(name, "nvme") {
		if err := nvmeSecureErase(name); err != nil {
			return "", err
		}
		return "NVMe format, user data erase", nil
	}
	if strings.HasPrefix(name, "vd") || strings.HasPrefix(name, "xvd") {
		return "", fmt.Errorf("%w: %s is a virtual disk (neither NVMe nor ATA)", ErrNoSecureErase, name)
	}
	if sys, err := filepath.EvalSymlinks("/sys/block/" + name); err == nil && strings.Contains(sys, "/usb") {
		return "", fmt.Errorf("%w: %s is behind a USB bridge (%s): ATA security commands through USB bridges are unreliable and can leave the drive locked; erase it on a SATA port or release with --erase zero", ErrNoSecureErase, name, sys)
	}
	pw := make([]byte, 8)
	if _, err := rand.Read(pw); err != nil {
		return "", err
	}
	return ATAErase{Drive: hdparm{dev: "/dev/" + name}, Name: name, SizeBytes: sizeBytes, Password: "ironrack-" + hex.EncodeToString(pw), Note: note}.Run(ctx)
}

// nvmeSecureErase formats the NVMe namespace /dev/name with user data
// erase.
func nvmeSecureErase(name string) error {
	f, err := os.OpenFile("/dev/"+name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	nsid, err := unix.IoctlRetInt(fd, nvmeIoctlID)
	if err != nil {
		return fmt.Errorf("%s: namespace id: %w", name, err)
	}
	idctrl := make([]byte, 4096)
	err = nvmeAdmin(fd, &nvmePassthru{Opcode: nvmeIdentify, CDW10: 1, Addr: uint64(uintptr(unsafe.Pointer(&idctrl[0]))), DataLen: 4096})
	runtime.KeepAlive(idctrl)
	if err != nil {
		return fmt.Errorf("%s: identify controller: %w", name, err)
	}
	if !FormatSupported(idctrl) {
		return fmt.Errorf("%w: %s: the controller does not implement Format NVM", ErrNoSecureErase, name)
	}
	idns := make([]byte, 4096)
	err = nvmeAdmin(fd, &nvmePassthru{Opcode: nvmeIdentify, NSID: uint32(nsid), CDW10: 0, Addr: uint64(uintptr(unsafe.Pointer(&idns[0]))), DataLen: 4096})
	runtime.KeepAlive(idns)
	if err != nil {
		return fmt.Errorf("%s: identify namespace %d: %w", name, nsid, err)
	}
	cmd := &nvmePassthru{Opcode: nvmeFormat, NSID: uint32(nsid), CDW10: FormatCDW10(idns), TimeoutMS: 3_600_000}
	if err := nvmeAdmin(fd, cmd); err != nil {
		return fmt.Errorf("%s: format with user data erase: %w", name, err)
	}
	return nil
}

// nvmeAdmin runs an admin command; a status from the controller is an
// error naming it.
func nvmeAdmin(fd int, cmd *nvmePassthru) error {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nvmeIoctlAdminCmd, uintptr(unsafe.Pointer(cmd)))
	if errno != 0 {
		return errno
	}
	if r != 0 {
		return fmt.Errorf("NVMe status %#x", r)
	}
	return nil
}
