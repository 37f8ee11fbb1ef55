package agent

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// diskFiles opens sparse files of each disk's size in a temp dir; short
// names a disk whose file is 1 MiB smaller than it says, missing one that
// cannot be opened.
func diskFiles(t *testing.T, f Facts, short, missing string) func(string) (io.ReaderAt, io.Closer, error) {
	dir := t.TempDir()
	for _, d := range f.Disks {
		size := int64(d.SizeBytes)
		if d.Name == short {
			size -= 1 << 20
		}
		if d.Name == missing {
			continue
		}
		p := filepath.Join(dir, d.Name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
	}
	return func(name string) (io.ReaderAt, io.Closer, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		return f, f, nil
	}
}

func TestCommission(t *testing.T) {
	bios, err := Collect(os.DirFS("testdata/qemu-bios"))
	if err != nil {
		t.Fatal(err)
	}
	uefi, err := Collect(os.DirFS("testdata/uefi-no-smbios"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		root           string
		facts          Facts
		short, missing string
		failed         []string
	}{
		"all pass": {root: "testdata/qemu-bios", facts: bios},
		// MemTotal 2.86 GiB of 3 GiB installed is within the slack.
		"short disk":   {root: "testdata/qemu-bios", facts: bios, short: "vda", failed: []string{"disk vda readable"}},
		"missing disk": {root: "testdata/qemu-bios", facts: bios, missing: "sda", failed: []string{"disk sda readable"}},
		// No carrier; memory from meminfo is not checked against itself.
		"no link": {root: "testdata/uefi-no-smbios", facts: uefi, failed: []string{"nic link"}},
		"memory hidden": {root: "testdata/qemu-bios", facts: func() Facts {
			f := bios
			f.MemoryBytes = 8 << 30
			return f
		}(), failed: []string{"memory visible"}},
	} {
		t.Run(name, func(t *testing.T) {
			cs := Commission(os.DirFS(tc.root), tc.facts, diskFiles(t, tc.facts, tc.short, tc.missing))
			var failed []string
			for _, c := range cs {
				if c.Err != "" {
					failed = append(failed, c.Name)
				}
			}
			if diff := cmp.Diff(tc.failed, failed); diff != "" {
				t.Errorf("failed checks (-want +got):\n%s\nall: %+v", diff, cs)
			}
			if Failed(cs) != (len(tc.failed) > 0) {
				t.Errorf("Failed() = %v", Failed(cs))
			}
			sum := Summary(cs)
			if len(tc.failed) == 0 && !strings.HasSuffix(sum, "checks passed") || len(tc.failed) > 0 && !strings.Contains(sum, tc.failed[0]+": ") {
				t.Errorf("summary %q", sum)
			}
		})
	}
	// No meminfo at all: the memory check fails and says why.
	cs := Commission(fstest.MapFS{}, Facts{MemoryBytes: 1 << 30, MemorySource: MemorySMBIOS}, nil)
	if !Failed(cs) || !strings.Contains(Summary(cs), "memory visible") {
		t.Errorf("no meminfo: %+v", cs)
	}
}
