package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Structure is one SMBIOS structure of a DMI table: its formatted area
// (header included, so offsets match the SMBIOS specification's) and its
// strings.
type Structure struct {
	Type      uint8
	Handle    uint16
	Formatted []byte
	Strings   []string
}

// String returns the string that the byte at offset off of the formatted
// area refers to (1-based), or "" when there is none.
func (s Structure) String(off int) string {
	if off >= len(s.Formatted) {
		return ""
	}
	i := int(s.Formatted[off])
	if i == 0 || i > len(s.Strings) {
		return ""
	}
	return s.Strings[i-1]
}

func (s Structure) u16(off int) (uint16, bool) {
	if off+2 > len(s.Formatted) {
		return 0, false
	}
	return binary.LittleEndian.Uint16(s.Formatted[off:]), true
}

func (s Structure) u32(off int) (uint32, bool) {
	if off+4 > len(s.Formatted) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(s.Formatted[off:]), true
}

// SMBIOS structure types the agent reads.
const (
	smbiosSystem       = 1
	smbiosMemoryDevice = 17
	smbiosEnd          = 127
)

// ParseDMI splits a raw DMI table (/sys/firmware/dmi/tables/DMI) into its
// structures, up to the end-of-table structure or the end of b. The table
// comes from the machine's firmware: every length is checked, and a
// malformed table is an error, never a panic.
func ParseDMI(b []byte) ([]Structure, error) {
	var out []Structure
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return out, fmt.Errorf("dmi: %d trailing bytes at offset %d, too short for a structure header", len(b)-off, off)
		}
		typ, length := b[off], int(b[off+1])
		if length < 4 {
			return out, fmt.Errorf("dmi: structure type %d at offset %d has length %d, want at least 4", typ, off, length)
		}
		if off+length > len(b) {
			return out, fmt.Errorf("dmi: structure type %d at offset %d runs past the table's end", typ, off)
		}
		s := Structure{Type: typ, Handle: binary.LittleEndian.Uint16(b[off+2:]), Formatted: b[off : off+length]}
		rest := b[off+length:]
		end := bytes.Index(rest, []byte{0, 0})
		if end < 0 {
			return out, fmt.Errorf("dmi: structure type %d at offset %d: string set not terminated", typ, off)
		}
		if end > 0 {
			s.Strings = strings0(rest[:end])
		}
		out = append(out, s)
		off += length + end + 2
		if typ == smbiosEnd {
			break
		}
	}
	return out, nil
}

// strings0 splits NUL-separated strings.
func strings0(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

// MemoryDevice is one SMBIOS type 17 structure.
type MemoryDevice struct {
	Locator string
	// SizeBytes is 0 for an empty slot.
	SizeBytes uint64
}

// errUnknownSize marks a memory device whose size the firmware does not know.
var errUnknownSize = errors.New("size unknown")

// memoryDevice decodes a type 17 structure's size (SMBIOS 3.x, 7.18.5):
// 0 is an empty slot, 0xFFFF unknown, 0x7FFF "see Extended Size" (MiB at
// offset 0x1C), otherwise MiB, or KiB when bit 15 is set.
func memoryDevice(s Structure) (MemoryDevice, error) {
	d := MemoryDevice{Locator: s.String(0x10)}
	size, ok := s.u16(0x0C)
	if !ok {
		return d, fmt.Errorf("memory device %#04x: structure too short for its size (length %d)", s.Handle, len(s.Formatted))
	}
	switch {
	case size == 0:
	case size == 0xFFFF:
		return d, fmt.Errorf("memory device %#04x: %w", s.Handle, errUnknownSize)
	case size == 0x7FFF:
		ext, ok := s.u32(0x1C)
		if !ok {
			return d, fmt.Errorf("memory device %#04x: extended size past the structure (length %d)", s.Handle, len(s.Formatted))
		}
		d.SizeBytes = uint64(ext&0x7FFFFFFF) << 20
	case size&0x8000 != 0:
		d.SizeBytes = uint64(size&0x7FFF) << 10
	default:
		d.SizeBytes = uint64(size) << 20
	}
	return d, nil
}

// MemoryDevices returns the table's type 17 memory devices, installed or
// not. Devices of unknown size are skipped; it is an error only when the
// table has type 17 structures and none of them could be read.
func MemoryDevices(table []Structure) ([]MemoryDevice, error) {
	var out []MemoryDevice
	var errs []error
	for _, s := range table {
		if s.Type != smbiosMemoryDevice {
			continue
		}
		d, err := memoryDevice(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// System is SMBIOS type 1, the system information.
type System struct {
	Vendor, Product, Serial, UUID string
}

// SystemInfo returns the table's type 1 structure, if it has one.
func SystemInfo(table []Structure) (System, bool) {
	for _, s := range table {
		if s.Type != smbiosSystem {
			continue
		}
		sys := System{Vendor: s.String(0x04), Product: s.String(0x05), Serial: s.String(0x07)}
		if len(s.Formatted) >= 0x18 {
			sys.UUID = smbiosUUID(s.Formatted[0x08:0x18])
		}
		return sys, true
	}
	return System{}, false
}

// smbiosUUID formats a system UUID the way SMBIOS 2.6 and later store it
// (and Linux's product_uuid prints it): the first three fields little-endian.
// All zeros and all ones mean "not set".
func smbiosUUID(b []byte) string {
	if bytes.Equal(b, make([]byte, 16)) || bytes.Equal(b, bytes.Repeat([]byte{0xFF}, 16)) {
		return ""
	}
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}
