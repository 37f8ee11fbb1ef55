package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Check is the outcome of one commissioning check.
type Check struct {
	Name string `json:"name"`
	// Err is "" when the check passed.
	Err string `json:"error,omitempty"`
}

// Failed reports whether any check failed.
func Failed(cs []Check) bool {
	for _, c := range cs {
		if c.Err != "" {
			return true
		}
	}
	return false
}

// Summary is one line for the report's event message: the failed checks,
// or how many passed.
func Summary(cs []Check) string {
	var failed []string
	for _, c := range cs {
		if c.Err != "" {
			failed = append(failed, c.Name+": "+c.Err)
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("%d checks passed", len(cs))
	}
	return strings.Join(failed, "; ")
}

// checkRead is how much of each end of a disk the read check reads.
const checkRead = 1 << 20

// Commission runs the quick hardware checks of commissioning over facts
// that Collect found in fsys:
//   - every disk is readable at its start and its end (open opens a disk by
//     name, e.g. "vda"; on the machine, /dev/<name>);
//   - at least one NIC has link (sys/class/net/<nic>/carrier);
//   - the kernel sees the installed memory: MemTotal is short of the SMBIOS
//     total by at most 10% or 512 MiB, whichever is more (firmware and the
//     kernel reserve some; a DIMM the OS cannot use is more than that).
//
// The comparison with the inventory's record is the boot server's.
func Commission(fsys fs.FS, f Facts, open func(disk string) (io.ReaderAt, io.Closer, error)) []Check {
	var out []Check
	for _, d := range f.Disks {
		c := Check{Name: "disk " + d.Name + " readable"}
		if err := readEnds(d, open); err != nil {
			c.Err = err.Error()
		}
		out = append(out, c)
	}
	link := Check{Name: "nic link"}
	var up []string
	for _, n := range f.NICs {
		if readText(fsys, "sys/class/net/"+n.Name+"/carrier") == "1" {
			up = append(up, n.Name)
		}
	}
	if len(up) == 0 {
		link.Err = fmt.Sprintf("none of %d NICs has carrier", len(f.NICs))
	}
	out = append(out, link)

	mem := Check{Name: "memory visible"}
	if f.MemorySource == MemorySMBIOS {
		if total, err := memTotal(fsys); err != nil {
			mem.Err = err.Error()
		} else if slack := max(f.MemoryBytes/10, 512<<20); total+slack < f.MemoryBytes {
			mem.Err = fmt.Sprintf("the kernel sees %d MiB of %d MiB installed", total>>20, f.MemoryBytes>>20)
		}
	}
	return append(out, mem)
}

func readEnds(d Disk, open func(string) (io.ReaderAt, io.Closer, error)) error {
	r, c, err := open(d.Name)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, min(checkRead, d.SizeBytes))
	for _, off := range []uint64{0, d.SizeBytes - uint64(len(buf))} {
		// A short read is a failure even with io.EOF: the disk is smaller than it says.
		if n, err := r.ReadAt(buf, int64(off)); n < len(buf) {
			return fmt.Errorf("read %d bytes at %d: got %d: %v", len(buf), off, n, err)
		}
	}
	return nil
}

// memTotal is /proc/meminfo's MemTotal in bytes.
func memTotal(fsys fs.FS) (uint64, error) {
	b, err := fs.ReadFile(fsys, "proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("proc/meminfo MemTotal %q: %w", strings.TrimSpace(rest), err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no MemTotal in proc/meminfo")
}
