package agent

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestCollect(t *testing.T) {
	for name, tc := range map[string]struct {
		root string
		want Facts
	}{
		// SMBIOS table: memory is the DIMMs' 3 GiB, not MemTotal's 2.86;
		// type 1 wins over sysfs; loop, sr, empty and virtual devices are left out.
		"qemu-bios": {root: "testdata/qemu-bios", want: Facts{
			CPUModel: "QEMU Virtual CPU version 2.5+", CPUs: 2,
			MemoryBytes: 3 << 30, MemorySource: MemorySMBIOS,
			Disks: []Disk{
				{Name: "sda", SizeBytes: 1 << 30, Model: "QEMU HARDDISK", Serial: "QM00001"},
				{Name: "vda", SizeBytes: 2 << 30, Serial: "VDA-SERIAL-1", Rotational: true},
			},
			NICs:   []NIC{{Name: "eth0", MAC: "52:54:00:ab:cd:01", Driver: "virtio_net"}},
			Vendor: "QEMU", Product: "Standard PC (i440FX + PIIX, 1996)", Serial: "QEMU-0001",
			UUID: "12345678-1234-5678-1234-56789abcdef0", Firmware: "bios",
		}},
		// No DMI table: MemTotal rounded up to whole GiB, and the kernel's
		// dmi/id files (a control character in the serial made a space).
		"uefi-no-smbios": {root: "testdata/uefi-no-smbios", want: Facts{
			CPUModel: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", CPUs: 1,
			MemoryBytes: 8 << 30, MemorySource: MemoryMeminfo,
			Disks:  []Disk{{Name: "nvme0n1", SizeBytes: 1953525168 * 512, Model: "Samsung SSD 980 1TB", Serial: "S64ANS0T123"}},
			NICs:   []NIC{{Name: "enp1s0", MAC: "3c:ec:ef:00:00:01", SpeedMbps: 10000, Driver: "ixgbe"}},
			Vendor: "Supermicro", Product: "SYS-1029P-WTR", Serial: "S123 456",
			UUID: "00000000-0000-0000-0000-0cc47a000001", Firmware: "uefi",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Collect(os.DirFS(tc.root))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCollectMissing(t *testing.T) {
	// An empty machine: every required fact is named in the error.
	_, err := Collect(fstest.MapFS{})
	if err == nil {
		t.Fatal("no error for an empty root")
	}
	for _, want := range []string{"cpu", "memory", "no Ethernet interface"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestClean(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'x'
	}
	for in, want := range map[string]string{
		"  To Be Filled By O.E.M.\n": "To Be Filled By O.E.M.",
		"a\x00b\x7fc":                "a b c",
		"bad \xff utf8":              "bad   utf8",
		string(long):                 string(long[:256]),
		"ÄÖÜ":                        "ÄÖÜ",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline("initrd=initrd.img ironrack.mode=discover ironrack.url=http://192.0.2.1:8080 ironrack.token=tok ironrack.mac=52:54:00:AB:CD:01 console=ttyS0,115200n8 quiet\n")
	want := Cmdline{Mode: "discover", URL: "http://192.0.2.1:8080", Token: "tok", MAC: "52:54:00:ab:cd:01"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cmdline (-want +got):\n%s", diff)
	}
}
