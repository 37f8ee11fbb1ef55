package inventory

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Root-device hints: which of a machine's disks a deploy writes the OS to.
// A hint is a where-expression compiled over one disk's fields (DiskFields:
// name, size_bytes, model, serial, rotational, wwn) instead of a machine's,
// with the same grammar and three-valued logic as ParseWhere:
//
//	not rotational and size_bytes < 1e12
//	serial == "S3Z9NB0K123"
//	wwn startsWith "naa.5000"

// Root layouts.
const (
	// LayoutFlat writes the image to one disk (the default).
	LayoutFlat = "flat"
	// LayoutMirror builds a software RAID 1 over two disks and writes the
	// image to the array.
	LayoutMirror = "mirror"
)

// DiskFields are the names a root-disk hint may use: Disk's JSON names.
var DiskFields = jsonNames(reflect.TypeFor[Disk]())

var diskFieldSet = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range DiskFields {
		m[f] = true
	}
	return m
}()

// DiskWhere is a compiled root-disk hint.
type DiskWhere struct{ w *Where }

// ParseDiskWhere compiles a root-disk hint. An empty hint is an error: a
// deploy without a hint takes the first disk that fits, which is not a
// hint's business.
func ParseDiskWhere(src string) (*DiskWhere, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("root disk hint is empty")
	}
	w, err := compileWhere(src, diskFieldSet, DiskFields)
	if err != nil {
		return nil, fmt.Errorf("root disk hint: %w", err)
	}
	return &DiskWhere{w: w}, nil
}

// String returns the source.
func (d *DiskWhere) String() string { return d.w.src }

// Match evaluates the hint for one disk. Empty strings are missing (nil),
// as in machine expressions.
func (d *DiskWhere) Match(disk Disk) (bool, error) {
	env := make(map[string]any, len(d.w.idents))
	str := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	for f := range d.w.idents {
		switch f {
		case "name":
			str(f, disk.Name)
		case "model":
			str(f, disk.Model)
		case "serial":
			str(f, disk.Serial)
		case "wwn":
			str(f, disk.WWN)
		case "size_bytes":
			if disk.SizeBytes > 0 {
				env[f] = int(disk.SizeBytes)
			}
		case "rotational":
			env[f] = disk.Rotational
		}
	}
	return d.w.run(env)
}

// ValidateLayout checks a root layout: "", flat or mirror ("" is flat).
// A mirror needs a hint (which disks to mirror is never guessed).
func ValidateLayout(layout, hint string) error {
	switch layout {
	case "", LayoutFlat:
		return nil
	case LayoutMirror:
		if strings.TrimSpace(hint) == "" {
			return errors.New("root layout mirror needs a root disk hint that matches two disks")
		}
		return nil
	}
	return fmt.Errorf("root layout %q: want %s or %s", layout, LayoutFlat, LayoutMirror)
}

// ChooseRootDisks applies hint to disks: the disks it matches, smallest
// first, then by name; the first for a flat layout, the first two for a
// mirror. No match (or one for a mirror) is an error naming the hint and
// every disk.
func ChooseRootDisks(hint, layout string, disks []Disk) ([]Disk, error) {
	if err := ValidateLayout(layout, hint); err != nil {
		return nil, err
	}
	w, err := ParseDiskWhere(hint)
	if err != nil {
		return nil, err
	}
	if len(disks) == 0 {
		return nil, fmt.Errorf("root disk hint %q: no disks in the machine's facts (commission it first)", hint)
	}
	var match []Disk
	for _, d := range disks {
		ok, err := w.Match(d)
		if err != nil {
			return nil, fmt.Errorf("root disk hint on disk %s: %w", d.Name, err)
		}
		if ok {
			match = append(match, d)
		}
	}
	sort.SliceStable(match, func(i, j int) bool {
		if match[i].SizeBytes != match[j].SizeBytes {
			return match[i].SizeBytes < match[j].SizeBytes
		}
		return match[i].Name < match[j].Name
	})
	want := 1
	if layout == LayoutMirror {
		want = 2
	}
	if len(match) < want {
		return nil, fmt.Errorf("root disk hint %q matches %d of the machine's disks, %s needs %d (disks: %s)",
			hint, len(match), layoutName(layout), want, DisksText(disks))
	}
	return match[:want], nil
}

func layoutName(layout string) string {
	if layout == "" {
		return LayoutFlat
	}
	return layout
}

// DisksText describes disks for people: "sda (8001563222016 bytes,
// rotational, model M, serial S), sdb (…)".
func DisksText(disks []Disk) string {
	if len(disks) == 0 {
		return "none"
	}
	parts := make([]string, len(disks))
	for i, d := range disks {
		attrs := []string{fmt.Sprintf("%d bytes", d.SizeBytes)}
		if d.Rotational {
			attrs = append(attrs, "rotational")
		} else {
			attrs = append(attrs, "not rotational")
		}
		if d.Model != "" {
			attrs = append(attrs, "model "+d.Model)
		}
		if d.Serial != "" {
			attrs = append(attrs, "serial "+d.Serial)
		}
		if d.WWN != "" {
			attrs = append(attrs, "wwn "+d.WWN)
		}
		parts[i] = fmt.Sprintf("%s (%s)", d.Name, strings.Join(attrs, ", "))
	}
	return strings.Join(parts, ", ")
}
