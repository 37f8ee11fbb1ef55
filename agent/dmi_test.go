package agent

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// structure encodes one SMBIOS structure: formatted is the area after the
// 4-byte header.
func structure(typ uint8, handle uint16, formatted []byte, strs ...string) []byte {
	var b bytes.Buffer
	b.WriteByte(typ)
	b.WriteByte(byte(4 + len(formatted)))
	_ = binary.Write(&b, binary.LittleEndian, handle)
	b.Write(formatted)
	for _, s := range strs {
		b.WriteString(s)
		b.WriteByte(0)
	}
	if len(strs) == 0 {
		b.WriteByte(0)
	}
	b.WriteByte(0)
	return b.Bytes()
}

// systemInfo is a type 1 structure (SMBIOS 2.8 layout, length 0x1B).
func systemInfo(vendor, product, serial string, uuid [16]byte) []byte {
	f := make([]byte, 0x1B-4)
	f[0x04-4], f[0x05-4], f[0x06-4], f[0x07-4] = 1, 2, 3, 4
	copy(f[0x08-4:], uuid[:])
	f[0x18-4] = 6 // wake-up type: power switch
	return structure(1, 0x100, f, vendor, product, "pc-i440fx", serial)
}

// memoryDeviceStructure is a type 17 structure (SMBIOS 3.x length 0x28)
// with the 16-bit size field set to size and the extended size to ext.
func memoryDeviceStructure(handle uint16, size uint16, ext uint32, locator string) []byte {
	f := make([]byte, 0x28-4)
	binary.LittleEndian.PutUint16(f[0x0C-4:], size)
	f[0x10-4] = 1 // device locator: string 1
	binary.LittleEndian.PutUint32(f[0x1C-4:], ext)
	return structure(17, handle, f, locator)
}

func endOfTable() []byte { return structure(127, 0xFEFF, nil) }

var testUUID = [16]byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}

// qemuLikeTable is a table shaped like QEMU's for -m 3072 -smbios
// type=1,serial=QEMU-0001: one 2 GiB and one 1 GiB DIMM, an empty slot, and
// one device given in KiB.
func qemuLikeTable() []byte {
	return bytes.Join([][]byte{
		structure(0, 0, make([]byte, 0x18-4), "SeaBIOS", "1.16.2", "04/01/2014"),
		systemInfo("QEMU", "Standard PC (i440FX + PIIX, 1996)", "QEMU-0001", testUUID),
		memoryDeviceStructure(0x1100, 2048, 0, "DIMM 0"),
		memoryDeviceStructure(0x1101, 0x7FFF, 1024, "DIMM 1"),
		memoryDeviceStructure(0x1102, 0, 0, "DIMM 2"),
		endOfTable(),
	}, nil)
}

func TestParseDMI(t *testing.T) {
	table, err := ParseDMI(qemuLikeTable())
	if err != nil {
		t.Fatal(err)
	}
	var types []uint8
	for _, s := range table {
		types = append(types, s.Type)
	}
	if diff := cmp.Diff([]uint8{0, 1, 17, 17, 17, 127}, types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	sys, ok := SystemInfo(table)
	want := System{Vendor: "QEMU", Product: "Standard PC (i440FX + PIIX, 1996)", Serial: "QEMU-0001", UUID: "12345678-1234-5678-1234-56789abcdef0"}
	if diff := cmp.Diff(want, sys); !ok || diff != "" {
		t.Errorf("system (-want +got):\n%s", diff)
	}
	devs, err := MemoryDevices(table)
	if err != nil {
		t.Fatal(err)
	}
	wantDevs := []MemoryDevice{{"DIMM 0", 2 << 30}, {"DIMM 1", 1 << 30}, {"DIMM 2", 0}}
	if diff := cmp.Diff(wantDevs, devs); diff != "" {
		t.Errorf("memory devices (-want +got):\n%s", diff)
	}
}

func TestMemoryDeviceSizes(t *testing.T) {
	for name, tc := range map[string]struct {
		size uint16
		ext  uint32
		want uint64
		err  bool
	}{
		"MiB":          {size: 4096, want: 4 << 30},
		"KiB":          {size: 0x8000 | 512, want: 512 << 10},
		"extended":     {size: 0x7FFF, ext: 64 << 10, want: 64 << 30},
		"extended top": {size: 0x7FFF, ext: 0x80000000 | 1, want: 1 << 20},
		"empty slot":   {size: 0, want: 0},
		"unknown":      {size: 0xFFFF, err: true},
	} {
		t.Run(name, func(t *testing.T) {
			table, err := ParseDMI(memoryDeviceStructure(1, tc.size, tc.ext, "X"))
			if err != nil {
				t.Fatal(err)
			}
			d, err := memoryDevice(table[0])
			if (err != nil) != tc.err || d.SizeBytes != tc.want {
				t.Errorf("got %d, %v; want %d, error %v", d.SizeBytes, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseDMIMalformed(t *testing.T) {
	good := qemuLikeTable()
	for name, tc := range map[string]struct {
		in      []byte
		structs int // how many structures come back with the error
	}{
		"short header":       {in: []byte{1, 4}, structs: 0},
		"length below 4":     {in: []byte{1, 2, 0, 0, 0, 0}, structs: 0},
		"formatted past end": {in: []byte{1, 0x1B, 0, 0, 1, 2}, structs: 0},
		"strings unended":    {in: append(structure(0, 0, []byte{1}, "a"), 17, 5, 0, 0, 1, 'x'), structs: 1},
		"cut in the middle":  {in: good[:len(good)-20], structs: 4},
	} {
		t.Run(name, func(t *testing.T) {
			table, err := ParseDMI(tc.in)
			if err == nil {
				t.Fatalf("no error; structures %+v", table)
			}
			if len(table) != tc.structs {
				t.Errorf("%d structures with the error, want %d", len(table), tc.structs)
			}
		})
	}
	// A short type 17 (SMBIOS 2.0 has no size field past 0x0C) is an error
	// for that device, not a panic.
	table, err := ParseDMI(structure(17, 1, make([]byte, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MemoryDevices(table); err == nil {
		t.Error("short memory device: no error")
	}
}

// FuzzParseDMI: the table is firmware's, and a machine being discovered is
// untrusted. Seeds are in testdata/fuzz/FuzzParseDMI.
func FuzzParseDMI(f *testing.F) {
	f.Add(qemuLikeTable())
	captured, _ := filepath.Glob(filepath.Join("testdata", "dmi", "*.DMI"))
	for _, p := range captured {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		table, _ := ParseDMI(b)
		n := 0
		for _, s := range table {
			n += len(s.Formatted)
			if len(s.Formatted) < 4 || s.Formatted[0] != s.Type {
				t.Fatalf("structure %+v: formatted area does not start with its header", s)
			}
			for i := range s.Formatted {
				_ = s.String(i)
			}
		}
		if n > len(b) {
			t.Fatalf("structures cover %d bytes of a %d-byte table", n, len(b))
		}
		devs, _ := MemoryDevices(table)
		for _, d := range devs {
			if d.SizeBytes > 1<<51 {
				t.Fatalf("memory device of %d bytes: more than the format can say", d.SizeBytes)
			}
		}
		SystemInfo(table)
	})
}

// TestWriteTestdataDMI regenerates testdata/qemu-bios's DMI table with
// UPDATE_GOLDEN=1.
func TestWriteTestdataDMI(t *testing.T) {
	if os.Getenv("UPDATE_GOLDEN") == "" {
		t.Skip("UPDATE_GOLDEN unset")
	}
	p := filepath.Join("testdata", "qemu-bios", "sys", "firmware", "dmi", "tables", "DMI")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, qemuLikeTable(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQEMUTables parses DMI tables captured from QEMU 7.2 guests
// (testdata/dmi: SeaBIOS with -m 2560 -smbios
// type=1,serial=CAPTURE-BIOS-1,uuid=6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b;
// OVMF with -m 1024 -smbios type=1,serial=CAPTURE-UEFI-2), read from
// /sys/firmware/dmi/tables/DMI by a throwaway /init.
func TestQEMUTables(t *testing.T) {
	for name, tc := range map[string]struct {
		sys System
		mem uint64
	}{
		"qemu-seabios": {System{Vendor: "QEMU", Product: "Standard PC (i440FX + PIIX, 1996)", Serial: "CAPTURE-BIOS-1", UUID: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"}, 2560 << 20},
		"qemu-ovmf":    {System{Vendor: "QEMU", Product: "Standard PC (i440FX + PIIX, 1996)", Serial: "CAPTURE-UEFI-2"}, 1 << 30},
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "dmi", name+".DMI"))
			if err != nil {
				t.Fatal(err)
			}
			table, err := ParseDMI(raw)
			if err != nil {
				t.Fatal(err)
			}
			sys, _ := SystemInfo(table)
			if diff := cmp.Diff(tc.sys, sys); diff != "" {
				t.Errorf("system (-want +got):\n%s", diff)
			}
			devs, err := MemoryDevices(table)
			if err != nil {
				t.Fatal(err)
			}
			var sum uint64
			for _, d := range devs {
				sum += d.SizeBytes
			}
			if sum != tc.mem {
				t.Errorf("memory devices %+v sum to %d, want %d", devs, sum, tc.mem)
			}
		})
	}
}
