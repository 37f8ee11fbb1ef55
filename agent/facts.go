package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Facts is the hardware the agent found. It holds more than the agent API's
// facts report carries today (see Report); the rest is logged on the
// console until the report grows the fields.
type Facts struct {
	CPUModel string `json:"cpu_model"`
	// CPUs is the number of logical processors in /proc/cpuinfo.
	CPUs int `json:"cpus"`
	// MemoryBytes is the installed memory: the sum of the SMBIOS memory
	// devices, or, when the table has none, /proc/meminfo's MemTotal
	// rounded up to whole GiB (MemorySource says which).
	MemoryBytes  uint64 `json:"memory_bytes"`
	MemorySource string `json:"memory_source"`
	Disks        []Disk `json:"disks"`
	NICs         []NIC  `json:"nics"`
	// Vendor, Product, Serial and UUID are the DMI system information.
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Serial  string `json:"serial"`
	UUID    string `json:"uuid"`
	// Firmware is "uefi" or "bios".
	Firmware string `json:"firmware"`
}

// Disk is one block device from /sys/block.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  uint64 `json:"size_bytes"`
	Model      string `json:"model"`
	Serial     string `json:"serial"`
	Rotational bool   `json:"rotational"`
	// WWN is the kernel's World Wide Name of the disk (device/wwid, wwid or
	// device/wwn), empty when it has none.
	WWN string `json:"wwn,omitempty"`
}

// NIC is one physical Ethernet interface from /sys/class/net.
type NIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// SpeedMbps is 0 when unknown (no link, or a virtual NIC).
	SpeedMbps int    `json:"speed_mbps"`
	Driver    string `json:"driver"`
}

// Memory sources.
const (
	MemorySMBIOS  = "smbios"
	MemoryMeminfo = "meminfo"
)

const gib = 1 << 30

// Collect reads the facts from a root file system fsys ("/" on the
// machine; a testdata tree in tests). Paths are relative to that root:
// proc/, sys/. A missing optional source leaves its fact empty; only what
// the agent API requires (a CPU count, memory, one NIC) is an error.
func Collect(fsys fs.FS) (Facts, error) {
	var f Facts
	var errs []error

	model, cpus, err := cpuInfo(fsys)
	if err != nil {
		errs = append(errs, err)
	}
	f.CPUModel, f.CPUs = model, cpus

	var table []Structure
	if raw, err := fs.ReadFile(fsys, "sys/firmware/dmi/tables/DMI"); err == nil {
		// A table cut short still yields the structures before the damage.
		table, _ = ParseDMI(raw)
	}
	f.MemoryBytes, f.MemorySource, err = memory(fsys, table)
	if err != nil {
		errs = append(errs, err)
	}

	sys, _ := SystemInfo(table)
	dmiID := func(v, file string) string {
		if v = clean(v); v != "" {
			return v
		}
		return readText(fsys, "sys/class/dmi/id/"+file)
	}
	f.Vendor = dmiID(sys.Vendor, "sys_vendor")
	f.Product = dmiID(sys.Product, "product_name")
	f.Serial = dmiID(sys.Serial, "product_serial")
	f.UUID = dmiID(sys.UUID, "product_uuid")

	f.Firmware = "bios"
	if _, err := fs.Stat(fsys, "sys/firmware/efi"); err == nil {
		f.Firmware = "uefi"
	}

	f.Disks = disks(fsys)
	f.NICs = nics(fsys)
	if len(f.NICs) == 0 {
		errs = append(errs, errors.New("no Ethernet interface in sys/class/net"))
	}
	return f, errors.Join(errs...)
}

// cpuInfo counts the processors in /proc/cpuinfo and takes the first model name.
func cpuInfo(fsys fs.FS) (string, int, error) {
	b, err := fs.ReadFile(fsys, "proc/cpuinfo")
	if err != nil {
		return "", 0, fmt.Errorf("cpu: %w", err)
	}
	var model string
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = clean(v)
			}
		}
	}
	if n == 0 {
		return model, 0, errors.New("cpu: no processor in proc/cpuinfo")
	}
	return model, n, nil
}

// memory is the sum of the SMBIOS memory devices, or MemTotal rounded up
// to whole GiB when the table has none.
func memory(fsys fs.FS, table []Structure) (uint64, string, error) {
	devs, err := MemoryDevices(table)
	var sum uint64
	for _, d := range devs {
		sum += d.SizeBytes
	}
	if err == nil && sum > 0 {
		return sum, MemorySMBIOS, nil
	}
	total, merr := memTotal(fsys)
	if merr != nil || total == 0 {
		return 0, "", fmt.Errorf("memory: no SMBIOS memory devices (%v), and %v", err, merr)
	}
	return (total + gib - 1) / gib * gib, MemoryMeminfo, nil
}

// disks lists /sys/block, leaving out loop, RAM, optical, floppy and
// device-mapper devices: what a commission or deploy could write to.
func disks(fsys fs.FS) []Disk {
	ents, _ := fs.ReadDir(fsys, "sys/block")
	var out []Disk
	for _, e := range ents {
		name := e.Name()
		if skipDisk(name) {
			continue
		}
		dir := "sys/block/" + name
		sectors, err := strconv.ParseUint(readText(fsys, dir+"/size"), 10, 64)
		if err != nil || sectors == 0 {
			continue // no medium
		}
		d := Disk{
			Name:       name,
			SizeBytes:  sectors * 512, // sysfs counts 512-byte sectors whatever the block size
			Model:      readText(fsys, dir+"/device/model"),
			Serial:     readText(fsys, dir+"/device/serial"),
			Rotational: readText(fsys, dir+"/queue/rotational") == "1",
		}
		if d.Serial == "" {
			d.Serial = readText(fsys, dir+"/serial") // virtio-blk keeps it here
		}
		for _, f := range []string{"/device/wwid", "/wwid", "/device/wwn"} { // SCSI/ATA, NVMe, some HBAs
			if d.WWN = readText(fsys, dir+f); d.WWN != "" {
				break
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func skipDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// nics lists the Ethernet interfaces (type 1) backed by a device: virtual
// ones (bridges, veths, bonds) have no device link.
func nics(fsys fs.FS) []NIC {
	ents, _ := fs.ReadDir(fsys, "sys/class/net")
	var out []NIC
	for _, e := range ents {
		dir := "sys/class/net/" + e.Name()
		if readText(fsys, dir+"/type") != "1" {
			continue
		}
		if _, err := fs.Stat(fsys, dir+"/device"); err != nil {
			continue
		}
		n := NIC{Name: e.Name(), MAC: strings.ToLower(readText(fsys, dir+"/address"))}
		if s, err := strconv.Atoi(readText(fsys, dir+"/speed")); err == nil && s > 0 {
			n.SpeedMbps = s
		}
		if target, err := fs.ReadLink(fsys, dir+"/device/driver"); err == nil {
			n.Driver = path.Base(target)
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// readText reads a one-line sysfs file, cleaned; "" if it cannot be read
// (sysfs answers some reads, e.g. DMI serials as non-root, with errors).
func readText(fsys fs.FS, name string) string {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return ""
	}
	return clean(string(b))
}

// maxText is the agent API's limit on a string.
const maxText = 256

// clean makes firmware and sysfs text fit the agent API: valid UTF-8, no
// control characters, no surrounding space, at most maxText bytes. Vendors'
// placeholders stay as they are; the inventory decides what they mean.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
	s = strings.TrimSpace(s)
	for len(s) > maxText {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimSpace(s)
}
