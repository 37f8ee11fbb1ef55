package agent

import (
	"errors"
	"fmt"
	"io"
)

// ErrNoSecureErase is a disk the secure erase level cannot erase; it is
// said before anything is written to the disk.
var ErrNoSecureErase = errors.New("no secure erase")

// Erase levels, as the boot server passes them (ironrack.erase=); the
// inventory's EraseQuick, EraseZero and EraseSecure.
const (
	EraseQuick  = "quick"
	EraseZero   = "zero"
	EraseSecure = "secure"
)

// ZeroDisk overwrites size bytes of dst with zeros from offset 0, in 4 MiB
// writes, calling progress (if set) after each with the bytes written.
func ZeroDisk(dst io.WriterAt, size int64, progress func(written int64)) error {
	zero := make([]byte, min(size, 4*MiB))
	for done := int64(0); done < size; {
		k := min(int64(len(zero)), size-done)
		if _, err := dst.WriteAt(zero[:k], done); err != nil {
			return fmt.Errorf("zero %d bytes at %d: %w", k, done, err)
		}
		done += k
		if progress != nil {
			progress(done)
		}
	}
	return nil
}

// NVMe identify data the secure erase reads (NVM Express base
// specification, Identify Controller and Identify Namespace).
const (
	// nvmeOACS is the Optional Admin Command Support word; bit 1: Format NVM.
	nvmeOACS = 256
	// nvmeFLBAS is the namespace's formatted LBA size byte; bits 3:0 the
	// LBA format in use (bits 6:5 its upper bits in NVMe 2.0).
	nvmeFLBAS = 26
)

// FormatSupported reports whether an Identify Controller page says the
// controller implements Format NVM.
func FormatSupported(idctrl []byte) bool {
	return len(idctrl) > nvmeOACS+1 && idctrl[nvmeOACS]&0x02 != 0
}

// FormatCDW10 is the Format NVM command's dword 10 that keeps the
// namespace's LBA format (from its Identify Namespace page) and erases user
// data (SES 1).
func FormatCDW10(idns []byte) uint32 {
	var flbas byte
	if len(idns) > nvmeFLBAS {
		flbas = idns[nvmeFLBAS]
	}
	lbaf := uint32(flbas&0x0f) | uint32(flbas>>5&0x03)<<12 // LBAF lower bits 3:0, upper 13:12
	return lbaf | 1<<9
}
