package agent

import (
	"errors"
	"fmt"
	"os"
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

// ErrNoSecureErase is a disk the secure erase level cannot erase.
var ErrNoSecureErase = errors.New("no secure erase")

// SecureErase erases /dev/name with the drive's own erase: an NVMe
// namespace is formatted with user data erase (SES 1) in its current LBA
// format, when its controller implements Format NVM. Any other disk, or an
// NVMe controller without Format NVM, is ErrNoSecureErase, naming why;
// nothing is written then.
func SecureErase(name string) error {
	if !strings.HasPrefix(name, "nvme") {
		return fmt.Errorf("%w: %s is not an NVMe namespace (ATA security erase is not implemented by this agent; release with --erase zero)", ErrNoSecureErase, name)
	}
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
